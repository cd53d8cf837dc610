"""Words for messages: one place that says "1 rule" and "2 rules"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in its number: ``counted(1, "rule")`` is "1 rule", ``counted(2, "rule")``
    "2 rules"; irregular plurals are given (``counted(2, "rank stays", "ranks stay")``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
