"""Reading a user's ``.npz`` archive (``numpy.savez``): one reader for recordings, behaviour files
and weight matrices, so that each says in the same words what is wrong with a file that is not one."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from .errors import UserError


def read_npz(path: str | os.PathLike, error: type[UserError], what: str, single: str | None = None) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``path``; ``error`` (naming the file) for anything
    that is not one. ``what`` says what the archive should hold and how to make one: numpy's own
    message for a CSV or text file is about pickles, which tells a user nothing. ``single``: the
    name a lone ``.npy`` array (``numpy.save``) is read as, where one array is all there is to give."""
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e})") from None
    if head == b"\x93NUMPY" and single is not None:
        try:
            return {single: np.load(path, allow_pickle=False)}
        except (OSError, ValueError, EOFError) as e:
            raise error(f"{path}: not a readable .npy file ({e})") from None
    if head == b"\x93NUMPY":
        raise error(f"{path}: a single .npy array, not an .npz archive of named fields; expected {what}")
    if not zipfile.is_zipfile(path):
        raise error(f"{path}: not a readable .npz file: not a zip archive as numpy.savez writes (a CSV or "
                    f"text file?); expected {what}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise error(f"{path}: not a readable .npz file ({e})") from None
    raw = {}
    with data:
        for key in data.files:
            try:
                raw[key] = data[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise error(f"{path}: {key}: cannot be read ({e}); store plain numeric arrays") from None
    return raw
