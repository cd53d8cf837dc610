"""Evaluating one candidate rule on one trial: build the network in a fresh NEST kernel, simulate
in chunks with an early abort when the rate leaves its band, measure, and score.

Failures are data: an exception, a NaN or a timeout is returned as an
:class:`~nestplast.tasks.Evaluation` with its status, message and the failure penalty; a
runaway network is a ``blowup``, scored by how early it ran away. Nothing is raised to the run
but :class:`ModuleGone`: a module deleted from under the run fails every evaluation alike.

The steps are public, so that benchmarks and users can take an evaluation apart::

    evaluator = Evaluator(experiment, module)
    net = evaluator.build(theta, trial)                 # fresh kernel, module, network
    w_start = evaluator.start_weights(net)
    course = evaluator.simulate(net)                    # chunks, rate band, wall-time limit
    metrics = evaluator.measure(net, w_start)           # metrics.network_metrics
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from . import kernel_reads
from . import metrics as M
from .builder import Module
from .errors import UserError
from .experiment import Experiment, ExperimentError
from .kernel import import_nest, install, reset_kernel
from .networks import Network, Trial, build_network, check_neuron_params, check_synapse_params, nest_settings, synapse_models
from .objectives import FAILURE_LOSS, Objective, RateBand, rate_bin_ms
from .tasks import Evaluation, Task


class Chunk(NamedTuple):
    """One stretch of an evaluation's simulation, after which it checks the rate."""

    ms: float  # to simulate
    t_end_s: float  # the time at its end
    training: bool  # whether it ends within training (then its spikes are not scored)

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0


def chunks(exp: Experiment) -> list[Chunk]:
    """An evaluation's simulation in chunks: it stops for its checks every ``objective.chunk`` and
    at the ends of training and of scoring, so that the scoring window is exactly [``t_train``,
    ``t_train + t_score``] whatever the chunk (a 0.7 s window in 0.5 s chunks is simulated as
    0.5 + 0.2 s). Computed in whole steps of ``network.resolution``."""
    o, resolution = exp.objective, exp.network.resolution
    n_train, n_total, n_chunk = (round(1000.0 * t / resolution) for t in (o.t_train, o.t_train + o.t_score, o.chunk))
    ends = sorted({*range(n_chunk, n_total, n_chunk), n_train, n_total} - {0})
    return [Chunk((end - start) * resolution, end * resolution / 1000.0, end <= n_train)
            for start, end in zip([0, *ends], ends)]


def make_objective(exp: Experiment) -> Objective:
    o = exp.objective
    return Objective(target_rate=o.target_rate, constraints={k: tuple(v) for k, v in o.constraints.items()},
                     l1_weight=o.l1, parameter_names=tuple(exp.layout().names) if o.l1 else None,
                     rate_metric=f"rate_{o.population.lower()}")


@dataclass
class Course:
    """What happened during :meth:`Evaluator.simulate`: the population rate and mean plastic
    weights after every chunk, and whether (when) the run was cut short."""

    trace: dict[str, list[float]] = field(default_factory=dict)
    blew_up_at_s: float | None = None
    rate_at_blowup: float | None = None
    left_band: str | None = None  # "above" or "below" the band
    timed_out: bool = False


class ModuleGone(UserError):
    """The run's compiled module is no longer where it was built (the cache deleted or cleaned, on
    one node): no fault of a candidate's, so it ends the run instead of failing every evaluation."""


