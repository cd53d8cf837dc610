"""Metrics against hand-computed and analytic values on synthetic spike trains.

Spike trains are generated here with seeded numpy Generators; every tolerance is justified by
the sample size next to it. Any numpy warning fails a test (edge cases must stay quiet).
"""

import math

import numpy as np
import pytest
from helpers import W_END, W_MAX, W_START, _as_nest, poisson_population, regular_population, synchronous_population

from nestplast.metrics import KL_BINS, activity_metrics, mean_rate, network_metrics, population_rate, weight_metrics

pytestmark = pytest.mark.filterwarnings("error")

N, RATE, T_MS = 400, 10.0, 10_000.0
SQRT_PI_2 = math.sqrt(math.pi) / 2  # mean of a Rayleigh variable of unit scale / sqrt(2)


@pytest.fixture(scope="module")
def poisson():
    senders, times, ids = poisson_population(np.random.default_rng(1), N, RATE, T_MS)
    return senders, times, ids, activity_metrics(senders, times, ids, 0.0, T_MS)


# ---- population_rate ----

def test_population_rate_by_hand():
    times = np.array([0.0, 0.5, 1.5, 4.99, 7.0, 9.9, 10.0, 12.0, -1.0])
    # 2 neurons, window [0, 12) in 5 ms bins: [0,5) has 4 spikes, [5,10) 2, the partial bin
    # [10,12) is dropped, 12 and -1 are outside. Hz = count / (2 neurons * 0.005 s).
    np.testing.assert_allclose(population_rate(times, 2, 0.0, 12.0, 5.0), [400.0, 200.0])


def test_population_rate_float_bins_and_empty():
    # 0.3 / 0.1 is 2.9999999999999996 in floats: still three bins
    assert population_rate(np.array([0.05, 0.15, 0.25]), 1, 0.0, 0.3, 0.1).size == 3
    assert population_rate(np.array([1.0]), 1, 5.0, 5.0, 1.0).size == 0
    assert population_rate(np.array([1.0]), 0, 0.0, 5.0, 1.0).size == 0
    with pytest.raises(ValueError, match="bin width must be positive, got 0.0 ms"):
        population_rate(np.array([1.0]), 1, 0.0, 5.0, 0.0)


# ---- window and population selection, hand-computed values ----

def test_selection_and_hand_values():
    ids = np.array([10, 11, 12, 13])
    senders = np.array([10, 10, 10, 11, 11, 99, 12, 13])
    times = np.array([5.0, 15.0, 25.0, 50.0, 500.0, 100.0, -0.1, 499.99])
    # window [0, 500): sender 99 is foreign, 11 at 500 and 12 at -0.1 are outside.
    m = activity_metrics(senders, times, ids, 0.0, 500.0)
    assert m["rate"] == pytest.approx(5 / (4 * 0.5))  # 5 spikes, 4 neurons, 0.5 s
    assert m["cv_isi"] == pytest.approx(0.0, abs=1e-12)  # only neuron 10 has 3 spikes, ISIs 10, 10
    # rates 6, 2, 0, 2 Hz: mean 2.5, squared deviations 12.25 + 0.25 + 6.25 + 0.25 = 19, / 3
    assert m["std_rate_spatial"] == pytest.approx(math.sqrt(19 / 3))
    # counts in five 100 ms bins: n10 [3,0,0,0,0] var 1.8 mean 0.6 -> 3; n11 [1,0,0,0,0] -> 1;
    # n13 [0,0,0,0,1] -> 1; n12 silent (left out): temporal = (3 + 1 + 1) / 3
    assert m["temporal_fano"] == pytest.approx(5 / 3)
    # bin 0 counts [3,1,0,0]: mean 1, var 6/3 -> 2; bin 4 [0,0,0,1]: mean 0.25, var 0.25 -> 1
    assert m["spatial_fano"] == pytest.approx(1.5)
    assert mean_rate(senders, times, ids, 0.0, 500.0) == m["rate"]


