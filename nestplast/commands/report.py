"""``python -m nestplast.report RUN_DIR [--json] [--no-plots] [--plots-to DIR]``: what a search
run found. Works on a run in progress and on a read-only copy (plots then go to ``--plots-to``)."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import ArgumentParser, run_command


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nestplast report``: returns the exit code (2 for a user error)."""
    return run_command(_report, argv)


if __name__ == "__main__":
    sys.exit(main())
