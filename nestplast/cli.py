"""One convention for every command line: user errors are one line ``error: ...`` on stderr with
exit code 2 (no traceback), Ctrl-C is exit code 130 with one line, bugs keep their traceback.

Commands parse with :class:`ArgumentParser` and run inside :func:`run_command`::

    def main(argv=None) -> int:
        args = parser().parse_args(argv)      # bad arguments raise UsageError
        ...
    sys.exit(run_command(main))
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .errors import UsageError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises :class:`UsageError` (caught by :func:`run_command`)
    instead of printing usage and exiting from inside the library."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def report_error(message: str, *, rank: int = 0) -> None:
    """Print ``error: message`` once (on rank 0 under MPI)."""
    if rank == 0:
        print(f"error: {message}", file=sys.stderr, flush=True)


def run_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, *,
                interrupted: Callable[[], str] | None = None) -> int:
    """Call ``main(argv)`` and turn user errors and Ctrl-C into exit codes with one line.
    ``interrupted`` may say what the user can do after Ctrl-C (e.g. how to resume)."""
    try:
        return main(argv)
    except UserError as err:
        report_error(str(err))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"interrupted{': ' + interrupted() if interrupted else ''}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # --help and --version exit through argparse
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USER_ERROR


def resume_hint(out, command: str, step: str = "generation", item: str = "evaluation") -> str:
    """After Ctrl-C: how far the run in ``out`` got (its last complete ``step``), and the
    ``command`` that goes on from there."""
    from .store import RunStore, StoreError

    try:
        store = RunStore.open(out, read_only=True)
        last = store.last_complete_generation()
        store.close()
    except StoreError:
        return "no run was recorded"
    done = f"no {step} completed" if last is None else f"after {step} {last}"
    return f"{done}; every {item} so far is kept. Resume with: {command} --out {out} --resume"
