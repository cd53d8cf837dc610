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

The same file can be compiled for one's own NEST model, nothing searched:
``build(rule_from_file("my_rule.nestml"))``, ``build("my_rule.nestml")`` or
``python -m nestplast build my_rule.nestml``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import UserError
from .nestml_text import DECLARATION, block_lines, declarations
from .rules import Parameter, Rule, is_time_constant
from .values import is_number

PARAMETER_KEYS = {"low", "high", "default", "log"}
_MODEL = re.compile(r"^(?:model|synapse)\s+(\w+)\s*:", re.M)
# Types that are no physical unit, and units NEST holds as they are (NESTML converts the others, e.g.
# a time to ms: ``tau s = 0.02 s`` is 20 in NEST).
_PLAIN_TYPES = {"real", "integer", "boolean", "string", "ms", "mV", "pA", "nS", "pF", "1/ms", "Hz"}
# What NEST itself keeps on every connection (static_synapse's defaults, and a connection's status): a
# rule's parameter or state variable of one of these names compiled, then each evaluation failed
# (NEST sets a connection's delay itself) or NEST's own weight check answered for it.
NEST_CONNECTION_KEYS = ("delay", "element_type", "has_delay", "num_connections", "port", "receptor", "receptor_type",
                        "requires_symmetric", "sizeof", "source", "synapse_id", "synapse_model", "synapse_modelid",
                        "target", "target_thread", "weight", "weight_recorder")
# nestplast pairs the synapse with the neuron through this input port (the neuron's spikes).
POST_PORT = "post_spikes"
_POST_PORT = re.compile(rf"^\s+{POST_PORT}\s*<-\s*spike\b", re.M)
_EMIT = re.compile(r"^[^#\n]*\bemit_spike\s*\(", re.M)


class UserRuleError(UserError):
    """A user's rule file or its description in the experiment is wrong; the message names the
    file (and line) and what is wrong."""


def _parameter(name: str, spec: Any, where: str) -> Parameter:
    if not isinstance(spec, Mapping) or not {"low", "high"} <= set(spec) or set(spec) - PARAMETER_KEYS:
        raise UserRuleError(f"{where}: expected a table with low and high (optional default, log), got {spec!r}")
    numbers = {k: spec[k] for k in ("low", "high", "default") if k in spec}
    if not all(is_number(v) for v in numbers.values()):
        raise UserRuleError(f"{where}: low, high and default must be numbers, got {spec!r}")
    low, high = float(spec["low"]), float(spec["high"])
    default = float(spec.get("default", (low + high) / 2))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserRuleError(f"{where}.log: expected true or false, got {log!r}")
    if not low < high or not low <= default <= high or (log and low <= 0):
        raise UserRuleError(f"{where}: expected low < high, default in [low, high]"
                            f"{' and low > 0 (log space)' if log else ''}, got {spec!r}")
    if is_time_constant(name) and low <= 0:  # the built-in rules refuse it in NESTML; a user's rule ran with it
        raise UserRuleError(f"{where}: a time constant (its name starts with tau, as nestplast reads it: the L1 "
                            f"penalty leaves it out) must be positive: expected low > 0, got {spec!r}")
    return Parameter(name, default, low, high, log=log)


def _check_synapse(path: Path, source: str, model: str) -> None:
    """Refuse what NESTML would compile into something else than a working synapse, without a word
    (or with a bare traceback): each mistake below was made, and each cost a search or a model."""
    if not model.endswith("synapse"):
        # NESTML takes a model for a synapse only by its name; otherwise it builds a second neuron,
        # and nest.Connect finds no synapse model of the name.
        raise UserRuleError(f"{path}: the model is called {model!r}; NESTML compiles a model as a synapse only "
                            f"if its name ends in 'synapse' (otherwise as a neuron): call it e.g. {model}_synapse")
    if not _POST_PORT.search(source):
        raise UserRuleError(f"{path}: the synapse needs the input port '{POST_PORT} <- spike' (the postsynaptic "
                            "neuron's spikes, through which nestplast pairs it with the neuron) beside its "
                            "presynaptic port, e.g. pre_spikes <- spike")
    if not _EMIT.search(source):
        # it would compile and learn, but deliver nothing to the postsynaptic neuron
        raise UserRuleError(f"{path}: the synapse never calls emit_spike(...): its spikes would not reach the "
                            "postsynaptic neuron; end onReceive(pre_spikes) with emit_spike(w)")


def _emitted_weights(source: str) -> list[str]:
    """The first argument of each ``emit_spike(...)`` call outside comments (the weight the spike carries)."""
    emitted = []
    for match in _EMIT.finditer(source):
        depth, start = 0, match.end()
        for i in range(start, len(source)):
            if source[i] in "([":
                depth += 1
            elif source[i] in ")]" and depth > 0:
                depth -= 1
            elif source[i] in ",)" and depth == 0:
                emitted.append(source[start:i].strip())
                break
    return emitted


