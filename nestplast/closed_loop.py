"""The closed-loop forward model: only the presynaptic spikes are replayed; the postsynaptic
neurons are driven by the plastic synapses plus a stated Poisson background (the network of
:func:`nestplast.synthetic.simulate`), so the rule shapes the activity it is scored on. The loss
compares the simulated postsynaptic spike counts (bins of ``bin_ms``) with the recorded ones by
Poisson deviance, and, where weights were recorded, the weights by squared error; each term is
divided by its value under the all-zero rule (1 = no better than no plasticity). Trials are
background realisations with seeds fixed for the whole fit (common random numbers).

Held-out segments: the recording's bins are cut into ``n_segments`` consecutive blocks, and every
``hold_out``-th block is left out of the loss. The simulation still runs through it (the rule's
state carries on), so the held-out blocks test the fitted rule on activity and weights it was not
fitted to. Every error is kept per segment (:meth:`ClosedLoopFit.segment_errors`), which is what the
held-out measures and the bootstrap over segments (:mod:`nestplast.infer`) are made of."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .infer import check_weight_range, is_held_out
from .kernel import nest_seed
from .objectives import l1_penalty, relative_error
from .recording import Recording, RecordingError, off_grid
from .rules import Rule, weight_bounds
from .synthetic import simulate
from .tasks import FIT_FAILURE_LOSS, Candidate, Evaluation, Task


@dataclass(frozen=True)
class Background:
    """The stated Poisson background of every postsynaptic neuron, and its neuron model."""

    rate: float  # Hz
    weight: float  # pA (or nS)
    neuron: str = "iaf_psc_exp"


@dataclass(frozen=True)
class Trial:
    """One background realisation: NEST's ``seed`` for it, the same for every candidate."""

    index: int
    seed: int


def _ids(ids: np.ndarray) -> str:
    """Ids for a message: "3", "0 .. 300" (a run of consecutive ones), or the first few."""
    if ids.size > 1 and ids[-1] - ids[0] == ids.size - 1:
        return f"{ids[0]} .. {ids[-1]}"
    return ", ".join(map(str, ids[:5])) + (f" and {ids.size - 5} more" if ids.size > 5 else "")


def deviance_terms(observed: np.ndarray, expected: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """Per bin 2 [y log(y / mu) - (y - mu)]; inside the logarithm mu is floored (a bin the model
    leaves empty where spikes were recorded costs a finite amount). 0 where the two agree."""
    y, mu = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    logs = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / np.maximum(mu, floor)), 0.0)
    return 2.0 * (logs - (y - mu))


def poisson_deviance(observed: np.ndarray, expected: np.ndarray, floor: float = 0.1) -> float:
    """The Poisson deviance of ``observed`` counts from ``expected`` ones (sum of :func:`deviance_terms`)."""
    return float(np.sum(deviance_terms(observed, expected, floor)))


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
    """1 - SS_res / SS_tot, SS_tot about each row's mean (a neuron's counts, a synapse's weights)."""
    observed, predicted = np.asarray(observed, dtype=float), np.asarray(predicted, dtype=float)
    seen = ~np.isnan(observed)  # a weight sample not taken is NaN: left out
    if not seen.any():
        return math.nan
    kept = np.where(seen, observed, 0.0)
    mean = kept.sum(axis=-1, keepdims=True) / np.maximum(seen.sum(axis=-1, keepdims=True), 1)
    total = float(np.sum(np.where(seen, kept - mean, 0.0) ** 2))
    return 1.0 - float(np.sum(np.where(seen, predicted - observed, 0.0) ** 2)) / total if total > 0 else math.nan


