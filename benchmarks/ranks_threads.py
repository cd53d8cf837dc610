"""Ranks x threads on one machine: how to split its cores between MPI ranks (each evaluating whole
tasks in its own NEST kernel, the PyPI NEST's population mode) and NEST threads per rank.

The same search (experiment, seed, population, generations) runs as R ranks x T threads for each
``--configs`` entry ``RxT`` (by default the cores it may use as ranks x threads, the ranks halved
while they divide the cores),
one after another, and is timed. Printed for each: the search loop's time (first evaluation to
the last generation's record, from the run store), evaluations per second of loop time, the mean
evaluation time (NEST's threads shorten it; ranks sharing the memory lengthen it), and the
speed-up against the first configuration. The number of threads changes NEST's random streams, so
the configurations evaluate the same candidates on other draws of the network: their share of
early aborts (printed) differs a little.

``--size large``: the default network at 4096 E + 1024 I (its in-degrees kept, as in
benchmarks/peer_brian2.py), simulating ``--seconds`` per evaluation; ``--size default``: the
default experiment as shipped.

    .venv/bin/python benchmarks/ranks_threads.py [--size large] [--configs 16x1 4x4 1x16]
        [--population-size 7] [--generations 1] [--seconds 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import stopping

from nestplast.experiment import default, show_defaults
from nestplast.queue_model import read_run


def experiment_file(size: str, seconds: float, folder: Path) -> Path:
    """The experiment as a TOML file (what ``mpiexec ... nestplast.search`` takes)."""
    exp = default()
    if size == "large":
        net = exp.network
        large = dataclasses.replace(net, n_e=4096, n_i=1024, p=round(net.p * net.n_e) / 4096)
        score = min(exp.objective.t_score, seconds / 2)
        objective = dataclasses.replace(exp.objective, t_train=seconds - score, t_score=score)
        exp = dataclasses.replace(exp, name="default-4096", network=large, objective=objective)
    path = folder / f"{exp.name}.toml"
    path.write_text(show_defaults(exp) + "\n")
    return path


def default_configs(cores: int) -> list[tuple[int, int]]:
    """``cores`` as ranks x threads, the ranks halved from ``cores`` while they divide it, most
    ranks first (16: 16 x 1, 8 x 2, 4 x 4, 2 x 8, 1 x 16)."""
    out, ranks = [], cores
    while ranks >= 1:
        if cores % ranks == 0:
            out.append((ranks, cores // ranks))
        ranks //= 2
    return out


def run_config(ranks: int, threads: int, experiment: Path, out: Path, args: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "nestplast.search", str(experiment), "--out", str(out), "--seed", "1",
           "--threads", str(threads), "--max-generations", str(args.generations), "--quiet"]
    cmd += ["--population-size", str(args.population_size)]
    if ranks > 1:
        cmd = [args.mpiexec, "-n", str(ranks)] + cmd
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def parse_config(text: str) -> tuple[int, int]:
    try:
        ranks, threads = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RANKSxTHREADS, e.g. 4x4, got {text!r}") from None
    if ranks < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"expected ranks and threads >= 1, got {text!r}")
    return ranks, threads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["default", "large"], default="large")
    parser.add_argument("--configs", type=parse_config, nargs="+", default=None,
                        help="RANKSxTHREADS each (default: the CPUs as ranks x threads, ranks halved)")
    parser.add_argument("--population-size", type=int, default=7,
                        help="(population + mean) x 2 trials tasks per generation; 7 gives 16")
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per evaluation (--size large)")
    parser.add_argument("--mpiexec", default=str(Path(sys.executable).parent / "mpiexec"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    args = parser.parse_args()
    if args.size == "large" and args.seconds <= 1.0:
        parser.error(f"--seconds: expected more than 1 s (up to 1 s scored after training), got {args.seconds:g}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # the job's
    configs = args.configs or default_configs(cores)

    base = args.keep or Path(tempfile.mkdtemp(prefix="nestplast-ranks-threads-"))
    base.mkdir(parents=True, exist_ok=True)
    experiment = experiment_file(args.size, args.seconds, base)
    print(f"ranks x threads: {experiment.stem}, population {args.population_size}, {args.generations} "
          f"generation(s), seed 1; {cores} CPUs; load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    try:
        for ranks, threads in configs:
            out = base / f"{ranks}x{threads}"
            shutil.rmtree(out, ignore_errors=True)
            wall = run_config(ranks, threads, experiment, out, args)
            run = read_run(out)
            times = [t for ts in run.tasks.values() for t in ts]
            rows.append((ranks, threads, wall, run.loop_s(), len(times), statistics.fmean(t.seconds for t in times),
                         sum(t.aborted for t in times) / len(times)))
            print(f"  {ranks} x {threads}: command {wall:.1f} s; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    print(f"\n{'ranks':>5} {'threads':>7} {'command s':>9} {'loop s':>7} {'evaluations':>11} {'per s':>6} "
          f"{'mean evaluation s':>17} {'aborted':>7} {'speed-up':>8}")
    reference = rows[0][4] / rows[0][3]
    for ranks, threads, wall, loop, n, mean, aborted in rows:
        print(f"{ranks:5d} {threads:7d} {wall:9.1f} {loop:7.2f} {n:11d} {n / loop:6.2f} {mean:17.3f} {aborted:7.0%} "
              f"{n / loop / reference:8.2f}")
    print(f"(speed-up: evaluations per second of loop time against {rows[0][0]} x {rows[0][1]})")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