def test_ids_unsorted_and_duplicated():
    senders = np.array([3, 1, 3])
    times = np.array([1.0, 2.0, 3.0])
    a = activity_metrics(senders, times, np.array([3, 1, 2, 3]), 0.0, 100.0)
    b = activity_metrics(senders, times, np.array([1, 2, 3]), 0.0, 100.0)
    assert a["rate"] == b["rate"] == pytest.approx(3 / (3 * 0.1))


# ---- Poisson population: analytic values ----

def test_poisson_rate(poisson):
    senders, times, ids, m = poisson
    assert m["rate"] == pytest.approx(senders.size / (N * T_MS * 1e-3))
    # 40,000 expected spikes: sd 200 (0.5 %); 2 % is 4 sd
    assert m["rate"] == pytest.approx(RATE, rel=0.02)


def test_poisson_cv_and_kl(poisson):
    *_, m = poisson
    # ~99 ISIs per neuron: per-neuron CV sd ~0.1, mean over 400 neurons sd ~0.005, bias of the
    # sample CV ~1 %; 0.05 covers both with room
    assert m["cv_isi"] == pytest.approx(1.0, abs=0.05)
    # 39,600 pooled ISIs: plug-in bias (20 - 1) / (2 * 39600) = 2.4e-4, sd of the same order
    assert 0.0 <= m["kl_isi"] < 0.005


def test_poisson_fano(poisson):
    *_, m = poisson
    # counts ~ Poisson(1) per 100 ms bin. Temporal: 100 bins per neuron, Fano sd ~ sqrt(2/99)
    # ~0.14 (+ Poisson excess), averaged over 400 neurons: sd ~0.01. Spatial: 400 neurons per bin,
    # sd ~0.07, averaged over 100 bins: ~0.01. Tolerance 0.05 = 5 sd.
    assert m["temporal_fano"] == pytest.approx(1.0, abs=0.05)
    assert m["spatial_fano"] == pytest.approx(1.0, abs=0.05)


def test_poisson_rate_spreads(poisson):
    *_, m = poisson
    # per-neuron rates: sd sqrt(r / T) = 1 Hz; a sample sd from 400 values is within 3.5 % (1 sd)
    assert m["std_rate_spatial"] == pytest.approx(math.sqrt(RATE / (T_MS * 1e-3)), rel=0.15)
    # spikes per neuron per 1 ms bin: sd sqrt(r * 0.001 / N) = 0.005; 10,000 bins: 0.7 % per sd
    assert m["std_rate_temporal"] == pytest.approx(math.sqrt(RATE * 1e-3 / N), rel=0.05)


def test_poisson_fft_matches_white_noise(poisson):
    *_, m = poisson
    # white noise of variance s^2 = r dt / N per bin: |X_k| is Rayleigh with mean
    # (sqrt(pi)/2) sqrt(L) s, times 2/L, summed over L/2 frequencies -> (sqrt(pi)/2) sqrt(r T / N)
    # = 0.443. A sum of 5,000 nearly independent terms: sd ~0.7 %; 5 % tolerance.
    expected = SQRT_PI_2 * math.sqrt(RATE * T_MS * 1e-3 / N)
    assert m["fft"] == pytest.approx(expected, rel=0.05)


def test_poisson_auto_cov_is_noise_level(poisson):
    *_, m = poisson
    # L = 1000 bins of 10 ms: autocorrelations ~ N(0, 1/L), mean |.| = sqrt(2/pi) / sqrt(L) = 0.025;
    # the mean of 50 of them has sd ~11 %; [0.5, 1.5] x expected is > 4 sd each side.
    expected = math.sqrt(2 / math.pi) / math.sqrt(T_MS / 10.0)
    assert 0.5 * expected < m["auto_cov"] < 1.5 * expected


# ---- perfectly regular trains: exact values ----

def test_regular_trains():
    # 10 Hz (period = the 100 ms Fano bin): every neuron has exactly one spike in every bin
    senders, times, ids = regular_population(np.random.default_rng(2), 50, 100.0, T_MS)
    m = activity_metrics(senders, times, ids, 0.0, T_MS)
    assert m["rate"] == pytest.approx(10.0)
    assert m["cv_isi"] == pytest.approx(0.0, abs=1e-9)
    assert m["temporal_fano"] == pytest.approx(0.0, abs=1e-12)
    assert m["spatial_fano"] == pytest.approx(0.0, abs=1e-12)
    assert m["std_rate_spatial"] == pytest.approx(0.0, abs=1e-12)
    # all ISIs equal: the whole histogram in one of the 20 equal-probability bins
    assert m["kl_isi"] == pytest.approx(math.log(KL_BINS))


