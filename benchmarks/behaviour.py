"""Inference from behaviour: recovery of a three-factor rule with active forgetting from the choices
of simulated animals in the two-choice task (3 blocks of 80 trials, reward probabilities (0.2, 0.8),
(0.9, 0.1), (0.2, 0.8)), the held-out log-likelihood with and without the forgetting term, and how
recovery depends on the number of animals and trials.

    .venv/bin/python benchmarks/behaviour.py                # the forgetting table (~40 min on one core)
    .venv/bin/python benchmarks/behaviour.py --sweep        # and the data-size sweep (~1 h more)
    .venv/bin/python benchmarks/behaviour.py --sweep-only --generations 12
"""

from __future__ import annotations

import argparse
import tempfile
import time

from nestplast import infer_choices
from nestplast.choice_task import ChoiceTask

ETA = 5.0
TRUE = {"th_pre_010": 1.0, "forget": 0.1}  # per presynaptic spike x reward; forgetting per second


def fit_pair(data, generations: int, seed: int = 1):
    task = infer_choices.task_for(data)
    with_forget = infer_choices.fit(data, "pre:010,forget", {"eta": ETA}, task=task, max_generations=generations,
                                    seed=seed, out=tempfile.mkdtemp())
    without = infer_choices.fit(data, "pre:010", {"eta": ETA}, task=task, max_generations=generations, seed=seed,
                                out=tempfile.mkdtemp())
    return with_forget, without


def row(label: str, true: dict, fits, seconds: float) -> None:
    with_forget, without = fits
    comparison = infer_choices.compare(with_forget, without)
    cells = []
    for name in with_forget.names:
        low, high = with_forget.intervals[name]
        cells.append(f"{name} {with_forget.coefficients[name]:.3g} [{low:.3g}, {high:.3g}] (true {true[name]:g})")
    print(f"{label}: {'; '.join(cells)}")
    print(f"    held-out log-likelihood: {with_forget.ll_held_out_bits:.4f} bits per trial with forgetting, "
          f"{without.ll_held_out_bits:.4f} without: difference {comparison['bits_per_trial']:+.4f} "
          f"[{comparison['low']:+.4f}, {comparison['high']:+.4f}] over {comparison['animals']} animals; {seconds:.0f} s",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--animals", type=int, default=20)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--sweep", action="store_true", help="also the data-size sweep")
    parser.add_argument("--sweep-only", action="store_true")
    args = parser.parse_args()
    if args.sweep_only:
        sweep(args.generations)
        return
    for label, forget in (("data with forgetting", TRUE["forget"]), ("data without forgetting", 0.0)):
        t0 = time.perf_counter()
        data = infer_choices.generate({**TRUE, "forget": forget, "eta": ETA}, n_animals=args.animals, seed=3)
        row(label, {**TRUE, "forget": forget}, fit_pair(data, args.generations), time.perf_counter() - t0)
    if args.sweep:
        sweep(args.generations)


def sweep(generations: int) -> None:
    """Recovery of the forgetting term against the number of animals and trials (fits with it only)."""
    print("\nrecovery against data size (data with forgetting; a quarter of the animals held out):")
    for animals in (8, 16, 32):
        for per_block in (40, 80):
            t0 = time.perf_counter()
            data = infer_choices.generate({**TRUE, "eta": ETA}, n_animals=animals, seed=4,
                                          task=ChoiceTask(trials_per_block=per_block))
            fit = infer_choices.fit(data, "pre:010,forget", {"eta": ETA}, task=infer_choices.task_for(data),
                                    max_generations=generations, out=tempfile.mkdtemp())
            cells = []
            for name in fit.names:
                low, high = fit.intervals[name]
                error = abs(fit.coefficients[name] - TRUE[name]) / abs(TRUE[name])
                cells.append(f"{name} {fit.coefficients[name]:.3g} [{low:.3g}, {high:.3g}] error {error:.0%} "
                             f"covered {low <= TRUE[name] <= high}")
            print(f"  {animals:2d} animals x {3 * per_block} trials: {'; '.join(cells)}; "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
