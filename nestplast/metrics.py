"""Activity and weight metrics of a spiking network, computed from recorded spikes and weights.

Pure numpy (no NEST): spikes come in as NEST's spike recorder gives them, ``senders`` (node ids)
and ``times`` (ms), together with the ids of the population and a scoring window
``[t_start, t_stop)`` in ms. Everything is vectorised over neurons and spikes.

Conventions shared by all metrics
- Spikes outside the window or from senders not in ``ids`` are ignored; neurons of ``ids`` that
  never spike count as silent neurons.
- Binned quantities use bins of fixed width starting at ``t_start``; a trailing partial bin is
  dropped, so every bin covers the same time.
- Variances and standard deviations are the unbiased sample ones (``ddof=1``): some of them are
  taken over few samples (a neuron with 3 spikes has 2 ISIs), where ``ddof=0`` is biased low.
- A metric that is undefined for the data (e.g. CV without any neuron with 3 spikes, a Fano
  factor of a silent population) is NaN. No input raises or emits a numpy warning.

The metric names and their accepted ranges (fSBI filter) are in :mod:`nestplast.objectives`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FANO_BIN_MS = 100.0  # spike counts for the Fano factors
AUTOCOV_BIN_MS = 10.0  # population rate for the autocovariance
AUTOCOV_MAX_LAG_MS = 500.0  # lags 10..500 ms (both signs give the same values)
FINE_BIN_MS = 1.0  # population rate for the spectrum and its temporal spread
KL_BINS = 20  # equal-probability bins of the reference exponential (see activity_metrics)
W_BLOW_RTOL = 1e-6  # a weight within this fraction of |w_max| of 0 or |w_max| counts as blown

ACTIVITY_KEYS = ("rate", "cv_isi", "kl_isi", "spatial_fano", "temporal_fano", "auto_cov", "fft",
                 "std_rate_temporal", "std_rate_spatial")


def _n_bins(t_start: float, t_stop: float, bin_ms: float) -> int:
    """Number of whole bins of ``bin_ms`` in the window (tolerant to float round-off: 0.3 / 0.1)."""
    if not bin_ms > 0:
        raise ValueError(f"bin width must be positive, got {bin_ms} ms")
    span = t_stop - t_start
    if not span > 0:
        return 0
    return int(np.floor(span / bin_ms + 1e-9))


def _bin_index(times: np.ndarray, t_start: float, bin_ms: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin of each time, and the mask of times that fall in one of the ``n_bins`` bins."""
    idx = np.floor((times - t_start) / bin_ms).astype(np.int64)
    keep = (idx >= 0) & (idx < n_bins)
    return idx, keep


def population_rate(times: np.ndarray, n_neurons: int, t_start: float, t_stop: float,
                    bin_ms: float) -> np.ndarray:
    """Population firing rate in Hz per bin: spikes in the bin / (``n_neurons`` * bin width in s).

    ``times`` (ms) are the spike times of the population's neurons; times outside
    ``[t_start, t_stop)`` are ignored. Bins of ``bin_ms`` start at ``t_start``; a trailing partial
    bin is dropped. Returns an empty array for an empty window or ``n_neurons <= 0``.
    """
    times = np.asarray(times, dtype=float).ravel()
    n_bins = _n_bins(t_start, t_stop, bin_ms)
    if n_bins == 0 or n_neurons <= 0:
        return np.zeros(0)
    idx, keep = _bin_index(times, t_start, bin_ms, n_bins)
    counts = np.bincount(idx[keep], minlength=n_bins)
    return counts / (n_neurons * bin_ms * 1e-3)


