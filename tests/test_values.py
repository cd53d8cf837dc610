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
