"""argparse types for the benchmarks' counts and durations: 0 or a negative number ended a run in
a traceback after its work (``--repeats 0``: "no median for empty data"), or skipped a stage
without a word (``--duration -5``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(least: float, kind: type = int) -> Callable[[str], float]:
    """An argparse ``type``: a ``kind`` (int or float) of at least ``least``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not value >= least:
            raise argparse.ArgumentTypeError(f"expected at least {least:g}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
