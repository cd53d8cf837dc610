"""Instructions that ``nest.Simulate`` executes per neuron and time step, counted by valgrind's
callgrind: exact and repeatable where wall times on a shared machine vary by 30 % from run to run
(``peer_brian2.py``), so that a change to the generated neuron can be judged by a few percent.

Two networks of the default experiment's size, each simulated for the same time from the same
state: nestplast's evaluation (the NESTML neuron with its own Poisson drive, the doublet rule with
the Vogels-Sprekeler coefficients), and the same network from NEST's own hand-written models
(``iaf_psc_exp``, ``poisson_generator``, ``vogels_sprekeler_synapse``), the reference. Only
``nest.Simulate`` is counted (``--toggle-collect``); the build runs uncounted under valgrind.
Printed: each network's instructions per neuron step in all, and in its functions that cost
most, grouped by what they do.

    .venv/bin/python benchmarks/instructions.py [--seconds 1]

Needs valgrind (Debian: valgrind). Each network takes 2-4 minutes (valgrind runs the child about
50 times slower).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

NETWORKS = {"nestplast": "nestplast's evaluation (NESTML neuron with its own drive, doublet rule)",
            "nest": "NEST's own models (iaf_psc_exp, poisson_generator, vogels_sprekeler_synapse)"}
GROUPS = [  # (group, how a function of it is recognised in callgrind_annotate's line); first match wins
    ("neuron update (with its drive)", r"_neuron__with_\w+::update\(|nest::iaf_psc_exp::update\("),
    ("drive (poisson_generator)", r"poisson_generator|poisson_distribution|gsl_ran|random|rng"),
    ("spike received", r"_neuron__with_\w+::handle\(|nest::iaf_psc_exp::handle\(|on_receive_block"),
    ("post-spike history", r"get_history"),
    ("synapses (static, plastic) and the rule", r"_synapse|libm\.so|e_exp|w_exp"),
    ("NEST spike delivery and the rest", r"."),
]


def inner(network: str, seconds: float) -> None:
    """The child (under valgrind): build uncounted, simulate counted, print what was simulated."""
    from drive import builtin_network
    from peer_brian2 import Size, experiment_for, nestplast_evaluator, vogels_sprekeler_nest

    from nestplast.kernel import import_nest
    from nestplast.networks import Trial

    size = Size(200, 50, seconds)
    nest = import_nest()
    if network == "nestplast":
        exp, _, evaluator, theta = nestplast_evaluator(size, "internal")
        evaluator.setup_kernel(12345)
        net = evaluator.build(theta, Trial(0, 12345))
    else:
        exp = experiment_for(size)
        nest.ResetKernel()
        nest.SetKernelStatus({"resolution": exp.network.resolution, "rng_seed": 12345})
        net = builtin_network(nest, exp.network, ("vogels_sprekeler_synapse", vogels_sprekeler_nest(exp)))
    nest.Simulate(1000.0 * seconds)
    neurons = sum(len(p) for name, p in net.populations.items() if name in net.recorders)
    spikes = {name: r.n_events for name, r in net.recorders.items()}
    print(json.dumps({"neuron_steps": neurons * round(1000.0 * seconds / exp.network.resolution), "spikes": spikes}))


def count(network: str, seconds: float, folder: Path) -> tuple[dict, int, dict[str, int]]:
    """(what the child simulated, instructions in nest.Simulate, instructions per group)."""
    out = folder / f"{network}.callgrind"
    child = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            "--toggle-collect=nest::SimulationManager::run*", sys.executable, __file__,
                            "--inner", network, str(seconds)], capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"the {network} network failed under valgrind:\n{child.stderr[-2000:]}")
    simulated = json.loads(child.stdout.strip().splitlines()[-1])
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
                               capture_output=True, text=True, check=True).stdout
    total, groups = 0, dict.fromkeys((g for g, _ in GROUPS), 0)
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)", line)
        if not match:
            continue
        n, function = int(match[1].replace(",", "")), match[2]
        if function.startswith("PROGRAM TOTALS"):
            total = n
            continue
        groups[next(g for g, pattern in GROUPS if re.search(pattern, function))] += n
    return simulated, total, groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="simulated seconds (from the network's start)")
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--inner", nargs=2, metavar=("NETWORK", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], float(args.inner[1]))
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    per_step = {}
    with tempfile.TemporaryDirectory() as folder:
        for network in args.networks:
            simulated, total, groups = count(network, args.seconds, Path(folder))
            steps = simulated["neuron_steps"]
            per_step[network] = total / steps
            spikes = ", ".join(f"{k} {v}" for k, v in simulated["spikes"].items())
            print(f"\n{NETWORKS[network]}: {args.seconds:g} s simulated, {steps / 1e6:.2f} M neuron steps, "
                  f"spikes {spikes}")
            print(f"  nest.Simulate: {total / 1e6:.1f} M instructions, {total / steps:.1f} per neuron step")
            for group, n in groups.items():
                print(f"  {group:34s} {n / steps:6.1f} per neuron step ({100 * n / total:4.1f} %)")
    if len(per_step) == 2:
        print(f"\nnestplast / NEST's own models, instructions per neuron step: "
              f"{per_step['nestplast'] / per_step['nest']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
