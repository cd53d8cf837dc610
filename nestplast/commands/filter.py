"""``python -m nestplast filter``: rule families by simulation-based inference (the fSBI filter),
MPI-parallel under ``mpiexec``/``srun``.

    python -m nestplast filter EXPERIMENT [--out RUN_DIR]      # run: rounds of draw, simulate, keep, refine
    python -m nestplast filter --out RUN_DIR --resume           # go on after a crash or Ctrl-C
    python -m nestplast filter RUN_DIR --apply NEW.toml         # re-filter the stored simulations, no simulation
    python -m nestplast filter RUN_DIR --recheck N              # accepted rules again on N fresh trials each

``NEW.toml`` holds a ``[constraints]`` table (``cv_isi = [0.9, 1e9]``): bounds that replace or add to
the run's last round's. Results: ``family.csv``, ``acceptance.csv`` and plots in RUN_DIR (``--apply``:
in RUN_DIR/refiltered-NEW, or ``--out``; ``--recheck``: ``recheck.csv``, its simulations kept in
RUN_DIR/recheck as they end, so that the same command goes on after a Ctrl-C).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import experiment
from ..cli import ArgumentParser, as_launched, command_world, notes_only, resume_hint, run_mpi_command
from ..errors import UsageError
from ..parallel import together
from ..store import DB_NAME, RUN_KINDS, RunStore, stored_kind

if TYPE_CHECKING:
    from ..families import Recheck


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nestplast filter", description=__doc__.split("\n\n")[0])
    p.add_argument("target", nargs="?", default=None,
                   help=f"experiment TOML file or shipped name ({', '.join(experiment.available())}); "
                        "default: the built-in default experiment (5 rounds x 200 rules x 2 trials: 2,000 "
                        "simulations); with --apply/--recheck: the run directory")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<experiment name>); "
                   "with --apply: where the re-filtered family goes (not the run's folder, nor any run's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last round")
    p.add_argument("--rounds", type=int, default=None, help="override filter.rounds (may be raised when resuming)")
    p.add_argument("--seed", type=int, default=None, help="override the experiment's seed")
    p.add_argument("--threads", type=int, default=None, help="NEST threads per rank (overrides search.threads)")
    p.add_argument("--apply", type=Path, default=None, metavar="NEW.toml",
                   help="re-filter the run's stored simulations with these bounds (no simulation)")
    p.add_argument("--recheck", type=int, default=None, metavar="N",
                   help="simulate every accepted rule again on N fresh trials; report the fraction that passes")
    p.add_argument("--limit", type=int, default=None, help="with --recheck: only the first LIMIT accepted rules")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots (the tables only)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (batch jobs)")
    p.add_argument("--show-defaults", action="store_true", help="print every experiment key with its default "
                   "(with EXPERIMENT, --resume or overrides: the value the filter would use), meaning and accepted "
                   "values, and exit")
    return p


def read_constraints(path: Path) -> dict[str, tuple[float, float]]:
    """The ``[constraints]`` table of an --apply file, checked like the experiment's."""
    if not path.is_file():
        raise UsageError(f"--apply: no such file {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # TOML is UTF-8; a BOM is skipped
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError:  # a .npz or a run's database: the codec's traceback
        raise UsageError(f"{path}: not a constraints file (not text; --apply takes a TOML file with one table "
                         "[constraints] of metric = [low, high])") from None
    unknown = sorted(set(data) - {"constraints"})
    if not unknown and data.get("constraints") == {}:  # "expected one table [constraints] ..., got ['constraints']"
        raise UsageError(f"{path}: the table [constraints] is empty: give at least one metric = [low, high] in it")
    if unknown or not isinstance(data.get("constraints"), dict) or not data["constraints"]:
        raise UsageError(f"{path}: expected one table [constraints] of metric = [low, high], got {sorted(data)}")
    from ..families import check_bounds

    try:
        return check_bounds(data["constraints"])
    except experiment.ExperimentError as err:
        raise UsageError(f"{path}: {err}") from None


def load_experiment(args: argparse.Namespace) -> experiment.Experiment:
    """The experiment to run (named, or stored in --out with --resume), with --rounds, --seed and
    --threads applied."""
    from .search import named_or_stored, with_overrides

    if args.target is not None and (Path(args.target) / DB_NAME).is_file():  # not "no such experiment file"
        run = shlex.quote(args.target)
        kind = stored_kind(args.target)
        if kind in RUN_KINDS and kind != "filter":  # the ways on below are a filter run's: each refused
            what, again = RUN_KINDS[kind]
            raise UsageError(f"{args.target} is a run directory holding {what}, not an experiment file; go on with it: "
                             f"{again.format(out=run)}; read it: python -m nestplast report {run}")
        raise UsageError(f"{args.target} is a run directory, not an experiment file; to go on with it: python -m "
                         f"nestplast filter --out {run} --resume; to re-filter it: python -m nestplast filter {run} --apply "
                         f"NEW.toml; to re-check it: python -m nestplast filter {run} --recheck N; to read it: "
                         f"python -m nestplast report {run}")
    return with_overrides(named_or_stored(args.target, args.out, args.resume, kind="filter"), {
        "--rounds": ("filter.rounds", args.rounds), "--seed": ("seed", args.seed),
        "--threads": ("search.threads", args.threads)}, search=False)


def check_not_a_run(out: Path, run_dir: Path, flag: str, refiltered: bool = True, default: Path | None = None) -> None:
    """Refuse ``out`` (given as ``flag``) for the tables and plots of ``run_dir``'s family when it is
    another run's folder (one holding a run store), or, for a re-filtered family, ``run_dir``
    itself: its family.csv and plots would be overwritten (the plots the smaller family has none
    of deleted); a folder of other files that holds no family's tables; and, for the run's own
    family (not ``refiltered``), a re-filtered family's folder. The run's own family may go back
    into its own folder. ``default``: where the tables go without ``flag``, for the message."""
    another = f"give another {flag}" + (f" (or none: {default})" if default is not None else "")
    same = out.resolve() == run_dir.resolve()
    if same and refiltered:
        raise UsageError(f"{flag} {out}: that is the run being re-filtered: its own family.csv and plots would be "
                         f"overwritten; {another}")
    if same or not out.is_dir() or not any(out.iterdir()):
        return
    if (out / DB_NAME).is_file():
        raise UsageError(f"{flag} {out}: that folder holds another run ({DB_NAME}), whose own tables and plots "
                         f"would be overwritten; {another}")
    # a user's own family.csv was overwritten and metrics.png removed, in a folder no family was written to
    if not ((out / "family.csv").is_file() and (out / "acceptance.csv").is_file()):
        raise UsageError(f"{flag} {out}: that folder holds other files and no family's tables (family.csv with "
                         f"acceptance.csv): a family.csv or a plot of yours there would be overwritten or removed; "
                         f"give a new or empty folder")
    if not refiltered and (out / APPLIED).is_file():  # the run's own family over a re-filtered one, without a word
        raise UsageError(f"{flag} {out}: that folder holds a re-filtered family (its constraints in {APPLIED}), which "
                         f"the run's own family would replace; {another}")


APPLIED = "constraints.toml"  # beside a re-filtered family: the constraints that made it (an --apply file)


def constraints_toml(constraints: Mapping[str, Sequence[float]]) -> str:
    """``constraints`` as an --apply file (TOML: infinite bounds as inf)."""
    def number(value: float) -> str:
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(float(value))

    lines = [f"{name} = [{number(low)}, {number(high)}]" for name, (low, high) in constraints.items()]
    return "[constraints]\n" + "".join(f"{line}\n" for line in lines)


def check_default_free(default: Path) -> None:
    """Refuse the default folder of a re-filtered family where it holds a run."""
    if (default / DB_NAME).is_file():
        raise UsageError(f"{default}, where --apply puts the re-filtered family unless --out is given, holds a run "
                         f"({DB_NAME}), whose own tables and plots would be overwritten; give --out")


def report(run_dir: Path, out: Path | None = None, constraints: Mapping[str, Sequence[float]] | None = None,
           plots: bool = True, what: str = "family", as_json: bool = False, files: bool = True,
           out_flag: str = "--plots-to", stale: bool = False) -> None:
    """Tables (and plots) of the family in ``run_dir`` into ``out`` (default the run directory;
    none without ``files``: a read-only copy); on stdout its summary, or with ``as_json`` one JSON
    object and nothing else. ``out`` may not be another run's folder, nor, with ``constraints``,
    ``run_dir`` (:func:`check_not_a_run`; ``out_flag``: the option that gave it, for the message).
    ``stale``: the plots there show another family (a resume simulated more), removed without ``plots``."""
    import json

    if files and out is not None:
        check_not_a_run(out, run_dir, out_flag, refiltered=constraints is not None)

    from ..analysis import check_output_directory
    from ..analysis.families import remove_plots, summary, text, write_plots, write_tables
    from ..families import family
    from ..values import json_safe

    fam = family(run_dir, constraints)
    written = write_tables(fam, check_output_directory(out or run_dir)) if files else []
    if files and constraints is not None:  # what made this family, and an --apply file to make it again
        (out or run_dir).joinpath(APPLIED).write_text(constraints_toml(constraints))
        written.append((out or run_dir) / APPLIED)
    removed = []
    if plots and files:
        with RunStore.open(run_dir, read_only=True) as store:
            exp = experiment.run_experiment(store.experiment(), run_dir)
        written += write_plots(fam, exp, out or run_dir)
    elif files and (constraints is not None or stale):  # plots there would show another family
        removed = remove_plots(out or run_dir)
    if as_json:
        print(json.dumps(json_safe(summary(fam))))
        return
    print(text(fam, what, shlex.quote(str(run_dir))))
    for path in written:
        print(f"wrote {path}")
    if removed:
        print(f"removed the plots of an earlier family there: {', '.join(p.name for p in removed)}")


def main(argv: Sequence[str] | None = None) -> int:
    comm = command_world()
    rank = 0 if comm is None else comm.Get_rank()
    out_dir: list[Path] = []
    rechecking: list[Path] = []
    limits: list[str] = []  # a raised --rounds, for the resume hint (recorded only once the run goes on)

    def run(argv) -> int:
        from ..families import recheck, run_filter
        from ..runs import all_failed, no_rule_passed

        args = parser().parse_args(argv)
        limits.extend(["--rounds", str(args.rounds)] if args.rounds is not None else [])
        if args.apply is not None and args.recheck is not None:
            raise UsageError("give --apply or --recheck, not both")
        if args.show_defaults and (args.apply is not None or args.recheck is not None):
            raise UsageError("--show-defaults prints an experiment's keys: not with --apply or --recheck (the run's "
                             "own: python -m nestplast filter --out RUN_DIR --resume --show-defaults)")
        if args.limit is not None and args.recheck is None:
            raise UsageError("--limit goes with --recheck (it limits the rules re-checked)")
        if args.limit is not None and args.limit < 1:  # 0 re-checked nothing, -1 all but the last rule
            raise UsageError(f"--limit: expected a number of rules >= 1, got {args.limit}")
        if args.threads is not None and (args.apply is not None or args.recheck is not None):
            raise UsageError("--threads goes with a filter run (--apply simulates nothing; --recheck simulates with "
                             "the run's search.threads)")
        # options of a filter run that --apply and --recheck would ignore without a word (--seed 7 for "another"
        # re-check brought the first one's simulations back)
        ignored = [flag for flag, value in (("--seed", args.seed), ("--rounds", args.rounds), ("--resume", args.resume),
                                            ("--out", args.recheck is not None and args.out is not None))
                   if value not in (None, False)]
        if ignored and (args.apply is not None or args.recheck is not None):
            given = "--apply" if args.apply is not None else "--recheck"
            raise UsageError(f"{', '.join(ignored)}: not with {given}, which " + (
                "re-filters the run's stored simulations (its seed and rounds as they were)" if given == "--apply" else
                "draws its trials from the run's seed, goes on where it stopped by itself, and writes recheck.csv "
                "into the run's folder"))
        if args.apply is not None or args.recheck is not None:
            if args.target is None:
                raise UsageError("--apply and --recheck take a filter run's directory: python -m nestplast filter RUN_DIR ...")
            run_dir = Path(args.target)
            if not run_dir.is_dir():
                raise UsageError(f"--apply and --recheck take a filter run's directory; {run_dir} is "
                                 + ("a file" if run_dir.exists() else "no directory"))
            if not (run_dir / DB_NAME).is_file() and (run_dir / "family.csv").is_file():  # made by --apply
                raise UsageError(f"{run_dir} holds a family's tables (made by --apply), not a run: give the filter run "
                                 "it came from")
        if args.apply is not None:
            default = run_dir / f"refiltered-{args.apply.stem}"
            if args.out is not None:  # before anything is read, on every rank
                together(comm, lambda: check_not_a_run(args.out, run_dir, "--out", default=default))
            else:  # the message named an --out that was not given
                together(comm, lambda: check_default_free(default))
            constraints = together(comm, lambda: read_constraints(args.apply))
            if rank == 0:
                report(run_dir, args.out or default, constraints, plots=not args.no_plots, what="re-filtered family",
                       out_flag="--out")
            return 0
        if args.recheck is not None:
            if args.recheck < 1:
                raise UsageError(f"--recheck: expected a number of trials >= 1, got {args.recheck}")
            rechecking.append(run_dir)
            result = recheck(run_dir, args.recheck, comm=comm, limit=args.limit,
                             progress=notes_only if args.quiet else (lambda line: print(line, flush=True)))
            if result is not None and not result.passed:  # not "0 of 0 ... (nan %)", nor an empty recheck.csv
                print(f"re-check: {run_dir} has no accepted rule to re-check (python -m nestplast report "
                      f"{run_dir} shows its acceptance per round); nothing simulated, no recheck.csv written")
            elif result is not None:
                write_recheck(result, run_dir / "recheck.csv")
                print(f"re-check on {args.recheck} fresh trials: {sum(result.passed)} of {len(result.passed)} accepted "
                      f"rules pass again ({100 * result.fraction:.1f} %); table: {run_dir / 'recheck.csv'}")
            return 0
        if args.show_defaults:  # as the search's: alone the defaults, else the values this filter would use
            plain = args.target is None and not args.resume and all(
                v is None for v in (args.rounds, args.seed, args.threads))
            exp = None if plain else together(comm, lambda: load_experiment(args))
            if rank == 0:
                print(experiment.show_defaults(exp))
            return 0
        exp = together(comm, lambda: load_experiment(args))
        out = args.out or Path("runs") / exp.name
        out_dir.append(out)
        before = _simulations(out) if args.resume and rank == 0 else None
        result = run_filter(exp, out, resume=args.resume, comm=comm,
                            progress=notes_only if args.quiet else (lambda line: print(line, flush=True)))
        if result is not None:
            changed = before is not None and _simulations(out) != before  # a resume that simulated more
            report(out, plots=not args.no_plots, stale=changed)
            if changed and (made := _made_from_the_family(out)):
                print(f"note: {', '.join(made)} in {out} came from the family before this resume: make them again "
                      "(--recheck N, --apply FILE) for the family as it is now", flush=True)
            if all_failed(result.evaluations, result.failed):  # no family: a batch system (afterok) must see it
                print(no_rule_passed(out), flush=True)
                return 1
        return 0

    def interrupted() -> str:
        if rechecking:
            from ..families import RECHECK_DIR

            return (f"the re-check of {rechecking[0]} was cut short; the simulations it finished are kept in "
                    f"{rechecking[0] / RECHECK_DIR}: run the same command again to go on (it writes recheck.csv when it ends)")
        return (resume_hint(out_dir[0], as_launched("python -m nestplast filter", comm), "round", "simulation",
                            limits=limits) if out_dir else "nothing was started")

    return run_mpi_command(run, argv, comm, interrupted=interrupted)


def _simulations(run_dir: Path) -> int | None:
    """How many simulations the run in ``run_dir`` holds (None: no run there yet)."""
    if not (run_dir / DB_NAME).is_file():
        return None
    with RunStore.open(run_dir, read_only=True) as store:
        return store.counts()["evaluations"]


def _made_from_the_family(run_dir: Path) -> list[str]:
    """What --recheck and --apply wrote into ``run_dir`` from its family (a resume's new rounds change it)."""
    return [p.name + ("/" if p.is_dir() else "") for p in (run_dir / "recheck.csv", *sorted(run_dir.glob("refiltered-*")))
            if p.exists()]


def write_recheck(result: Recheck, path: Path) -> None:
    """One row per re-checked rule: whether it passed, its trials' statuses and its mean metrics."""
    from ..analysis import write_csv
    from ..families import candidate_features

    rows = []
    for row, passed, evaluations in zip(result.family.rows, result.passed, result.evaluations):
        means = candidate_features(evaluations)
        rows.append({"round": row["round"], "candidate": row["candidate"], "passed": passed,
                     "statuses": " ".join(e.status for e in evaluations),
                     **{k: means.get(k) for k in result.family.constraints}})
    write_csv(rows, path, columns=["round", "candidate", "passed", "statuses", *result.family.constraints])


if __name__ == "__main__":
    sys.exit(main())
