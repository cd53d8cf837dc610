"""Where the time of one evaluation goes: process start and imports, kernel setup, network build,
simulation (and inside it the Poisson drive, the neuron updates, the recurrent synapses and the
plasticity rule), measurement and the store, as shares of one evaluation.

The phases are timed through the public steps of :class:`nestplast.evaluate.Evaluator` (``build``
= ``setup_kernel`` + the network: the network's share is build minus a separately timed
``setup_kernel``), ``nest.Simulate`` by a timing wrapper around NEST's own function, the store by
``RunStore.record_evaluation`` of the evaluation. Three NEST calls outside the simulation are timed again on their own
after the evaluation: ``ResetKernel``, reading the end weights and reading the recorders' events. With the
network build (NEST's ``CopyModel``, ``Create`` and ``Connect``) they bound the share the simulation can reach:
it is printed as the share with nothing else outside the simulation. Process start and imports (``import nest`` and
nestplast) and the module lookup (the compiled rule's cache, its first ``Install``) happen once
per process and are timed in subprocesses; they are shown per evaluation of a default search
(216 evaluations on one rank) too.

Inside the simulation nothing can be timed apart, so the split comes from variants of the same
network in the same run, each simulated in the evaluation's chunks (``nest.Simulate`` only):

- ``neurons``: the network with every synapse static, no drive and the neurons silenced
  (threshold out of reach): the neurons' updates alone;
- ``+ drive``: the same with the Poisson drive (its events arrive, no neuron spikes);
- ``+ static``: the same with the neurons spiking: every synapse static, the plastic ones at
  the mean weight the rule learned in the evaluation (the learned network's activity, not a
  runaway);
- ``+ rule, eta 0``: those synapses plastic, the rule computing but eta = 0: the same spikes;
- ``+ learning``: the evaluation's own network (eta = 1, from the initial weights);
- ``one call``: the same in one ``nest.Simulate`` call instead of chunks (the chunks' cost).

neuron updates = ``neurons``; drive = ``+ drive`` - ``neurons``; recurrent spikes = ``+ static`` -
``+ drive``; rule = ``+ rule, eta 0`` - ``+ static``; learning = ``+ learning`` - ``+ rule, eta 0``
(the weights start elsewhere and the activity changes as they learn); chunks = ``+ learning`` -
``one call``. The spike counts of every variant are printed.

The reference size (``spikes_reference``: 8000 E + 2000 I, p = 0.02) simulates fewer seconds
(``--reference-seconds``) on this shared 2-core machine; its per-evaluation time is extrapolated
to the experiment's 35 s.

    .venv/bin/python benchmarks/time_split.py [--repeats 5] [--reference-seconds 2] [--no-reference]
                                              [--large-seconds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import stopping
from options import at_least

from nestplast import experiment
from nestplast.evaluate import Evaluator
from nestplast.experiment import Experiment
from nestplast.kernel import import_nest
from nestplast.kernel_reads import connection_weights
from nestplast.networks import Trial, build_network
from nestplast.rules import vogels_sprekeler
from nestplast.runs import build_module
from nestplast.store import RunStore
from nestplast.tasks import Evaluation

VARIANTS = ("neurons", "+ drive", "+ static", "+ rule, eta 0", "+ learning", "one call")


class SimulateTimer:
    """Times every call of NEST's own ``nest.Simulate`` (installed around it, removed by ``close``;
    PyNEST refuses plain attribute assignment on its module, hence ModuleType.__setattr__)."""

    def __init__(self, nest):
        self.nest, self.simulate, self.seconds = nest, nest.Simulate, 0.0
        types.ModuleType.__setattr__(nest, "Simulate", self)

    def __call__(self, t_ms: float) -> None:
        start = time.perf_counter()
        self.simulate(t_ms)
        self.seconds += time.perf_counter() - start

    def close(self) -> None:
        types.ModuleType.__setattr__(self.nest, "Simulate", self.simulate)


def subprocess_seconds(code: str, repeats: int) -> float:
    """Median wall time of ``python -c code`` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# A fresh process: its imports and the module lookup timed from inside, printed as JSON.
PROCESS_CODE = """
import json, time
t0 = time.perf_counter()
import nestplast.kernel as kernel, nestplast.search
kernel.import_nest()
t1 = time.perf_counter()
from nestplast import experiment
from nestplast.builder import build
e = experiment.default()
kernel.install(build(e.module_rules(), e.rule.neuron, quiet=True))
print(json.dumps({"imports": t1 - t0, "module": time.perf_counter() - t1}))
"""