def _check_emitted(path: Path, source: str, weight_variable: str) -> None:
    """Refuse a weight variable the spikes do not carry: NEST's weight of the connection (set,
    recorded and bounded by nestplast) is the weight variable, so with emit_spike(w) and rule.weight
    = "pre_trace" the trace was recorded as the weight and w, never set, reached the neuron."""
    for emitted in _emitted_weights(source):
        if not re.search(rf"\b{re.escape(weight_variable)}\b", emitted):
            raise UserRuleError(f"{path}: the synapse's spikes carry the weight {emitted} (emit_spike), which is not "
                                f"the weight variable {weight_variable!r}: NEST's weight of the connection, which "
                                f"nestplast sets, records and bounds, would not be what reaches the neuron; name the "
                                f"emitted weight as the weight variable (rule.weight, --weight), or send an expression "
                                f"of the weight variable (e.g. emit_spike({weight_variable} * u) for a weight "
                                f"scaled by a short-term factor u)")


def _nest_factor(unit: str) -> float:
    """The factor NESTML converts a value declared in ``unit`` by for NEST (1 for NEST's own units)."""
    if unit in _PLAIN_TYPES:
        return 1.0
    from astropy import units  # NESTML's own dependency and converter (imported only here: slow)
    from pynestml.codegeneration.nest_unit_converter import NESTUnitConverter

    try:
        return NESTUnitConverter.get_factor(units.Unit(unit))
    except (ValueError, TypeError):  # not a unit: NESTML says so when it compiles
        return 1.0


def converted_units(rule: Rule) -> dict[str, tuple[str, float]]:
    """The parameters of a user's ``rule`` declared in a unit NEST holds in another, each with that
    unit and the factor NESTML converts by (``tau s``: ("s", 1000.0), NEST's value in ms)."""
    declared = declarations(rule.source, "parameters")
    return {name: (unit, factor) for name, (_line, unit) in declared.items()
            if name in rule.source_parameters and not math.isclose(factor := _nest_factor(unit), 1.0)}


def check_nest_units(rule: Rule, names: Iterable[str], where: str) -> None:
    """Refuse values given for parameters of a user's ``rule`` that its file declares in a unit NEST
    holds in another: NESTML converts the file's own values (``tau s = 0.02 s`` is 20, in ms, in
    NEST), but a value nestplast sets (searched, or in rule.fixed) reaches NEST as it is."""
    declared = declarations(rule.source, "parameters")
    for name in names:
        line, unit = declared.get(name, (0, "real"))
        factor = _nest_factor(unit)
        if not math.isclose(factor, 1.0):
            raise UserRuleError(f"{where}.{name}: {rule.path}:{line} declares {name} in {unit}, and NEST holds "
                                f"it in its own units (1 {unit} = {factor:g} of them; times in ms, mV, pA, nS, pF): "
                                "the values nestplast sets reach NEST unconverted; declare it in NEST's unit, "
                                f"e.g. {name} ms = 20 ms for a time")


def _wmax_declaration(rule: Rule) -> tuple[int, str, str]:
    """The line declaring Wmax in a user's ``rule``, its code (no comment), and its constraint (``[[...]]``, or "")."""
    line = declarations(rule.source, "parameters")["Wmax"][0]
    code = rule.source.splitlines()[line - 1].split("#")[0]
    return line, code, code[code.find("[["):].split("]]")[0] + "]]" if "[[" in code else ""


def forbids_negative_wmax(rule: Rule) -> bool:
    """Whether the constraint of a user's ``rule`` on Wmax bounds it from below (``Wmax >= 0``,
    ``0 < Wmax``), so that NESTML refuses a negative Wmax (not ``Wmax <= 0``, ``abs(Wmin) <= abs(Wmax)``)."""
    return "Wmax" in rule.source_parameters and bool(re.search(r"\bWmax\s*>|<=?\s*Wmax\b", _wmax_declaration(rule)[2]))


