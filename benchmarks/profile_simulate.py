"""Where ``nest.Simulate`` spends one evaluation's time, function by function: a sampling profile
(Linux ``perf``) of the simulation alone, grouped by what each function does, with the cost of
each unit of work. It shows what bounds one evaluation against Brian2 C++ (``peer_brian2.py``),
which updates neurons and delivers spikes in flat arrays.

The network is the default experiment's, or the same neurons, in-degrees and rule at 4096 E +
1024 I (``peer_brian2.py``'s large size), with the Vogels-Sprekeler coefficients and the neuron's
own drive. It is built in a child process; ``perf record`` attaches once the build is done and
is stopped once ``nest.Simulate`` returns, so that imports, build and counting are left out.
Groups, by function name (the NESTML neuron and synapse are one module):

- ``neuron update``: the neuron's ``update`` (membrane, synaptic currents, the drive's Poisson
  draw, reading the spike buffer) and its ``on_receive`` blocks;
- ``spike received``: the neuron's ``handle`` of a spike (adding it to the spike buffer);
- ``post-spike history``: ``get_history__``, the postsynaptic spikes a plastic synapse reads at
  each of its presynaptic spikes (the paired neuron keeps them, as NEST's ``ArchivingNode`` does);
- ``plastic synapse``: the rule's ``send`` and its connector;
- ``static synapses``: NEST's connectors of ``static_synapse``;
- ``NEST spike delivery``: the rest of NEST's kernel (routing spikes, the event);
- ``exp() of the traces``: libm's ``exp``, which the synapse calls to decay its traces;
- ``Python, numpy, OS``: what runs besides (interpreter, numpy's threads, the OS kernel); its
  largest functions are named.

Per unit: the neuron update per neuron and time step, a received spike per event, the history
and plastic synapse per delivery to a plastic synapse (events counted exactly: every sender's
spikes x its out-degree).

    .venv/bin/python benchmarks/profile_simulate.py [--sizes default large] [--seconds 2] [--default-seconds 25]

Needs ``perf`` (Debian: linux-perf) and permission to attach to a process of one's own
(``/proc/sys/kernel/perf_event_paranoid`` <= 2).
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import stopping
from options import at_least

sys.path.insert(0, str(Path(__file__).parent))

GROUPS = [  # (group, how a function of it is recognised in perf's "dso<TAB>symbol" line); first match wins
    ("post-spike history", r"::get_history__"),
    ("spike received", r"_neuron\w*::handle\b"),
    ("neuron update", r"_neuron\w*::(update|on_receive_block_\w+)\b"),
    ("plastic synapse", r"_synapse__with_\w+|Connector<nest::\w+_synapse__with_"),
    ("static synapses", r"static_synapse"),
    ("NEST spike delivery", r"nest::|nestkernel|module\.so"),
    ("exp() of the traces", r"libm\.so"),
    ("Python, numpy, OS", r"."),
]


def inner(size_name: str, seconds: float) -> None:
    """The child: build, say so, wait for the profiler, simulate, print what was simulated."""
    from peer_brian2 import Size, nestplast_evaluator

    from nestplast.kernel import import_nest
    from nestplast.networks import Trial

    size = {"default": Size(200, 50, seconds), "large": Size(4096, 1024, seconds)}[size_name]
    exp, _, evaluator, theta = nestplast_evaluator(size, "internal")
    net = evaluator.build(theta, Trial(0, 12345))
    nest = import_nest()
    print("built", flush=True)
    sys.stdin.readline()  # the profiler is attached
    start = time.perf_counter()
    nest.Simulate(1000.0 * seconds)
    wall = time.perf_counter() - start
    print("simulated", flush=True)
    sys.stdin.readline()  # the profiler has stopped: what follows is not profiled
    # spikes per neuron, and every sender's spikes x its out-degree to neurons (not to the recorders)
    ids = {name: net.node_ids(name) for name in net.recorders}
    events = {name: evaluator.events(r)[0].astype(int) for name, r in net.recorders.items()}
    spikes = np.bincount(np.concatenate(list(events.values())), minlength=max(i.max() for i in ids.values()) + 1)
    neurons = functools.reduce(operator.add, (net.populations[name] for name in net.recorders))
    received = int(spikes[np.asarray(nest.GetConnections(source=neurons, target=neurons).source)].sum())
    plastic = sum(int(spikes[np.asarray(c.source)].sum()) for c in net.plastic.values())
    steps = round(1000.0 * seconds / exp.network.resolution)
    print(json.dumps({"wall": wall, "neuron_steps": len(neurons) * steps, "received": received, "plastic": plastic,
                      "rates": {name: e.size / len(ids[name]) / seconds for name, e in events.items()}}), flush=True)


def profile(size_name: str, seconds: float, folder: Path) -> tuple[dict, dict[str, float]]:
    """(what the child simulated, percent of the samples per group)."""
    child = subprocess.Popen([sys.executable, __file__, "--inner", size_name, str(seconds)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if child.stdout.readline().strip() != "built":
        raise SystemExit(f"the {size_name} network did not build")
    data = folder / f"{size_name}.perf"
    perf = subprocess.Popen(["perf", "record", "-F", "1999", "-o", str(data), "-p", str(child.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # for perf to attach
    child.stdin.write("go\n")
    child.stdin.flush()
    if child.stdout.readline().strip() != "simulated":
        raise SystemExit(f"the {size_name} network did not simulate")
    perf.send_signal(signal.SIGINT)  # perf record stops and writes its data
    _, err = perf.communicate(timeout=120)
    child.stdin.write("go\n")
    child.stdin.flush()
    counts = json.loads(child.stdout.readline())
    child.wait()
    if not data.is_file():  # (perf stopped by SIGINT exits non-zero)
        raise SystemExit(f"perf record failed: {err.strip()}")
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                             "--sort", "dso,sym", "-t", "\t"], capture_output=True, text=True, check=True).stdout
    shares = dict.fromkeys((g for g, _ in GROUPS), 0.0)
    besides = []
    for line in report.splitlines():
        if line.startswith("#") or "%" not in line:
            continue
        percent, rest = line.split("%", 1)
        function = " ".join(part.strip() for part in rest.split("\t"))
        group = next(g for g, pattern in GROUPS if re.search(pattern, function))
        shares[group] += float(percent)
        if group == GROUPS[-1][0]:
            besides.append((float(percent), function.split("] ")[-1]))
    counts["besides"] = sorted(besides, reverse=True)[:3]
    return counts, shares


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=["default", "large"], default=["default", "large"])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="simulated seconds at the large size (from the start of an evaluation)")
    parser.add_argument("--default-seconds", type=at_least(0.1, float), default=25.0,
                        help="simulated seconds at the default size (its 5 s take a tenth of a second: too few samples)")
    parser.add_argument("--inner", nargs=2, metavar=("SIZE", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], float(args.inner[1]))
        return 0
    if shutil.which("perf") is None:
        print("needs Linux perf (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        for size_name in args.sizes:
            seconds = args.default_seconds if size_name == "default" else args.seconds
            counts, shares = profile(size_name, seconds, Path(folder))
            wall = counts["wall"]
            rates = ", ".join(f"{k} {v:.1f} Hz" for k, v in counts["rates"].items())
            print(f"\n{size_name}: nest.Simulate of {seconds:g} s took {wall:.2f} s ({wall / seconds:.2f} s per "
                  f"simulated second; {rates})")
            print(f"  {counts['neuron_steps'] / 1e6:.1f} M neuron steps, {counts['received'] / 1e6:.2f} M spikes "
                  f"received, {counts['plastic'] / 1e6:.2f} M of them at plastic synapses")
            per_unit = {"neuron update": ("neuron step", counts["neuron_steps"]),
                        "spike received": ("spike", counts["received"]),
                        "post-spike history": ("plastic delivery", counts["plastic"]),
                        "plastic synapse": ("plastic delivery", counts["plastic"]),
                        "static synapses": ("static delivery", counts["received"] - counts["plastic"]),
                        "NEST spike delivery": ("spike", counts["received"])}
            print(f"  {'':22s} {'share':>6s}  {'seconds':>7s}  per unit")
            for group, percent in shares.items():
                spent = wall * percent / 100
                unit, n = per_unit.get(group, ("", 0))
                cost = f"{1e9 * spent / n:6.1f} ns per {unit}" if n else ""
                if group == GROUPS[-1][0]:
                    cost = ", ".join(f"{name[:24]} {p:.1f} %" for p, name in counts["besides"])
                print(f"  {group:22s} {percent:5.1f} %  {spent:7.3f}  {cost}")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
