"""Network-parallel mode: how much faster one evaluation of a large network gets when every MPI
rank (or thread) takes part in it. Needs a NEST built with MPI (``jobs/build-nest-mpi.sh``).

One evaluation (Vogels-Sprekeler iSTDP on I->E, 4000 E + 1000 I, p = 0.02, 2 s of training and
1 s of scoring by default) is timed on 1 rank x 1 thread (the reference), 1 rank x 2 threads and
2 ranks x 1 thread, each in its own ``mpiexec`` run, interleaved and repeated; medians reported,
with the speed-up over the reference and the excitatory rate each run reached. The last row is 2
ranks with NEST's compressed spike delivery on (``[search] compressed_spikes = true``): faster, but
it makes a simulation depend on the one before it in the process, so nestplast's default is off
on several ranks; the row prices that.

    source PREFIX/venv/bin/activate && python benchmarks/network_mode.py [--n-e 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import stopping
from options import at_least

from nestplast.rules import vogels_sprekeler

VOGELS_SPREKELER_10HZ = list(vogels_sprekeler(10.0).values())  # doublet parameter order
CONFIGS = [(1, 1, False), (1, 2, False), (2, 1, False), (2, 1, True)]  # ranks, threads, compressed spikes
# (the setting acts only on several ranks: on one, NEST's default holds)


def evaluate_once(n_e: int, threads: int, t_train: float, compressed: bool) -> None:
    """Worker: one evaluation, every rank taking part; rank 0 prints its timing as JSON."""
    from mpi4py import MPI

    from nestplast import experiment
    from nestplast.evaluate import Evaluator
    from nestplast.networks import Trial
    from nestplast.runs import build_module
    from nestplast.tasks import Task

    comm = MPI.COMM_WORLD
    exp = experiment.parse({
        "rule": {"name": "doublet", "plastic": ["IE"], "fixed": {"eta": 1.0}},
        "network": {"n_e": n_e, "n_i": n_e // 4, "p": 0.02, "w_max": {"IE": 300.0}},
        "objective": {"target_rate": 10.0, "t_train": t_train, "t_score": 1.0, "rate_band": [0.0, 1000.0]},
        "search": {"threads": threads, "compressed_spikes": compressed}}, "<network_mode benchmark>")
    module = build_module(exp)
    evaluator = Evaluator(exp, module, rank=comm.Get_rank(), comm=comm if comm.Get_size() > 1 else None)
    comm.Barrier()
    start = time.perf_counter()
    result = evaluator(Task(0, 0, Trial(0, 7), tuple(VOGELS_SPREKELER_10HZ)))
    wall = time.perf_counter() - start
    if comm.Get_rank() == 0:
        print(json.dumps({"wall_s": wall, "status": result.status, "rate_e": result.metrics.get("rate_e")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--n-e", type=int, default=4000, help="excitatory neurons (inhibitory: a quarter)")
    parser.add_argument("--t-train", type=float, default=2.0, help="seconds of training before scoring")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--worker-threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-compressed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_threads is not None:
        evaluate_once(args.n_e, args.worker_threads, args.t_train, args.worker_compressed)
        return

    from nestplast.kernel import nest_has_mpi

    if not nest_has_mpi():
        raise SystemExit("this NEST has no MPI inside (the PyPI wheel): build one with jobs/build-nest-mpi.sh PREFIX "
                         "and run this script from PREFIX/venv")
    print(f"one evaluation: {args.n_e} E + {args.n_e // 4} I, p = 0.02, {args.t_train:g} s + 1 s, "
          f"{os.cpu_count()} cores")
    walls = {config: [] for config in CONFIGS}
    rates = {}
    for _ in range(args.repeats):
        for config in CONFIGS:
            ranks, threads, compressed = config
            command = ["mpiexec", "-n", str(ranks), sys.executable, __file__, "--n-e", str(args.n_e),
                       "--t-train", str(args.t_train), "--worker-threads", str(threads)]
            command += ["--worker-compressed"] if compressed else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
            timing = json.loads(done.stdout.strip().splitlines()[-1])
            walls[config].append(timing["wall_s"])
            rates[config] = timing["rate_e"]
    reference = statistics.median(walls[CONFIGS[0]])
    print(f"{'ranks':>5} {'threads':>7} {'compressed spikes':>17} {'wall s (median)':>16} {'speed-up':>9} {'E rate Hz':>10}")
    for config in CONFIGS:
        ranks, threads, compressed = config
        wall = statistics.median(walls[config])
        setting = "on" if compressed else "off" if ranks > 1 else "NEST default"
        print(f"{ranks:5d} {threads:7d} {setting:>17} {wall:16.2f} {reference / wall:9.2f} "
              f"{rates[config]:10.2f}")
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(stopping.run(main))
