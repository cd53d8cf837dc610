"""Inference benchmark: recovery of the four ground-truth rules from recordings generated in NEST,
the robustness sweep, wall times (fits per hour), and the numpy clamped forward model against
NEST's replay of the same recording (agreement and speed-up).

    .venv/bin/python benchmarks/inference.py                 # recovery table + sweep of additive_stdp (~15 min)
    .venv/bin/python benchmarks/inference.py --sweep all     # the sweep for every rule (~40 min)
    .venv/bin/python benchmarks/inference.py --sweep none --out runs/bench-inference
    .venv/bin/python benchmarks/inference.py --closed-only   # the closed-loop fit alone (~10 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import stopping

from nestplast.analysis import write_csv
from nestplast.analysis.inference import plot_sweep
from nestplast.builder import build
from nestplast.commands.infer_demo import table
from nestplast.recovery import Degradation, recover, sweep
from nestplast.replay import replay
from nestplast.synthetic import GROUND_TRUTHS, generate
from nestplast.trajectories import ClampedTrajectories


def speed(name: str = "vogels_sprekeler", duration_ms: float = 20_000.0) -> None:
    truth = GROUND_TRUTHS[name]
    recording = generate(truth, duration_ms=duration_ms, seed=3)
    params = {**truth.params, "Wmax": 200.0}
    synapses = recording.weight_synapses
    start = recording.weights[:, 0]
    module = build(truth.rule)
    t0 = time.perf_counter()
    nest_w = replay(module, params, recording, synapses, start, recording.weight_times, delay=1.0)
    t_nest = time.perf_counter() - t0
    model = ClampedTrajectories(recording, synapses, recording.weight_times, delay=1.0)
    t0 = time.perf_counter()
    numpy_w = model.weights(truth.rule, params, start)
    t_numpy = time.perf_counter() - t0
    difference = float(np.max(np.abs(numpy_w - nest_w) / np.maximum(np.abs(nest_w), 1e-300)))
    print(f"\nforward model, {name}, {recording.n_synapses} synapses x {duration_ms / 1000:g} s: NEST replay "
          f"{t_nest:.2f} s, numpy {t_numpy:.3f} s per pass: {t_nest / t_numpy:.0f}x faster; "
          f"max relative difference {difference:.1e}; against the recorded weights: "
          f"{float(np.max(np.abs(numpy_w - recording.weights))):.1e}")


def closed(name: str = "additive_stdp", duration_ms: float = 10_000.0, trials: int = 8, generations: int = 20,
           out: Path | None = None) -> None:
    """The closed-loop fit of a recording whose background realisation the fit does not know."""
    from nestplast.closed_loop import Background, ClosedLoopFit
    from nestplast.infer import RuleChoice, fit
    from nestplast.synthetic import DEFAULT_DRIVE_RATE, DEFAULT_DRIVE_WEIGHT

    truth = GROUND_TRUTHS[name]
    recording = generate(truth, duration_ms=duration_ms, seed=3)
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": 200.0}
    background = Background(DEFAULT_DRIVE_RATE, DEFAULT_DRIVE_WEIGHT["iaf_psc_exp"])
    t0 = time.perf_counter()
    result = fit(recording, RuleChoice("taylor", truth.mask), fixed, mode="closed", trials=trials,
                 background=background, max_generations=generations, out=out or tempfile.mkdtemp())
    seconds = time.perf_counter() - t0
    # the same problem as the fit's (seed 1, 10 segments, every 5th held out): is the truth any better?
    problem = ClosedLoopFit(recording, truth.rule, fixed, background, trials=trials, n_segments=10, hold_out=5)

    def loss(theta):
        runs = [problem.outputs(problem.params(theta), t) for t in problem.trials]
        return problem.combined(*problem.errors_of([r[0] for r in runs], [r[1] for r in runs]), theta)
    print(f"\nclosed loop, {name}, {duration_ms / 1000:g} s, an independent background ({trials} trials, "
          f"{generations} generations of 8): {seconds:.0f} s")
    scale = max(abs(truth.params[n]) for n in result.names)
    for n in result.names:
        low, high = result.intervals[n]
        print(f"  {n:<12} true {truth.params[n]:>7.3g}  fitted {result.coefficients[n]:>7.3g}  "
              f"[{low:.3g}, {high:.3g}]  covered {low <= truth.params[n] <= high}  "
              f"error {abs(result.coefficients[n] - truth.params[n]) / scale:.1%} of the largest")
    print(f"  held out: R^2 of the weights {result.r2_held_out:.3f}, of the binned counts "
          f"{result.r2_activity_held_out:.3f}; count deviance explained {result.deviance_explained_held_out:.1f} %")
    names = result.names
    print(f"  loss (2 = the all-zero rule's): fitted {loss([result.coefficients[n] for n in names]):.4f}, "
          f"true rule {loss([truth.params[n] for n in names]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", default="additive_stdp", help="rule to sweep, 'all' or 'none'")
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--closed-only", action="store_true", help="only the closed-loop fit")
    args = parser.parse_args()
    if args.sweep not in (*GROUND_TRUTHS, "all", "none"):  # a KeyError after the rest of the run, 15 minutes in
        parser.error(f"--sweep: expected one of {', '.join(GROUND_TRUTHS)}, all or none, got {args.sweep!r}")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-inference-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"results (CSV, plots, the fits) in {out}", flush=True)
    if args.closed_only:
        closed(out=out / "closed")
        return

    rows, times = [], {}
    for name in GROUND_TRUTHS:
        t0 = time.perf_counter()
        rows += recover(name, Degradation(), n_bootstrap=args.bootstrap, out=tempfile.mkdtemp(dir=out, prefix=f"fit-{name}-"))[1]
        times[name] = time.perf_counter() - t0
    print("recovery at zero noise (20 s recordings, 40 inputs x 2 neurons, weights every 100 ms):")
    print(table(rows))
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.0f} s (generation in NEST + fit + {args.bootstrap} bootstrap refits): "
              f"{3600 / seconds:.0f} fits per hour on one core")
    write_csv(rows, out / "recovery.csv")
    speed()
    closed(out=out / "closed")

    names = list(GROUND_TRUTHS) if args.sweep == "all" else ([] if args.sweep == "none" else [args.sweep])
    for name in names:
        t0 = time.perf_counter()
        swept = sweep(name, n_bootstrap=args.bootstrap)
        print(f"\nrobustness sweep, {name} ({time.perf_counter() - t0:.0f} s): one degradation at a time")
        print(table(swept))
        write_csv(swept, out / f"sweep_{name}.csv")
        plot_sweep(swept, out / f"sweep_{name}.png")
    print(f"\nCSV and plots in {out}")


if __name__ == "__main__":
    sys.exit(stopping.run(main))
