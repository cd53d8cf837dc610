"""``python -m nestplast.report RUN_DIR [--json] [--no-plots] [--plots-to DIR]``: what a search
run found (a filter run: its family; an inference: its fit). Works on a run in progress and on a
read-only copy (plots then go to ``--plots-to``)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import ArgumentParser, run_command
from ..errors import UserError
from ..store import DB_NAME, RunStore
from ..values import json_safe


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nestplast.report", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="the run's folder (the --out of search, filter or infer)")
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots (a filter run's tables, family.csv and "
                   "acceptance.csv, are still written)")
    p.add_argument("--plots-to", type=Path, default=None, help="folder for the PNG plots (default: RUN_DIR)")
    return p


def _report(argv: Sequence[str] | None) -> int:
    from ..analysis import check_output_directory
    from ..analysis.search import summarise, text, write_plots

    args = parser().parse_args(argv)
    if args.run_dir.name == DB_NAME and args.run_dir.is_file():  # the run's database named instead of its folder
        args.run_dir = args.run_dir.parent
    if not (args.run_dir / DB_NAME).exists():
        from ..analysis.pruning import holds_prune_output  # only here: it imports the pruning's numerics

        if holds_prune_output(args.run_dir):  # it said "holds no nestplast run"
            raise UserError(f"{args.run_dir} holds the output of nestplast prune, which has no run to report: its "
                            f"summary is {args.run_dir / 'summary.json'} (prune --json prints the same), its tables "
                            "and plots are beside it")
        if (args.run_dir / "family.csv").is_file() and (args.run_dir / "acceptance.csv").is_file():
            raise UserError(f"{args.run_dir} holds a re-filtered family (filter RUN_DIR --apply FILE wrote it), which "
                            f"has no run of its own: its tables and plots are here; python -m nestplast filter RUN_DIR "
                            "--apply FILE prints its summary again")
    kind = _kind(args.run_dir)
    if kind == "infer":
        return _report_fit(args)
    if kind == "recheck":  # its simulations' losses are the search's scores, not the filter's verdict
        raise UserError(f"{args.run_dir} holds the simulations of a filter run's re-check: its verdicts are in "
                        f"{args.run_dir.parent / 'recheck.csv'} (python -m nestplast filter {shlex.quote(str(args.run_dir.parent))} "
                        "--recheck N writes it, from these simulations where it can)")
    first_round = _filter_in_first_round(args.run_dir, kind)
    if first_round is not None:  # its losses read as a search's would show a "best rule" of a target it has none of
        recorded, planned, empty = first_round
        if args.json:  # the keys of a family's JSON (a script read d["simulated"]: a KeyError), and the round's progress
            from ..analysis.families import summary

            print(json.dumps(json_safe({**summary(empty), "first_round_recorded": recorded,
                                        "simulations_per_round": planned})))
            return 0
        print(f"run: {args.run_dir} (a filter run)\nno round complete yet: {recorded} of the first round's {planned} "
              "simulations recorded (running, or interrupted: go on with python -m nestplast filter --out "
              f"{shlex.quote(str(args.run_dir))} --resume); the family and its plots come with the first round")
        return 0
    from ..families import is_filter_run

    if kind == "filter" or is_filter_run(args.run_dir):  # a family of rules: its tables and plots (its losses are no search's)
        from .filter import report

        writable = args.plots_to is not None or os.access(args.run_dir, os.W_OK)
        if not writable:
            print(f"note: {args.run_dir} is read-only; no tables or plots (give --plots-to DIR)", file=sys.stderr)
        report(args.run_dir, args.plots_to, plots=not args.no_plots, as_json=args.json, files=writable)
        from ..runs import all_failed, no_rule_passed

        with RunStore.open(args.run_dir, read_only=True) as store:
            counts = store.counts()
        if all_failed(counts["evaluations"], counts["failed"]) and not args.json:
            print(no_rule_passed(args.run_dir))
        return 0
    if args.plots_to is not None:  # another run's folder: its own plots would be overwritten
        from .filter import check_not_a_run

        check_not_a_run(args.plots_to, args.run_dir, "--plots-to", refiltered=False)
    summary = summarise(args.run_dir)
    plots = []
    if not args.no_plots:
        folder = args.plots_to or args.run_dir
        if args.plots_to is None and not os.access(args.run_dir, os.W_OK):
            print(f"note: {args.run_dir} is read-only; no plots (give --plots-to DIR)", file=sys.stderr)
        else:
            check_output_directory(folder).mkdir(parents=True, exist_ok=True)
            plots = write_plots(args.run_dir, summary, folder) + _pycma_log(args.run_dir, folder)
    if args.json:
        print(json.dumps(json_safe(summary)))
        return 0
    print(text(summary, args.run_dir))
    for path in plots:
        # pycma counts iterations from 1 and takes the upper median: its figure's numbers differed from the report's
        print(f"wrote {path}" + (f"/ (pycma's log: cma.plot({str(path) + '/'!r}) draws it; its iteration k is generation "
                                 f"k - 1, and its median of an even population pycma's upper one)" if path.is_dir() else ""))
    if plots and summary["best"] is not None and not any(p.name == "stdp_window.png" for p in plots):
        # README promises the best rule as an STDP window: say why there is none
        print("no stdp_window.png: the rule's update is compiled from NESTML only (a rule of your own file), or reads "
              "postsynaptic state that a pair of spikes does not fix (mlp_fsbi's V_bar, C_exc, C_inh)")
    return 0


def _pycma_log(run_dir: Path, folder: Path) -> list[Path]:
    """pycma's own log of a CMA-ES run in ``folder/outcmaes`` (none for another strategy)."""
    from ..strategies.cmaes import write_pycma_log

    with RunStore.open(run_dir, read_only=True) as store:
        log = write_pycma_log(store, folder / "outcmaes")
    return [] if log is None else [log]


