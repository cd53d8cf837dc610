"""Reading a NESTML model's declarations from its text, before NESTML parses it: which names a
``parameters`` or ``state`` block declares, on which line, with which type or plain value. The
neurons and the users' rule files are read the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator

_BLOCK = re.compile(r"^(\s*)(parameters|state)\s*:\s*(?:#.*)?$")
# One declaration: ``[recordable] name[, name ...] type = value`` (NESTML allows several names).
DECLARATION = re.compile(r"^\s+(?:recordable\s+)?(\w+(?:\s*,\s*\w+)*)\s+([^=#,]+?)\s*=")


def block_lines(source: str, block: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of each line inside the ``block`` (parameters or state) blocks of a NESTML model."""
    inside, indent = False, 0
    for number, line in enumerate(source.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        header = _BLOCK.match(line)
        if header:
            inside, indent = header.group(2) == block, len(header.group(1))
            continue
        if inside and len(line) - len(line.lstrip()) <= indent:
            inside = False
        if inside:
            yield number, line


def declarations(source: str, block: str) -> dict[str, tuple[int, str]]:
    """Names declared in the ``block`` (parameters or state) blocks of a NESTML model, in their
    order, with their lines and types (``real``, ``ms``, ...)."""
    names = {}
    for number, line in block_lines(source, block):
        if m := DECLARATION.match(line):
            names.update((name.strip(), (number, m.group(2).strip())) for name in m.group(1).split(","))
    return names


def declared_number(source: str, name: str) -> float | None:
    """The value a NESTML model's parameters block gives ``name`` where it is a plain number
    (``Wmax real = -100.0 @homogeneous``: -100.0), else None."""
    for _number, line in block_lines(source, "parameters"):
        if (m := DECLARATION.match(line)) and name in (n.strip() for n in m.group(1).split(",")):
            value = re.split(r"#|@|\[\[", line[m.end():], maxsplit=1)[0].strip()
            try:
                return float(value)
            except ValueError:
                return None
    return None
