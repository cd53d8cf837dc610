"""Inference benchmark: recovery of the four ground-truth rules from recordings generated in NEST,
the robustness sweep, wall times (fits per hour), and the numpy clamped forward model against
NEST's replay of the same recording (agreement and speed-up).

    .venv/bin/python benchmarks/inference.py                 # recovery table + sweep of additive_stdp (~15 min)
    .venv/bin/python benchmarks/inference.py --sweep all     # the sweep for every rule (~40 min)
    .venv/bin/python benchmarks/inference.py --sweep none --out runs/bench-inference
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from nestplast.analysis import write_csv
from nestplast.analysis.inference import plot_sweep
from nestplast.build import build
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", default="additive_stdp", help="rule to sweep, 'all' or 'none'")
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-inference-"))
    out.mkdir(parents=True, exist_ok=True)

    rows, times = [], {}
    for name in GROUND_TRUTHS:
        t0 = time.perf_counter()
        rows += recover(name, Degradation(), n_bootstrap=args.bootstrap, out=tempfile.mkdtemp())[1]
        times[name] = time.perf_counter() - t0
    print("recovery at zero noise (20 s recordings, 40 inputs x 2 neurons, weights every 100 ms):")
    print(table(rows))
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.0f} s (generation in NEST + fit + {args.bootstrap} bootstrap refits): "
              f"{3600 / seconds:.0f} fits per hour on one core")
    write_csv(rows, out / "recovery.csv")
    speed()

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
    main()
