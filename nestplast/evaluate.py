"""Evaluating one candidate rule on one trial: build the network in a fresh NEST kernel, simulate
in chunks with an early abort when the rate leaves its band, measure, and score.

Failures are data: an exception, a NaN, a runaway network or a timeout is returned as a
:class:`Result` with its status and message and a penalty loss; nothing is raised to the search.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from . import metrics as M
from .build import Module
from .experiment import Experiment
from .kernel import import_nest, install
from .networks import Network, Trial, build_network
from .objectives import FAILURE_LOSS, Objective, RateBand  # FAILURE_LOSS: an error, a NaN, a timeout


@dataclass
class Task:
    generation: int
    candidate: int  # -1: the distribution mean
    trial: Trial
    theta: list[float]


@dataclass
class Result:
    generation: int
    candidate: int
    trial: int
    seed: int
    theta: list[float]
    loss: float
    status: str  # ok, blowup, timeout, nan, failed
    metrics: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)
    error: str | None = None
    wall_time_s: float = 0.0
    rank: int = 0


def make_objective(exp: Experiment) -> Objective:
    o = exp.objective
    return Objective(target_rate=o.target_rate, constraints={k: tuple(v) for k, v in o.constraints.items()},
                     l1_weight=o.l1, rate_metric=f"rate_{o.population.lower()}")


class Evaluator:
    """Callable that turns a :class:`Task` into a :class:`Result` (one per rank)."""

    def __init__(self, exp: Experiment, module: Module, rank: int = 0, comm=None):
        self.exp, self.module, self.rank = exp, module, rank
        self.comm = comm  # network mode only: gather what each rank recorded
        self.rule = exp.searched_rule()
        self.layout = exp.layout()
        self.objective = make_objective(exp)

    def __call__(self, task: Task) -> Result:
        start = time.perf_counter()
        base = dict(generation=task.generation, candidate=task.candidate, trial=task.trial.index,
                    seed=task.trial.seed, theta=list(task.theta), rank=self.rank)
        try:
            result = self._run(task, base, start)
        except Exception as err:  # anything: NEST errors, bad parameters, bugs; record and go on
            tail = traceback.format_exc(limit=-3)
            result = Result(**base, loss=FAILURE_LOSS, status="failed", error=f"{type(err).__name__}: {err}\n{tail}")
        result.wall_time_s = time.perf_counter() - start
        return result

    # ------------------------------------------------------------------ one simulation

    def _kernel(self, nest, seed: int) -> None:
        nest.ResetKernel()
        install(self.module)
        nest.SetKernelStatus({"resolution": self.exp.network.resolution, "rng_seed": seed,
                              "local_num_threads": self.exp.search.threads})
        if self.comm is not None:
            # NEST 3.10 on several ranks: compressed spike delivery keeps state across ResetKernel
            # when plastic and static synapses mix, so a simulation would depend on the one before
            # it in the process (a resumed run or another rank/thread split would diverge).
            nest.SetKernelStatus({"use_compressed_spikes": self.exp.search.compressed_spikes})

    def _synapse_params(self, theta) -> dict[str, dict]:
        fixed = {k: v for k, v in self.exp.rule.fixed.items() if k != "Wmax"}
        return {ct: self.rule.synapse_params(block, **fixed) for ct, block in self.layout.split(theta).items()}

    def _run(self, task: Task, base: dict, start: float) -> Result:
        nest = import_nest()
        o = self.exp.objective
        self._kernel(nest, task.trial.seed)
        net = build_network(nest, self.exp.network, self.module, self._synapse_params(task.theta), task.trial)
        w_start = {ct: self._gather(net.weights(ct)) for ct in net.plastic}
        n_pop = len(net.populations[o.population])
        band = RateBand(low=o.rate_band[0], high=o.rate_band[1])
        total_s = o.t_train + o.t_score
        steps = int(round(total_s / o.chunk))
        blew_up_at = None
        timed_out = False
        recorder = net.recorders[o.population]
        score_from_ms = 1000.0 * o.t_train
        last = 0
        # the population rate and mean weights after every chunk, for the report's plots
        trace: dict[str, list[float]] = {"t_s": [], "rate": [], **{f"w_mean_{ct}": [] for ct in net.plastic}}
        for k in range(steps):
            nest.Simulate(1000.0 * o.chunk)  # not Run(): recorders can only be cleared between runs
            t_now = (k + 1) * o.chunk
            n_events = self._total(recorder.n_events)
            rate = (n_events - last) / n_pop / o.chunk
            if t_now <= o.t_train + 1e-9:
                recorder.n_events = 0  # keep only the scoring window's spikes in memory
                last = 0
            else:
                last = n_events
            trace["t_s"].append(t_now)
            trace["rate"].append(rate)
            for ct in net.plastic:
                trace[f"w_mean_{ct}"].append(self._mean_abs(net.sample_weights(ct)))
            if not math.isfinite(rate) or band.outside(rate, o.chunk):
                blew_up_at = t_now
                break
            if time.perf_counter() - start > o.max_wall_s:
                timed_out = True
                break
        if timed_out:
            return Result(**base, loss=FAILURE_LOSS, status="timeout",
                          error=f"evaluation exceeded objective.max_wall_s = {o.max_wall_s} s")
        if blew_up_at is not None:
            loss, parts = self.objective.score({}, np.asarray(task.theta), blew_up_at_s=blew_up_at, total_s=total_s)
            return Result(**base, loss=loss, status="blowup", parts=parts,
                          metrics={"t_blowup_s": blew_up_at, "rate_at_blowup": rate, "trace": trace},
                          error=f"{o.population} rate left [{o.rate_band[0]}, {o.rate_band[1]}] Hz at t = {blew_up_at:g} s")

        metrics = self._measure(net, w_start, score_from_ms, 1000.0 * total_s)
        metrics["trace"] = trace
        loss, parts = self.objective.score(metrics, np.asarray(task.theta), blew_up_at_s=None, total_s=total_s)
        if not math.isfinite(loss):
            return Result(**base, loss=FAILURE_LOSS, status="nan", metrics=metrics, parts=parts,
                          error="the loss is not finite (NaN metric or weight)")
        return Result(**base, loss=loss, status="ok", metrics=metrics, parts=parts)

    def _measure(self, net: Network, w_start: dict, t0: float, t1: float) -> dict:
        o = self.exp.objective
        metrics: dict = {}
        for name, recorder in net.recorders.items():
            ids = np.asarray(net.populations[name].tolist())
            senders, times = self._events(recorder)
            activity = M.activity_metrics(senders, times, ids, t0, t1)
            suffix = name.lower()
            metrics[f"rate_{suffix}"] = activity["rate"]
            if name == o.population:
                metrics.update({k: v for k, v in activity.items() if k != "rate"})
                rate_trace = M.population_rate(times, len(ids), t0, t1, bin_ms=100.0)
                metrics["rate_trace"] = rate_trace.tolist()
        w_end = {ct: self._gather(net.weights(ct)) for ct in net.plastic}
        metrics.update(M.weight_metrics(w_start, w_end, {ct: abs(w) for ct, w in net.w_max.items()}))
        return metrics

    # ------------------------------------------------------------------ rank-local data

    def _gather(self, values: np.ndarray) -> np.ndarray:
        """In network mode every rank holds part of the data; elsewhere the data is all here."""
        if self.comm is None:
            return np.asarray(values, dtype=float)
        return np.concatenate(self.comm.allgather(np.asarray(values, dtype=float)))

    def _mean_abs(self, values: np.ndarray) -> float:
        local = np.abs(np.asarray(values, dtype=float))
        if self.comm is None:
            return float(local.mean()) if local.size else math.nan
        # (sum, count) per rank; summed here in rank order (an MPI user-defined Op would have to be
        # freed, and MPI allows only a few)
        parts = self.comm.allgather((float(local.sum()), local.size))
        total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
        return total / count if count else math.nan

    def _total(self, count: int) -> int:
        return int(count) if self.comm is None else int(self.comm.allreduce(int(count)))

    def _events(self, recorder) -> tuple[np.ndarray, np.ndarray]:
        events = recorder.get("events")
        senders, times = np.asarray(events["senders"]), np.asarray(events["times"])
        if self.comm is not None:
            senders = np.concatenate(self.comm.allgather(senders))
            times = np.concatenate(self.comm.allgather(times))
        return senders, times


__all__ = ["Task", "Result", "Evaluator"]