def _kind(run_dir: Path) -> str:
    """The run's kind as its metadata says: ``search``, ``filter``, ``infer``, ``recheck``; ``search``
    for a search or filter run made before runs recorded it (:func:`~nestplast.families.is_filter_run` tells those apart)."""
    with RunStore.open(run_dir, read_only=True) as store:
        return store.meta().get("kind", "search")


def _filter_in_first_round(run_dir: Path, kind: str):
    """(simulations recorded, planned in a round, its family so far: no rule) of a filter run that
    has not completed its first round, else None. A run made before runs recorded their kind says
    it through its simulations: only the filter records each one's ``input_rate``."""
    from ..experiment import run_experiment
    from ..families import Family, final_constraints

    with RunStore.open(run_dir, read_only=True) as store:
        if store.last_complete_generation() is not None:
            return None
        evaluations = store.evaluations()
        if kind != "filter" and not any("input_rate" in (e.metrics or {}) for e in evaluations):
            return None
        exp = run_experiment(store.experiment(), run_dir)
        stop = store.stop()
    empty = Family(rows=[], constraints=final_constraints(exp, 0), acceptance=[], simulated=0, traces=[], valid=[],
                   rounds_planned=exp.filter.rounds, stop=stop, parameters=exp.layout().names)
    return len(evaluations), exp.filter.simulations_per_round * exp.trials.n, empty


def _report_fit(args) -> int:
    """An inference run: its fit.json, as `nestplast infer` printed it (warnings included)."""
    from ..infer import Fit
    from ..infer_choices import ChoiceFitResult
    from .infer import choice_summary_text, comparison_text, summary_text

    path = args.run_dir / "fit.json"
    if not path.is_file():
        with RunStore.open(args.run_dir, read_only=True) as store:
            choices = store.experiment().get("task") == "choices"
        raise UserError(f"{args.run_dir} is an inference run that has not finished its fit (no fit.json); "
                        f"continue it with: python -m nestplast infer DATA{' --task choices' if choices else ''} "
                        f"--out {shlex.quote(str(args.run_dir))} --resume ... (the fit's other options)")
    if args.plots_to is not None:  # it printed "plots in RUN_DIR" and wrote nothing where it was asked to
        raise UserError(f"--plots-to: the plots of an inference are drawn by the infer command that fits it (in "
                        f"{args.run_dir}); the report reads its fit.json and draws none")
    fit = json.loads(path.read_text())
    compared = args.run_dir / "comparison.json"
    comparison = json.loads(compared.read_text()) if compared.is_file() else None
    if comparison and "with" in comparison:  # written by nestplast <= 0.3.0, its labels named as if --compare dropped a term
        comparison = {"rule": comparison.pop("with"), "compared_with": comparison.pop("without"), **comparison}
    other = json.loads((args.run_dir / "compare" / "fit.json").read_text()) if comparison else None
    if args.json:  # what the infer command printed with --json (a fit to choices: the comparison too)
        choices = "ll_held_out_bits" in fit
        print(json.dumps({"fit": fit, **({"compare": other, "comparison": comparison} if comparison else {})}
                         if choices else fit))
        return 0
    print(f"run: {args.run_dir} (inference: rule {fit['rule']}{' ' + fit['mask'] if fit['mask'] else ''})")
    if "ll_held_out_bits" in fit:  # a fit to behaviour, and with --compare the rule it was compared with
        label = comparison["rule"] if comparison else f"{fit['rule']} {fit['mask'] or ''}".strip()
        print(choice_summary_text(ChoiceFitResult.from_json(fit), label))
        if comparison:
            print(choice_summary_text(ChoiceFitResult.from_json(other), comparison["compared_with"]))
            print(comparison_text(comparison))
    else:
        print(summary_text(Fit.from_json(fit)))
    plots = sorted(p.name for p in args.run_dir.glob("*.png"))
    # the infer command draws an inference's plots; a report of one draws none (and said nothing of it)
    print(f"fitted rule for nest.CopyModel: {path} (key nest_params); "
          + (f"plots in {args.run_dir}: {', '.join(plots)}" if plots else
             f"no plots in {args.run_dir} (the infer command draws them, with matplotlib, unless --no-plots; "
             "infer-demo and the report of an inference draw none)"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nestplast report``: returns the exit code (2 for a user error)."""
    return run_command(_report, argv, one_process="python -m nestplast.report")


if __name__ == "__main__":
    sys.exit(main())
