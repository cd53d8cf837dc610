"""One convention for every command line: user errors are one line ``error: ...`` on stderr with
exit code 2 (no traceback), warnings one line ``warning: ...``, Ctrl-C is exit code 130 with one
line, SIGTERM (``kill``, a batch system's time limit) stops the same clean way with exit code 143,
bugs keep their traceback.

Commands parse with :class:`ArgumentParser` and run inside :func:`run_command`::

    def main(argv=None) -> int:
        args = parser().parse_args(argv)      # bad arguments raise UsageError
        ...
    sys.exit(run_command(main))
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

from .errors import UsageError, UserError
from .parallel import launched_ranks

if TYPE_CHECKING:
    from mpi4py.MPI import Comm

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader gone


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so that every ``except KeyboardInterrupt`` and
    ``finally`` on the way out (the store's close, the workers' stop) runs as for Ctrl-C."""


def _raise_terminated(signum, frame) -> NoReturn:
    raise Terminated


@contextmanager
def sigterm_stops_cleanly() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` instead of ending the process on the
    spot. A run killed by ``kill`` or by SLURM at its time limit then says where it stands and how
    to resume, as after Ctrl-C. (Unlike SIGINT, SIGTERM stays deliverable to a run started in the
    background, where the shell has set SIGINT to ignored.)"""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ignore_signals_at_exit() -> None:
    """At the interpreter's exit, after a command has written its results: a Ctrl-C or SIGTERM in
    the teardown (NEST's and torch's take about a second) ended a finished run with 130 and no
    word, and a batch script took it for failed."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def ignore_signals_at_exit() -> None:
    """Register :func:`_ignore_signals_at_exit` (once): called by every command."""
    atexit.unregister(_ignore_signals_at_exit)
    atexit.register(_ignore_signals_at_exit)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, a warning prints as one line, ``warning: ...``, as errors do: Python's own
    format added nestplast's file, line and source line, which a command's user has no use for."""
    here = Path(__file__).parent

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        # a library's warning (sbi, matplotlib) says whose it is, not to pass for nestplast's
        path = Path(filename)
        parts = path.parts
        library = (parts[parts.index("site-packages") + 1] if "site-packages" in parts[:-1] else path.name)
        origin = [] if here in path.parents else [library]
        kind = ", ".join([*origin, *([] if category is UserWarning else [category.__name__])])
        print(f"warning{f' ({kind})' if kind else ''}: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():  # restores Python's own format afterwards
        warnings.showwarning = show
        yield


def _exit_code(exit_: SystemExit) -> int:
    """The exit status of a SystemExit (a message given as its code is an error's)."""
    return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USER_ERROR


def _stopped(err: KeyboardInterrupt) -> tuple[int, str]:
    return (EXIT_TERMINATED, "terminated") if isinstance(err, Terminated) else (EXIT_INTERRUPTED, "interrupted")


def as_invoked(prog: str) -> str:
    """``python -m nestplast X`` (or ``python -m nestplast.X``) as the user started it: ``nestplast X``
    from the ``nestplast`` script, whose --help named another program."""
    head, started, rest = prog.partition("python -m nestplast")
    if Path(sys.argv[0]).name != "nestplast" or head or not started:
        return prog
    return f"nestplast {rest.lstrip(' .')}".rstrip()


class BadArguments(UsageError):
    """A command line that argparse refuses. Under MPI every rank parses the same arguments and
    refuses them alike, so every rank can end cleanly without waiting for the others."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises :class:`BadArguments` (caught by :func:`run_command`)
    instead of printing usage and exiting from inside the library; every command has ``--version``."""

    def __init__(self, *args, **kwargs):
        from . import __version__

        # no abbreviations: the batch scripts look for --resume by its name ('--res' resumed, the script did not know)
        kwargs.setdefault("allow_abbrev", False)
        if "prog" in kwargs:
            kwargs["prog"] = as_invoked(kwargs["prog"])
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"nestplast {__version__}")

    def error(self, message: str) -> NoReturn:
        raise BadArguments(f"{self.prog}: {message}")

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        # --help and --version: under mpiexec every rank parses the same arguments, and each printed
        # the help; rank 0 alone prints it now (all ranks still exit alike)
        if launched_ranks()[0] == 0:
            super()._print_message(message, file)


def output_directory(text: str) -> Path:
    """An ``--out`` folder for a command's files (argparse's ``type``), refused where it is empty
    (``Path("")`` is the working directory, where every file of the command would land) or holds
    a nestplast run (its files went in among the run's, and the run's report listed them)."""
    from .store import DB_NAME

    if not text:
        raise argparse.ArgumentTypeError("an empty path; give a directory, e.g. --out runs/my (or --out . for the "
                                         "current one)")
    if (Path(text) / DB_NAME).exists():
        raise argparse.ArgumentTypeError(f"{text} holds a nestplast run ({DB_NAME}): give this command a folder of "
                                         f"its own (e.g. --out {shlex.quote(str(Path(text) / 'out'))})")
    return Path(text)


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The dests of the options given in ``argv`` (None: the command line), whatever their values:
    an option given at its default value (``--hidden 4``, ``--delay 1``) is given all the same.
    ``parser`` is changed: pass a fresh one."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def notes_only(text: str) -> None:
    """A ``--quiet`` run's progress: its notes alone, on stderr. A batch job's log needs them most
    (ranks that idle, threads that outnumber the cores, a resume under other software)."""
    for line in text.splitlines():
        if line.startswith(("note:", "warning:")):
            print(line, file=sys.stderr, flush=True)


def command_world():
    """:func:`nestplast.parallel.world` for a command's main: a launcher that MPI does not see
    ends the command with one line (exit code 2) instead of each rank running all of it."""
    from .parallel import world

    try:
        return world()
    except UserError as err:
        report_error(str(err), rank=launched_ranks()[0])
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:  # Ctrl-C while MPI starts (mpi4py's import): a traceback, before any run was begun
        print("interrupted: nothing was started", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None


def report_error(message: str, *, rank: int = 0) -> None:
    """Print ``error: message`` once (on rank 0 under MPI)."""
    if rank == 0:
        print(f"error: {message}", file=sys.stderr, flush=True)


def run_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, *,
                interrupted: Callable[[], str] | None = None, one_process: str | None = None) -> int:
    """Call ``main(argv)`` and turn user errors, Ctrl-C and SIGTERM into exit codes with one line.
    ``interrupted`` may say what the user can do after Ctrl-C (e.g. how to resume). A command
    named in ``one_process`` refuses to run as several MPI ranks: each would run all of it and
    write the same files."""
    rank, ranks = launched_ranks()
    if one_process and ranks > 1:
        report_error(f"{one_process} runs in one process: start it without mpiexec/srun (each of the {ranks} ranks "
                     f"would run all of it and write the same files)", rank=rank)
        return EXIT_USER_ERROR
    ignore_signals_at_exit()
    try:
        with sigterm_stops_cleanly(), one_line_warnings():
            code = main(argv)
            sys.stdout.flush()  # a reader that has gone fails here, where it is caught, not at exit
            return code
    except UserError as err:
        report_error(str(err))
        return EXIT_USER_ERROR
    except KeyboardInterrupt as err:
        code, word = _stopped(err)
        print(f"{word}{': ' + interrupted() if interrupted else ''}", file=sys.stderr, flush=True)
        return code
    except SystemExit as exit_:  # --help and --version exit through argparse
        return _exit_code(exit_)
    except BrokenPipeError:
        # the reader went away (`nestplast report RUN | head`): nothing more to say, and what is
        # still buffered goes nowhere at exit instead of failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def run_mpi_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, comm: Comm | None, *,
                    interrupted: Callable[[], str]) -> int:
    """:func:`run_command` for a command that runs on every rank of ``comm`` (None: one process).

    An error that every rank shares (:class:`~nestplast.parallel.SharedError`, or arguments
    argparse refuses) ends every rank cleanly and rank 0 prints it; any other error, Ctrl-C or SIGTERM, on any rank, ends the whole
    job at once (``MPI_Abort``), so that no rank waits for it in a receive until the job's time limit.
    """
    from .parallel import SharedError, abort_on_error

    if comm is None:
        return run_command(main, argv, interrupted=interrupted)
    rank = comm.Get_rank()
    ignore_signals_at_exit()
    try:
        with sigterm_stops_cleanly(), one_line_warnings():
            code = main(argv)
            # A rank done early (a worker while rank 0 polishes and bootstraps a fit) waits here, where a
            # Ctrl-C or SIGTERM is still caught: waiting in MPI_Finalize instead, past Python's own
            # handlers, it died of the signal and MPICH ended the job with its banner and exit code 2
            comm.Barrier()
            return code
    except (SharedError, BadArguments) as err:
        report_error(str(err), rank=rank)
        return EXIT_USER_ERROR
    except UserError as err:
        if rank != 0:
            # every rank checks the same arguments and files, and each printed the same error (two fused
            # on one line): rank 0 says it and ends the job; this rank speaks only if that has not
            # happened within OTHER_RANKS_WAIT_S (the error was its own)
            _leave_it_to_rank_0()
        abort_on_error(comm, EXIT_USER_ERROR, f"error (rank {rank}): {err}")
    except KeyboardInterrupt as err:
        code, word = _stopped(err)
        if rank != 0:
            _leave_it_to_rank_0()
        abort_on_error(comm, code, f"{word} (rank {rank}): {interrupted()}")
    except SystemExit as exit_:  # --help and --version: every rank parses the same arguments and exits alike
        return _exit_code(exit_)
    except BaseException:
        abort_on_error(comm, 1, f"error (rank {rank}):\n{traceback.format_exc()}")
    return 1


OTHER_RANKS_WAIT_S = 3.0  # for rank 0 to end the job after a signal that reached every rank


def _leave_it_to_rank_0() -> None:
    """mpiexec and srun pass a Ctrl-C or SIGTERM on to every rank, and each printed where the run
    stands: 64 ranks, 64 lines. Rank 0 says it and ends the job (MPI_Abort ends this rank too);
    another rank speaks only if that has not happened within OTHER_RANKS_WAIT_S (the signal
    reached it alone, or rank 0 is still inside a long nest.Simulate)."""
    try:
        time.sleep(OTHER_RANKS_WAIT_S)
    except KeyboardInterrupt:  # a second Ctrl-C: say it now (a second SIGTERM ends the rank at once:
        pass                   # outside sigterm_stops_cleanly its handler is the one before it again)


def as_launched(command: str, comm: Comm | None) -> str:
    """``command`` as the user started it: under ``mpiexec -n N`` (``srun -n N`` in a Slurm step)
    where ``comm`` has N ranks (a run with MPI inside NEST resumes on as many ranks or not at all)."""
    if comm is None:
        return command
    # the step's variables reach whatever runs inside it (mpiexec in an interactive srun step too)
    if os.environ.get("SLURM_STEP_NUM_TASKS") != str(comm.Get_size()):
        return f"mpiexec -n {comm.Get_size()} {command}"
    # the step's cores per task: without them srun gives each rank one, and NEST's threads share it
    cores = os.environ.get("SLURM_CPUS_PER_TASK")
    return f"srun -n {comm.Get_size()}{f' --cpus-per-task={cores}' if cores else ''} {command}"


def resume_hint(out: str | Path, command: str | None, step: str = "generation", item: str = "evaluation",
                limits: Sequence[str] = ()) -> str:
    """After Ctrl-C: how far the run in ``out`` got (its last complete ``step``), and the
    ``command`` that goes on from there (None: the same command with --resume), with the ``limits``
    (options) the stopped command was given: a resume records a raised limit only once it runs."""
    from .store import RunStore, StoreError

    try:
        with RunStore.open(out, read_only=True) as store:
            last = store.last_complete_generation()
    except StoreError:
        return "no run was recorded"
    done = f"no {step} completed" if last is None else f"after {step} {last}"
    again = ("the same command with --resume" if command is None else
             shlex.join([*shlex.split(command), "--out", str(out), "--resume", *limits]))
    if "SLURM_JOB_ID" in os.environ and "SLURM_STEP_NUM_TASKS" in os.environ:  # a job's step: its script knows how
        again += (" (in a batch job: submit its script again, search.slurm with --resume; search-restart.slurm and "
                  "filter.slurm resubmit themselves: jobs/README.md)")
    return f"{done}; every {item} so far is kept. Resume with: {again}"