# ---- synchronous against asynchronous ----

@pytest.fixture(scope="module")
def asynchronous_5hz():
    """Control for the synchronous populations below: Poisson at the same mean rate (5 Hz)."""
    return activity_metrics(*poisson_population(np.random.default_rng(3), 400, 5.0, T_MS), 0.0, T_MS)


def test_oscillating_population_has_large_auto_cov(asynchronous_5hz):
    # 10 Hz population bursts, half the neurons in each, 2 ms jitter
    rng = np.random.default_rng(4)
    osc = activity_metrics(*synchronous_population(rng, 400, 10.0, T_MS, periodic=True), 0.0, T_MS)
    assert osc["rate"] == pytest.approx(asynchronous_5hz["rate"], rel=0.05)
    # autocorrelation ~ +-1 at multiples of the 100 ms period, Poisson control ~0.025:
    # far outside fSBI's [0, 0.1] and any sampling spread of the control (sd ~11 %)
    assert osc["auto_cov"] > 0.2 and osc["auto_cov"] > 5 * asynchronous_5hz["auto_cov"]


def test_synchronous_events_have_large_fft(asynchronous_5hz):
    # the same events at Poisson times with 0.5 ms jitter: half the population fires within ~1 ms
    rng = np.random.default_rng(5)
    sync = activity_metrics(*synchronous_population(rng, 400, 10.0, T_MS, periodic=False, jitter_ms=0.5),
                            0.0, T_MS)
    assert sync["rate"] == pytest.approx(asynchronous_5hz["rate"], rel=0.3)  # 100 +- 10 events: 3 sd
    # control: (sqrt(pi)/2) sqrt(5 * 10 / 400) = 0.31, inside fSBI's [0, 1]; events: the spectrum
    # of ~0.1 spikes/neuron/bin pulses, broadband, several times above
    assert asynchronous_5hz["fft"] < 0.5 and sync["fft"] > 1.0 and sync["fft"] > 5 * asynchronous_5hz["fft"]
    assert sync["std_rate_temporal"] > 5 * asynchronous_5hz["std_rate_temporal"]


def test_oscillation_alone_barely_moves_fft(asynchronous_5hz):
    # documented property of fSBI's fft metric: a periodic signal puts its power into a few
    # lines (here ~0.1 in total) while the shot noise spreads over all 5,000 frequencies, so a
    # jittered 10 Hz oscillation stays near the Poisson value; auto_cov is what catches it.
    osc = activity_metrics(*synchronous_population(np.random.default_rng(4), 400, 10.0, T_MS, periodic=True),
                           0.0, T_MS)
    assert osc["fft"] < 2 * asynchronous_5hz["fft"]


# ---- edge cases: NaN or 0, never an exception or a warning ----

def test_no_spikes():
    m = activity_metrics(np.zeros(0, int), np.zeros(0), np.arange(1, 11), 0.0, 1000.0)
    assert m["rate"] == 0.0 and m["fft"] == 0.0
    assert m["std_rate_temporal"] == 0.0 and m["std_rate_spatial"] == 0.0
    for key in ("cv_isi", "kl_isi", "spatial_fano", "temporal_fano", "auto_cov"):
        assert math.isnan(m[key]), key


def test_one_neuron():
    senders, times, ids = poisson_population(np.random.default_rng(4), 1, 20.0, 5000.0)
    m = activity_metrics(senders, times, ids, 0.0, 5000.0)
    assert m["rate"] == pytest.approx(senders.size / 5.0)
    assert math.isnan(m["spatial_fano"]) and math.isnan(m["std_rate_spatial"])
    for key in ("cv_isi", "kl_isi", "temporal_fano", "auto_cov", "fft", "std_rate_temporal"):
        assert math.isfinite(m[key]), key


