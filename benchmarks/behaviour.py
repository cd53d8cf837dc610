"""Inference from behaviour: recovery of a three-factor rule with active forgetting from the choices
of simulated animals in the two-choice task (3 blocks of 80 trials, reward probabilities (0.2, 0.8),
(0.9, 0.1), (0.2, 0.8)), the held-out log-likelihood with and without the forgetting term, and how
recovery depends on the number of animals and trials.

    .venv/bin/python benchmarks/behaviour.py                # the forgetting table (~40 min on one core)
    .venv/bin/python benchmarks/behaviour.py --sweep        # and the data-size sweep (~1.5 h more)
    .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/behaviour.py --sweep-only   # the sweep alone, 2 ranks
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import stopping

from nestplast import infer_choices
from nestplast.choice_task import ChoiceTask
from nestplast.parallel import world

ETA = 5.0
TRUE = {"th_pre_010": 1.0, "forget": 0.1}  # per presynaptic spike x reward; forgetting per second


def fit_pair(data, generations: int, hold_out: int, seed: int = 1):
    task = infer_choices.task_for(data)
    with tempfile.TemporaryDirectory(prefix="nestplast-behaviour-") as tmp:  # the fits' stores: every run left them
        with_forget = infer_choices.fit(data, "pre:010,forget", {"eta": ETA}, task=task, max_generations=generations,
                                        seed=seed, hold_out=hold_out, out=Path(tmp) / "with")
        without = infer_choices.fit(data, "pre:010", {"eta": ETA}, task=task, max_generations=generations, seed=seed,
                                    hold_out=hold_out, out=Path(tmp) / "without")
    return with_forget, without


def row(label: str, true: dict, fits, seconds: float) -> None:
    with_forget, without = fits
    comparison = infer_choices.compare(with_forget, without)
    cells = []
    for name in with_forget.names:
        low, high = with_forget.intervals[name]
        cells.append(f"{name} {with_forget.coefficients[name]:.3g} [{low:.3g}, {high:.3g}] (true {true[name]:g})")
    print(f"{label}: {'; '.join(cells)}")
    # no interval from one held-out animal (compare() says why); it crashed here on None
    interval = ("no interval" if comparison["low"] is None else f"[{comparison['low']:+.4f}, {comparison['high']:+.4f}]")
    print(f"    held-out log-likelihood: {with_forget.ll_held_out_bits:.4f} bits per trial with forgetting, "
          f"{without.ll_held_out_bits:.4f} without: difference {comparison['bits_per_trial']:+.4f} "
          f"{interval} over {comparison['animals']} animals; {seconds:.0f} s"
          + (f" ({comparison['warning']})" if comparison.get("warning") else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--animals", type=int, default=20, help="simulated animals (default 20)")
    parser.add_argument("--generations", type=int, default=20, help="CMA-ES generations of each fit (default 20)")
    # the comparison's own advice names it (a few animals leave one held out, and no interval)
    parser.add_argument("--hold-out", type=int, default=4, help="every N-th animal held out (default 4; 0: none)")
    parser.add_argument("--sweep", action="store_true", help="also the data-size sweep")
    parser.add_argument("--sweep-only", action="store_true")
    parser.add_argument("--replicates", type=int, default=3, help="datasets per size in the sweep")
    args = parser.parse_args()
    if args.sweep_only:
        sweep(args.generations, args.replicates, world())
        return
    for label, forget in (("data with forgetting", TRUE["forget"]), ("data without forgetting", 0.0)):
        t0 = time.perf_counter()
        data = infer_choices.generate({**TRUE, "forget": forget, "eta": ETA}, n_animals=args.animals, seed=3)
        row(label, {**TRUE, "forget": forget}, fit_pair(data, args.generations, args.hold_out),
            time.perf_counter() - t0)
    if args.sweep:
        sweep(args.generations, args.replicates)


def sweep(generations: int, replicates: int, comm=None) -> None:
    """Recovery of the forgetting rule against the number of animals and trials: ``replicates``
    datasets (other animals, other seeds) per size, each fitted with the term; the median and worst
    relative error of each coefficient and how many 95 % intervals cover the truth."""
    rank = 0 if comm is None else comm.Get_rank()
    if rank == 0:
        print(f"\nrecovery against data size (data with forgetting, {replicates} datasets per size; a quarter of "
              f"the animals held out; {generations} generations):", flush=True)
    for animals in (8, 16, 32):
        for per_block in (40, 80):
            t0 = time.perf_counter()
            errors = {name: [] for name in TRUE}
            covered = dict.fromkeys(TRUE, 0)
            for replicate in range(replicates):
                data = infer_choices.generate({**TRUE, "eta": ETA}, n_animals=animals, seed=100 + replicate,
                                              task=ChoiceTask(trials_per_block=per_block))
                with tempfile.TemporaryDirectory(prefix="nestplast-behaviour-") as tmp:
                    fit = infer_choices.fit(data, "pre:010,forget", {"eta": ETA}, task=infer_choices.task_for(data),
                                            max_generations=generations, out=Path(tmp) if rank == 0 else None,
                                            comm=comm)
                if fit is None:  # another rank
                    continue
                for name in TRUE:
                    low, high = fit.intervals[name]
                    errors[name].append(abs(fit.coefficients[name] - TRUE[name]) / abs(TRUE[name]))
                    covered[name] += low <= TRUE[name] <= high
            if rank == 0:
                cells = [f"{name}: error median {np.median(errors[name]):.0%}, worst {max(errors[name]):.0%}, "
                         f"covered {covered[name]}/{replicates}" for name in TRUE]
                print(f"  {animals:2d} animals x {3 * per_block} trials: {'; '.join(cells)}; "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(stopping.run(main))
