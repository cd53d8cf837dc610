"""Population mode on many ranks: the work queue's model (nestplast.queue_model) validated against
measured runs, its predictions at 8 to 1024 ranks, and a sizing table.

1. Measured: searches of the default experiment on 1 rank and on more (``--ranks``: 1 and 2 by
   default; on a machine with more cores e.g. ``--ranks 1 2 4 8 16``), the same seed, generations
   and population (``--population-size``), so the same evaluations; or ``--runs RUN_DIR ...`` from
   earlier runs (one of them on 1 rank).
2. Validation, for every run on more than one rank:
   - the model fed with the run's own evaluation times against its measured loop time (the
     queue alone: dispatch, rank 0's share, the generation barrier);
   - the model fed with the 1-rank run's times: predicted vs measured parallel efficiency; the
     difference is each evaluation being slower on many ranks (cores shared with the other ranks:
     memory bandwidth, turbo clocks and, on a shared machine, other jobs), which the model leaves
     out, printed beside it;
   - the real queue (nestplast.parallel under mpiexec) with tasks of one measured generation's
     times (scaled by ``--scale``), and on more than 3 ranks also with a generation of 4 tasks per
     rank drawn from the run's times: measured vs modelled time and rank of every task. The tasks
     busy-wait where every rank has a CPU and sleep on more ranks than CPUs (``--queue-ranks``:
     2, 3, 8 and 16 by default), which checks the queue's logic, not the cores' contention.
3. Predicted efficiency at 1, 2, 8, 64, 256 and 1024 ranks, for the default experiment (its
   measured generations: (8 + mean) x 2 trials = 18 tasks) and the reference experiment
   (``spikes_reference``: (10 + mean) x 10 trials = 110 tasks, times drawn from the default run's,
   i.e. the same share of early aborts and the same spread relative to a full evaluation: its own
   cannot be measured on this machine); for parallel.py as it is, as it was before the queue
   model (every worker filled to two in turn, rank 0 evaluating whenever it had looked at the
   results), a dedicated rank 0, and an oracle that hands out the longest task first.
4. A sizing table: population size and trials per candidate that fill a number of ranks.

Efficiency = time evaluating / (ranks x time): the share of the ranks' time spent evaluating;
measured, rate(R) / (R x rate(1)) as in benchmarks/search_throughput.py.

    .venv/bin/python benchmarks/scaling.py [--generations 4] [--ranks 1 2 4 8] [--population-size P]
                                           [--runs RUN_DIR ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import stopping
from options import at_least

from nestplast.queue_model import (
    MeasuredRun,
    longest_first,
    measured_efficiency,
    overheads,
    read_run,
    sample_generations,
    schedule_generation,
    schedule_run,
)
from nestplast.store import RunStore
from nestplast.tasks import Evaluation

RANKS = (1, 2, 8, 64, 256, 1024)
POLICIES = {  # name -> schedule options
    "now": {},
    "before": {"root": "always", "breadth_first": False},
    "dedicated 0": {"root": "never"},
    "longest 1st": {"order": "longest"},
}

# Run under mpiexec by validate_queue(): the real work queue with tasks that take the given
# seconds, busy-waiting (each rank on a core of its own) or sleeping (more ranks than cores: a
# sleeping task leaves its core to the others, as a rank on a core of its own would). A first
# generation of empty tasks opens every rank's connections, as a search's first generation does.
QUEUE_SCRIPT = """
import json, sys, time
from mpi4py import MPI
from nestplast.parallel import Transport
seconds, sleep = json.loads(sys.argv[1]), sys.argv[2] == "sleep"
def evaluate(i):
    if i is not None:
        start = time.perf_counter()
        if sleep:
            time.sleep(seconds[i])
        while time.perf_counter() - start < seconds[i]:
            pass
    return (i, MPI.COMM_WORLD.Get_rank())
transport = Transport(MPI.COMM_WORLD)
if transport.is_worker:
    transport.serve(evaluate)
else:
    transport.map([None] * (4 * transport.size), evaluate, lambda result: None)
    start = time.perf_counter()
    results = transport.map(list(range(len(seconds))), evaluate, lambda result: None)
    print(json.dumps({"seconds": time.perf_counter() - start, "ranks": [r for _, r in results]}))
    transport.close()
"""


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def run_search(ranks: int, generations: int, out: Path, mpiexec: str, population: int | None = None) -> float:
    cmd = [sys.executable, "-m", "nestplast.search", "--out", str(out), "--seed", "1",
           "--max-generations", str(generations), "--quiet"]
    if population is not None:
        cmd += ["--population-size", str(population)]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def record_cost(run: MeasuredRun, n: int = 128, burst: int = 1) -> float:
    """Seconds rank 0 takes to record one result in a run store (SQLite, synchronous=FULL), when
    results arrive one at a time (``burst`` 1: a disk sync each) or ``burst`` together (one sync)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", experiment={}, seed=1)
        start = time.perf_counter()
        for k in range(n):
            store.record_evaluation(Evaluation(0, k, 0, [0.1] * 3, 7, metrics={"rate_trace": [1.0] * 10}, loss=1.0),
                                    commit=False)
            if (k + 1) % burst == 0:
                store.commit()
        store.commit()
        cost = (time.perf_counter() - start) / n
        store.close()
    return cost


