"""Shared test helpers, in one place (test files import from here, never from each other):
capability markers, synthetic spike trains and weights with known statistics, the Taylor mask
the rule tests share, the paired-synapse bench, the engine's toy problem (a sphere with a known
optimum) and a small network of the doublet rule.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from nestplast import experiment
from nestplast.kernel import install
from nestplast.store import RunStore
from nestplast.strategies import SearchSpace
from nestplast.tasks import Evaluation, Task

T = TypeVar("T")

# a capability, as NEST's own test suite marks them: the filter (rule families) runs on sbi
needs_sbi = pytest.mark.skipif(importlib.util.find_spec("sbi") is None,
                               reason="the filter needs sbi and torch: pip install -e '.[families]' (setup.sh does)")

# One Taylor mask that expresses Vogels-Sprekeler, additive STDP and Oja, plus weight and
# product terms that a comparison with a second implementation exercises, and a constant at each
# spike (test_synthetic): one module for all of these (a module costs 30-60 s to compile).
TAYLOR_TEST_MASK = "pre:000,pre:010,pre:001,pre:111,post:000,post:100,post:011,post:002,post:200"
# multiplicative STDP (van Rossum et al. 2000): a second taylor module, of the same model names
MULTIPLICATIVE_MASK = "pre:011,post:100,post:101"


def copy_run(src: Path, dst: Path, ignore=None) -> None:
    """A run directory copied as it stands (``ignore`` as shutil.copytree's), each results database
    by SQLite's backup. A plain copy of results.sqlite and its -wal and -shm files was torn once:
    a store another test had left open was closed by the garbage collector during the copy, and
    SQLite, closing a database's last connection, checkpoints it and deletes those files."""
    databases = {"results.sqlite", "results.sqlite-wal", "results.sqlite-shm"}

    def ignored(folder: str, names: list[str]) -> set[str]:
        return (set(names) & databases) | (set(ignore(folder, names)) if ignore else set())

    shutil.copytree(src, dst, ignore=ignored)
    for database in Path(src).rglob("results.sqlite"):
        target = Path(dst) / database.relative_to(src)
        if target.parent.is_dir():  # not in a folder ``ignore`` left out
            # a reader of its own: no other connection's close is the last one while it copies
            with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as source, \
                    closing(sqlite3.connect(target)) as copy:
                source.backup(copy)


def read_store(run_dir: Path, read: Callable[[RunStore], T], *, read_only: bool = False) -> T:
    """``read(store)``, e.g. ``read_store(run, RunStore.counts)``, with the run's store opened as
    RunStore.open opens it and closed again: a store left to the garbage collector fails its test
    (pyproject's filterwarnings), as it once tore a copy of its run (copy_run)."""
    with RunStore.open(run_dir, read_only=read_only) as store:
        return read(store)


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


# ---- the paired-synapse bench: shows several synapse models exactly the same pre- and postsynaptic spikes.
#
# Presynaptic parrot neurons replay fixed spike trains; one postsynaptic neuron (the NESTML neuron
# paired with the rule) is made to fire at chosen times by strong input. Every synapse model under
# test connects the same parrots to the same neuron, so all of them see identical spikes, and
# their weights are read after every chunk of the run.

RESOLUTION = 0.1  # ms
DELAY = 1.0  # ms, of the plastic synapses (all of it dendritic, as in NEST's STDP synapses)
DRIVE_DELAY = 1.0  # ms
PARROT_DELAY = 1.0  # ms, from a spike generator to its parrot: parrots spike this much later
# The driven neuron has 1000 times the usual membrane capacitance and drive: it fires as an
# ordinary neuron would, but the plastic synapses (weights of a few pA or nS) move its membrane by
# microvolts, so its spikes do not move with the weights and can be known before a run.
DEAF = 1000.0
# a network of conductance neurons in nS (families_paper's values): iaf_psc_exp's defaults in pA are refused
COND_NETWORK = {"neuron_params": {}, "weights": {"EE": 0.3, "EI": 0.3, "IE": 3.0, "II": 3.0},
                "w_max": {"EE": 20.0, "EI": 20.0, "IE": 20.0, "II": 20.0}, "input_rate": 2500.0, "input_weight": 0.3}
DRIVE_WEIGHT = {"iaf_psc_exp": 3000.0 * DEAF, "iaf_cond_exp": 60.0 * DEAF}  # one spike per kick, no second one


def poisson_times(rng: np.random.Generator, rate_hz: float, t_stop: float, t_start: float = 1.0,
                  min_gap: float = RESOLUTION) -> np.ndarray:
    """Poisson spike times on the simulation grid, at least ``min_gap`` apart."""
    isi = rng.exponential(1000.0 / rate_hz, size=int(3 * rate_hz * t_stop / 1000.0) + 20)
    times = np.round(t_start + np.cumsum(np.maximum(isi, min_gap)) / RESOLUTION) * RESOLUTION
    return times[times < t_stop]


def coinciding(post_times: np.ndarray, every: int, offset: int) -> np.ndarray:
    """Generator times that make a parrot fire at t_pre = t_post + delay for every ``every``-th
    postsynaptic spike, from the ``offset``-th: the two spikes coincide at the synapse."""
    return post_times[offset % every::every] + DELAY - PARROT_DELAY


def on_grid(times: np.ndarray) -> np.ndarray:
    """Sorted times on the simulation grid, each step at most once."""
    return np.unique(np.round(times / RESOLUTION).astype(np.int64)) * RESOLUTION


@dataclass
class PairedResult:
    weights: dict[str, np.ndarray]  # model -> (chunks, n_pre) weights after each chunk
    pre_times: list[np.ndarray]  # spike times of the presynaptic parrots
    post_times: np.ndarray
    chunk_ms: float


def driven_neuron(nest, module, drive_times: np.ndarray, neuron: str, tau_minus: float):
    """The postsynaptic neuron, made to fire 2-4 ms after each kick of the drive."""
    post = nest.Create(module.neuron_model, 1, {"tau_minus": tau_minus})
    post.C_m = post.C_m * DEAF
    kick = nest.Create("spike_generator", 1, {"spike_times": drive_times})
    nest.Connect(kick, post, syn_spec={"weight": DRIVE_WEIGHT[neuron], "delay": DRIVE_DELAY})
    return post


def run_paired(nest, module, synapses: dict[str, tuple[str, dict]], weight: float, *, neuron: str = "iaf_psc_exp",
               n_pre: int = 8, pre_rate: float = 15.0, post_rate: float = 20.0, t_stop: float = 4000.0,
               chunks: int = 40, seed: int = 1, tau_minus: float = 20.0, coincide: int = 0,
               pre_stop: float | None = None) -> PairedResult:
    """Connect ``n_pre`` parrots to one driven neuron through each of ``synapses``
    (label -> (base model, CopyModel params)), all starting at ``weight``; run and read weights.

    Poisson pre spikes coincide with post spikes (t_pre - delay == t_post) only by chance; with
    ``coincide = k`` each parrot also fires so as to coincide with every k-th post spike of a
    first run of the driven neuron alone (the plastic inputs cannot move its spikes)."""
    rng = np.random.default_rng(seed)
    drive_times = poisson_times(rng, post_rate, t_stop, min_gap=8.0)
    pre_times = [poisson_times(rng, pre_rate, pre_stop or t_stop) for _ in range(n_pre)]
    if coincide:
        nest.ResetKernel()
        install(module)
        nest.resolution = RESOLUTION
        recorder = nest.Create("spike_recorder")
        nest.Connect(driven_neuron(nest, module, drive_times, neuron, tau_minus), recorder)
        nest.Simulate(t_stop)
        post_times = np.asarray(recorder.events["times"])
        pre_times = [on_grid(np.concatenate([t, coinciding(post_times, coincide, k)])) for k, t in enumerate(pre_times)]
        pre_times = [t[t < (pre_stop or t_stop)] for t in pre_times]

    nest.ResetKernel()
    install(module)
    nest.resolution = RESOLUTION
    post = driven_neuron(nest, module, drive_times, neuron, tau_minus)
    sources = nest.Create("spike_generator", n_pre)
    for generator, times in zip(sources, pre_times):
        generator.spike_times = times
    parrots = nest.Create("parrot_neuron", n_pre)
    nest.Connect(sources, parrots, "one_to_one", syn_spec={"delay": PARROT_DELAY})
    recorder, pre_recorder = nest.Create("spike_recorder", 2)
    nest.Connect(post, recorder)
    nest.Connect(parrots, pre_recorder)

    connections = {}
    for label, (base, params) in synapses.items():
        nest.CopyModel(base, label, {**params, "weight": weight, "delay": DELAY})
        nest.Connect(parrots, post, syn_spec={"synapse_model": label})
        connections[label] = nest.GetConnections(synapse_model=label)

    chunk = t_stop / chunks
    weights = {label: np.empty((chunks, n_pre)) for label in synapses}
    for k in range(chunks):
        nest.Simulate(chunk)
        for label, conns in connections.items():
            # GetConnections orders by source; parrots were created in order
            order = np.argsort(conns.source)
            weights[label][k] = np.asarray(conns.weight)[order]
    # the spikes the synapses saw: the parrots' (time-sorted within each parrot)
    senders, times = pre_recorder.events["senders"], pre_recorder.events["times"]
    seen = [np.sort(times[senders == parrot]) for parrot in parrots.tolist()]
    return PairedResult(weights, seen, np.asarray(recorder.events["times"]), chunk)


def coincidences(result: PairedResult) -> int:
    """Pre/post pairs with t_pre - delay == t_post."""
    post = np.round(result.post_times / RESOLUTION).astype(np.int64)
    return sum(np.isin(np.round((t - DELAY) / RESOLUTION).astype(np.int64), post).sum() for t in result.pre_times)


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))


