"""The filter's throughput and acceptance: a short run of an experiment (default the short
reference, ``families_short``, with fewer rounds and simulations), then from its store:

- simulations per hour per core: simulations / (the run's wall time x ranks), i.e. everything
  included (NEST, the flow's and the classifier's training between rounds, the store);
- the same for the simulations alone (the sum of their own wall times), and the share of the run
  spent training;
- acceptance per round (each round's own bounds), the family's size and its distinct rules;
- with ``--recheck N``: the fraction of accepted rules that pass again on N fresh trials.

    .venv/bin/python benchmarks/families.py [--rounds 3] [--per-round 60] [--experiment families_short]
    .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/families.py      # 2 ranks (cores)

Timings on a shared machine are noisy: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import stopping
from options import at_least

from nestplast import experiment
from nestplast.analysis.families import text
from nestplast.families import family, recheck, run_filter
from nestplast.parallel import world
from nestplast.store import RunStore


def main() -> None:
    # the doc up to its commands: its first paragraph ends in a list
    p = argparse.ArgumentParser(description=__doc__.split("\n\n    ")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="families_short")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-round", type=int, default=60, help="simulations per round")
    p.add_argument("--recheck", type=at_least(0), default=0, help="fresh trials per accepted rule (0: no re-check)")
    p.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    args = p.parse_args()
    comm = world()
    ranks = 1 if comm is None else comm.Get_size()
    root = comm is None or comm.Get_rank() == 0

    exp = experiment.load(args.experiment)
    exp.filter.rounds, exp.filter.simulations_per_round = args.rounds, args.per_round
    try:  # the options as the experiment checks them, before any folder is made
        experiment.validate(exp)
    except experiment.ExperimentError as err:
        p.error(f"--rounds/--per-round: {err}")
    tmp = None
    out = args.out
    if out is not None and (out / "results.sqlite").exists():  # the filter's StoreError came as a traceback
        p.error(f"--out: {out} holds a run already (this benchmark measures a new one): give another folder")
    if out is None:
        tmp = tempfile.mkdtemp(prefix="nestplast-families-") if root else None
        out = Path(comm.bcast(tmp, root=0) if comm is not None else tmp) / "run"
    try:
        measure(args, exp, out, comm, ranks, root)
    finally:  # a failure or Ctrl-C left the temporary run behind
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(args, exp, out: Path, comm, ranks: int, root: bool) -> None:
    started = time.perf_counter()
    run_filter(exp, out, comm=comm)
    wall = time.perf_counter() - started
    if root:
        store = RunStore.open(out, read_only=True)
        evaluations = store.evaluations()
        store.close()
        busy = sum(e.wall_time_s for e in evaluations)
        n = len(evaluations)
        print(f"{args.experiment}: {args.rounds} rounds x {args.per_round} rules x {exp.trials.n} trials on {ranks} "
              f"rank(s); load average {os.getloadavg()[0]:.2f}")
        print(f"simulations: {n} in {wall:.0f} s: {3600 * n / wall / ranks:.0f} per hour per core "
              f"(simulating alone {3600 * n / busy:.0f} per hour per core; training and the rest "
              f"{100 * max(0.0, 1 - busy / (wall * ranks)):.0f} % of the run)")
        print(f"blow-ups {sum(e.status == 'blowup' for e in evaluations)}, "
              f"failures {sum(e.failed for e in evaluations)}")
        print(text(family(out)))
    if args.recheck:
        result = recheck(out, args.recheck, comm=comm)
        if result is not None:
            print(f"re-check on {args.recheck} fresh trials: {sum(result.passed)} of {len(result.passed)} pass "
                  f"again ({100 * result.fraction:.0f} %)")


if __name__ == "__main__":
    sys.exit(stopping.run(main))