def schedule(generations: list[list[float]], ranks: int, overhead: float, order: str = "given", **options):
    """``options``: rank 0's recording costs (``result_s``, ``commit_s``) and the queue's policy."""
    if order == "longest":
        generations = [longest_first(g) for g in generations]
    return schedule_run(generations, ranks, generation_s=overhead, **options)


def validate_queue(seconds: list[float], ranks: int, mpiexec: str, sleep: bool = False) -> tuple[float, list[int]]:
    """The real queue's time for one generation of tasks taking ``seconds``, and each task's rank."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "queue.py"
        script.write_text(QUEUE_SCRIPT)
        proc = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, str(script), json.dumps(seconds),
                               "sleep" if sleep else "busy"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"queue check on {ranks} ranks failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["seconds"], out["ranks"]


def sizing_rows(pool: list[float], ranks: int, trials: int, generations: int, seed: int, population: int,
                costs: dict | None = None) -> list[tuple]:
    """The experiment's population and the populations (besides the mean) whose tasks fill
    ``ranks`` ranks in k = 1, 2, 4 waves: (population, tasks per generation, efficiency,
    generation time in units of the longest evaluation)."""
    populations = sorted({max(2, math.ceil(k * ranks / trials) - 1) for k in (1, 2, 4)} | {population})
    rows = []
    for p in populations:
        tasks = (p + 1) * trials
        gens = sample_generations(pool, tasks, generations, seed)
        s = schedule_run(gens, ranks, **(costs or {}))
        rows.append((p, tasks, s.efficiency, s.makespan_s / generations / max(pool)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--ranks", type=at_least(1), nargs="+", default=[1, 2],
                        help="rank counts of the measured searches (1 among them)")
    parser.add_argument("--population-size", type=int, default=None, help="of the measured searches")
    parser.add_argument("--runs", type=Path, nargs="+", help="existing runs of one search instead (one on 1 rank)")
    parser.add_argument("--scale", type=float, default=0.5, help="time scale of the real-queue check's tasks")
    parser.add_argument("--samples", type=int, default=40, help="generations drawn for the reference and sizing")
    parser.add_argument("--queue-ranks", type=int, nargs="+", default=[2, 3, 8, 16],
                        help="rank counts of the real-queue check (tasks sleep on more ranks than CPUs)")
    parser.add_argument("--mpiexec", default=str(Path(sys.executable).parent / "mpiexec"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    args = parser.parse_args()
    if args.runs is None and (1 not in args.ranks or len(set(args.ranks)) < 2):
        parser.error(f"--ranks: expected 1 and at least one more rank count, got {args.ranks}")

    print(f"scaling of the population mode; {os.cpu_count()} CPUs (shared machine: timings are noisy); {load()}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="nestplast-scaling-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        dirs = list(args.runs or ())
        for ranks in ([] if args.runs else sorted(set(args.ranks))):
            dirs.append(base / f"r{ranks}")
            shutil.rmtree(dirs[-1], ignore_errors=True)
            wall = run_search(ranks, args.generations, dirs[-1], args.mpiexec, args.population_size)
            print(f"  measured: default experiment, {args.generations} generations on {ranks} rank(s): command "
                  f"{wall:.1f} s; {load()}", flush=True)
        runs = {}
        for d in dirs:
            run = read_run(d)
            runs[run.ranks] = run
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if 1 not in runs or len(runs) < 2:
        raise SystemExit(f"--runs: expected a 1-rank run and one on more ranks, got runs on {sorted(runs)} rank(s)")
    one, many = runs[1], [runs[r] for r in sorted(runs) if r > 1]

    overhead = overheads(one)
    alone, in_burst = record_cost(one), record_cost(one, burst=64)
    # rank 0 records each result (result_s) and commits each burst that arrived together once (commit_s)
    costs = {"result_s": in_burst, "commit_s": max(0.0, alone - in_burst)}
    mean1 = statistics.fmean(d for g in one.durations() for d in g)
    aborted = sum(t.aborted for ts in one.tasks.values() for t in ts) / sum(map(len, one.tasks.values()))
    slower = "; ".join(f"{run.ranks} ranks {statistics.fmean(d for g in run.durations() for d in g) / mean1:.2f}x"
                       for run in many)
    print(f"\n1-rank run: {sum(map(len, one.tasks.values()))} evaluations in {len(one.tasks)} generations, "
          f"{aborted:.0%} aborted early; mean evaluation {mean1:.3f} s (on more ranks: {slower}); "
          f"rank 0 between generations {overhead * 1000:.0f} ms; recording a result {alone * 1000:.2f} ms alone (a "
          f"commit each), {in_burst * 1000:.3f} ms in a burst of 64 (one commit)")

    print("\nvalidation (loop = first evaluation's start to the last generation's record):")
    for run in many:
        own = schedule(run.durations(), run.ranks, overhead, **costs)
        print(f"  {run.ranks} ranks, the model fed with the run's own times: loop {own.makespan_s:.2f} s modelled, "
              f"{run.loop_s():.2f} s measured ({own.makespan_s / run.loop_s() - 1:+.1%})")
        for g in sorted(run.tasks):
            modelled = schedule_generation(run.durations()[g], run.ranks, **costs).makespan_s + overhead
            print(f"    generation {g}: {modelled:6.2f} s modelled, {run.span_s(g):6.2f} s measured")
    for run in many:
        from_one = schedule(one.durations(), run.ranks, overhead, **costs)
        predicted = one.loop_s() / (run.ranks * from_one.makespan_s)
        ratio = mean1 / statistics.fmean(d for g in run.durations() for d in g)
        print(f"  efficiency on {run.ranks} ranks: modelled from the 1-rank times {predicted:.2f} (queue only); "
              f"measured {measured_efficiency(one, run):.2f}; modelled x (1-rank / {run.ranks}-rank evaluation "
              f"time = {ratio:.2f}) = {predicted * ratio:.2f}")
    gen = max(one.tasks, key=lambda g: sum(one.durations()[g]))
    pool = [d for g in one.durations() for d in g]
    for ranks in args.queue_ranks:
        sleep = ranks > (os.cpu_count() or 1)
        generations = {f"generation {gen}'s times": one.durations()[gen]}
        if ranks > 3:  # a generation that fills every rank 4 times, drawn from the run's times
            generations[f"{4 * ranks} drawn times"] = sample_generations(pool, 4 * ranks, 1, seed=ranks)[0]
        for label, times in generations.items():
            seconds = [d * args.scale for d in times]
            wall, where = validate_queue(seconds, ranks, args.mpiexec, sleep=sleep)
            model = schedule_generation(seconds, ranks)
            same = sum(a == b for a, b in zip(where, model.assigned))
            print(f"  real queue (nestplast.parallel), {ranks} ranks, {'sleeping' if sleep else 'busy-waiting'} tasks = "
                  f"{label} x {args.scale}: {wall:.2f} s measured, {model.makespan_s:.2f} s modelled "
                  f"({wall / model.makespan_s - 1:+.1%}); {same}/{len(seconds)} tasks on the modelled rank; {load()}",
                  flush=True)

    tasks = len(one.durations()[0])
    cases = {f"default ({tasks} tasks/generation, measured)": one.durations(),
             "reference (110 tasks/generation, drawn)": sample_generations(pool, 110, args.samples)}
    print(f"\nmodelled efficiency (with rank 0's measured overheads; {'/'.join(POLICIES)}):")
    print(f"  {'experiment':42} " + " ".join(f"{r:>26}" for r in RANKS))
    for name, gens in cases.items():
        cells = []
        for r in RANKS:
            values = [schedule(gens, r, overhead, **costs, **opts).efficiency if r > 1 or not opts.get("root") == "never"
                      else math.nan for opts in POLICIES.values()]
            cells.append("/".join(f"{v:.2f}" for v in values))
        print(f"  {name:42} " + " ".join(f"{c:>26}" for c in cells))
    print("  (now: nestplast.parallel as it is; before: before the queue model; dedicated 0: rank 0 only hands out; "
          "longest 1st: now, with an oracle ordering the tasks longest first)")

    print("\nsizing (model, parallel.py as it is; evaluation times drawn from the default run; a generation's time "
          "in units of the longest evaluation): the default experiment with rank 0's recording of the results "
          f"({in_burst * 1000:.3f} ms each, {costs['commit_s'] * 1000:.2f} ms a commit), the reference with evaluations "
          "of minutes (recording negligible)")
    print(f"  {'experiment':10} {'ranks':>5} {'trials':>6} {'population (+ mean)':>20} {'tasks':>6} {'efficiency':>10} "
          f"{'generation time':>15}")
    for name, trials, population, cost in (("default", 2, 8, costs), ("reference", 10, 10, None)):
        for ranks in (8, 64, 256, 1024):
            for p, tasks, eff, gen_time in sizing_rows(pool, ranks, trials, args.samples, 1, population, cost):
                print(f"  {name:10} {ranks:>5} {trials:>6} {p:>20} {tasks:>6} {eff:>10.2f} {gen_time:>15.2f}")
    gens = sample_generations(pool, 110, args.samples, 1)
    cells = []
    for ranks in (28, 37, 55, 64, 110):
        s = schedule_run(gens, ranks)
        cells.append(f"{ranks} ranks {s.efficiency:.2f} ({s.makespan_s / args.samples / max(pool):.2f})")
    print("  the reference's 110 tasks on fewer ranks, efficiency (generation time): " + "; ".join(cells))
    print(f"\n{load()}")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