def reference_weight(update, params: dict, pre_times, post_times, w0: float) -> float:
    """A rule simulated event by event in plain Python, with NEST's timing, the second
    implementation the NEST tests compare with: a post spike at t reaches the synapse at
    t + delay, a pre spike is handled at its own time, and post spikes after the last pre spike
    are not processed yet. A post and a pre spike at the same time (NEST's stdp_synapse): the post
    update comes first and reads x_pre before the pre spike's jump, the pre update reads x_post
    before the post spike's jump (only post spikes strictly before count). ``update(event, x_pre,
    x_post, |w|)`` is the rule's change of |w|, learning rate included."""
    steps = lambda t: np.round(np.asarray(t) / RESOLUTION).astype(np.int64)  # noqa: E731
    last_pre = steps(pre_times[-1])
    events = sorted([(int(k), 1) for k in steps(pre_times)] +  # post (0) before pre (1) on a tie
                    [(int(k), 0) for k in steps(np.asarray(post_times) + DELAY) if k <= last_pre])
    x_pre = x_post = 0.0
    w, t_last = w0, 0.0
    sign = np.sign(params["Wmax"])
    for i, (k, is_pre) in enumerate(events):
        t = k * RESOLUTION
        x_pre *= np.exp(-(t - t_last) / params["tau_pre"])
        x_post *= np.exp(-(t - t_last) / params["tau_post"])
        t_last = t
        dw = float(update("pre" if is_pre else "post", x_pre, x_post, abs(w)))
        w = sign * min(abs(params["Wmax"]), max(abs(params["Wmin"]), abs(w) + dw))
        if is_pre:
            x_pre += 1.0
            if i > 0 and events[i - 1] == (k, 0):  # the coinciding post spike counts from now on
                x_post += 1.0
        elif i + 1 == len(events) or events[i + 1] != (k, 1):
            x_post += 1.0
    return w


