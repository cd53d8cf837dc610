"""What a setting given from Python counts as a number: numpy scalars do, ``True`` does not (a bool
is an int to Python, but ``n_trials=True`` is surely a mistake)."""

from __future__ import annotations

import numbers


def is_number(value: object) -> bool:
    """A real number (int, float or a numpy one), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_whole(value: object) -> bool:
    """A whole number (int or a numpy integer), not a bool: 2.0 is not one."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
