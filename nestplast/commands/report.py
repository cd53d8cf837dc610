"""``python -m nestplast.report RUN_DIR [--json] [--no-plots] [--plots-to DIR]``: what a search
run found. Works on a run in progress and on a read-only copy (plots then go to ``--plots-to``)."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import ArgumentParser, run_command
from ..store import DB_NAME


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nestplast.report", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--plots-to", type=Path, default=None, help="folder for the PNG plots (default: RUN_DIR)")
    return p


def _finite(value):
    """JSON has no NaN or infinity: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _report(argv: Sequence[str] | None) -> int:
    from ..analysis import check_output_directory
    from ..analysis.search import summarise, text, write_plots

    args = parser().parse_args(argv)
    if args.run_dir.name == DB_NAME and args.run_dir.is_file():  # the run's database named instead of its folder
        args.run_dir = args.run_dir.parent
    kind = _kind(args.run_dir)
    if kind == "infer":
        return _report_fit(args)
    if kind == "recheck":  # its simulations' losses are the search's scores, not the filter's verdict
        from ..errors import UserError

        raise UserError(f"{args.run_dir} holds the simulations of a filter run's re-check: its verdicts are in "
                        f"{args.run_dir.parent / 'recheck.csv'} (python -m nestplast filter {shlex.quote(str(args.run_dir.parent))} "
                        "--recheck N writes it, from these simulations where it can)")
    if not args.json and _is_filter_run(args.run_dir):  # a family of rules: its tables and plots
        from .filter import report

        report(args.run_dir, args.plots_to, plots=not args.no_plots)
        return 0
    summary = summarise(args.run_dir)
    plots = []
    if not args.no_plots:
        folder = args.plots_to or args.run_dir
        if args.plots_to is None and not os.access(args.run_dir, os.W_OK):
            print(f"note: {args.run_dir} is read-only; no plots (give --plots-to DIR)", file=sys.stderr)
        else:
            check_output_directory(folder).mkdir(parents=True, exist_ok=True)
            plots = write_plots(args.run_dir, summary, folder)
    if args.json:
        print(json.dumps(_finite(summary)))
        return 0
    print(text(summary, args.run_dir))
    for path in plots:
        print(f"wrote {path}")
    return 0


def _kind(run_dir: Path) -> str:
    from ..store import RunStore

    store = RunStore.open(run_dir, read_only=True)
    try:
        return store.meta().get("kind", "search")
    finally:
        store.close()


def _is_filter_run(run_dir: Path) -> bool:
    try:
        from ..families import is_filter_run
    except ImportError:  # without the families extra nothing can have written a filter run here
        return False
    return is_filter_run(run_dir)


def _report_fit(args) -> int:
    """An inference run: its fit.json, as `nestplast infer` printed it."""
    from ..errors import UserError

    path = args.run_dir / "fit.json"
    if not path.is_file():
        raise UserError(f"{args.run_dir} is an inference run that has not finished its fit (no fit.json); "
                        "continue it with: python -m nestplast infer DATA --out RUN_DIR --resume ...")
    fit = json.loads(path.read_text())
    if args.json:
        print(json.dumps(fit))
        return 0
    print(f"run: {args.run_dir} (inference: rule {fit['rule']}{' ' + fit['mask'] if fit['mask'] else ''})")
    for name in fit["names"]:
        interval = fit["intervals"][name]
        shown = "-" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"
        print(f"  {name:<14} {fit['coefficients'][name]:>10.4g}   {shown}")
    if "ll_held_out_bits" in fit:  # a fit to behaviour
        print(f"log-likelihood per trial: {fit['ll_fit_bits']:.4f} bits on {len(fit['fit_animals'])} fitted animals, "
              f"{fit['ll_held_out_bits']} bits on {len(fit['held_out_animals'])} held out; plots in {args.run_dir}")
        return 0
    activity = fit.get("r2_activity_held_out")
    print(f"held-out R^2 of the weights {fit['r2_held_out']}"
          + ("" if activity is None else f", of the binned postsynaptic counts {activity}")
          + f"; deviance explained {fit['deviance_explained_held_out']} % held out; plots in {args.run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nestplast report``: returns the exit code (2 for a user error)."""
    return run_command(_report, argv, one_process="python -m nestplast.report")


if __name__ == "__main__":
    sys.exit(main())
