"""Search throughput: evaluations per second of ``python -m nestplast.search`` on 1 and on more
MPI ranks (``mpiexec -n R``), the parallel efficiency, and a check that every run recorded the
same evaluations (same candidates, seeds, statuses and losses).

Each configuration runs as a subprocess on the default experiment (or ``--experiment``) with a
fixed number of generations and the same seed; runs are interleaved and repeated, and medians
reported. Rates are read from the run's SQLite store (``RUN_DIR/results.sqlite``):

- ``loop``: evaluations / (time of the last generation's record - creation of the store), i.e.
  the search loop without interpreter start-up, imports and the module lookup;
- ``steady``: evaluations of generations 1.. / (last generation's record - generation 0's record),
  without the first evaluation's NEST import and without generation 0 (mostly early blow-ups);
- ``command``: evaluations / wall time of the whole command (start-up included).

Parallel efficiency = rate on R ranks / (R x rate on 1 rank). ``busy`` is the sum of the
evaluations' own wall times on each rank divided by the loop time: what is missing to 100 % is
waiting (the generation barrier, the dispatcher) and start-up.

    .venv/bin/python benchmarks/search_throughput.py [--generations 3] [--ranks 1 2] [--repeats 3]

Timings on a shared machine are noisy: the 1-minute load average is printed with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import stopping
from options import at_least


def run_search(ranks: int, generations: int, seed: int, out: Path, experiment: str | None,
               mpiexec: str) -> dict:
    """Run one search as a subprocess; return its timings and its evaluations."""
    cmd = [sys.executable, "-m", "nestplast.search"] + ([experiment] if experiment else []) + [
        "--out", str(out), "--seed", str(seed), "--max-generations", str(generations), "--quiet"]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"search on {ranks} rank(s) failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    db = sqlite3.connect(out / "results.sqlite")
    created = db.execute("SELECT created FROM run").fetchone()[0]
    gens = dict(db.execute("SELECT generation, created FROM generations ORDER BY generation").fetchall())
    rows = db.execute("SELECT generation, candidate, trial, theta, seed, loss, status, wall_time_s, rank, created "
                      "FROM evaluations").fetchall()
    db.close()
    evaluations = {(g, c, t): (theta, s, loss, status) for g, c, t, theta, s, loss, status, _, _, _ in rows}
    # rank 0 records its own evaluations as it finishes them: from its last one in a generation to
    # the generation's record it only waits for the other ranks (the generation barrier)
    tail = 0.0
    if ranks > 1:
        for g, done in gens.items():
            own = [row[9] for row in rows if row[0] == g and row[8] == 0]
            tail += done - max(own) if own else 0.0
    loop_s = max(gens.values()) - created
    later = [r for r in rows if r[0] >= 1]
    steady_s = gens[max(gens)] - gens[0] if len(gens) > 1 else float("nan")
    busy = {}
    for r in range(ranks):
        busy[r] = sum(row[7] for row in rows if row[8] == r) / loop_s
    return {"ranks": ranks, "wall_s": wall, "loop_s": loop_s, "n": len(rows), "generations": len(gens),
            "rate_loop": len(rows) / loop_s, "rate_steady": len(later) / steady_s if len(gens) > 1 else float("nan"),
            "rate_command": len(rows) / wall, "eval_mean_s": statistics.fmean(r[7] for r in rows),
            "busy": busy, "per_rank": {r: sum(row[8] == r for row in rows) for r in range(ranks)},
            "load": load, "evaluations": evaluations, "tail": tail / loop_s}


def compare(reference: dict, other: dict) -> tuple[bool, str]:
    """Whether two runs recorded the same evaluations (keys, parameters, seeds, statuses, losses)."""
    a, b = reference["evaluations"], other["evaluations"]
    if a.keys() != b.keys():
        return False, f"different evaluations recorded: {len(a.keys() ^ b.keys())} keys differ"
    bad, max_diff = 0, 0.0
    for key, (theta, seed, loss, status) in a.items():
        theta2, seed2, loss2, status2 = b[key]
        same_loss = loss == loss2 or (loss is None and loss2 is None)
        if theta != theta2 or seed != seed2 or status != status2 or not same_loss:
            bad += 1
        if loss is not None and loss2 is not None:
            max_diff = max(max_diff, abs(loss - loss2))
    ok = bad == 0
    return ok, f"{len(a) - bad}/{len(a)} identical (theta, seed, status, loss), max |d loss| = {max_diff:.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=at_least(2), default=3,
                        help="generations per search (at least 2: the steady rate is that of generations 1..)")
    parser.add_argument("--ranks", type=at_least(1), nargs="+", default=[1, 2], help="rank counts (the first is the reference)")
    parser.add_argument("--repeats", type=at_least(1), default=3, help="interleaved repetitions of every rank count")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--experiment", default=None, help="experiment file or shipped name (default: built-in)")
    parser.add_argument("--mpiexec", default=str(Path(sys.executable).parent / "mpiexec"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    args = parser.parse_args()
    if 1 not in args.ranks:
        parser.error("--ranks must include 1 (the reference for the efficiency)")
    if any(r > 1 for r in args.ranks) and not shutil.which(args.mpiexec):
        parser.error(f"no mpiexec at {args.mpiexec} (--mpiexec)")

    # the searches run in their run folder's parent: paths given relative to here, made absolute
    if args.experiment is not None and Path(args.experiment).exists():
        args.experiment = str(Path(args.experiment).resolve())
    base = (args.keep or Path(tempfile.mkdtemp(prefix="nestplast-throughput-"))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    print(f"search throughput: {args.experiment or 'default experiment'}, {args.generations} generations, seed "
          f"{args.seed}, ranks {args.ranks}, {args.repeats} interleaved repeats; {os.cpu_count()} CPUs "
          f"(shared machine: timings are noisy)", flush=True)
    runs: dict[int, list[dict]] = {r: [] for r in args.ranks}
    try:
        for rep in range(args.repeats):
            order = args.ranks[rep % len(args.ranks):] + args.ranks[:rep % len(args.ranks)]  # rotate
            for ranks in order:
                out = base / f"r{ranks}-rep{rep}"
                shutil.rmtree(out, ignore_errors=True)
                res = run_search(ranks, args.generations, args.seed, out, args.experiment, args.mpiexec)
                runs[ranks].append(res)
                print(f"  rep {rep} ranks {ranks}: {res['n']} evals, command {res['wall_s']:6.2f} s, loop "
                      f"{res['loop_s']:6.2f} s, {res['rate_loop']:5.2f} eval/s (loop), load {res['load']:.2f}, "
                      f"evals per rank {res['per_rank']}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    med = {r: {k: statistics.median(x[k] for x in runs[r]) for k in
               ("wall_s", "loop_s", "rate_loop", "rate_steady", "rate_command", "eval_mean_s")} for r in args.ranks}
    print()
    print(f"{'ranks':>5} {'evals':>5} {'command s':>9} {'loop s':>7} {'eval/s loop':>11} {'eval/s steady':>13} "
          f"{'eval/s cmd':>10} {'s/eval':>7} {'rank 0 tail wait':>16}  busy per rank (loop)")
    for r in args.ranks:
        busy = " ".join(f"{statistics.median(x['busy'][k] for x in runs[r]):.0%}" for k in range(r))
        m = med[r]
        tail = "" if r == 1 else f"{statistics.median(x['tail'] for x in runs[r]):.0%}"
        print(f"{r:>5} {runs[r][0]['n']:>5} {m['wall_s']:>9.2f} {m['loop_s']:>7.2f} {m['rate_loop']:>11.2f} "
              f"{m['rate_steady']:>13.2f} {m['rate_command']:>10.2f} {m['eval_mean_s']:>7.3f} {tail:>16}  {busy}")
    print("(medians over the repeats; s/eval = mean wall time of one evaluation as it recorded it; rank 0 tail wait = "
          "share of the loop that rank 0 waited at the ends of generations for the other ranks)")
    print()
    for r in args.ranks:
        if r == 1:
            continue
        line = []
        for key, name in (("rate_loop", "loop"), ("rate_steady", "steady"), ("rate_command", "command")):
            eff = med[r][key] / (r * med[1][key])
            paired = [b[key] / (r * a[key]) for a, b in zip(runs[1], runs[r])]
            line.append(f"{name} {eff:.2f} (repeats {min(paired):.2f}-{max(paired):.2f})")
        print(f"parallel efficiency on {r} ranks = rate({r}) / ({r} x rate(1)): " + "; ".join(line))
        busy = statistics.median(statistics.fmean(x["busy"].values()) for x in runs[r])
        busy1 = statistics.median(x["busy"][0] for x in runs[1])
        slow = med[1]["eval_mean_s"] / med[r]["eval_mean_s"]
        print(f"  ~ (mean busy on {r} ranks / busy on 1 = {busy / busy1:.2f}: waiting) x (s/eval on 1 / s/eval on {r} "
              f"= {slow:.2f}: each evaluation slower, cores shared) = {busy / busy1 * slow:.2f}")
    print()
    reference = runs[args.ranks[0]][0]
    all_ok = True
    for r in args.ranks:
        for rep, res in enumerate(runs[r]):
            if res is reference:
                continue
            ok, text = compare(reference, res)
            all_ok &= ok
            print(f"identical to ranks {args.ranks[0]} rep 0: ranks {r} rep {rep}: {'yes' if ok else 'NO'} - {text}")
    compared = sum(len(runs[r]) for r in args.ranks) - 1
    print(f"identical evaluations across all runs: {'yes' if all_ok else 'NO'}" if compared else
          "identical evaluations: nothing to compare (one run; give --repeats 2 or more ranks)")
    losses = sorted(v[2] for v in reference["evaluations"].values() if v[2] is not None)
    print(f"reference run: {reference['n']} evaluations, statuses "
          f"{json.dumps(Counter(v[3] for v in reference['evaluations'].values()))}, best loss {losses[0]:.4f}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(stopping.run(main))