def check_negative_wmax(rule: Rule, ct: str, where: str) -> None:
    """Refuse a user's ``rule`` that cannot take the negative Wmax nestplast gives it on the
    inhibitory connection type ``ct``: NEST would refuse every candidate of the search."""
    line, code, constraint = _wmax_declaration(rule)
    if forbids_negative_wmax(rule):
        raise UserRuleError(f"{rule.path}:{line}: Wmax has a constraint ({constraint}), but "
                            f"on the inhibitory connection type {ct} ({where}) nestplast gives Wmax a negative "
                            "value (the sign of the weights): remove the constraint, and let the rule act on |w|")
    weight_line = declarations(rule.source, "state")[rule.weight_variable][0]
    declaration = rule.source.splitlines()[weight_line - 1].split("#")[0]
    weight = declaration.split("=", 1)[1].split("[[")[0].strip()  # the default value, e.g. 1.0 or 0 pA
    number = re.match(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", weight)
    zero = number is not None and float(number.group(0)) == 0
    if "@homogeneous" not in code and not zero:
        # a Wmax per connection is held against the file's default weight when nestplast sets it
        raise UserRuleError(f"{rule.path}:{line}: on the inhibitory connection type {ct} ({where}) nestplast "
                            f"gives Wmax a negative value, which NEST refuses against the default weight "
                            f"{rule.weight_variable} = {weight} (line {weight_line}) for every candidate: "
                            "mark Wmax @homogeneous (one value per synapse model), as in "
                            "examples/own_rule/pair_stdp_synapse.nestml")


def rule_from_file(path: str | Path, parameters: Mapping[str, Any] | None = None, *, name: str | None = None,
                   weight_variable: str = "w") -> Rule:
    """The :class:`~nestplast.rules.Rule` of a user's NESTML synapse ``path``, searching
    ``parameters`` (name -> {low, high, default, log}). ``parameters=None`` searches nothing: the
    rule is for :func:`~nestplast.builder.build` and one's own NEST model, and needs no ``Wmax``.
    Raises :class:`UserRuleError`."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8-sig")  # NESTML is UTF-8; a BOM is skipped
    except OSError as err:
        raise UserRuleError(f"cannot read the rule file {path}: {err.strerror}") from None
    except UnicodeDecodeError:  # a run's results.sqlite, a compiled module: Python's codec message named neither
        raise UserRuleError(f"{path} is no rule file: a NESTML file is text, this one is not") from None
    models = _MODEL.findall(source)
    if len(models) != 1:
        raise UserRuleError(f"{path}: expected one 'model NAME:' (a NESTML synapse), found {len(models)}")
    _check_synapse(path, source, models[0])
    declared = declarations(source, "parameters")
    state = declarations(source, "state")
    if weight_variable not in state:
        # in an experiment rule.weight names it; for one's own model, build() and the command line
        how = ("name yours with rule.weight" if parameters is not None else
               f"name yours: python -m nestplast build {path} --weight NAME, or in Python "
               f"build(rule_from_file({str(path)!r}, weight_variable='NAME')) from nestplast.user_rules")
        raise UserRuleError(f"{path}: the weight variable {weight_variable!r} is not in the state block "
                            f"(state: {', '.join(state) or 'none'}); {how}")
    _check_emitted(path, source, weight_variable)
    if weight_variable == "weight":  # NESTML 9's synapse templates end in a jinja2 UndefinedError on this name
        raise UserRuleError(f"{path}: a weight variable named 'weight' cannot be compiled (NESTML's templates fail on "
                            "that name, which NEST uses for the connection's own weight): rename it in the file, "
                            "e.g. to w (the default weight variable)")
    for variable, (line, _) in {**declared, **state}.items():
        if variable in NEST_CONNECTION_KEYS:
            raise UserRuleError(f"{path}:{line}: {variable!r} is the name of NEST's own {variable} of every connection, "
                                f"which NEST reads and sets itself, not the rule's: rename it in the file (e.g. "
                                f"{variable}_rule)")
    if parameters is None:  # for one's own NEST model (build): nothing searched, nestplast sets no Wmax
        parameters = {}
    else:
        if "Wmax" not in declared:
            raise UserRuleError(f"{path}: the rule needs a parameter Wmax (nestplast sets it from network.w_max, "
                                "negative for inhibitory connections); parameters: " + ", ".join(declared))
        if not parameters:
            raise UserRuleError("rule.parameters: name at least one parameter of the file to search, "
                                "e.g. A_plus = { low = 0.0, high = 2.0 }")
        missing = sorted(set(parameters) - set(declared))
        if missing:
            if missing[0] in state:
                why = f"; {missing[0]} is a state variable (line {state[missing[0]][0]}), not a parameter"
            else:  # a line of the block that starts with the name but declares nothing: most likely a typo
                why = "".join([f"; line {n} ({text.strip()!r}) is no declaration 'name type = value'"
                               for n, text in block_lines(source, "parameters")
                               if re.match(rf"\s+{re.escape(missing[0])}\b", text) and not DECLARATION.match(text)][:1])
            raise UserRuleError(f"rule.parameters: {', '.join(missing)} not in the parameters block of {path} "
                                f"(it declares: {', '.join(declared)}){why}")
    searched = tuple(_parameter(n, spec, f"rule.parameters.{n}") for n, spec in parameters.items())
    return Rule(name=name or models[0], synapse=models[0], source=source, parameters=searched, fixed={},
                weight_variable=weight_variable,
                synaptic_traces=tuple(v for v in state if v != weight_variable),
                description=f"user rule from {path}", path=str(path.resolve()),
                source_parameters=tuple(declared))
