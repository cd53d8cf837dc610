"""``python -m nestplast.search [EXPERIMENT] [options]`` (or ``nestplast search``): search a rule's
parameters by CMA-ES, MPI-parallel under ``mpiexec``/``srun``.

    python -m nestplast.search                      # the built-in default experiment
    mpirun -n 64 python -m nestplast.search my.toml --out runs/my
    python -m nestplast.search --out runs/my --resume
    python -m nestplast.search --show-defaults      # every experiment key, its default and meaning
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import experiment
from ..cli import ArgumentParser, as_launched, command_world, notes_only, resume_hint, run_mpi_command
from ..errors import UsageError
from ..parallel import together
from ..store import RunStore, check_same_kind


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nestplast.search", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", nargs="?", default=None,
                   help=f"experiment TOML file or shipped name ({', '.join(experiment.available())}); "
                        "default: the built-in default; with --resume: the stored one")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<experiment name>)")
    p.add_argument("--seed", type=int, default=None, help="override the experiment's seed")
    p.add_argument("--max-generations", type=int, default=None, help="override search.max_generations "
                   "(may be raised when resuming)")
    p.add_argument("--max-evaluations", type=int, default=None, help="override search.max_evaluations "
                   "(may be raised when resuming)")
    p.add_argument("--max-wall-s", type=float, default=None, help="override search.max_wall_s, the seconds of "
                   "evaluating summed over a run's sessions (may be raised when resuming)")
    p.add_argument("--population-size", type=int, default=None, help="override search.population_size")
    p.add_argument("--threads", type=int, default=None, help="NEST threads per rank")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last generation")
    p.add_argument("--quiet", action="store_true", help="no progress lines (batch jobs); the result is still printed")
    p.add_argument("--show-defaults", action="store_true", help="print every experiment key with its default "
                   "(with EXPERIMENT, --resume or overrides: the value the run would use), meaning and accepted "
                   "values, and exit")
    return p


def named_or_stored(name: str | None, out: Path | None, resume: bool, kind: str = "search") -> experiment.Experiment:
    """The experiment file ``name`` (default: the built-in one), or, resuming without a name, the
    experiment stored in the run ``out``, a run of this ``kind`` (``search`` or ``filter``)."""
    if resume and out is None:
        raise UsageError("--resume needs --out RUN_DIR")
    if resume and name is None:
        with RunStore.open(out, read_only=True) as store:
            # before the stored experiment is read: another command's run stores another kind of settings
            check_same_kind(store.meta().get("kind"), kind, out)
            return experiment.run_experiment(store.experiment(), out)
    return experiment.load(name, search=kind == "search") if name else experiment.default()


def with_overrides(exp: experiment.Experiment, overrides: dict[str, tuple[str, object]], *,
                   search: bool = True) -> experiment.Experiment:
    """``exp`` with the command line's ``{flag: (dotted key, value)}`` set (None: not given), each
    checked as the experiment file's key is, then validated."""
    for flag, (key, value) in overrides.items():
        if value is not None:
            section, _, name = key.rpartition(".")
            target = getattr(exp, section) if section else exp
            check = next(f.metadata["check"] for f in dataclasses.fields(target) if f.name == name)
            if check is not None and not check.test(value):
                raise UsageError(f"{flag}: expected {check.expected}, got {value}")
            setattr(target, name, value)
    try:
        return experiment.validate(exp, search=search)
    except experiment.ExperimentError as err:
        raise experiment.ExperimentError(f"{exp.source}: {err}") from None


def overrides(args: argparse.Namespace) -> dict[str, tuple[str, object]]:
    """The command line's ``{flag: (dotted experiment key, value or None)}``."""
    return {"--seed": ("seed", args.seed), "--max-generations": ("search.max_generations", args.max_generations),
            "--max-evaluations": ("search.max_evaluations", args.max_evaluations),
            "--max-wall-s": ("search.max_wall_s", args.max_wall_s),
            "--population-size": ("search.population_size", args.population_size),
            "--threads": ("search.threads", args.threads)}


def load_experiment(args: argparse.Namespace) -> experiment.Experiment:
    """The experiment the arguments name, with the overrides applied and validated."""
    return with_overrides(named_or_stored(args.experiment, args.out, args.resume), overrides(args))


def main(argv: Sequence[str] | None = None) -> int:
    comm = command_world()
    rank = 0 if comm is None else comm.Get_rank()
    out_dir: list[Path] = []
    limits: list[str] = []  # the command's stop limits, for the resume hint

    def run(argv) -> int:
        from ..runs import all_failed
        from ..search import run_search, summary_lines

        args = parser().parse_args(argv)
        for flag, (key, value) in overrides(args).items():
            if value is not None and tuple(key.split(".")) in experiment.resumable_keys():
                limits.extend([flag, f"{value:g}" if isinstance(value, float) else str(value)])
        # --show-defaults alone: the defaults; with an experiment, --resume or overrides: the values a run would use
        plain = args.experiment is None and not args.resume and all(v is None for _, v in overrides(args).values())
        exp = None if args.show_defaults and plain else together(comm, lambda: load_experiment(args))
        if args.show_defaults:
            if rank == 0:
                print(experiment.show_defaults(exp))
            return 0
        out = args.out or Path("runs") / exp.name
        out_dir.append(out)
        outcome = run_search(exp, out, resume=args.resume, comm=comm,
                             progress=notes_only if args.quiet else (lambda line: print(line, flush=True)))
        if args.quiet and outcome is not None:  # the result, not progress: a batch job's log keeps it
            print(summary_lines(exp, outcome, out), flush=True)
        # a run in which nothing could be evaluated is no result: a batch system (afterok) must see it
        return 1 if outcome is not None and all_failed(outcome.evaluations, outcome.failed) else 0

    def interrupted() -> str:
        if not out_dir:
            return "nothing was started"
        return resume_hint(out_dir[0], as_launched("python -m nestplast.search", comm), limits=limits)

    return run_mpi_command(run, argv, comm, interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
