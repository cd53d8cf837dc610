"""What the external drive and the NESTML neuron cost: one evaluation of the default experiment
(250 neurons, 5 s, I->E learning with the doublet rule) with ``network.drive = "poisson_generator"``
and with ``"internal"``; the same network with static synapses only, made of the rule's NESTML
neuron or of NEST's built-in ``iaf_psc_exp`` (both driven by the poisson_generator; it runs away to
about 160 Hz, so recurrent events weigh more than in an evaluation); and its 250 neurons alone
(unconnected, never firing) without a drive and with each drive: the neuron update and the
drive's own cost per neuron and step.

Each run is a fresh process; runs are interleaved over rounds (the order rotates). The table gives
the minimum and median over rounds of the time in ``nest.Simulate`` (wall and CPU: CPU time is less
sensitive to other processes on a shared machine) and the E rate, then the ratios.

    .venv/bin/python benchmarks/drive.py [--rounds 3] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import stopping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # nestplast, also in worker processes

VOGELS_SPREKELER_10HZ = [20.0, 20.0, -0.4, 0.0, 1.0, 1.0]  # doublet: tau_pre, tau_post, alpha, beta, gamma, kappa
VARIANTS = ("eval:poisson_generator", "eval:internal", "static:nestml", "static:builtin",
            "alone:nestml", "alone:nestml+poisson_generator", "alone:nestml+internal",
            "alone:builtin", "alone:builtin+poisson_generator")


def experiment(drive: str):
    from nestplast import experiment as X

    data = {"network": {"drive": drive}}
    return X.parse(data, "<benchmark>")


def timed_simulate(nest, seconds: float) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    nest.Simulate(1000.0 * seconds)
    return time.perf_counter() - start, time.process_time() - cpu


def worker(variant: str, seed: int) -> dict:
    from nestplast.builder import build
    from nestplast.evaluate import Evaluator
    from nestplast.networks import Trial, build_network

    kind, what = variant.split(":")
    neuron, _, drive = what.partition("+")
    exp = experiment(what if kind == "eval" else drive or "poisson_generator")
    module = build(exp.module_rules(), exp.rule.neuron)
    evaluator = Evaluator(exp, module)
    seconds = exp.objective.t_train + exp.objective.t_score
    if kind == "eval":  # the evaluation as the search runs it: chunks, recorder checks, weight samples
        net = evaluator.build(VOGELS_SPREKELER_10HZ, Trial(0, seed))
        from nestplast.kernel import import_nest

        nest = import_nest()
        start, cpu = time.perf_counter(), time.process_time()
        evaluator.simulate(net)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    elif kind == "alone":  # the network's neurons, unconnected and never firing: update and drive only
        nest = evaluator.setup_kernel(seed)
        model = "iaf_psc_exp" if neuron == "builtin" else module.neuron_model
        pop = nest.Create(model, exp.network.n_e + exp.network.n_i, params={"V_th": 1e12})
        if drive == "poisson_generator":
            generator = nest.Create("poisson_generator", params={"rate": exp.network.input_rate})
            nest.Connect(generator, pop, syn_spec={"weight": exp.network.input_weight, "delay": exp.network.delay})
        elif drive == "internal":
            pop.set(drive_rate=exp.network.input_rate, drive_weight=exp.network.input_weight)
        wall, cpu = timed_simulate(nest, seconds)
        return {"variant": variant, "wall": wall, "cpu": cpu, "rate_e": 0.0}
    else:  # static synapses only: the neurons and the drive
        nest = evaluator.setup_kernel(seed)
        if what == "nestml":
            net = build_network(nest, exp.network, module, {}, Trial(0, seed))
        else:
            net = builtin_network(nest, exp.network)
        wall, cpu = timed_simulate(nest, seconds)
    n_e = len(net.populations["E"])
    rate = nest.GetStatus(net.recorders["E"], "n_events")[0] / n_e / (exp.objective.t_score if kind == "eval" else seconds)
    return {"variant": variant, "wall": wall, "cpu": cpu, "rate_e": rate}


def builtin_network(nest, spec, ie_synapse: tuple[str, dict] | None = None):
    """The recurrent network of :func:`nestplast.networks.build_network` made of NEST's own models:
    ``iaf_psc_exp`` neurons, a ``poisson_generator``, static synapses, and on I->E ``ie_synapse``
    (a built-in synapse model and its parameters, e.g. ``vogels_sprekeler_synapse``) if given."""
    from nestplast.networks import Network, signed

    pops = {"E": nest.Create("iaf_psc_exp", spec.n_e, params=spec.neuron_params),
            "I": nest.Create("iaf_psc_exp", spec.n_i, params=spec.neuron_params)}
    drive = nest.Create("poisson_generator", params={"rate": spec.input_rate})
    nest.Connect(drive, pops["E"] + pops["I"], syn_spec={"weight": spec.input_weight, "delay": spec.delay})
    plastic = {}
    for ct in ("EE", "EI", "IE", "II"):
        source, target = pops[ct[0]], pops[ct[1]]
        indegree = max(1, int(round(spec.p * len(source))))
        syn_spec = {"synapse_model": "static_synapse", "weight": signed(ct, spec.weights[ct]), "delay": spec.delay}
        if ct == "IE" and ie_synapse is not None:
            syn_spec = {**syn_spec, "synapse_model": ie_synapse[0], **ie_synapse[1]}
        nest.Connect(source, target, {"rule": "fixed_indegree", "indegree": indegree, "allow_autapses": False},
                     syn_spec=syn_spec)
        if syn_spec["synapse_model"] != "static_synapse":
            plastic[ct] = nest.GetConnections(source, target, synapse_model=syn_spec["synapse_model"])
    recorders = {name: nest.Create("spike_recorder") for name in pops}
    for name, pop in pops.items():
        nest.Connect(pop, recorders[name])
    return Network(populations=pops, recorders=recorders, plastic=plastic, w_max={})


def run_one(variant: str, seed: int) -> dict:
    env = {**os.environ, "PYNEST_QUIET": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--_worker", variant, "--seed", str(seed)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all variants")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        print(json.dumps(worker(args._worker, args.seed)))
        return 0
    # a misspelt variant ran another model under its name (static:NESTML, NEST's built-in network)
    if unknown := [v for v in args.variants.split(",") if v not in VARIANTS]:
        parser.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")

    from nestplast.builder import build

    exp = experiment("internal")  # one module serves both drives: compile it before any timing
    build(exp.module_rules(), exp.rule.neuron, quiet=False)
    plan = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in plan}
    for r in range(args.rounds):
        for variant in plan[r % len(plan):] + plan[:r % len(plan)]:  # rotate: no variant always first
            res = run_one(variant, args.seed)
            runs[variant].append(res)
            print(f"  round {r + 1}: {variant:<32} {res['wall']:6.3f} s wall {res['cpu']:6.3f} s cpu  "
                  f"E {res['rate_e']:5.1f} Hz", flush=True)

    def stat(variant: str, key: str, fn=min) -> float:
        return fn(x[key] for x in runs[variant])

    med = statistics.median
    print(f"\ntime in nest.Simulate (5 s of network time), min / median over {args.rounds} rounds")
    print(f"{'variant':<32}{'wall min':>9}{'med':>7}{'cpu min':>9}{'med':>7}{'E Hz':>7}")
    for v in plan:
        print(f"{v:<32}{stat(v, 'wall'):9.3f}{stat(v, 'wall', med):7.3f}{stat(v, 'cpu'):9.3f}"
              f"{stat(v, 'cpu', med):7.3f}{stat(v, 'rate_e', med):7.1f}")
    for a, b, what in (("eval:internal", "eval:poisson_generator", "evaluation, internal / poisson_generator drive"),
                       ("static:nestml", "static:builtin", "static network, NESTML neuron / built-in iaf_psc_exp"),
                       ("alone:nestml", "alone:builtin", "neuron update alone, NESTML / built-in")):
        if a in runs and b in runs:
            print(f"{what}: wall {stat(a, 'wall') / stat(b, 'wall'):.3f} (min), "
                  f"{stat(a, 'wall', med) / stat(b, 'wall', med):.3f} (median); "
                  f"cpu {stat(a, 'cpu') / stat(b, 'cpu'):.3f} (min), {stat(a, 'cpu', med) / stat(b, 'cpu', med):.3f} (median)")
    # the drive alone: the time it adds to the same neurons without it (CPU, min over rounds)
    steps = 250 * 5000 / 0.1  # neurons x steps of the default experiment
    for neuron, drive in (("nestml", "poisson_generator"), ("nestml", "internal"), ("builtin", "poisson_generator")):
        with_drive, without = f"alone:{neuron}+{drive}", f"alone:{neuron}"
        if with_drive in runs and without in runs:
            cost = stat(with_drive, "cpu") - stat(without, "cpu")
            print(f"drive {drive} into {neuron} neurons: {cost:.3f} s cpu, {1e9 * cost / steps:.1f} ns per neuron and step")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
