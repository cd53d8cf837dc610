"""What a setting from Python counts as a number (nestplast.values)."""

import numpy as np
import pytest

from nestplast.values import is_number, is_whole


@pytest.mark.parametrize("value, number, whole", [
    (3, True, True), (np.int64(3), True, True), (np.uint8(3), True, True),
    (2.0, True, False), (np.float32(2.5), True, False), (float("nan"), True, False),
    (True, False, False), (np.bool_(True), False, False), ("3", False, False), (None, False, False),
])
def test_numbers_from_python(value, number, whole):
    assert is_number(value) is number
    assert is_whole(value) is whole


def test_plain_gives_python_numbers():
    from nestplast.values import plain

    assert type(plain(np.float32(0.5))) is float and plain(np.float32(0.5)) == 0.5
    assert type(plain(np.int64(3))) is int and plain("a") == "a" and plain(True) is True


def test_json_safe_leaves_no_number_that_json_lacks():
    """Python's json writes NaN and Infinity, which other JSON readers refuse; a tuple (an
    interval) was passed through with its NaN."""
    import json

    import numpy as np

    from nestplast.values import json_safe

    value = {"a": float("nan"), "b": [1.0, float("inf")], "c": (np.float32("nan"), 2), "d": "nan", "e": -np.inf}
    assert json.loads(json.dumps(json_safe(value), allow_nan=False)) == {
        "a": None, "b": [1.0, None], "c": [None, 2], "d": "nan", "e": None}
