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

``--size large`` counts the same neurons, in-degrees and rule at 4096 E + 1024 I
(``peer_brian2.py``'s large size), where the time goes to cache misses rather than instructions.
``--cache`` has callgrind simulate the caches as well and prints, per neuron step, the data reads
that miss the first-level cache (D1, 32 KiB) and the last level (LL, modelled as a core's own
1 MiB cache), by group and in all: as exact as the instruction count, where a change that removes
a cache miss shows in no instruction count and in wall times only within their spread.

    .venv/bin/python benchmarks/instructions.py [--seconds 1] [--size default|large] [--cache]

Needs valgrind (Debian: valgrind). Each network takes 2-4 minutes (valgrind runs the child about
50 times slower; about 100 times with ``--cache``): at the large size give ``--seconds 0.2``.
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

import stopping

sys.path.insert(0, str(Path(__file__).parent))

SIZES = {"default": (200, 50), "large": (4096, 1024)}  # (N_E, N_I), in-degrees kept (peer_brian2.py)
EVENTS = {"Ir": "instructions", "D1mr": "D1 read misses", "DLmr": "LL read misses"}  # callgrind's names
# The caches --cache simulates (size in bytes, ways, line): a core's first level, and as the last
# level a core's own second-level cache (1 MiB, as on this machine's AMD EPYC cores); what misses
# it comes from a cache shared with other cores, or from memory, tens of ns away. Fixed, so that
# counts compare across machines (valgrind's own guess took this machine's L3 for 256 MiB).
D1, LL = "32768,8,64", "1048576,8,64"
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


def inner(network: str, size_name: str, seconds: float) -> None:
    """The child (under valgrind): build uncounted, simulate counted, print what was simulated."""
    from drive import builtin_network
    from peer_brian2 import Size, experiment_for, nestplast_evaluator, vogels_sprekeler_nest

    from nestplast.kernel import import_nest
    from nestplast.networks import Trial

    size = Size(*SIZES[size_name], seconds)
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


def count(network: str, size_name: str, seconds: float, events: list[str],
          folder: Path) -> tuple[dict, dict[str, int], dict[str, dict[str, int]]]:
    """(what the child simulated, each event's count in nest.Simulate, each event's count per group)."""
    out = folder / f"{network}.callgrind"
    cache = ["--cache-sim=yes", f"--D1={D1}", f"--LL={LL}"] if len(events) > 1 else []
    child = subprocess.run(["valgrind", "--tool=callgrind", *cache, f"--callgrind-out-file={out}",
                            "--toggle-collect=nest::SimulationManager::run*", sys.executable, __file__,
                            "--inner", network, size_name, str(seconds)], capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"the {network} network failed under valgrind:\n{child.stderr[-2000:]}")
    simulated = json.loads(child.stdout.strip().splitlines()[-1])
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                                f"--show={','.join(events)}", f"--sort={events[0]}", str(out)],
                               capture_output=True, text=True, check=True).stdout
    number = r"([\d,]+|\.)(?: \([\s\d.]+%\))?\s+"  # a count ("." for none), with its share where printed
    totals, groups = {}, {g: dict.fromkeys(events, 0) for g, _ in GROUPS}
    for line in annotated.splitlines():
        match = re.match(r"\s*" + number * len(events) + r"(.*)", line)
        if not match:
            continue
        counts = [0 if n == "." else int(n.replace(",", "")) for n in match.groups()[:-1]]
        function = match[len(events) + 1]
        if function.startswith("PROGRAM TOTALS"):
            totals = dict(zip(events, counts))
            continue
        group = groups[next(g for g, pattern in GROUPS if re.search(pattern, function))]
        for event, n in zip(events, counts):
            group[event] += n
    return simulated, totals, groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="simulated seconds (from the network's start)")
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--size", choices=list(SIZES), default="default",
                        help="the default experiment's network, or 4096 E + 1024 I with its in-degrees")
    parser.add_argument("--cache", action="store_true",
                        help="simulate the caches too: first- and last-level data read misses")
    parser.add_argument("--inner", nargs=3, metavar=("NETWORK", "SIZE", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], args.inner[1], float(args.inner[2]))
        return 0
    events = list(EVENTS) if args.cache else ["Ir"]
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    per_step = {}
    with tempfile.TemporaryDirectory() as folder:
        for network in args.networks:
            simulated, totals, groups = count(network, args.size, args.seconds, events, Path(folder))
            steps = simulated["neuron_steps"]
            per_step[network] = totals["Ir"] / steps
            spikes = ", ".join(f"{k} {v}" for k, v in simulated["spikes"].items())
            print(f"\n{NETWORKS[network]}, {args.size} size: {args.seconds:g} s simulated, "
                  f"{steps / 1e6:.2f} M neuron steps, spikes {spikes}")
            for event in events:
                total = totals[event]
                print(f"  nest.Simulate: {total / 1e6:.2f} M {EVENTS[event]}, {total / steps:.3f} per neuron step")
                for group, counted in groups.items():
                    n = counted[event]
                    print(f"    {group:34s} {n / steps:8.3f} per neuron step ({100 * n / max(total, 1):4.1f} %)")
    if len(per_step) == 2:
        print(f"\nnestplast / NEST's own models, instructions per neuron step: "
              f"{per_step['nestplast'] / per_step['nest']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
