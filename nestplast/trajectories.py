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
from .rules import Rule, weight_bounds

PRE, POST, PAD = 1, 0, -1  # event kinds; at equal times POST sorts first


def _events(pre: np.ndarray, post_seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.concatenate([post_seen, pre])
    kinds = np.concatenate([np.full(post_seen.size, POST), np.full(pre.size, PRE)])
    order = np.lexsort((kinds, times))  # by time, then POST before PRE
    return times[order], kinds[order]


def _update(rule: Rule, params: Mapping[str, float], event: str):
    """dw(x_pre, x_post, |w|) at ``event``: a rule described by terms gets a fast product of
    powers; any other rule (an MLP) its own ``weight_change``."""
    if not rule.terms:
        return lambda x_pre, x_post, w: rule.weight_change(params, event, x_pre, x_post, w)
    eta = params["eta"]
    terms = [(eta * params[t.param], *map(int, t.abc)) for t in rule.terms if t.event == event]

    def power(x, n):
        return 1.0 if n == 0 else (x if n == 1 else x * x)

    def dw(x_pre, x_post, w):
        total = 0.0
        for coefficient, a, b, c in terms:
            total = total + coefficient * power(x_pre, a) * power(x_post, b) * power(w, c)
        return total

    return dw


class ClampedTrajectories:
    """The event structure of ``synapses`` of a recording (which spike each synapse sees when, and
    which event a sample time reads), computed once; :meth:`weights` then runs a rule over it, for
    as many parameter sets as a fit needs.

    ``synapses`` are indices into the recording's synapse arrays; the run starts at ``t_start``
    from given weights (taken as the values after the last presynaptic spike at or before
    ``t_start``: spikes before it shape only the traces) and ignores spikes after ``t_stop``."""

    def __init__(self, recording: Recording, synapses: Sequence[int], sample_times: Sequence[float], *,
                 delay: float, t_start: float = 0.0, t_stop: float | None = None):
        self.synapses = np.asarray(synapses, dtype=int)
        self.sample_times = np.asarray(sample_times, dtype=float)
        t_stop = recording.duration if t_stop is None else t_stop
        pre_trains, post_trains = recording.pre_trains(), recording.post_trains()
        per_synapse = []
        for s in self.synapses:
            pre = pre_trains[recording.syn_pre[s]]
            post = post_trains[recording.syn_post[s]] + delay
            per_synapse.append(_events(pre[pre <= t_stop], post[post <= t_stop]))
        n, longest = len(self.synapses), max((t.size for t, _ in per_synapse), default=0)
        times = np.zeros((n, longest + 1))
        kinds = np.full((n, longest + 1), PAD)
        for i, (t, k) in enumerate(per_synapse):
            times[i, 1:t.size + 1], kinds[i, 1:t.size + 1] = t, k
            times[i, t.size + 1:] = t[-1] if t.size else 0.0
        is_pre = kinds == PRE
        # the start: the last presynaptic spike at or before t_start (column 0 = before any spike)
        start = np.array([np.flatnonzero(is_pre[i] & (times[i] <= t_start)).max(initial=0) for i in range(n)])
        columns = np.arange(longest + 1)
        self.learning = columns[None, :] > start[:, None]
        self.gaps = np.diff(times, axis=1)
        self.moved = self.gaps > 0
        self.is_post = (kinds == POST)[:, 1:]
        self.is_pre = is_pre[:, 1:]
        self.post_learning = self.is_post & self.learning[:, 1:]
        self.pre_learning = self.is_pre & self.learning[:, 1:]
        # the column a sample reads: the last learning presynaptic spike at or before it (or the start)
        self.sample_column = np.zeros((n, self.sample_times.size), dtype=int)
        for i in range(n):
            readable = np.flatnonzero(is_pre[i] & self.learning[i])
            if readable.size:  # else every sample reads the start (column 0)
                index = np.searchsorted(times[i, readable], self.sample_times, side="right") - 1
                self.sample_column[i] = np.where(index >= 0, readable[np.maximum(index, 0)], 0)
        self.sign = recording.syn_sign[self.synapses].astype(float)
        self._decays: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}

    def _decay(self, tau_pre: float, tau_post: float) -> tuple[np.ndarray, np.ndarray]:
        key = (tau_pre, tau_post)
        if key not in self._decays:  # a fit with fixed time constants computes these once
            self._decays = {key: (np.exp(-self.gaps / tau_pre), np.exp(-self.gaps / tau_post))}
        return self._decays[key]

    def weights(self, rule: Rule, params: Mapping[str, float], w_start: Sequence[float]) -> np.ndarray:
        """Signed weights at the sample times, shape (synapses, samples), under ``rule`` with NEST
        settings ``params`` (taus, eta, coefficients, ``Wmin``/``Wmax`` magnitudes)."""
        decay_pre, decay_post = self._decay(params["tau_pre"], params["tau_post"])
        w_low, w_high = weight_bounds(params)
        n, columns = self.gaps.shape
        w_abs = np.abs(np.asarray(w_start, dtype=float)).copy()
        x_pre, x_post = np.zeros(n), np.zeros(n)
        # A postsynaptic spike's jump of x_post waits until time moves on: a presynaptic spike at the
        # same time reads x_post without it (NEST holds it back until after the pre spike's update).
        post_pending = np.zeros(n)
        history = np.empty((n, columns + 1))
        history[:, 0] = w_abs
        change = {event: _update(rule, params, event) for event in ("post", "pre")}
        for k in range(columns):
            moved = self.moved[:, k]
            x_post += post_pending * moved
            post_pending *= ~moved
            x_pre *= decay_pre[:, k]
            x_post *= decay_post[:, k]
            for here, event in ((self.post_learning[:, k], "post"), (self.pre_learning[:, k], "pre")):
                if here.any():  # every synapse computed, the others kept: cheaper than indexing
                    updated = np.clip(w_abs + change[event](x_pre, x_post, w_abs), w_low, w_high)
                    w_abs = np.where(here, updated, w_abs)
            post_pending += self.is_post[:, k]
            x_pre += self.is_pre[:, k]
            history[:, k + 1] = w_abs
        return self.sign[:, None] * np.take_along_axis(history, self.sample_column, axis=1)


def weight_trajectories(rule: Rule, params: Mapping[str, float], recording: Recording, synapses: Sequence[int],
                        w_start: Sequence[float], sample_times: Sequence[float], *, delay: float,
                        t_start: float = 0.0, t_stop: float | None = None) -> np.ndarray:
    """Weights (signed, shape (len(synapses), len(sample_times))) of ``synapses`` under ``rule``
    with NEST settings ``params``, from ``w_start`` at ``t_start`` (see :class:`ClampedTrajectories`)."""
    return ClampedTrajectories(recording, synapses, sample_times, delay=delay, t_start=t_start,
                               t_stop=t_stop).weights(rule, params, w_start)