@pytest.mark.parametrize("t_start, t_stop", [(100.0, 100.0), (100.0, 50.0)])
def test_empty_window(t_start, t_stop):
    m = activity_metrics(np.array([1, 2]), np.array([60.0, 70.0]), np.array([1, 2]), t_start, t_stop)
    assert all(math.isnan(v) for v in m.values())


def test_no_neurons_and_short_window():
    assert all(math.isnan(v) for v in activity_metrics(np.array([1]), np.array([1.0]), np.zeros(0, int),
                                                       0.0, 100.0).values())
    # 50 ms: no whole 100 ms bin for the Fano factors, a single ISI per neuron at most
    m = activity_metrics(np.array([1, 1, 2]), np.array([1.0, 30.0, 12.0]), np.array([1, 2]), 0.0, 50.0)
    assert m["rate"] == pytest.approx(3 / (2 * 0.05))
    assert math.isnan(m["temporal_fano"]) and math.isnan(m["cv_isi"])
    assert math.isfinite(m["fft"]) and math.isfinite(m["kl_isi"])


def test_mismatched_spike_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        activity_metrics(np.array([1, 2]), np.array([1.0]), np.array([1, 2]), 0.0, 10.0)


# ---- weights ----



def test_weight_metrics_by_hand():
    m = weight_metrics(W_START, W_END, W_MAX)
    assert m["w_mean_EE"] == pytest.approx(0.55)  # (0 + 1 + 0.5 + 0.7) / 4
    assert m["w_mean_IE"] == pytest.approx(3.0)  # magnitudes 5, 3, 1, 3
    assert math.isnan(m["w_mean_II"])  # no synapses
    # EE: 0 and w_max blown (2/4); IE: |-5| = |w_max| (1/4); II has no synapses: mean of 0.5, 0.25
    assert m["w_blow"] == pytest.approx(0.375)
    # EE: 2 (0.55 - 0.5) / 1.05 = 0.0952; IE: 2 (3 - 2) / 5 = 0.4
    assert m["w_creep"] == pytest.approx(0.4)


def test_weight_blow_tolerance_and_zero_creep():
    near = weight_metrics({"EE": np.ones(2)}, {"EE": np.array([1.0 - 1e-9, 1e-9])}, {"EE": 1.0})
    assert near["w_blow"] == 1.0
    off = weight_metrics({"EE": np.ones(2)}, {"EE": np.array([1.0 - 1e-3, 1e-3])}, {"EE": 1.0})
    assert off["w_blow"] == 0.0
    zero = weight_metrics({"EE": np.zeros(3)}, {"EE": np.zeros(3)}, {"EE": 1.0})
    assert zero["w_creep"] == 0.0 and zero["w_blow"] == 1.0


def test_weight_metrics_need_every_type():
    with pytest.raises(KeyError, match="EE"):
        weight_metrics({}, {"EE": np.ones(2)}, {"EE": 1.0})


def test_network_metrics_names():
    rng = np.random.default_rng(5)
    se, te, ids_e = poisson_population(rng, 40, 10.0, 2000.0)
    si, ti, ids_i = poisson_population(rng, 10, 30.0, 2000.0, first_id=100)
    senders, times = _as_nest(np.concatenate([se, si]), np.concatenate([te, ti]))
    m = network_metrics(senders, times, {"E": ids_e, "I": ids_i}, 0.0, 2000.0, w_start=W_START, w_end=W_END,
                        w_max=W_MAX)
    assert m["rate_e"] == m["rate"] == pytest.approx(se.size / (40 * 2.0))
    assert m["rate_i"] == pytest.approx(si.size / (10 * 2.0))
    assert m["w_creep"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        network_metrics(senders, times, {"E": ids_e}, 0.0, 2000.0, w_end=W_END)
    with pytest.raises(KeyError, match="scored population"):
        network_metrics(senders, times, {"E": ids_e}, 0.0, 2000.0, scored="I")
    m_i = network_metrics(senders, times, {"E": ids_e, "I": ids_i}, 0.0, 2000.0, scored="I")
    assert m_i["rate_i"] == m_i["rate"] == m["rate_i"] and m_i["rate_e"] == m["rate_e"]
