"""Weight trajectories of a rule on given spike trains, computed exactly in numpy: the clamped
forward model without a simulator (NEST's clamped replay, :mod:`nestplast.replay`, is the
reference, and the tests hold the two within 1e-9).

NEST's conventions, which this reproduces event for event:

- a synapse sees a presynaptic spike at its time stamp ``t_pre`` and a postsynaptic spike at
  ``t_post + delay`` (the delay is dendritic, as in NEST's STDP synapses);
- NEST updates a synapse only at its presynaptic spikes: the postsynaptic spikes seen since the
  last one are applied then (those seen at or before the presynaptic spike's time), so **the weight
  at a time t is its value after the last presynaptic spike at or before t**;
- at a presynaptic spike the rule reads ``x_post`` from postsynaptic spikes seen strictly before
  it; a postsynaptic spike seen at exactly ``t_pre`` is applied first and reads ``x_pre`` without
  that presynaptic spike (``stdp_synapse``'s convention); each spike reads its own trace before
  its own jump; ``|w|`` is clipped to ``[|Wmin|, |Wmax|]`` after every update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .recording import Recording
from .rules import Rule

PRE, POST, PAD = 1, 0, -1  # event kinds; at equal times POST sorts first


def _events(pre: np.ndarray, post_seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.concatenate([post_seen, pre])
    kinds = np.concatenate([np.full(post_seen.size, POST), np.full(pre.size, PRE)])
    order = np.lexsort((kinds, times))  # by time, then POST before PRE
    return times[order], kinds[order]


def weight_trajectories(rule: Rule, params: Mapping[str, float], recording: Recording, synapses: Sequence[int],
                        w_start: Sequence[float], sample_times: Sequence[float], *, delay: float,
                        t_start: float = 0.0, t_stop: float | None = None) -> np.ndarray:
    """Weights (signed, shape (len(synapses), len(sample_times))) of ``synapses`` (indices into
    the recording's synapse arrays) under ``rule`` with NEST settings ``params`` (taus, eta, the
    coefficients, ``Wmin``/``Wmax`` magnitudes), starting from ``w_start`` at ``t_start``: the
    weight there is taken as the value after the last presynaptic spike at or before ``t_start``,
    and spikes before it shape only the traces. Spikes after ``t_stop`` are ignored."""
    synapses = np.asarray(synapses, dtype=int)
    sample_times = np.asarray(sample_times, dtype=float)
    t_stop = recording.duration if t_stop is None else t_stop
    tau_pre, tau_post = params["tau_pre"], params["tau_post"]
    w_low, w_high = abs(params.get("Wmin", 0.0)), abs(params.get("Wmax", np.inf))
    pre_trains, post_trains = recording.pre_trains(), recording.post_trains()

    per_synapse = []
    for s in synapses:
        pre = pre_trains[recording.syn_pre[s]]
        post = post_trains[recording.syn_post[s]] + delay
        per_synapse.append(_events(pre[pre <= t_stop], post[post <= t_stop]))
    n, longest = len(synapses), max((t.size for t, _ in per_synapse), default=0)
    times = np.zeros((n, longest + 1))
    kinds = np.full((n, longest + 1), PAD)
    for i, (t, k) in enumerate(per_synapse):
        times[i, 1:t.size + 1], kinds[i, 1:t.size + 1] = t, k
        times[i, t.size + 1:] = t[-1] if t.size else 0.0
    # the start: the last presynaptic spike at or before t_start (column 0 = before any spike)
    is_pre = kinds == PRE
    start_column = np.array([np.flatnonzero(is_pre[i] & (times[i] <= t_start)).max(initial=0) for i in range(n)])

    w_abs = np.abs(np.asarray(w_start, dtype=float)).copy()
    sign = recording.syn_sign[synapses].astype(float)
    x_pre, x_post = np.zeros(n), np.zeros(n)
    # A postsynaptic spike's jump of x_post waits until time moves on: a presynaptic spike at the
    # same time reads x_post without it (NEST holds it back until after the pre spike's update).
    post_pending = np.zeros(n)
    # the weight after every presynaptic spike, for sampling: (time, |w|) per synapse
    after_pre_t = [[t_start] for _ in range(n)]
    after_pre_w = [[w] for w in w_abs]
    rows = np.arange(n)
    for k in range(1, longest + 1):
        gap = times[:, k] - times[:, k - 1]
        moved = gap > 0
        x_post += post_pending * moved
        post_pending *= ~moved
        x_pre *= np.exp(-gap / tau_pre)
        x_post *= np.exp(-gap / tau_post)
        learning = k > start_column
        for kind, event in ((POST, "post"), (PRE, "pre")):
            here = (kinds[:, k] == kind) & learning
            if here.any():
                dw = rule.weight_change(params, event, x_pre[here], x_post[here], w_abs[here])
                w_abs[here] = np.clip(w_abs[here] + dw, w_low, w_high)
        post_pending += kinds[:, k] == POST
        x_pre += kinds[:, k] == PRE
        for i in rows[(kinds[:, k] == PRE) & learning]:
            after_pre_t[i].append(times[i, k])
            after_pre_w[i].append(w_abs[i])
    out = np.empty((n, sample_times.size))
    for i in range(n):
        index = np.searchsorted(np.asarray(after_pre_t[i]), sample_times, side="right") - 1
        out[i] = sign[i] * np.asarray(after_pre_w[i])[np.maximum(index, 0)]
    return out
