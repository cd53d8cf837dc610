"""What a setting given from Python counts as a number: numpy scalars do, ``True`` does not (a bool
is an int to Python, but ``n_trials=True`` is surely a mistake); and numbers as JSON takes them."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def is_number(value: object) -> bool:
    """A real number (int, float or a numpy one), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_whole(value: object) -> bool:
    """A whole number (int or a numpy integer), not a bool: 2.0 is not one."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plain(value: object) -> object:
    """A numpy scalar as the Python number it holds (``np.float32(0.5)`` -> 0.5), anything else as it is:
    what goes into a run's JSON records must be Python's own."""
    return value.item() if isinstance(value, np.generic) else value


def json_safe(value: Any) -> Any:
    """``value`` (nested dicts, lists and tuples) with None for every NaN and infinity, which JSON
    does not have (Python's json writes them as NaN and Infinity, which other readers refuse)."""
    if is_number(value) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
