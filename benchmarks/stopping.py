"""How a benchmark ends on SIGTERM (``kill``, ``timeout``) as on Ctrl-C: by an exception, so that
``subprocess.run`` ends its child and ``finally`` removes its temporary folders. SIGTERM ended the
benchmark alone: its search went on for 40 s with no one to read it, valgrind for minutes, and its
folders stayed in /tmp. Every benchmark's ``__main__`` is ``sys.exit(stopping.run(main))``.

Apart from nestplast (``nestplast.cli`` does the same for the commands): peer_brian2.py's workers
run in a Python that has Brian2 and not nestplast."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: a KeyboardInterrupt, so that whatever cleans up after Ctrl-C runs."""


def _raise_terminated(signum, frame) -> NoReturn:
    raise Terminated


def run(main: Callable[[], int | None]) -> int | None:
    """``main()``, with SIGTERM raised as :class:`Terminated`; a stop ends in one line and the
    shell's code (130 for Ctrl-C, 143 for SIGTERM) instead of a traceback."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return main()
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
