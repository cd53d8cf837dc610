"""A user's own plasticity rule: a NESTML synapse file, with the parameters to search given in the
experiment (bounds, default, log space). It is checked before anything is compiled, then compiled
through the same cache and searched like a built-in rule::

    [rule]
    file = "my_rule.nestml"        # relative to the experiment file
    weight = "w"                   # the weight variable (default w)
    [rule.parameters]              # the searched ones
    A_plus = { low = 0.0, high = 2.0, default = 0.5 }
    tau_plus = { low = 5.0, high = 100.0, default = 20.0, log = true }

The file's other parameters keep their NESTML defaults unless ``rule.fixed`` sets them. The rule
needs a ``Wmax`` parameter: nestplast sets it from ``network.w_max`` with the sign of the
connection type (negative for inhibitory synapses), so the rule should act on ``|w|`` and keep the
sign of ``Wmax``, as the built-in rules do (see ``nestml_models/doublet_synapse.nestml``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UserError
from .rules import Parameter, Rule

PARAMETER_KEYS = {"low", "high", "default", "log"}
_MODEL = re.compile(r"^(?:model|synapse)\s+(\w+)\s*:", re.M)
_BLOCK = re.compile(r"^(\s*)(parameters|state)\s*:\s*(?:#.*)?$")
_DECLARATION = re.compile(r"^\s+(\w+)\s+[^=#]+=")


class UserRuleError(UserError):
    """A user's rule file or its description in the experiment is wrong; the message names the
    file (and line) and what is wrong."""


def _declared(source: str, block: str) -> dict[str, int]:
    """Names declared in the ``block`` (parameters or state) of a NESTML model, with their lines."""
    names, inside, indent = {}, False, 0
    for number, line in enumerate(source.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        header = _BLOCK.match(line)
        if header:
            inside, indent = header.group(2) == block, len(header.group(1))
            continue
        if inside and len(line) - len(line.lstrip()) <= indent:
            inside = False
        if inside and (m := _DECLARATION.match(line)):
            names[m.group(1)] = number
    return names


def _parameter(name: str, spec: Any, where: str) -> Parameter:
    if not isinstance(spec, Mapping) or not {"low", "high"} <= set(spec) or set(spec) - PARAMETER_KEYS:
        raise UserRuleError(f"{where}: expected a table with low and high (optional default, log), got {spec!r}")
    numbers = {k: spec[k] for k in ("low", "high", "default") if k in spec}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers.values()):
        raise UserRuleError(f"{where}: low, high and default must be numbers, got {spec!r}")
    low, high = float(spec["low"]), float(spec["high"])
    default = float(spec.get("default", (low + high) / 2))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserRuleError(f"{where}.log: expected true or false, got {log!r}")
    if not low < high or not low <= default <= high or (log and low <= 0):
        raise UserRuleError(f"{where}: expected low < high, default in [low, high]"
                            f"{' and low > 0 (log space)' if log else ''}, got {spec!r}")
    return Parameter(name, default, low, high, log=log)


def rule_from_file(path: str | Path, parameters: Mapping[str, Any], *, name: str | None = None,
                   weight_variable: str = "w") -> Rule:
    """The :class:`~nestplast.rules.Rule` of a user's NESTML synapse ``path``, searching
    ``parameters`` (name -> {low, high, default, log}). Raises :class:`UserRuleError`."""
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as err:
        raise UserRuleError(f"rule.file: cannot read {path}: {err.strerror}") from None
    models = _MODEL.findall(source)
    if len(models) != 1:
        raise UserRuleError(f"{path}: expected one 'model NAME:' (a NESTML synapse), found {len(models)}")
    declared = _declared(source, "parameters")
    state = _declared(source, "state")
    if weight_variable not in state:
        raise UserRuleError(f"{path}: the weight variable {weight_variable!r} (rule.weight) is not in the state "
                            f"block (state: {', '.join(state) or 'none'})")
    if "Wmax" not in declared:
        raise UserRuleError(f"{path}: the rule needs a parameter Wmax (nestplast sets it from network.w_max, "
                            "negative for inhibitory connections); parameters: " + ", ".join(declared))
    if not parameters:
        raise UserRuleError("rule.parameters: name at least one parameter of the file to search, "
                            "e.g. A_plus = { low = 0.0, high = 2.0 }")
    missing = sorted(set(parameters) - set(declared))
    if missing:
        raise UserRuleError(f"rule.parameters: {', '.join(missing)} not in the parameters block of {path} "
                            f"(it declares: {', '.join(declared)})")
    searched = tuple(_parameter(n, spec, f"rule.parameters.{n}") for n, spec in parameters.items())
    return Rule(name=name or models[0], synapse=models[0], source=source, parameters=searched, fixed={},
                weight_variable=weight_variable,
                synaptic_traces=tuple(v for v in state if v != weight_variable),
                description=f"user rule from {path}", path=str(path.resolve()),
                source_parameters=tuple(declared))
