"""Shared test helpers, in one place (test files import from here, never from each other):
synthetic spike trains and weights with known statistics, the Taylor mask the rule tests share,
and a tiny search experiment."""

import numpy as np

# One Taylor mask that expresses Vogels-Sprekeler, additive STDP and Oja, plus weight and
# product terms that a comparison with a second implementation exercises.
TAYLOR_TEST_MASK = "pre:000,pre:010,pre:001,pre:111,post:100,post:011,post:002,post:200"

# ---- synthetic populations (ids start at 1, as NEST node ids; spikes sorted by time as NEST) ----

def _as_nest(senders, times):
    order = np.argsort(times, kind="stable")
    return senders[order], times[order]


def poisson_population(rng, n, rate_hz, t_stop_ms, first_id=1):
    """Independent homogeneous Poisson trains on [0, t_stop_ms): (senders, times, ids)."""
    ids = np.arange(first_id, first_id + n)
    counts = rng.poisson(rate_hz * t_stop_ms * 1e-3, n)
    senders, times = _as_nest(np.repeat(ids, counts), rng.uniform(0.0, t_stop_ms, counts.sum()))
    return senders, times, ids


def regular_population(rng, n, period_ms, t_stop_ms, first_id=1):
    """Perfectly regular trains, each with a random phase in [1, period - 1) ms."""
    ids = np.arange(first_id, first_id + n)
    phase = rng.uniform(1.0, period_ms - 1.0, n)
    times = phase[:, None] + period_ms * np.arange(int(t_stop_ms // period_ms))[None, :]
    senders = np.broadcast_to(ids[:, None], times.shape)
    keep = times < t_stop_ms
    senders, times = _as_nest(senders[keep], times[keep])
    return senders, times, ids


def synchronous_population(rng, n, burst_hz, t_stop_ms, periodic, p=0.5, jitter_ms=2.0, first_id=1):
    """Population events at burst_hz, periodic or at Poisson times; each neuron joins each event
    with probability p and fires once, jittered by N(0, jitter_ms)."""
    ids = np.arange(first_id, first_id + n)
    if periodic:
        bursts = np.arange(500.0 / burst_hz, t_stop_ms, 1000.0 / burst_hz)
    else:
        bursts = np.sort(rng.uniform(0.0, t_stop_ms, rng.poisson(burst_hz * t_stop_ms * 1e-3)))
    joins = rng.random((n, bursts.size)) < p
    senders = np.broadcast_to(ids[:, None], joins.shape)[joins]
    times = np.broadcast_to(bursts[None, :], joins.shape)[joins] + rng.normal(0.0, jitter_ms, joins.sum())
    keep = (times >= 0) & (times < t_stop_ms)
    return _as_nest(senders[keep], times[keep]) + (ids,)


# Poisson reference: 400 neurons at 10 Hz for 10 s (40,000 spikes, 100 per neuron).



# ---- weights before and after, with hand-computed metrics (tests/test_metrics.py)

W_START = {"EE": np.array([0.5, 0.5, 0.5, 0.5]), "IE": np.array([-2.0, -2.0, -2.0, -2.0]),
           "II": np.zeros(0)}
W_END = {"EE": np.array([0.0, 1.0, 0.5, 0.7]), "IE": np.array([-5.0, -3.0, -1.0, -3.0]), "II": np.zeros(0)}
W_MAX = {"EE": 1.0, "IE": -5.0, "II": -5.0}  # NEST's Wmax of an inhibitory synapse is negative
