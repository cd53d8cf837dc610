"""The closed-loop forward model: only the presynaptic spikes are replayed; the postsynaptic
neurons are driven by the plastic synapses plus a stated Poisson background (the network of
:func:`nestplast.synthetic.simulate`), so the rule shapes the activity it is scored on. The loss
compares the simulated postsynaptic spike counts (bins of ``bin_ms``) with the recorded ones by
Poisson deviance, and, where weights were recorded, the weights by squared error; each term is
divided by its value under the all-zero rule (1 = no better than no plasticity). Trials are
background realisations with seeds fixed for the whole fit (common random numbers)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .recording import Recording, RecordingError
from .rules import Rule
from .synthetic import simulate
from .tasks import Candidate, Evaluation, Task


@dataclass(frozen=True)
class Background:
    """The stated Poisson background of every postsynaptic neuron, and its neuron model."""

    rate: float  # Hz
    weight: float  # pA (or nS)
    neuron: str = "iaf_psc_exp"


@dataclass(frozen=True)
class Trial:
    index: int
    seed: int


def poisson_deviance(observed: np.ndarray, expected: np.ndarray, floor: float = 0.1) -> float:
    """2 sum [y log(y / mu) - (y - mu)]; inside the logarithm mu is floored (a bin the model leaves
    empty where spikes were recorded costs a finite amount). 0 when the two agree."""
    y, mu = np.asarray(observed, dtype=float), np.asarray(expected, dtype=float)
    logs = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / np.maximum(mu, floor)), 0.0)
    return float(2.0 * np.sum(logs - (y - mu)))


class ClosedLoopFit:
    """The engine's problem for the closed-loop mode (one task per candidate and trial)."""

    def __init__(self, recording: Recording, rule: Rule, fixed: Mapping[str, float], background: Background, *,
                 delay: float = 1.0, resolution: float = 0.1, bin_ms: float = 100.0, trials: int = 1, seed: int = 1,
                 l1: float = 0.0, w_unrecorded: float | None = None):
        self.recording, self.rule, self.fixed, self.background = recording, rule, dict(fixed), background
        self.delay, self.resolution, self.bin_ms, self.l1 = delay, resolution, bin_ms, l1
        if "Wmax" not in self.fixed:
            raise RecordingError("the closed-loop mode needs Wmax among the fixed settings (--fixed Wmax=...)")
        steps = recording.pre_times / resolution
        if np.max(np.abs(steps - np.round(steps)), initial=0.0) > 1e-6:
            raise RecordingError(f"pre_times: must lie on the {resolution} ms grid for the closed-loop mode")
        self.trains = [np.round(t / resolution).astype(np.int64) for t in recording.pre_trains()]
        if recording.has_weights and recording.weight_times[0] > 0:
            raise RecordingError("weight_times: the closed-loop mode starts from the weights at time 0")
        start = np.full(recording.n_synapses, np.nan)
        if recording.has_weights:
            start[recording.weight_synapses] = np.abs(recording.weights[:, 0])
        if np.isnan(start).any():
            if w_unrecorded is None:
                raise RecordingError("weights: some synapses have no recorded start weight; give w_unrecorded")
            start[np.isnan(start)] = w_unrecorded
        self.w_start = recording.syn_sign * start
        self.trials = [Trial(j, int(np.random.SeedSequence([seed, j]).generate_state(1)[0] % (2**31 - 2) + 1))
                       for j in range(trials)]
        edges = np.arange(0.0, recording.duration + bin_ms, bin_ms)
        self.edges = edges
        self.observed = np.array([np.histogram(recording.post_spikes(i), edges)[0] for i in range(recording.n_post)])
        self.rank = 0
        self._zero: tuple[float, float] | None = None

    def params(self, theta: Sequence[float]) -> dict[str, float]:
        return self.rule.synapse_params(np.asarray(theta, dtype=float), **{k: v for k, v in self.fixed.items()
                                                                            if k != "Wmax"})

    def run(self, params: Mapping[str, float], trial: Trial) -> Recording:
        r = self.recording
        sample_every = r.weight_times[1] - r.weight_times[0] if r.has_weights and r.weight_times.size > 1 else r.duration
        return simulate(self.rule, params, trains=self.trains, syn_pre=r.syn_pre, syn_post=r.syn_post,
                        syn_sign=r.syn_sign, w_start=self.w_start, n_post=r.n_post, w_max=self.fixed["Wmax"],
                        drive_rate=self.background.rate, drive_weight=self.background.weight,
                        neuron=self.background.neuron, delay=self.delay, resolution=self.resolution,
                        duration_ms=r.duration, sample_every_ms=sample_every, nest_seed=trial.seed)

    def outputs(self, params: Mapping[str, float], trial: Trial) -> tuple[np.ndarray, np.ndarray]:
        """(post spike counts per neuron and bin, the recorded synapses' weights) of one simulation."""
        simulated = self.run(params, trial)
        counts = np.array([np.histogram(simulated.post_spikes(i), self.edges)[0] for i in range(simulated.n_post)])
        weights = np.zeros((0, 0))
        if self.recording.has_weights:
            times = np.searchsorted(simulated.weight_times, self.recording.weight_times)
            weights = simulated.weights[self.recording.weight_synapses][:, times]
        return counts, weights

    def errors_of(self, counts: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> tuple[float, float]:
        """(Poisson deviance of the recorded counts from the mean simulated counts, squared error of
        the mean simulated weights): the mean over background realisations is the model's expectation."""
        deviance = poisson_deviance(self.observed, np.mean(counts, axis=0))
        sse = float(np.sum((np.mean(weights, axis=0) - self.recording.weights) ** 2)) if self.recording.has_weights else 0.0
        return deviance, sse

    def errors(self, params: Mapping[str, float], trial: Trial) -> tuple[float, float]:
        """(deviance, squared weight error) of one simulation."""
        counts, weights = self.outputs(params, trial)
        return self.errors_of([counts], [weights])

    def zero(self) -> tuple[float, float]:
        """The all-zero rule's errors over the trials (computed once per process)."""
        if self._zero is None:
            runs = [self.outputs(self.params(np.zeros(len(self.rule.names))), t) for t in self.trials]
            self._zero = self.errors_of([r[0] for r in runs], [r[1] for r in runs])
        return self._zero

    def combined(self, deviance: float, sse: float, theta: Sequence[float]) -> float:
        deviance_zero, sse_zero = self.zero()
        value = deviance / deviance_zero + (sse / sse_zero if sse_zero > 0 else 0.0)
        return value + self.l1 * float(np.sum(np.abs(theta)))

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
                          loss=loss if math.isfinite(loss) else 1e6, status="ok" if math.isfinite(loss) else "nan")

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        """The candidate's expected counts and weights (mean over its trials) against the recording."""
        deviance, sse = self.errors_of([np.asarray(e.metrics["counts"]) for e in evaluations],
                                       [np.asarray(e.metrics["weights"]) for e in evaluations])
        return self.combined(deviance, sse, candidate.theta)
