"""What a compiled plasticity rule costs in NEST, against static synapses and NEST's hand-written
``vogels_sprekeler_synapse``.

The network of the toolchain notes: 4000 E + 1000 I neurons, connection probability 0.02 (fixed
in-degree, or pairwise Bernoulli), Poisson drive giving about 30 Hz, every neuron the rule's NESTML
neuron. Only I->E synapses differ between variants:

- ``static``:  static_synapse
- ``builtin``: NEST's vogels_sprekeler_synapse, eta = 0
- ``rule``:    the compiled doublet rule, eta = 0

With learning rate 0 every variant spikes identically (checked: the spike counts are printed).
Each run is a fresh process (clean memory figures), runs are interleaved over rounds (the order
rotates), and the table shows the minimum and median wall time of ``nest.Simulate`` per variant
and its CPU time (``time.process_time``: less sensitive to other processes on a shared machine,
equal to wall time on a quiet one with 1 thread), the plasticity cost (variant minus static), the
ratio rule/builtin of those times (goal <= 1.05), and the memory of the I->E synapses: NEST's
``sizeof`` of one connection times their number, and the growth of the process's resident memory
(VmRSS) across the I->E ``Connect``.

The plastic synapses are a small part of this network's work (the Poisson drive and the neuron
updates dominate), so their cost is a few percent of a run and close to the run-to-run noise:
use several rounds and read the minimum. For exact counts, run one variant's worker under
``valgrind --tool=callgrind --collect-atstart=no --toggle-collect='nest::SimulationManager::run(*'``.

    .venv/bin/python benchmarks/rule_cost.py [--scale 1.0] [--rounds 3] [--threads 1] [--t-sim 1000]

``--module DIR`` (repeatable) adds a variant ``rule@<DIR name>`` from another compiled module of
the doublet rule (a cache entry, e.g. one built from older templates), interleaved with the others.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # nestplast, also in worker processes

import stopping

from nestplast.rules import vogels_sprekeler  # noqa: E402 (after the path)

VARIANTS = ("static", "builtin", "rule")  # I->E: static_synapse, NEST's vogels_sprekeler_synapse, the compiled rule
RULE_PARAMS = list(vogels_sprekeler(10.0).values())  # tau_pre, tau_post, alpha, beta, gamma, kappa (iSTDP)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def worker(args: argparse.Namespace) -> dict:
    """One run in this process: build the network with ``args.variant`` on I->E and simulate."""
    from nestplast.builder import Module, build
    from nestplast.kernel import import_nest, install
    from nestplast.rules import get_rule

    rule = get_rule("doublet")
    module = Module.from_dir(Path(args.module_dir)) if args.module_dir else build(rule, "iaf_psc_exp")
    nest = import_nest()
    nest.ResetKernel()
    nest.set(local_num_threads=args.threads, resolution=0.1, rng_seed=args.seed)
    install(module)

    n_e, n_i = int(round(4000 * args.scale)), int(round(1000 * args.scale))
    j_e, g, delay = args.j_e, args.g, 1.5
    j_i = -g * j_e
    w_max = 10.0 * j_i  # far from the weights: with eta = 0 no clipping, same weights everywhere
    E = nest.Create(module.neuron_model, n_e)
    I = nest.Create(module.neuron_model, n_i)  # noqa: E741 (E and I populations)
    for pop in (E, I):  # the same random start for every variant
        pop.V_m = nest.random.uniform(-70.0, -55.0)
    drive = nest.Create("poisson_generator", params={"rate": args.drive_rate})
    nest.Connect(drive, E + I, syn_spec={"weight": args.drive_weight, "delay": delay})
    rec = nest.Create("spike_recorder")
    nest.Connect(E + I, rec)

    def conn(source):
        if args.conn == "fixed_indegree":
            return {"rule": "fixed_indegree", "indegree": max(1, int(round(args.p * len(source)))),
                    "allow_autapses": False}
        return {"rule": "pairwise_bernoulli", "p": args.p, "allow_autapses": False}

    nest.Connect(E, E + I, conn(E), {"synapse_model": "static_synapse", "weight": j_e, "delay": delay})
    nest.Connect(I, I, conn(I), {"synapse_model": "static_synapse", "weight": j_i, "delay": delay})

    if args.variant == "static":
        model, params = "static_synapse", {}
    elif args.variant == "builtin":
        model = "vogels_sprekeler_synapse"
        params = {"eta": 0.0, "alpha": 0.2, "tau": 20.0, "Wmax": w_max, "weight": j_i}
    else:
        model = module.synapse_model
        params = {**rule.synapse_params(RULE_PARAMS, eta=0.0, Wmax=w_max), "weight": j_i}
    nest.CopyModel(model, "ie_synapse", params)
    before = rss_kib()
    nest.Connect(I, E, conn(I), {"synapse_model": "ie_synapse", "weight": j_i, "delay": delay})
    rss_delta = rss_kib() - before
    ie = nest.GetConnections(source=I, target=E)
    n_ie = len(ie)
    sizeof = int(ie[0].get("sizeof"))

    nest.Simulate(args.t_warm)
    n_warm = rec.n_events
    start, cpu_start = time.perf_counter(), time.process_time()
    nest.Simulate(args.t_sim)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    events = rec.events
    t_end = args.t_warm + args.t_sim
    senders = events["senders"][events["times"] > args.t_warm]
    n_e_spikes = int((senders <= E[-1].global_id).sum())
    return {"variant": args.label or args.variant, "wall": wall, "cpu": cpu, "n_ie": n_ie, "sizeof": sizeof,
            "rss_delta_kib": rss_delta, "spikes": int(rec.n_events - n_warm),
            "rate_e": n_e_spikes / n_e / (args.t_sim / 1000.0),
            "rate_i": (len(senders) - n_e_spikes) / n_i / (args.t_sim / 1000.0), "t_end": t_end}


def run_one(args: argparse.Namespace, variant: str, module_dir: str | None = None, label: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--_worker", variant, "--scale", str(args.scale), "--threads", str(args.threads),
           "--t-sim", str(args.t_sim), "--t-warm", str(args.t_warm), "--conn", args.conn, "--p", str(args.p),
           "--seed", str(args.seed), "--drive-rate", str(args.drive_rate), "--drive-weight", str(args.drive_weight),
           "--j-e", str(args.j_e), "--g", str(args.g)]
    if module_dir:
        cmd += ["--_module-dir", module_dir, "--_label", label or variant]
    env = {**os.environ, "PYNEST_QUIET": "1", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--scale", type=float, default=1.0, help="network size relative to 4000 E + 1000 I")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all variants")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--t-sim", type=float, default=1000.0, help="timed biological time [ms]")
    parser.add_argument("--t-warm", type=float, default=100.0, help="untimed warm-up before it [ms]")
    parser.add_argument("--conn", choices=["fixed_indegree", "pairwise_bernoulli"], default="fixed_indegree")
    parser.add_argument("--p", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--drive-rate", type=float, default=8500.0, help="Poisson drive per neuron [Hz]")
    parser.add_argument("--drive-weight", type=float, default=25.0, help="[pA]")
    parser.add_argument("--j-e", type=float, default=30.0, help="excitatory weight [pA]")
    parser.add_argument("--g", type=float, default=5.0, help="inhibitory weight = -g * j_e")
    parser.add_argument("--variants", default="static,builtin,rule")
    parser.add_argument("--module", action="append", default=[],
                        help="extra variant: a compiled doublet module's cache folder (repeatable)")
    parser.add_argument("--json", help="also write all runs to this file")
    parser.add_argument("--_worker", metavar="VARIANT", help="run this one variant in this process and print its "
                        "JSON: what valgrind --tool=callgrind counts (README's instruction ratio)")
    parser.add_argument("--_module-dir", dest="module_dir", help=argparse.SUPPRESS)
    parser.add_argument("--_label", dest="label", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # nonsense ended in a traceback (0 neurons, a division by 0) or in NEST's C++ abort (0 threads)
    for flag, value, valid in (("--scale", args.scale, args.scale > 0), ("--t-sim", args.t_sim, args.t_sim > 0),
                               ("--t-warm", args.t_warm, args.t_warm >= 0), ("--threads", args.threads, args.threads >= 1),
                               ("--p", args.p, 0 < args.p <= 1)):
        if not valid:
            parser.error(f"{flag}: got {value}, expected {'a probability in (0, 1]' if flag == '--p' else 'a positive value'}")
    if args._worker and not args.module_dir and args._worker not in VARIANTS:
        # README's callgrind recipe with a misspelt variant measured the compiled rule under that name
        parser.error(f"--_worker: unknown variant {args._worker}; known: {', '.join(VARIANTS)}")

    if args._worker:
        args.variant = args._worker
        print(json.dumps(worker(args)))
        return 0
    # checked before any run: a misspelt variant ran the compiled rule under its name, and a bad
    # --module or --json ended in a traceback after all the runs
    if unknown := [v for v in args.variants.split(",") if v not in VARIANTS]:
        parser.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    if missing := [d for d in args.module if not Path(d).is_dir()]:
        parser.error(f"--module: no module folder {', '.join(missing)} (a compiled module's cache folder)")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        parser.error(f"--json: no folder {Path(args.json).resolve().parent} to write {args.json} into")

    from nestplast.builder import build
    from nestplast.rules import get_rule

    module = build(get_rule("doublet"), "iaf_psc_exp", quiet=False)  # compile before any timing
    print(f"rule module: {module.path}")
    plan = [(v, None, v) for v in args.variants.split(",")]
    plan += [("rule", str(Path(d).resolve()), f"rule@{Path(d).name[:8]}") for d in args.module]
    n = int(round(4000 * args.scale)) + int(round(1000 * args.scale))
    print(f"network: {n} neurons, p = {args.p} ({args.conn}), {args.threads} thread(s), "
          f"{args.t_sim:g} ms timed after {args.t_warm:g} ms warm-up, {args.rounds} round(s)")
    runs: dict[str, list[dict]] = {label: [] for _, _, label in plan}
    for r in range(args.rounds):
        order = plan[r % len(plan):] + plan[:r % len(plan)]  # rotate: no variant always first
        for variant, module_dir, label in order:
            res = run_one(args, variant, module_dir, label)
            runs[label].append(res)
            print(f"  round {r + 1}: {label:<14} {res['wall']:7.3f} s  spikes {res['spikes']}", flush=True)

    def stat(label, key, fn=min):
        return fn(x[key] for x in runs[label])

    med = statistics.median
    base = {key: (stat("static", key), stat("static", key, med)) if "static" in runs else (float("nan"),) * 2
            for key in ("wall", "cpu")}
    print()
    print("times in s of nest.Simulate: min and median over rounds; cost = variant - static (min / median);")
    print("memory of the I->E synapses: NEST's sizeof x count, and the VmRSS growth across their Connect")
    print(f"{'I->E synapse':<14}{'wall min':>9}{'med':>7}{'cpu min':>9}{'med':>7}{'cost wall':>12}{'cost cpu':>12}"
          f"{'sizeof':>7}{'n I->E':>8}{'sizeof*n':>10}{'dRSS':>9}{'spikes':>8}{'E Hz':>6}{'I Hz':>6}")
    for label in runs:
        first = runs[label][0]
        spikes = "/".join(map(str, sorted({x["spikes"] for x in runs[label]})))
        cost = {key: (stat(label, key) - base[key][0], stat(label, key, med) - base[key][1]) for key in base}
        print(f"{label:<14}{stat(label, 'wall'):9.3f}{stat(label, 'wall', med):7.3f}"
              f"{stat(label, 'cpu'):9.3f}{stat(label, 'cpu', med):7.3f}"
              f"{cost['wall'][0]:7.3f}/{cost['wall'][1]:<6.3f}{cost['cpu'][0]:7.3f}/{cost['cpu'][1]:<6.3f}"
              f"{first['sizeof']:7d}{first['n_ie']:8d}{first['sizeof'] * first['n_ie'] / 2**20:8.2f}MB"
              f"{stat(label, 'rss_delta_kib', med) / 1024:7.2f}MB{spikes:>8}{first['rate_e']:6.1f}{first['rate_i']:6.1f}")
    all_spikes = {x["spikes"] for rs in runs.values() for x in rs}
    print(f"\nspike counts identical across variants and rounds: {len(all_spikes) == 1}")
    if "builtin" in runs:
        for label in runs:
            if not label.startswith("rule"):
                continue
            for key in ("wall", "cpu"):
                ratio_min = stat(label, key) / stat("builtin", key)
                ratio_med = stat(label, key, med) / stat("builtin", key, med)
                print(f"{label}/builtin {key:>4} time: {ratio_min:.3f} (min), {ratio_med:.3f} (median); goal <= 1.05; "
                      f"plasticity cost {stat(label, key) - base[key][0]:.3f} s vs {stat('builtin', key) - base[key][0]:.3f} s (min)")
            print(f"{label}/builtin bytes per synapse: {runs[label][0]['sizeof']} vs {runs['builtin'][0]['sizeof']}; "
                  f"VmRSS growth {stat(label, 'rss_delta_kib', med) / 1024:.2f} MB vs "
                  f"{stat('builtin', 'rss_delta_kib', med) / 1024:.2f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