def process_start(repeats: int) -> dict[str, float]:
    """Medians over fresh processes: the interpreter's start and exit (the command's wall time less what
    the code inside timed), the imports (nest and nestplast), the module lookup and its first
    Install; and a bare ``python -c pass`` for reference."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROCESS_CODE], check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        inside = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append({"start": wall - inside["imports"] - inside["module"], **inside})
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"bare": subprocess_seconds("pass", repeats)}


def vs_theta(exp: Experiment) -> list[float]:
    """The Vogels-Sprekeler coefficients for the experiment's target rate, in the search's order."""
    coefficients = vogels_sprekeler(exp.objective.target_rate, 20.0)
    return [coefficients[name.split(".", 1)[1]] for name in exp.layout().names]


def time_phases(evaluator: Evaluator, theta: list[float], trial: Trial, store: RunStore, index: int) -> dict:
    """One evaluation, step by step, as Evaluator.__call__ runs it."""
    nest = import_nest()
    timer = SimulateTimer(nest)
    try:
        t = [time.perf_counter()]
        evaluator.setup_kernel(trial.seed)
        t.append(time.perf_counter())
        net = evaluator.build(theta, trial)
        t.append(time.perf_counter())
        w_start = evaluator.start_weights(net)
        t.append(time.perf_counter())
        course = evaluator.simulate(net)
        t.append(time.perf_counter())
        metrics = evaluator.measure(net, w_start)
        loss, parts = evaluator.objective.score(metrics, theta, blew_up_at_s=course.blew_up_at_s,
                                                total_s=evaluator.exp.objective.t_train + evaluator.exp.objective.t_score)
        t.append(time.perf_counter())
        store.record_evaluation(Evaluation(0, index, 0, theta, trial.seed, metrics={**metrics, "trace": course.trace,
                                                                                    "loss_parts": parts}, loss=loss))
        t.append(time.perf_counter())
    finally:
        timer.close()
    # NEST's calls outside the simulation, timed again on their own: reading the end weights
    # (measure's largest part), the recorders' events (the rest of measure's NEST calls) and the
    # kernel reset (most of the kernel setup).
    start = time.perf_counter()
    end_weights = evaluator.weights(net)
    read = time.perf_counter() - start
    start = time.perf_counter()  # the same weights through NEST's Python interface (the reference)
    for model in net.models.values():
        connection_weights(nest.GetConnections(synapse_model=model))
    read_pynest = time.perf_counter() - start
    learned = {ct: float(np.mean(np.abs(w))) for ct, w in end_weights.items()}
    n_plastic = sum(len(w) for w in end_weights.values())
    start = time.perf_counter()
    for recorder in net.recorders.values():
        evaluator.events(recorder)
    events = time.perf_counter() - start
    start = time.perf_counter()
    nest.ResetKernel()
    reset = time.perf_counter() - start
    setup = t[1] - t[0]
    return {"kernel setup": setup, "network build": (t[2] - t[1]) - setup, "initial weights": t[3] - t[2],
            "simulate": t[4] - t[3], "in nest.Simulate": timer.seconds, "measure + score": t[5] - t[4],
            "store": t[6] - t[5], "rate_e": metrics.get("rate_e", float("nan")), "blew_up": course.blew_up_at_s,
            "learned": learned, "end weights read": read, "end weights through PyNEST": read_pynest,
            "plastic synapses": n_plastic, "ResetKernel": reset,
            "events read": events}


def time_variant(evaluator: Evaluator, theta: list[float], trial: Trial, variant: str,
                 learned: dict[str, float]) -> tuple[float, int]:
    """nest.Simulate time of one variant (see the module's doc) in the evaluation's chunks, and its
    spikes; ``learned``: the mean |weight| the rule learned, per plastic connection type."""
    exp = evaluator.exp
    nest = evaluator.setup_kernel(trial.seed)
    spec = exp.network
    if variant in ("neurons", "+ drive", "+ static", "+ rule, eta 0"):
        spec = dataclasses.replace(spec, weights={**spec.weights, **learned})
    if variant == "neurons":
        spec = dataclasses.replace(spec, input_rate=0.0)
    plastic = {}
    if variant not in ("neurons", "+ drive", "+ static"):
        plastic = evaluator.synapse_params(theta)
        if variant == "+ rule, eta 0":
            plastic = {ct: {**params, "eta": 0.0} for ct, params in plastic.items()}
    models = {ct: evaluator.module.synapse_models[evaluator.layout.rule_of(ct).name] for ct in plastic}
    net = build_network(nest, spec, evaluator.module, plastic, trial, models=models)
    if variant in ("neurons", "+ drive"):
        net.silence()
    o = exp.objective
    chunks = 1 if variant == "one call" else int(round((o.t_train + o.t_score) / o.chunk))
    start = time.perf_counter()
    for _ in range(chunks):
        nest.Simulate(1000.0 * (o.t_train + o.t_score) / chunks)
    seconds = time.perf_counter() - start
    return seconds, sum(int(r.n_events) for r in net.recorders.values())


def split(exp: Experiment, label: str, repeats: int, per_search: int | None, process: dict | None,
          extrapolate_to_s: float | None = None) -> dict:
    module = build_module(exp)
    evaluator = Evaluator(exp, module)
    theta = vs_theta(exp)
    trial = Trial(0, 12345)
    o = exp.objective
    simulated = o.t_train + o.t_score
    print(f"\n{label}: {exp.network.n_e} E + {exp.network.n_i} I, p = {exp.network.p}, {simulated:g} s simulated in "
          f"{o.chunk:g} s chunks, {exp.search.threads} thread(s), Vogels-Sprekeler coefficients on "
          f"{', '.join(exp.rule.plastic)}; medians of {repeats}; load {os.getloadavg()[0]:.2f}", flush=True)
    runs, variants = [], {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", experiment={}, seed=1)
        time_phases(evaluator, theta, trial, store, -1)  # warm-up: first Install, caches
        for k in range(repeats):
            runs.append(time_phases(evaluator, theta, trial, store, k))
            for v in VARIANTS[k % len(VARIANTS):] + VARIANTS[:k % len(VARIANTS)]:  # rotate the order
                variants[v].append(time_variant(evaluator, theta, trial, v, runs[-1]["learned"]))
        store.close()
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key not in ("blew_up", "learned")}
    if any(r["blew_up"] for r in runs):
        print(f"  (the network ran away at {runs[0]['blew_up']} s: the simulation was cut short)")
    phases = ("kernel setup", "network build", "initial weights", "simulate", "measure + score", "store")
    total = sum(med[p] for p in phases)
    print(f"  one evaluation: {total:.3f} s (E rate {med['rate_e']:.2f} Hz)")
    for p in phases:
        print(f"    {p:34} {med[p]:8.4f} s {med[p] / total:7.1%}")
    print(f"      of the simulation, in nest.Simulate {med['in nest.Simulate']:8.4f} s {med['in nest.Simulate'] / total:7.1%}"
          f"; Python between chunks (rate check, weight sample) {med['simulate'] - med['in nest.Simulate']:.4f} s")
    print(f"      NEST calls, timed again alone: ResetKernel {1e3 * med['ResetKernel']:.1f} ms (of the kernel setup); "
          f"reading the {med['plastic synapses']:.0f} end weights {1e3 * med['end weights read']:.1f} ms "
          f"({1e6 * med['end weights read'] / max(1, med['plastic synapses']):.1f} us per synapse; of the measurement; "
          f"through PyNEST {1e3 * med['end weights through PyNEST']:.1f} ms, "
          f"{med['end weights through PyNEST'] / med['end weights read']:.1f} x as long)")
    inside = med["simulate"] / total
    print(f"  inside the simulation: {inside:.1%} of an evaluation; inside nest.Simulate {med['in nest.Simulate'] / total:.1%}"
          f" (goal >= 95 % inside the simulation: {'met' if inside >= 0.95 else 'missed'})")
    # What NEST's own calls outside the simulation leave reachable: the share inside the simulation
    # if everything else outside it (nestplast's Python, the metrics, the store) cost nothing.
    nest_calls = med["ResetKernel"] + med["network build"] + med["end weights read"] + med["events read"]
    ceiling = med["simulate"] / (med["simulate"] + nest_calls)
    print(f"  NEST's calls outside the simulation: {1e3 * nest_calls:.1f} ms (ResetKernel, the network build, the end "
          f"weights, the recorders' events {1e3 * med['events read']:.1f} ms); with nothing else outside it, the "
          f"simulation would be {ceiling:.1%} of an evaluation")
    if process is not None and per_search:
        once = process["start"] + process["imports"] + process["module"]
        print(f"  once per process: interpreter start and exit {process['start']:.2f} s (a bare `python -c pass` "
              f"{process['bare']:.2f} s), imports (nest, nestplast) {process['imports']:.2f} s, module lookup + first "
              f"Install {process['module']:.2f} s: {once:.2f} s, {once / (per_search * total + once):.1%} of a one-rank "
              f"search of {per_search} evaluations")
    sim = {v: statistics.median(s for s, _ in variants[v]) for v in VARIANTS}
    spikes = {v: statistics.median(n for _, n in variants[v]) for v in VARIANTS}
    parts = {"neuron updates": sim["neurons"], "Poisson drive": sim["+ drive"] - sim["neurons"],
             "recurrent spikes": sim["+ static"] - sim["+ drive"],
             "plasticity rule": sim["+ rule, eta 0"] - sim["+ static"],
             "learning (activity change)": sim["+ learning"] - sim["+ rule, eta 0"]}
    learned = ", ".join(f"{ct} {w:.1f} pA" for ct, w in runs[-1]["learned"].items())
    print(f"  inside nest.Simulate, by variants (nest.Simulate seconds, spikes recorded; learned mean |w|: {learned}):")
    for v in VARIANTS:
        print(f"    {v:16} {sim[v]:8.3f} s  {spikes[v]:>9.0f} spikes")
    whole = sim["+ learning"]
    for name, seconds in parts.items():
        print(f"    {name:28} {seconds:8.3f} s {seconds / whole:7.1%}")
    print(f"    (of which the {int(round(simulated / o.chunk))} chunks instead of one call: "
          f"{sim['+ learning'] - sim['one call']:.3f} s, {(sim['+ learning'] - sim['one call']) / whole:.1%})")
    result = {"total": total, **med}
    if extrapolate_to_s:
        per_s = med["in nest.Simulate"] / simulated
        full = total - med["in nest.Simulate"] + per_s * extrapolate_to_s
        inside_full = (med["simulate"] - med["in nest.Simulate"] + per_s * extrapolate_to_s) / full
        print(f"  extrapolated to {extrapolate_to_s:g} s simulated: {full:.1f} s per evaluation "
              f"({per_s:.2f} s of nest.Simulate per simulated second), {inside_full:.1%} inside the simulation")
        result["extrapolated"] = full
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--reference-seconds", type=float, default=2.0,
                        help="simulated seconds at the reference size (training 3/4, scoring 1/4)")
    parser.add_argument("--reference-threads", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--large-seconds", type=float, default=0.0,
                        help="also the default network at 4096 E + 1024 I (its in-degrees kept, as in "
                             "benchmarks/peer_brian2.py) for this many simulated seconds (half training)")
    args = parser.parse_args()

    default = experiment.default()
    build_module(default)  # compiled or cached before timing
    process = process_start(3)
    per_search = (default.search.population_size + int(default.search.evaluate_mean)) * default.trials.n * \
        default.search.max_generations
    split(default, "default experiment", args.repeats, per_search, process)
    if not args.no_reference:
        ref = experiment.load("spikes_reference")
        full_s = ref.objective.t_train + ref.objective.t_score
        short = dataclasses.replace(ref.objective, t_train=0.75 * args.reference_seconds,
                                    t_score=0.25 * args.reference_seconds, chunk=0.25 * args.reference_seconds)
        ref = dataclasses.replace(ref, objective=short,
                                  search=dataclasses.replace(ref.search, threads=args.reference_threads))
        split(ref, f"reference size ({args.reference_seconds:g} s of its {full_s:g} s)", max(1, args.repeats // 3),
              None, None, extrapolate_to_s=full_s)
    if args.large_seconds:
        net = default.network
        large = dataclasses.replace(net, n_e=4096, n_i=1024, p=round(net.p * net.n_e) / 4096)
        o = dataclasses.replace(default.objective, t_train=args.large_seconds / 2, t_score=args.large_seconds / 2)
        split(dataclasses.replace(default, network=large, objective=o), "default network at 4096 E + 1024 I",
              max(1, args.repeats // 3), None, None)
    print(f"\nload {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