def _select(senders, times, ids, t_start: float, t_stop: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Spikes of the population in the window: (neuron index 0..n-1, time in ms), and n."""
    ids = np.unique(np.asarray(ids).ravel())
    senders = np.asarray(senders).ravel()
    times = np.asarray(times, dtype=float).ravel()
    if senders.shape != times.shape:
        raise ValueError(f"senders and times differ in length: {senders.size} != {times.size}")
    n = ids.size
    if n == 0 or senders.size == 0:
        return np.zeros(0, np.int64), np.zeros(0), n
    pos = np.searchsorted(ids, senders)
    pos_c = np.minimum(pos, n - 1)
    keep = (ids[pos_c] == senders) & (times >= t_start) & (times < t_stop)
    return pos_c[keep].astype(np.int64), times[keep], n


def _cv_and_isis(neuron: np.ndarray, times: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    """Mean CV of ISIs over neurons with >= 3 spikes (NaN if none), and all ISIs pooled (ms)."""
    order = np.lexsort((times, neuron))  # by neuron, then by time
    neuron, times = neuron[order], times[order]
    same = neuron[1:] == neuron[:-1]  # consecutive spikes of one neuron: an ISI
    isi = np.diff(times)[same]
    owner = neuron[1:][same]
    n_isi = np.bincount(owner, minlength=n)
    total = np.bincount(owner, weights=isi, minlength=n)
    ok = (n_isi >= 2) & (total > 0)  # >= 3 spikes
    if not ok.any():
        return np.nan, isi
    mean = total / np.maximum(n_isi, 1)
    # two-pass variance: exactly zero for a perfectly regular train
    var = np.bincount(owner, weights=(isi - mean[owner]) ** 2, minlength=n)[ok] / (n_isi[ok] - 1)
    return float(np.mean(np.sqrt(var) / mean[ok])), isi


def _kl_from_exponential(isi: np.ndarray, n_bins: int = KL_BINS) -> float:
    """KL(empirical ISI histogram || exponential of the same mean), in nats.

    The bins have equal probability 1/n_bins under the exponential (edges at
    -mean * log(1 - k / n_bins), the last bin open to infinity), so the histogram covers every ISI
    whatever the rate, and KL = sum_k p_k log(p_k * n_bins). A perfectly regular train gives
    log(n_bins); the plug-in estimate of a true exponential is biased up by about
    (n_bins - 1) / (2 * number of ISIs).
    """
    if isi.size == 0:
        return np.nan
    mean = isi.mean()
    if not mean > 0:
        return np.nan
    edges = -mean * np.log1p(-np.arange(1, n_bins) / n_bins)  # inner edges
    counts = np.bincount(np.searchsorted(edges, isi, side="right"), minlength=n_bins)
    p = counts[counts > 0] / isi.size
    return float(max(np.sum(p * np.log(p * n_bins)), 0.0))


def _fano_factors(neuron: np.ndarray, times: np.ndarray, n: int, t_start: float,
                  n_bins: int) -> tuple[float, float]:
    """(spatial, temporal) Fano factors of spike counts in FANO_BIN_MS bins (see activity_metrics)."""
    idx, keep = _bin_index(times, t_start, FANO_BIN_MS, n_bins)
    counts = np.bincount(neuron[keep] * n_bins + idx[keep], minlength=n * n_bins).reshape(n, n_bins)
    temporal = spatial = np.nan
    if n_bins >= 2:
        mean_t = counts.mean(axis=1)
        ok = mean_t > 0
        if ok.any():
            temporal = float(np.mean(counts[ok].var(axis=1, ddof=1) / mean_t[ok]))
    if n >= 2:
        mean_s = counts.mean(axis=0)
        ok = mean_s > 0
        if ok.any():
            spatial = float(np.mean(counts[:, ok].var(axis=0, ddof=1) / mean_s[ok]))
    return spatial, temporal


def _auto_cov(rate: np.ndarray) -> float:
    """Mean |autocorrelation| of the population rate over lags 1..AUTOCOV_MAX_LAG_MS (see below)."""
    n_lags = min(int(round(AUTOCOV_MAX_LAG_MS / AUTOCOV_BIN_MS)), rate.size - 1)
    if n_lags < 1:
        return np.nan
    d = rate - rate.mean()
    var = np.mean(d * d)
    if not var > 0:
        return np.nan
    # autocovariance by FFT, zero-padded so lags do not wrap; biased estimator (divide by L)
    n_fft = 1 << int(np.ceil(np.log2(2 * rate.size)))
    f = np.fft.rfft(d, n_fft)
    acov = np.fft.irfft(f.real**2 + f.imag**2, n_fft)[1:n_lags + 1] / rate.size
    return float(np.mean(np.abs(acov)) / var)


def _fft_sum(x: np.ndarray) -> float:
    """Sum of the one-sided amplitude spectrum 2/L |X_k| over 0 < f < Nyquist, mean removed."""
    L = x.size
    amplitude = 2.0 / L * np.abs(np.fft.rfft(x - x.mean()))
    return float(np.sum(amplitude[1:(L + 1) // 2]))


def _nan_activity() -> dict[str, float]:
    return dict.fromkeys(ACTIVITY_KEYS, np.nan)


def activity_metrics(senders: np.ndarray, times: np.ndarray, ids: np.ndarray, t_start: float,
                     t_stop: float) -> dict[str, float]:
    """Activity metrics of one population in the window ``[t_start, t_stop)`` (ms).

    ``senders``/``times``: NEST's spike events (node ids, ms); may include other populations'
    spikes, only senders in ``ids`` count. Keys:

    - ``rate``: mean rate in Hz, spikes / (number of neurons in ``ids`` * window in s).
    - ``cv_isi``: std / mean of the ISIs of each neuron with >= 3 spikes, averaged over those
      neurons; NaN if there is none. Poisson: 1, regular: 0.
    - ``kl_isi``: KL divergence (nats) of the histogram of all ISIs pooled over neurons from the
      exponential distribution with the same mean, in KL_BINS = 20 bins of equal probability under
      that exponential (see ``_kl_from_exponential``); NaN without any ISI. Poisson: ~0
      (+ 19 / (2 * number of ISIs) estimation bias), regular: log(20) = 3.0.
    - ``temporal_fano``: spike counts in 100 ms bins; for each neuron var / mean of its counts
      over the bins, averaged over the neurons that spiked; NaN with < 2 bins or no spike.
    - ``spatial_fano``: for each 100 ms bin var / mean of the counts across neurons, averaged over
      the bins with a spike; NaN with < 2 neurons or no spike. Both Fano factors: Poisson 1.
    - ``auto_cov``: population rate in 10 ms bins, its autocovariance
      C(k) = sum_t d_t d_{t+k} / L (d: rate minus its mean, L bins) normalised by C(0), i.e. the
      autocorrelation; the mean of |C(k)| / C(0) over lags k = 10..500 ms. NaN if the rate does
      not vary or the window is shorter than 20 ms. Asynchronous Poisson: ~0.8 / sqrt(L) (0.025 for
      10 s); oscillating populations approach 0.5 or more.
    - ``fft``: the population rate in 1 ms bins expressed as spikes per neuron per bin (rate in Hz
      * 0.001 s, the fSBI normalisation), mean removed; the one-sided amplitude spectrum
      2/L |X_k| summed over 0 < f < 500 Hz. Asynchronous Poisson at rate r for T s with N neurons:
      ~ (sqrt(pi) / 2) * sqrt(r T / N) (0.28 for 1000 neurons at 10 Hz for 10 s); synchronous
      firing gives order sqrt(r T) or more.
    - ``std_rate_temporal``: std over 1 ms bins of the same population rate in spikes per neuron per
      bin (fSBI's definition). Poisson: sqrt(r * 0.001 / N); at most 0.5 by construction.
    - ``std_rate_spatial``: std across neurons (silent ones included) of each neuron's rate, Hz.
      Poisson: sqrt(r / T).

    An empty window or empty ``ids`` gives NaN everywhere. No spike gives rate 0, fft 0,
    std_rate_temporal 0, std_rate_spatial 0 and NaN for the others. One neuron: spatial metrics NaN.
    """
    neuron, t, n = _select(senders, times, ids, t_start, t_stop)
    duration_s = (t_stop - t_start) * 1e-3
    if n == 0 or not duration_s > 0:
        return _nan_activity()
    out = _nan_activity()
    out["rate"] = neuron.size / (n * duration_s)

    out["cv_isi"], isi = _cv_and_isis(neuron, t, n)
    out["kl_isi"] = _kl_from_exponential(isi)

    out["spatial_fano"], out["temporal_fano"] = _fano_factors(
        neuron, t, n, t_start, _n_bins(t_start, t_stop, FANO_BIN_MS))

    out["auto_cov"] = _auto_cov(population_rate(t, n, t_start, t_stop, AUTOCOV_BIN_MS))

    fine = population_rate(t, n, t_start, t_stop, FINE_BIN_MS) * (FINE_BIN_MS * 1e-3)
    if fine.size >= 1:
        out["fft"] = _fft_sum(fine)
    if fine.size >= 2:
        out["std_rate_temporal"] = float(np.std(fine, ddof=1))

    if n >= 2:
        rates = np.bincount(neuron, minlength=n) / duration_s
        out["std_rate_spatial"] = float(np.std(rates, ddof=1))
    return out


def mean_rate(senders: np.ndarray, times: np.ndarray, ids: np.ndarray, t_start: float,
              t_stop: float) -> float:
    """Mean rate (Hz) of the population ``ids`` in ``[t_start, t_stop)`` ms; NaN if undefined."""
    neuron, _, n = _select(senders, times, ids, t_start, t_stop)
    duration_s = (t_stop - t_start) * 1e-3
    if n == 0 or not duration_s > 0:
        return np.nan
    return neuron.size / (n * duration_s)


def weight_metrics(w_start: Mapping[str, np.ndarray], w_end: Mapping[str, np.ndarray],
                   w_max: Mapping[str, float]) -> dict[str, float]:
    """Weight metrics per connection type (keys of ``w_end``, e.g. "EE", "IE": source then target).

    All on magnitudes |w| (NEST's inhibitory weights are negative); ``w_start`` and ``w_max`` need
    an entry for every type of ``w_end``. Keys:

    - ``w_mean_<type>``: mean |w| at the end (NaN for a type without synapses).
    - ``w_start_<type>``: mean |w| at the start (NaN for a type without synapses).
    - ``w_blow``: for each type the fraction of end weights within W_BLOW_RTOL * |w_max| of 0 or
      of |w_max|; averaged over the types with synapses (so a small blown population is not
      drowned by a large one, as in fSBI); NaN if no type has synapses.
    - ``w_creep``: max over types of |2 (m_end - m_start) / (m_end + m_start)|, m the mean |w|;
      a type whose means are both 0 has creep 0; 0 if no type has synapses.
    """
    out: dict[str, float] = {}
    blow, creep = [], [0.0]
    for ct, end in w_end.items():
        end = np.abs(np.asarray(end, dtype=float).ravel())
        start = np.abs(np.asarray(w_start[ct], dtype=float).ravel())
        bound = abs(float(w_max[ct]))
        if end.size == 0:
            out[f"w_mean_{ct}"] = out[f"w_start_{ct}"] = np.nan
            continue
        m_end = float(end.mean())
        out[f"w_mean_{ct}"] = m_end
        tol = W_BLOW_RTOL * bound
        blow.append(float(np.mean((end <= tol) | (end >= bound - tol))))
        if start.size:
            m_start = out[f"w_start_{ct}"] = float(start.mean())
            total = m_end + m_start
            creep.append(abs(2.0 * (m_end - m_start) / total) if total > 0 else 0.0)
    out["w_blow"] = float(np.mean(blow)) if blow else np.nan
    out["w_creep"] = float(max(creep))
    return out


def network_metrics(senders: np.ndarray, times: np.ndarray, populations: Mapping[str, np.ndarray], t_start: float,
                    t_stop: float, *, scored: str = "E", w_start: Mapping[str, np.ndarray] | None = None,
                    w_end: Mapping[str, np.ndarray] | None = None,
                    w_max: Mapping[str, float] | None = None) -> dict[str, float]:
    """All metrics under the names :data:`nestplast.objectives.FSBI_CONSTRAINTS` uses; the
    search measures every evaluation with this.

    The activity metrics of the ``scored`` population (unsuffixed, as in fSBI), the mean rate of
    every population as ``rate_<name>`` (``rate_e``, ``rate_i``), and the weight metrics if
    weights are given. ``populations`` maps names to node ids.
    """
    if scored not in populations:
        raise KeyError(f"scored population {scored!r} is not among {', '.join(populations)}")
    out = activity_metrics(senders, times, populations[scored], t_start, t_stop)
    for name, ids in populations.items():
        out[f"rate_{name.lower()}"] = out["rate"] if name == scored else mean_rate(senders, times, ids, t_start, t_stop)
    if w_end is not None:
        if w_start is None or w_max is None:
            raise ValueError("weight metrics need w_start, w_end and w_max")
        out.update(weight_metrics(w_start, w_end, w_max))
    return out