# ---- rules with more inputs (slow traces, the postsynaptic neuron's low-passed state): tests/test_rule_inputs.py

POST_STATE = ("V_bar", "C_exc", "C_inh")  # the neuron's state variables a rule can read


def reference_weight_inputs(update, params: dict, pre_times, post_times, w0: float, post_state=None) -> float:
    """:func:`reference_weight` for a rule with more inputs: ``update(event, inputs, |w|)`` gets
    ``inputs`` = the fast traces ``x_pre``, ``x_post``, the slow ones ``x_pre_slow``, ``x_post_slow``
    (decaying with ``tau_pre_slow``, ``tau_post_slow``, default 100 ms; they jump with the fast
    ones) and, with ``post_state(t) -> {"V_bar": ..., ...}``, the postsynaptic state at the post
    spike, or at the presynaptic spike's time at its neuron (where the synapse reads it when the
    spike is delivered with min_delay = resolution: see :func:`run_recorded`)."""
    steps = lambda t: np.round(np.asarray(t) / RESOLUTION).astype(np.int64)  # noqa: E731
    last_pre = steps(pre_times[-1])
    events = sorted([(int(k), 1) for k in steps(pre_times)] +  # post (0) before pre (1) on a tie
                    [(int(k), 0) for k in steps(np.asarray(post_times) + DELAY) if k <= last_pre])
    taus = {"x_pre": params["tau_pre"], "x_post": params["tau_post"],
            "x_pre_slow": params.get("tau_pre_slow", 100.0), "x_post_slow": params.get("tau_post_slow", 100.0)}
    x = dict.fromkeys(taus, 0.0)
    w, t_last = w0, 0.0
    sign = np.sign(params["Wmax"])
    for i, (k, is_pre) in enumerate(events):
        t = k * RESOLUTION
        x = {name: value * np.exp(-(t - t_last) / taus[name]) for name, value in x.items()}
        t_last = t
        # the postsynaptic state at the post spike, or at the pre spike (t here is the pre spike's time)
        state = post_state(t if is_pre else t - DELAY) if post_state is not None else {}
        dw = float(update("pre" if is_pre else "post", {**x, **state}, abs(w)))
        w = sign * min(abs(params["Wmax"]), max(abs(params["Wmin"]), abs(w) + dw))
        side = ("x_pre", "x_pre_slow") if is_pre else ("x_post", "x_post_slow")
        if is_pre:
            if i > 0 and events[i - 1] == (k, 0):  # the coinciding post spike counts from now on
                side += ("x_post", "x_post_slow")
        elif i + 1 < len(events) and events[i + 1] == (k, 1):
            side = ()  # counts only after the coinciding pre spike
        for name in side:
            x[name] += 1.0
    return w