class ClosedLoopFit:
    """The engine's problem for the closed-loop mode (one task per candidate and trial)."""

    def __init__(self, recording: Recording, rule: Rule, fixed: Mapping[str, float], background: Background, *,
                 delay: float = 1.0, resolution: float = 0.1, bin_ms: float = 100.0, trials: int = 1, seed: int = 1,
                 l1: float = 0.0, w_unrecorded: float | None = None, n_segments: int = 1, hold_out: int = 0):
        self.recording, self.rule, self.fixed, self.background = recording, rule, dict(fixed), background
        self.delay, self.resolution, self.bin_ms, self.l1 = delay, resolution, bin_ms, l1
        if "Wmax" not in self.fixed:
            raise RecordingError("the closed-loop mode needs Wmax among the fixed settings (--fixed Wmax=...)")
        # ids from 301 on, or from 1: the neurons below were simulated too, driven by the background, and
        # scored against no recorded spike, which moved the fit (the clamped mode never simulates them)
        idle = np.setdiff1d(np.arange(recording.n_post), np.union1d(recording.syn_post, recording.post_ids))
        if idle.size:
            raise RecordingError(
                f"post neurons {_ids(idle)} have neither a synapse nor a spike: the closed-loop mode would simulate "
                f"each, driven by the background, and score its spikes against none; number the recorded neurons "
                f"0 .. n-1 (np.unique(ids, return_inverse=True) gives such numbers), or give n_post")
        if (bad := off_grid(recording.pre_times, resolution)) is not None:
            raise RecordingError(f"pre_times: the closed-loop mode replays them on NEST's {resolution} ms grid, and "
                                 f"{bad:g} ms is not on it; round them to it (np.round(t / {resolution}) * {resolution}) "
                                 "where they were recorded on a finer clock")
        self.trains = [np.round(t / resolution).astype(np.int64) for t in recording.pre_trains()]
        if recording.has_weights and recording.weight_times[0] > 0:
            raise RecordingError("weight_times: the closed-loop mode starts from the weights at time 0")
        if recording.has_weights:  # the simulated weights are read at the ends of NEST's slices, one delay long
            late = recording.weight_times[recording.weight_times > recording.duration - delay + 1e-9]
            bad = off_grid(recording.weight_times, delay)
            if bad is not None or late.size:
                bad = late[0] if bad is None else bad
                raise RecordingError(f"weight_times: the closed-loop mode compares weights at multiples of the delay "
                                     f"({delay:g} ms, --delay) up to duration - delay ({recording.duration - delay:g} "
                                     f"ms), where NEST has delivered every spike before them; {bad:g} ms is not one "
                                     f"(sample the weights there, or fit in the clamped mode)")
        start = np.full(recording.n_synapses, np.nan)
        if recording.has_weights:
            start[recording.weight_synapses] = np.abs(recording.weights[:, 0])
        unrecorded = np.isnan(start).any()
        if unrecorded:
            if w_unrecorded is None:
                raise RecordingError("weights: some synapses have no recorded start weight (not recorded, or NaN at "
                                     "time 0); give their start weight "
                                     "(--w-unrecorded, or w_unrecorded=)")
            start[np.isnan(start)] = w_unrecorded
        # the rule's first update would clip a start weight outside its bounds (NEST refuses one below
        # |Wmin| at Connect, in every simulation); the recorded ones named as the clamped mode names them
        bounds = rule.synapse_params(np.zeros(len(rule.names)), **self.fixed)
        if recording.has_weights:
            check_weight_range(recording, bounds)
        w_low, w_high = weight_bounds(bounds)
        if unrecorded and not w_low <= abs(w_unrecorded) <= w_high:
            raise RecordingError(f"--w-unrecorded {w_unrecorded:g} (w_unrecorded=): the start weight of the synapses "
                                 f"whose weights were not recorded must be inside the rule's [|Wmin|, |Wmax|] = "
                                 f"[{w_low:g}, {w_high:g}], into which it clips every weight")
        self.w_start = recording.syn_sign * start
        self.trials = [Trial(j, nest_seed([seed, j]))
                       for j in range(trials)]
        self.edges = np.arange(0.0, recording.duration + bin_ms, bin_ms)
        self.observed = np.array([np.histogram(recording.post_spikes(i), self.edges)[0] for i in range(recording.n_post)])
        n_bins = self.edges.size - 1
        n_segments = max(1, min(n_segments, n_bins))
        self.bin_segment = np.arange(n_bins) * n_segments // n_bins
        self.sample_segment = np.zeros(0, dtype=int)  # each weight sample's: that of its bin
        if recording.has_weights:
            self.sample_segment = self.bin_segment[np.minimum((recording.weight_times // bin_ms).astype(int), n_bins - 1)]
        self.n_segments = n_segments
        self.held = np.array([is_held_out(k, n_segments, hold_out) for k in range(n_segments)])
        self.rank = 0
        self._zero: np.ndarray | None = None

    def params(self, theta: Sequence[float]) -> dict[str, float]:
        return self.rule.synapse_params(np.asarray(theta, dtype=float), **{k: v for k, v in self.fixed.items()
                                                                            if k != "Wmax"})

    def run(self, params: Mapping[str, float], trial: Trial) -> Recording:
        r = self.recording
        # the weights at the recorded times themselves (the spacing of the first two, taken for all,
        # paired other samples and ran past the last one)
        samples = np.round(r.weight_times / self.delay) * self.delay if r.has_weights else [0.0]  # float32 data: on it
        return simulate(self.rule, params, trains=self.trains, syn_pre=r.syn_pre, syn_post=r.syn_post,
                        syn_sign=r.syn_sign, w_start=self.w_start, n_post=r.n_post, w_max=self.fixed["Wmax"],
                        drive_rate=self.background.rate, drive_weight=self.background.weight,
                        neuron=self.background.neuron, delay=self.delay, resolution=self.resolution,
                        duration_ms=r.duration, sample_times_ms=samples, nest_seed=trial.seed)

    def outputs(self, params: Mapping[str, float], trial: Trial) -> tuple[np.ndarray, np.ndarray]:
        """(post spike counts per neuron and bin, the recorded synapses' weights) of one simulation."""
        simulated = self.run(params, trial)
        counts = np.array([np.histogram(simulated.post_spikes(i), self.edges)[0] for i in range(simulated.n_post)])
        weights = np.zeros((0, 0))
        if self.recording.has_weights:  # sampled at the recorded times (run)
            weights = simulated.weights[self.recording.weight_synapses]
        return counts, weights

    def segment_errors(self, counts: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
        """Per segment (rows): the Poisson deviance of the recorded counts from the mean simulated
        counts, and the squared error of the mean simulated weights (the mean over background
        realisations is the model's expectation)."""
        per_bin = deviance_terms(self.observed, np.mean(counts, axis=0)).sum(axis=0)
        out = np.zeros((self.n_segments, 2))
        np.add.at(out[:, 0], self.bin_segment, per_bin)
        if self.recording.has_weights:
            recorded = self.recording.weights
            per_sample = np.where(np.isnan(recorded), 0.0, (np.mean(weights, axis=0) - recorded) ** 2).sum(axis=0)
            np.add.at(out[:, 1], self.sample_segment, per_sample)
        return out

    def errors_of(self, counts: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> tuple[float, float]:
        """(deviance, squared weight error) summed over the fitted segments."""
        deviance, sse = self.segment_errors(counts, weights)[~self.held].sum(axis=0)
        return float(deviance), float(sse)

    def errors(self, params: Mapping[str, float], trial: Trial) -> tuple[float, float]:
        """(deviance, squared weight error) of one simulation, on the fitted segments."""
        counts, weights = self.outputs(params, trial)
        return self.errors_of([counts], [weights])

    def zero_segments(self) -> np.ndarray:
        """The all-zero rule's :meth:`segment_errors` over the trials (computed once per process)."""
        if self._zero is None:
            runs = [self.outputs(self.params(np.zeros(len(self.rule.names))), t) for t in self.trials]
            self._zero = self.segment_errors([r[0] for r in runs], [r[1] for r in runs])
        return self._zero

    def zero(self) -> tuple[float, float]:
        """The all-zero rule's errors on the fitted segments."""
        deviance, sse = self.zero_segments()[~self.held].sum(axis=0)
        return float(deviance), float(sse)

    def combined(self, deviance: float, sse: float, theta: Sequence[float]) -> float:
        """The loss of errors on the fitted segments: each over the all-zero rule's, plus the L1 penalty."""
        deviance_zero, sse_zero = self.zero()
        return (relative_error(deviance, deviance_zero) + relative_error(sse, sse_zero)
                + l1_penalty(theta, self.l1, self.rule.names))

    def weighted(self, errors: np.ndarray, counts: np.ndarray, theta: Sequence[float]) -> float:
        """The loss with segment ``k`` counted ``counts[k]`` times (a bootstrap draw over the fitted
        segments; 0 leaves a segment out), from per-segment ``errors`` (:meth:`segment_errors`)."""
        counts = np.asarray(counts, dtype=float)
        deviance_zero, sse_zero = counts @ self.zero_segments()
        deviance, sse = counts @ errors
        return (relative_error(deviance, deviance_zero) + relative_error(sse, sse_zero)
                + l1_penalty(theta, self.l1, self.rule.names))

    def held_out(self, counts: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> dict[str, float]:
        """How well mean simulated outputs match the recording on the held-out segments (and, for
        comparison, on the fitted ones): % of the all-zero rule's count deviance removed, and R^2 of
        the binned spike counts and of the weights."""
        errors, zero = self.segment_errors(counts, weights), self.zero_segments()
        mean_counts, out = np.mean(counts, axis=0), {}
        for name, chosen in (("held_out", self.held), ("fit", ~self.held)):
            bins, samples = chosen[self.bin_segment], chosen[self.sample_segment]
            deviance, deviance_zero = errors[chosen, 0].sum(), zero[chosen, 0].sum()
            out[f"deviance_explained_{name}"] = 100.0 * (1.0 - deviance / deviance_zero) if deviance_zero > 0 else math.nan
            out[f"r2_activity_{name}"] = r_squared(self.observed[:, bins], mean_counts[:, bins]) if bins.any() else math.nan
            out[f"r2_weights_{name}"] = (r_squared(self.recording.weights[:, samples], np.mean(weights, axis=0)[:, samples])
                                         if self.recording.has_weights and samples.sum() > 1 else math.nan)
        return out

    # ---- the engine's Problem

    def tasks(self, generation: int, candidates: Sequence[Candidate]) -> list[Task]:
        return [Task(generation, c.index, t, c.theta) for c in candidates for t in self.trials]

    def evaluate(self, task: Task) -> Evaluation:
        counts, weights = self.outputs(self.params(task.theta), task.trial)
        deviance, sse = self.errors_of([counts], [weights])
        loss = self.combined(deviance, sse, task.theta)
        return Evaluation(task.generation, task.candidate, task.trial.index, list(task.theta), task.trial.seed,
                          params=dict(zip(self.rule.names, task.theta)), rank=self.rank,
                          metrics={"deviance": deviance, "sse": sse, "counts": counts.tolist(),
                                   "weights": weights.tolist()},
                          loss=loss if math.isfinite(loss) else FIT_FAILURE_LOSS, status="ok" if math.isfinite(loss) else "nan")

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        """The candidate's expected counts and weights (mean over its trials) against the recording."""
        deviance, sse = self.errors_of([np.asarray(e.metrics["counts"]) for e in evaluations],
                                       [np.asarray(e.metrics["weights"]) for e in evaluations])
        return self.combined(deviance, sse, candidate.theta)