class Evaluator:
    """Callable that turns a :class:`~nestplast.tasks.Task` into an
    :class:`~nestplast.tasks.Evaluation` (one per rank). In network mode (NEST with MPI) pass
    ``comm``: every rank then holds part of the network, and measurements are gathered."""

    def __init__(self, exp: Experiment, module: Module, rank: int = 0, comm=None):
        self.exp, self.module, self.rank, self.comm = exp, module, rank, comm
        self.layout = exp.layout()
        self.objective = make_objective(exp)
        kernel_reads.library()  # compiled (once per cache) now, not inside the first evaluation's time

    def __call__(self, task: Task) -> Evaluation:
        start = time.perf_counter()
        evaluation = Evaluation(generation=task.generation, candidate=task.candidate, trial=task.trial.index,
                                seed=task.trial.seed, theta=list(task.theta), params=self.layout.as_dict(task.theta),
                                rank=self.rank)
        try:
            self._evaluate(task, evaluation, start)
        except ModuleGone:
            raise
        except Exception as err:  # anything: NEST errors, bad parameters, bugs; record and go on
            tail = traceback.format_exc(limit=-3)
            evaluation.loss, evaluation.status = FAILURE_LOSS, "failed"
            evaluation.error = f"{type(err).__name__}: {err}\n{tail}"
        # what the trial drew, beside its NEST seed: without them a trial could not be simulated
        # again from the run (its input rate came only from the run's seed and the draw's code)
        drawn = {k: v for k, v in asdict(task.trial).items() if k not in ("index", "seed")}  # its *_scale fields
        evaluation.metrics = {**(evaluation.metrics or {}), "conditions": drawn}
        evaluation.wall_time_s = time.perf_counter() - start
        return evaluation

    # ------------------------------------------------------------------ the steps

    def setup_kernel(self, seed: int):
        """A fresh NEST kernel with the rule's module installed; returns the ``nest`` module.
        Inside :func:`nestplast.kernel.lent_kernel` (``nestplast.run_search``) the user's kernel
        is warned about first and restored after the run."""
        nest = reset_kernel()
        try:
            install(self.module)
        except FileNotFoundError as err:
            raise ModuleGone(f"rank {self.rank}: {err}. Every evaluation on this rank would fail alike, steering the "
                             "search by penalties, so the run stops; its complete generations are kept, and --resume "
                             "(resume=True) goes on, compiling the module again") from None
        nest.SetKernelStatus({"resolution": self.exp.network.resolution, "rng_seed": seed,
                              "local_num_threads": self.exp.search.threads})
        if self.comm is not None:
            # NEST 3.10 on several ranks: compressed spike delivery keeps state across ResetKernel
            # when plastic and static synapses mix, so a simulation would depend on the one before
            # it in the process (a resumed run or another rank/thread split would diverge).
            nest.SetKernelStatus({"use_compressed_spikes": self.exp.search.compressed_spikes})
        return nest

    def check_neuron_params(self) -> None:
        """Refuse (ExperimentError) neuron parameters that the neuron refuses, before a run: each
        of its evaluations would fail alike. In a kernel with NEST's own settings: one the
        experiment sets and NEST refuses fails each evaluation, recorded with NEST's message."""
        nest = reset_kernel()
        install(self.module)
        with self._in_file():
            check_neuron_params(nest, self.exp.network, self.module)

    def check_rule_params(self, theta: Sequence[float]) -> None:
        """Refuse (ExperimentError) rule settings that NEST refuses at ``theta`` (the search's start):
        each evaluation would fail alike, recorded with NEST's message (``tau_pre = 0``, or a
        ``Wmin`` beyond ``w_max``)."""
        nest = reset_kernel()
        install(self.module)
        with self._in_file():
            check_synapse_params(nest, self.exp.network, self.synapse_params(theta),
                                 synapse_models(self.layout, self.module),
                                 {ct: self.exp.fixed(ct) for ct in self.layout.connection_types})

    @contextlib.contextmanager
    def _in_file(self) -> Iterator[None]:
        """An ExperimentError named after the experiment's file, as a malformed file's keys are."""
        try:
            yield
        except ExperimentError as err:
            raise ExperimentError(f"{self.exp.source}: {err}") from None

    def synapse_params(self, theta: Sequence[float]) -> dict[str, dict]:
        """The rule's NEST settings for ``theta``, per plastic connection type, without ``Wmax``
        (each trial's, set by :func:`~nestplast.networks.build_network`)."""
        return {ct: {k: v for k, v in settings.items() if k != "Wmax"}
                for ct, settings in nest_settings(self.exp, theta, self.layout).items()}

    def build(self, theta: Sequence[float], trial: Trial) -> Network:
        """A fresh kernel seeded by ``trial`` with the experiment's network, the rule set to ``theta``."""
        nest = self.setup_kernel(trial.seed)
        return build_network(nest, self.exp.network, self.module, self.synapse_params(theta), trial,
                             models=synapse_models(self.layout, self.module))

    def weights(self, net: Network) -> dict[str, np.ndarray]:
        """All plastic weights, per connection type (from every rank in network mode)."""
        return {ct: self.gather(net.weights(ct)) for ct in net.plastic}

    def start_weights(self, net: Network) -> dict[str, np.ndarray]:
        """The plastic weights as built (:meth:`Network.start_weights`), as :meth:`weights` returns them."""
        return {ct: self.gather(net.start_weights(ct)) for ct in net.plastic}

    def simulate(self, net: Network, started: float | None = None) -> Course:
        """Simulate training and scoring in chunks; stop early when the population rate leaves the
        experiment's band (a blow-up) or the evaluation has run longer than ``max_wall_s`` since
        ``started`` (default: now)."""
        nest = import_nest()
        o = self.exp.objective
        started = time.perf_counter() if started is None else started
        band = RateBand(low=o.rate_band[0], high=o.rate_band[1])
        n_pop = len(net.populations[o.population])
        course = Course(trace={"t_s": [], "rate": [], **{f"w_mean_{ct}": [] for ct in net.plastic}})
        others = [name for name in net.recorders if name != o.population]
        last = 0
        for chunk in chunks(self.exp):
            if chunk.training:
                # The other populations' spikes so far all precede the scoring window (a training
                # chunk ends at its start at the latest): drop them, or measure reads them all
                # (the I population's 5 s: 2 ms) to keep only the window's
                for name in others:
                    net.clear_spikes(name)
            nest.Simulate(chunk.ms)  # not Run(): recorders can only be cleared between runs
            n_events, w_means, late = self.chunk_state(net, late=time.perf_counter() - started > o.max_wall_s)
            rate = (n_events - last) / n_pop / chunk.seconds
            if chunk.training:
                net.clear_spikes(o.population)  # keep only the scoring window's spikes in memory
                last = 0
            else:
                last = n_events
            course.trace["t_s"].append(chunk.t_end_s)
            course.trace["rate"].append(rate)
            for ct in net.plastic:
                course.trace[f"w_mean_{ct}"].append(w_means[ct])
            if not math.isfinite(rate) or band.update(rate, chunk.seconds):
                course.blew_up_at_s, course.rate_at_blowup = chunk.t_end_s, rate
                course.left_band = "above" if not math.isfinite(rate) or band.left_above else "below"
                break
            if late:
                course.timed_out = True
                break
        return course

    def measure(self, net: Network, w_start: dict[str, np.ndarray]) -> dict:
        """The metrics of the scoring window (:func:`nestplast.metrics.network_metrics`) and the
        scored population's rate in bins of 100 ms, or longer for a small population
        (:func:`~nestplast.objectives.rate_bin_ms`)."""
        o = self.exp.objective
        # NEST stamps a spike with the end of its step: the window's steps stamp (t0, t1], which the
        # metrics' [t0, t1) takes half a step later (a spike stamped t1 was left out, one stamped t0,
        # in training, counted). The same length; bin edges fall between stamps
        half_step = 0.5 * self.exp.network.resolution
        t0, t1 = 1000.0 * o.t_train + half_step, 1000.0 * (o.t_train + o.t_score) + half_step
        senders, times = zip(*(self.events(r) for r in net.recorders.values()))
        senders, times = np.concatenate(senders), np.concatenate(times)
        ids = {name: net.node_ids(name) for name in net.recorders}
        metrics = M.network_metrics(senders, times, ids, t0, t1, scored=o.population, w_start=w_start,
                                    w_end=self.weights(net), w_max={ct: abs(w) for ct, w in net.w_max.items()})
        scored = np.isin(senders, ids[o.population])
        n = len(ids[o.population])
        metrics["rate_trace"] = M.population_rate(times[scored], n, t0, t1, rate_bin_ms(n, o.target_rate, t1 - t0)).tolist()
        return metrics

    # ------------------------------------------------------------------ one evaluation

    def _evaluate(self, task: Task, evaluation: Evaluation, start: float) -> None:
        o = self.exp.objective
        total_s = o.t_train + o.t_score
        theta = np.asarray(task.theta)
        net = self.build(task.theta, task.trial)
        w_start = self.start_weights(net)
        course = self.simulate(net, start)
        if course.timed_out:
            evaluation.loss, evaluation.status = FAILURE_LOSS, "timeout"
            evaluation.error = f"evaluation exceeded objective.max_wall_s = {o.max_wall_s} s"
            evaluation.metrics = {"trace": course.trace}
            return
        if course.blew_up_at_s is not None:
            loss, parts = self.objective.score({}, theta, blew_up_at_s=course.blew_up_at_s, total_s=total_s)
            evaluation.loss, evaluation.status = loss, "blowup"
            evaluation.metrics = {"t_blowup_s": course.blew_up_at_s, "rate_at_blowup": course.rate_at_blowup,
                                  "left_band": course.left_band,
                                  "trace": course.trace, "loss_parts": parts}
            evaluation.error = (f"{o.population} rate {'rose above' if course.left_band == 'above' else 'fell below'} "
                                f"[{o.rate_band[0]}, {o.rate_band[1]}] Hz at t = {course.blew_up_at_s:g} s")
            return
        metrics = self.measure(net, w_start)
        loss, parts = self.objective.score(metrics, theta, blew_up_at_s=None, total_s=total_s)
        evaluation.metrics = {**metrics, "trace": course.trace, "loss_parts": parts}
        if not math.isfinite(loss):
            evaluation.loss, evaluation.status = FAILURE_LOSS, "nan"
            evaluation.error = "the loss is not finite (NaN metric or weight)"
            return
        evaluation.loss = loss

    # ------------------------------------------------------------------ rank-local data

    def gather(self, values: np.ndarray) -> np.ndarray:
        """``values`` of every rank, in rank order (in network mode each rank holds a part; elsewhere
        this rank holds all)."""
        if self.comm is None:
            return np.asarray(values, dtype=float)
        return np.concatenate(self.comm.allgather(np.asarray(values, dtype=float)))

    def chunk_state(self, net: Network, late: bool = False) -> tuple[int, dict[str, float], bool]:
        """Between two chunks, over every rank in one collective call (network mode): the scored
        population's spikes recorded so far, the mean ``|w|`` of each plastic type's weight sample
        (NaN for none), and whether any rank is ``late`` (past ``max_wall_s``). Every rank then
        stops at the same chunk: one that left the loop alone would leave the others waiting in the
        collective nest.Simulate until the job's limit."""
        samples = {ct: np.abs(np.asarray(net.sample_weights(ct), dtype=float)) for ct in net.plastic}
        local = (net.spike_count(self.exp.objective.population),
                 {ct: (float(w.sum()), w.size) for ct, w in samples.items()}, bool(late))
        # summed here in rank order (an MPI user-defined Op would have to be freed, and MPI allows only a few)
        parts = [local] if self.comm is None else self.comm.allgather(local)
        n_events = sum(p[0] for p in parts)
        sums = {ct: (sum(p[1][ct][0] for p in parts), sum(p[1][ct][1] for p in parts)) for ct in samples}
        means = {ct: total / count if count else math.nan for ct, (total, count) in sums.items()}
        return n_events, means, any(p[2] for p in parts)

    def events(self, recorder) -> tuple[np.ndarray, np.ndarray]:
        """The (senders, times) of a spike recorder's events on every rank."""
        events = recorder.get("events")
        senders, times = np.asarray(events["senders"]), np.asarray(events["times"])
        if self.comm is not None:
            senders = np.concatenate(self.comm.allgather(senders))
            times = np.concatenate(self.comm.allgather(times))
        return senders, times


__all__ = ["Evaluator", "Course", "Chunk", "chunks", "make_objective"]