@dataclass
class RecordedResult:
    paired: PairedResult
    times: np.ndarray  # multimeter times (every step)
    state: dict[str, np.ndarray]  # the post neuron's recorded variables at those times

    def at(self, t: float) -> dict[str, float]:
        """The recorded post-state variables of :data:`POST_STATE` at time ``t`` (on the grid)."""
        k = int(round(t / RESOLUTION)) - 1  # the multimeter's first sample is at one step
        return {name: float(self.state[name][k]) for name in POST_STATE}


def run_recorded(nest, module, synapses: dict[str, tuple[str, dict]], weight: float, *, n_pre: int = 6,
                 pre_rate: float = 20.0, post_rate: float = 20.0, t_stop: float = 2000.0, seed: int = 1,
                 background: tuple[float, float, float, float] = (800.0, 20.0, 400.0, 20.0),
                 parrot_delay: float = RESOLUTION) -> RecordedResult:
    """Parrots into one driven neuron through each of ``synapses`` (as :func:`run_paired`), the
    neuron also receiving Poisson ``background`` (excitatory rate, weight, inhibitory rate, weight)
    so that its input currents vary (weights as they are, not scaled by DEAF: they barely move
    its membrane, but its synaptic currents are of order 10-100 pA), and a multimeter recording :data:`POST_STATE`, ``V_m`` and the
    synaptic currents at every step. The generators reach the parrots after ``parrot_delay``, by
    default one step, which makes min_delay one step: a presynaptic spike is delivered when its
    target has just been updated to the spike's time, so the rule reads the neuron's state at the spike."""
    rng = np.random.default_rng(seed)
    drive_times = poisson_times(rng, post_rate, t_stop, min_gap=8.0)
    pre_times = [poisson_times(rng, pre_rate, t_stop) for _ in range(n_pre)]
    nest.ResetKernel()
    install(module)
    nest.resolution = RESOLUTION
    post = driven_neuron(nest, module, drive_times, "iaf_psc_exp", 20.0)
    exc, inh = nest.Create("poisson_generator", 2, [{"rate": background[0]}, {"rate": background[2]}])
    nest.Connect(exc, post, syn_spec={"weight": background[1], "delay": DELAY})
    nest.Connect(inh, post, syn_spec={"weight": -background[3], "delay": DELAY})
    sources = nest.Create("spike_generator", n_pre)
    for generator, times in zip(sources, pre_times):
        generator.spike_times = times
    parrots = nest.Create("parrot_neuron", n_pre)
    nest.Connect(sources, parrots, "one_to_one", syn_spec={"delay": parrot_delay})
    recorder, pre_recorder = nest.Create("spike_recorder", 2)
    nest.Connect(post, recorder)
    nest.Connect(parrots, pre_recorder)
    meter = nest.Create("multimeter", {"interval": RESOLUTION,
                                       "record_from": [*POST_STATE, "V_m", "I_syn_exc", "I_syn_inh"]})
    nest.Connect(meter, post)
    connections = {}
    for label, (base, params) in synapses.items():
        nest.CopyModel(base, label, {**params, "weight": weight, "delay": DELAY})
        nest.Connect(parrots, post, syn_spec={"synapse_model": label})
        connections[label] = nest.GetConnections(synapse_model=label)
    nest.Simulate(t_stop)
    weights = {}
    for label, conns in connections.items():
        weights[label] = np.atleast_1d(conns.weight)[np.argsort(np.atleast_1d(conns.source))][None, :]
    senders, times = pre_recorder.events["senders"], pre_recorder.events["times"]
    seen = [np.sort(times[senders == parrot]) for parrot in parrots.tolist()]
    events = meter.events
    order = np.argsort(events["times"], kind="stable")
    state = {name: np.asarray(events[name])[order] for name in [*POST_STATE, "V_m", "I_syn_exc", "I_syn_inh"]}
    paired = PairedResult(weights, seen, np.asarray(recorder.events["times"]), t_stop)
    return RecordedResult(paired, np.asarray(events["times"])[order], state)


