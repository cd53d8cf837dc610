"""Losses that the search minimises, built from the metrics of :mod:`nestplast.metrics`.

Pure numpy (no NEST, no scipy: see :class:`RateBand`). The parts:

- target-rate loss (SpikES): per time step (r - target)^2 / (r + 2), averaged;
- interval penalty: how far metrics are outside accepted ranges (fSBI filter, FSBI_CONSTRAINTS);
- blow-up loss: 160 (exp(-t_blow / T) + 1) when the low-passed population rate leaves a band
  (RateBand), so an early blow-up costs most;
- L1 penalty on the searched coefficients.

:class:`Objective` combines them for one trial; :func:`aggregate_trials` combines trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .rules import is_time_constant

RATE_BIN_MS = 100.0  # the scored rate's bins (the target-rate term averages over them)
# The fewest spikes the scored population fires in one bin at the target rate, on average. Counting
# noise moves the term's minimum above the target by about 1 / SPIKES_PER_BIN of it
# (:func:`noise_shift`): one neuron's 100 ms bins hold 0, 1 or 2 spikes, an empty bin scores
# target^2 / 2, and a rule firing at 24 Hz scored better than one at 9 Hz for a 10 Hz target.
SPIKES_PER_BIN = 40

INF = math.inf

# fSBI filter (reference notes, "Activity and weight constraints"), names as produced by
# metrics.network_metrics: activity metrics of the E population; connection types are source then
# target ("IE" is I -> E). The weight ranges are in fSBI's units (conductances, w_max = 20).
FSBI_CONSTRAINTS: dict[str, tuple[float, float]] = {
    "rate_e": (1.0, 50.0),
    "rate_i": (1.0, 50.0),
    "cv_isi": (0.7, INF),
    "kl_isi": (0.0, 0.5),
    "spatial_fano": (0.5, 2.5),
    "temporal_fano": (0.5, 2.5),
    "auto_cov": (0.0, 0.1),
    "fft": (0.0, 1.0),
    # The reference table says 0-0.5, but with fSBI's definition (std over 1 ms bins of spikes per
    # neuron per bin, as in metrics) the value cannot exceed 0.5, so 0.5 would accept everything;
    # fSBI's code (fsbi/analyse.py, condition()) uses 0.05.
    "std_rate_temporal": (0.0, 0.05),
    "std_rate_spatial": (0.0, 5.0),
    "w_blow": (0.0, 0.1),
    "w_creep": (0.0, 0.05),
    "w_mean_EE": (0.0, 0.5),
    "w_mean_EI": (0.0, 0.5),
    "w_mean_IE": (0.0, 5.0),
    "w_mean_II": (0.0, 5.0),
}

NAN_METRIC_PENALTY = 1.0  # an undefined (NaN) constrained metric costs as much as being off by one scale
BLOWUP_SCALE = 160.0  # SpikES
FAILURE_LOSS = 2.0 * BLOWUP_SCALE  # a failed candidate: as bad as a blow-up at t = 0


def interval_penalty(metrics: Mapping[str, float], constraints: Mapping[str, tuple[float, float]],
                     nan_penalty: float = NAN_METRIC_PENALTY) -> float:
    """Sum over the constrained metrics of their relative distance outside the accepted interval.

    For a metric x and interval [lo, hi]: 0 inside; below lo, (lo - x) / scale; above hi,
    (x - hi) / scale, where scale is |the violated bound|, or the interval width hi - lo if that
    bound is 0 (or 1 if the width is not finite either). So a penalty of 1 means e.g. twice the
    upper bound, or 0 when the lower bound is positive. A NaN metric costs ``nan_penalty``.
    Raises KeyError naming a constrained metric missing from ``metrics``.
    """
    total = 0.0
    for name, (lo, hi) in constraints.items():
        if name not in metrics:
            raise KeyError(f"constrained metric {name!r} is missing from the metrics "
                           f"(have: {', '.join(sorted(metrics))})")
        x = float(metrics[name])
        if math.isnan(x):
            total += nan_penalty
            continue
        if x < lo:
            total += (lo - x) / _scale(lo, lo, hi)
        elif x > hi:
            total += (x - hi) / _scale(hi, lo, hi)
    return total


def _scale(bound: float, lo: float, hi: float) -> float:
    if bound != 0 and math.isfinite(bound):
        return abs(bound)
    width = hi - lo
    return width if math.isfinite(width) and width > 0 else 1.0


def rate_bin_ms(n_neurons: int, target_hz: float | None, window_ms: float) -> float:
    """The width of the scored rate's bins: :data:`RATE_BIN_MS`, or, where the ``n_neurons`` of the
    scored population would fire fewer than :data:`SPIKES_PER_BIN` spikes in one at ``target_hz``,
    the scoring window cut into as many whole bins as hold that many (one bin at least: the window)."""
    if target_hz is None or target_hz <= 0 or n_neurons * target_hz * RATE_BIN_MS / 1000.0 >= SPIKES_PER_BIN:
        return RATE_BIN_MS
    needed = 1000.0 * SPIKES_PER_BIN / (n_neurons * target_hz)
    return window_ms / max(1, math.floor(window_ms / needed + 1e-9))


def noise_shift(target_hz: float, spikes_per_bin: float) -> float:
    """How far above ``target_hz`` (Hz) the target-rate term's expectation is lowest where each bin
    holds Poisson counts of ``spikes_per_bin`` on average at the target: (r - T)^2 / (r + 2) is
    convex in r, so noise costs less at higher rates. To second order in the noise,
    T (T - 1) / (k (T + 2)) for k spikes per bin."""
    return target_hz * (target_hz - 1.0) / (spikes_per_bin * (target_hz + 2.0))


def target_rate_loss(rate_hz: np.ndarray, target_hz: float = 10.0) -> float:
    """SpikES loss: mean over time steps of (r - target)^2 / (r + 2), r the population rate (Hz)
    per time step (e.g. metrics.population_rate of the scoring window, in :func:`rate_bin_ms`'s bins). The + 2 Hz keeps a silent
    network finite ((target^2) / 2). NaN for an empty array."""
    r = np.asarray(rate_hz, dtype=float).ravel()
    if r.size == 0:
        return math.nan
    return float(np.mean((r - target_hz) ** 2 / (r + 2.0)))


def blowup_loss(t_blow_s: float, total_s: float) -> float:
    """SpikES loss of a run stopped at ``t_blow_s`` (s from the start) out of ``total_s`` planned:
    160 (exp(-t_blow / T) + 1), from 320 at t = 0 down to 160 (1 + 1/e) at the end."""
    if not total_s > 0:
        raise ValueError(f"total_s must be positive, got {total_s}")
    return BLOWUP_SCALE * (math.exp(-max(t_blow_s, 0.0) / total_s) + 1.0)


class RateBand:
    """Early-abort check: the population rate low-passed (exponential, ``tau_s``) must stay in
    [``low``, ``high``] Hz.

    Feed the rate chunk by chunk as a simulation run in chunks produces it (``update``, which
    answers as ``outside`` does); the filter state carries over between chunks, and once the band
    is left the answer stays True. The filter starts at ``start`` Hz
    (default: 10 Hz inside the band; outside it, the larger of 10 Hz and twice the low bound, at most
    the band's middle) so
    that the first samples of a healthy network do not trip a bound while the filter warms up; a
    silent network then falls below 0.1 Hz after tau * ln(100) = 4.6 s.
    """

    def __init__(self, low: float = 0.1, high: float = 100.0, tau_s: float = 1.0, start: float | None = None) -> None:
        if not low < high:
            raise ValueError(f"empty band [{low}, {high}] Hz")
        if not tau_s > 0:
            raise ValueError(f"tau_s must be positive, got {tau_s}")
        if start is None:  # a fixed 10 Hz outside the band, e.g. [20, 200], cut every evaluation short at once
            # inside the band, near its low end (the middle of [20, inf] is inf: a silent network never left it)
            start = 10.0 if low < 10.0 < high else min(max(10.0, 2.0 * low), (low + high) / 2)
        self.low, self.high, self.tau_s = low, high, tau_s
        self.value_hz = float(start)  # current low-passed rate
        self.elapsed_s = 0.0  # time fed so far
        self.left_at_s: float | None = None  # when the low-passed rate first left the band
        self.left_above: bool | None = None  # whether it left above the band's high bound (NaN: above)

    def update(self, rate_hz: np.ndarray | float, dt_s: float) -> bool:
        """Feed consecutive rate samples (Hz), one per ``dt_s`` seconds; returns ``outside()``.

        E.g. ``band.update(population_rate(times, n, t0, t1, 1.0), 1e-3)`` after each chunk, or
        ``band.update(mean_rate_of_chunk, chunk_s)`` for one sample per chunk.
        """
        r = np.atleast_1d(np.asarray(rate_hz, dtype=float)).ravel()
        if r.size == 0:
            return self.outside()
        if not dt_s > 0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        # exact discretisation of tau dy/dt = r - y for piecewise constant r. A loop: the evaluation
        # feeds one sample per chunk, and scipy.signal.lfilter's import alone cost each process a
        # second of CPU in its first evaluation (measured: 1.36 s against 0.50 s for the next ones)
        a = -math.expm1(-dt_s / self.tau_s)
        y = np.empty(r.size)
        value = self.value_hz
        for k, sample in enumerate(r.tolist()):
            value = a * sample + (1.0 - a) * value
            y[k] = value
        if self.left_at_s is None:
            out = np.flatnonzero(~((y >= self.low) & (y <= self.high)))  # NaN counts as outside
            if out.size:
                self.left_at_s = self.elapsed_s + (out[0] + 1) * dt_s
                self.left_above = not y[out[0]] < self.low
        self.value_hz = float(y[-1])
        self.elapsed_s += r.size * dt_s
        return self.outside()

    def outside(self) -> bool:
        """Whether the low-passed rate has left the band at any time fed so far."""
        return self.left_at_s is not None


def relative_error(error: float, zero: float) -> float:
    """An inference fit's ``error`` over the all-zero rule's ``zero``; where that is 0 (the rule
    changes nothing measurable there, or nothing was recorded), the error itself."""
    return float(error / zero) if zero > 0 else float(error)


def l1_penalty(theta: np.ndarray, weight: float, names: Sequence[str] | None = None) -> float:
    """``weight`` * sum |coefficient|: favours sparse rules (SpikES). With the parameters' ``names``
    the time constants (``tau_*``, also ``IE.tau_pre``) are left out: they are no terms of the rule,
    and in ms they made up most of the penalty, pushing towards short time constants, not sparse rules."""
    theta = np.abs(np.asarray(theta, dtype=float))
    if names is not None:
        theta = theta[[not is_time_constant(name) for name in names]]
    return float(weight * np.sum(theta))


@dataclass
class Objective:
    """Loss of one trial.

    Active parts: the target-rate loss when ``target_rate`` (Hz) is not None, the interval penalty when
    ``constraints`` is not empty, the L1 penalty when ``l1_weight`` > 0. If the network blew up,
    the blow-up loss replaces the target-rate and interval parts (the metrics of a stopped run
    mean little).
    """

    target_rate: float | None = 10.0  # Hz
    constraints: dict[str, tuple[float, float]] = field(default_factory=dict)
    l1_weight: float = 0.0
    parameter_names: tuple[str, ...] | None = None  # theta's, for the L1 penalty (its time constants left out)
    rate_metric: str = "rate_e"  # the metric used as a constant rate when there is no rate trace
    nan_penalty: float = NAN_METRIC_PENALTY

    def score(self, metrics: Mapping[str, float], theta: np.ndarray, blew_up_at_s: float | None,
              total_s: float, rate_hz: np.ndarray | None = None) -> tuple[float, dict[str, float]]:
        """(loss, parts): parts has ``target_rate``, ``constraints``, ``blowup``, ``l1`` (0 when
        inactive) and ``total``.

        ``blew_up_at_s``: when the run was stopped for leaving the rate band (s from its start),
        None if it ran to the end; ``total_s``: its planned length (s). ``rate_hz``: the
        population rate (Hz) per time step in the scoring window, for the target-rate loss;
        without it ``metrics["rate_trace"]`` if present, else ``metrics[rate_metric]`` as a
        constant rate.
        """
        parts = {"target_rate": 0.0, "constraints": 0.0, "blowup": 0.0,
                 "l1": l1_penalty(theta, self.l1_weight, self.parameter_names) if self.l1_weight else 0.0}
        if blew_up_at_s is not None:
            parts["blowup"] = blowup_loss(blew_up_at_s, total_s)
        else:
            if self.target_rate is not None:
                if rate_hz is None:
                    rate_hz = metrics.get("rate_trace", [metrics[self.rate_metric]])
                parts["target_rate"] = target_rate_loss(rate_hz, self.target_rate)
            if self.constraints:
                parts["constraints"] = interval_penalty(metrics, self.constraints, self.nan_penalty)
        parts["total"] = parts["target_rate"] + parts["constraints"] + parts["blowup"] + parts["l1"]
        return parts["total"], parts


def aggregate_trials(losses: Iterable[float], failure_loss: float = FAILURE_LOSS) -> float:
    """Loss of a candidate from its trials: the mean; if any trial is NaN or infinite (a failed
    simulation), or there is none, the candidate failed and gets ``failure_loss`` (default 320,
    the loss of a blow-up at t = 0)."""
    values = np.asarray(list(losses), dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return float(failure_loss)
    return float(values.mean())
