"""``python -m nestplast.report RUN_DIR [--json] [--no-plots]``: what a search found.

Prints a summary (generations, evaluations, failures, best loss and parameters; with ``--json``
one object with keys ``generations``, ``evaluations``, ``failed``, ``best_loss``, ``best_params``)
and writes PNG plots into the run directory: the loss per generation, the best rule drawn as an
STDP window (weight change against spike-time difference) for each plastic connection type, and
the population rate and mean weights over time in the best rule's evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from . import experiment


def summarise(run_dir: Path) -> dict:
    """The run's summary as a dict (what ``--json`` prints, plus details for the text form)."""
    from .store import RunStore

    store = RunStore.open(run_dir)
    exp = experiment.parse(store.experiment(), f"{run_dir}/results.sqlite")
    layout = exp.layout()
    counts = store.counts()
    best = store.best_candidates(1)
    summary = {"generations": counts["generations"], "evaluations": counts["evaluations"],
               "failed": counts["failed"],
               "best_loss": best[0]["loss"] if best else None,
               "best_params": layout.as_dict(best[0]["theta"]) if best else {}}
    details = {"experiment": exp, "store": store, "best": best[0] if best else None}
    return summary | {"_details": details}


def _stdp_window(ax, exp, theta) -> None:
    rule, layout = exp.searched_rule(), exp.layout()
    dt = np.linspace(-100.0, 100.0, 401)
    fixed = {k: v for k, v in exp.rule.fixed.items()}
    for ct, block in layout.split(theta).items():
        params = rule.synapse_params(block, **fixed)
        ax.plot(dt, rule.stdp_window(params, dt), label=f"{ct} ({rule.name})")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.axvline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("t_post - t_pre (ms)")
    ax.set_ylabel("weight change of |w| per pair")
    ax.set_title("best rule as an STDP window")
    ax.legend()


def write_plots(run_dir: Path, summary: dict) -> list[Path]:
    """Write the PNG plots; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    details = summary["_details"]
    store, exp, best = details["store"], details["experiment"], details["best"]
    written = []

    generations = store.generations()
    fig, ax = plt.subplots(figsize=(6, 4))
    if generations:
        g = [row["generation"] for row in generations]
        ax.semilogy(g, [max(row["best_loss"], 1e-6) for row in generations], "o-", label="best")
        ax.semilogy(g, [max(row["median_loss"], 1e-6) for row in generations], "s--", label="median")
    ax.set_xlabel("generation")
    ax.set_ylabel("loss")
    ax.set_title(f"{exp.name}: loss per generation")
    ax.legend()
    written.append(run_dir / "loss.png")
    fig.savefig(written[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    if best is None:
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    _stdp_window(ax, exp, best["theta"])
    written.append(run_dir / "stdp_window.png")
    fig.savefig(written[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    evaluation = next((e for e in store.evaluations(generation=best["generation"])
                       if e.candidate == best["candidate"] and e.trial == 0), None)
    trace = (evaluation.metrics or {}).get("trace") if evaluation else None
    if trace:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
        top.plot(trace["t_s"], trace["rate"], "o-")
        if exp.objective.target_rate:
            top.axhline(exp.objective.target_rate, color="k", ls=":", label="target")
            top.legend()
        top.set_ylabel(f"{exp.objective.population} rate (Hz)")
        top.set_title("best rule: activity and weights over time (trial 0)")
        for key in (k for k in trace if k.startswith("w_mean_")):
            bottom.plot(trace["t_s"], trace[key], "o-", label=f"mean |w| {key[7:]}")
        bottom.set_xlabel("time (s)")
        bottom.set_ylabel("mean |weight|")
        bottom.legend()
        written.append(run_dir / "rates_weights.png")
        fig.savefig(written[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nestplast.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    from .store import StoreError

    try:
        summary = summarise(args.run_dir)
    except (StoreError, experiment.ExperimentError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plots = [] if args.no_plots else write_plots(args.run_dir, summary)
    public = {k: v for k, v in summary.items() if not k.startswith("_")}
    if args.json:
        if public["best_loss"] is not None and not math.isfinite(public["best_loss"]):
            public["best_loss"] = None
        print(json.dumps(public))
        return 0
    print(f"run: {args.run_dir}\n"
          f"generations: {public['generations']}   evaluations: {public['evaluations']}   failed: {public['failed']}")
    if public["best_loss"] is None:
        print("no successful evaluation yet")
    else:
        best = summary["_details"]["best"]
        print(f"best loss: {public['best_loss']:.5g} (generation {best['generation']}, candidate {best['candidate']})")
        for name, value in public["best_params"].items():
            print(f"  {name:<16} {value: .5g}")
    for path in plots:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