# ---- the engine's toy problem: a search space and a loss with a known optimum

SPACE = SearchSpace(names=("x", "y", "tau"), low=(-2.0, -2.0, 1.0), high=(2.0, 2.0, 100.0),
                    log=(False, False, True), start=(1.5, -1.5, 50.0))
OPTIMUM = np.array([0.3, -0.2, 10.0])


class TrialStandIn:
    """A trial as the engine sees one: an index and a seed."""

    def __init__(self, index: int, seed: int):
        self.index, self.seed = index, seed


class Sphere:
    """Loss = squared distance to OPTIMUM (tau in log10), the mean of two 'trials' that add
    opposite offsets; optionally interrupted after a number of evaluations."""

    def __init__(self, interrupt_after: int | None = None):
        self.calls, self.interrupt_after = 0, interrupt_after

    def tasks(self, generation, candidates):
        return [Task(generation, c.index, TrialStandIn(j, 100 * generation + j), c.theta) for c in candidates for j in (0, 1)]

    def evaluate(self, task):
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        z = np.array(task.theta, dtype=float)
        z[2], target = np.log10(z[2]), OPTIMUM.copy()
        target[2] = np.log10(target[2])
        loss = float(np.sum((z - target) ** 2)) + (0.01 if task.trial.index else -0.01)
        return Evaluation(task.generation, task.candidate, task.trial.index, list(task.theta), task.trial.seed,
                          loss=loss)

    def loss(self, candidate, evaluations):
        assert [e.trial for e in evaluations] == [0, 1]
        return float(np.mean([e.loss for e in evaluations]))


# ---- a small network of the doublet rule

VOGELS_SPREKELER_10HZ = [20.0, 20.0, -0.4, 0.0, 1.0, 1.0]  # the doublet's theta: alpha = -2 rho0 tau, rho0 = 10 Hz


def small(**overrides) -> experiment.Experiment:
    """A recurrent network of 100 E + 25 I whose I -> E synapses learn by the doublet rule, 4 s of
    training and 1 s of scoring; ``overrides``: {table: {key: value}}."""
    data = {"rule": {"name": "doublet", "plastic": ["IE"], "fixed": {"eta": 1.0}},
            "network": {"n_e": 100, "n_i": 25, "p": 0.2, "w_max": {"IE": 300.0}},
            "objective": {"target_rate": 10.0, "t_train": 4.0, "t_score": 1.0}}
    for table, values in overrides.items():
        data.setdefault(table, {}).update(values)
    return experiment.parse(data, "<test>")


