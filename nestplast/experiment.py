"""Experiments: what a search runs, read from a TOML file and validated before anything runs.

An experiment has five tables, each with defaults (see ``nestplast/experiments/default.toml``)::

    name = "istdp-small"
    [rule]       which rule, neuron, which connection types learn, fixed values, start point
    [network]    the spiking network (recurrent E/I or single neuron) and its input
    [trials]     how many randomised trials per candidate, and the ranges randomised
    [objective]  the loss: target rate, constraint intervals, L1 penalty, timing, blow-up band
    [search]     CMA-ES settings and stopping criteria, NEST threads per rank

An unknown key, a value of the wrong type or out of range, or an unknown rule is reported as
``ExperimentError`` naming the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from .neurons import NEURONS
from .rules import RULES, RuleLayout, UnknownRuleError, get_rule

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
CONNECTION_TYPES = ("EE", "EI", "IE", "II")  # source then target: "IE" is I -> E


class ExperimentError(ValueError):
    """A malformed experiment: the message names the file, the key and what was expected."""


@dataclass
class RuleSpec:
    name: str = "doublet"
    neuron: str = "iaf_psc_exp"
    mask: str | None = None  # taylor: free terms, e.g. "pre:000,pre:010,post:100"
    plastic: list[str] = field(default_factory=lambda: ["IE"])  # connection types that learn
    search: list[str] | None = None  # searched parameter names (default: all of the rule's)
    start: dict[str, float] = field(default_factory=dict)  # start point of the search (default: rule defaults)
    fixed: dict[str, float] = field(default_factory=dict)  # fixed synapse parameters, e.g. eta


@dataclass
class NetworkSpec:
    kind: str = "recurrent"  # "recurrent" E/I network, or "single_neuron" with plastic afferents
    n_e: int = 400
    n_i: int = 100
    p: float = 0.1  # connection probability (fixed in-degree p * N_source)
    neuron_params: dict[str, float] = field(default_factory=lambda: {"tau_m": 20.0, "t_ref": 2.0, "tau_syn_ex": 5.0,
                                                                      "tau_syn_in": 10.0})
    weights: dict[str, float] = field(default_factory=lambda: {"EE": 30.0, "EI": 30.0, "IE": 60.0, "II": 60.0})
    w_max: dict[str, float] = field(default_factory=lambda: {"EE": 100.0, "EI": 100.0, "IE": 300.0, "II": 300.0})
    delay: float = 1.5  # ms
    input_rate: float = 8000.0  # Hz of Poisson drive into each neuron (single neuron: per afferent)
    input_weight: float = 25.0
    # single neuron: numbers and rates of excitatory and inhibitory Poisson afferents
    n_e_inputs: int = 800
    n_i_inputs: int = 200
    input_rate_e: float = 5.0
    input_rate_i: float = 5.0
    resolution: float = 0.1  # ms


@dataclass
class TrialSpec:
    n: int = 1  # randomised trials per candidate, with common random numbers within a generation
    weight_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # initial plastic weights x U(a, b)
    input_rate_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    w_max_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class ObjectiveSpec:
    target_rate: float | None = 10.0  # Hz, of `population`; none: no target-rate term
    population: str = "E"
    constraints: dict[str, list[float]] = field(default_factory=dict)  # metric -> [low, high]
    l1: float = 0.0  # weight of the L1 penalty on the coefficients
    t_train: float = 10.0  # s of plasticity before scoring
    t_score: float = 2.0  # s of scoring (plasticity goes on)
    chunk: float = 0.5  # s between checks of the rate band and the wall time
    rate_band: list[float] = field(default_factory=lambda: [0.1, 100.0])  # Hz; outside: blow-up, abort
    max_wall_s: float = 600.0  # per evaluation; beyond: a timeout


@dataclass
class SearchSpec:
    population_size: int = 8
    sigma0: float = 0.3  # fraction of each parameter's search range
    max_generations: int = 15
    max_evaluations: int | None = None
    max_wall_s: float | None = None
    target_loss: float | None = None
    evaluate_mean: bool = True  # also evaluate the distribution mean every generation
    threads: int = 1  # NEST threads per rank; ranks x threads = cores
    # With MPI inside NEST: NEST's compressed spike delivery. Faster (about 1.4x on 2 ranks), but NEST 3.10
    # then carries state from one simulation to the next, so a resumed run or another rank/thread
    # split can diverge from the uninterrupted run.
    compressed_spikes: bool = False


@dataclass
class Experiment:
    name: str = "default"
    seed: int = 1
    rule: RuleSpec = field(default_factory=RuleSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    trials: TrialSpec = field(default_factory=TrialSpec)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    source: str = "<built-in>"

    def layout(self) -> RuleLayout:
        """The searched parameter vector: the rule's searched parameters per plastic connection type."""
        return RuleLayout(self.searched_rule(), tuple(self.rule.plastic))

    def searched_rule(self):
        """The rule with only ``rule.search`` parameters free (the others fixed at their start)."""
        rule = get_rule(self.rule.name, mask=self.rule.mask)
        if self.rule.search is None:
            return rule
        kept = tuple(p for p in rule.parameters if p.name in self.rule.search)
        frozen = {p.name: self.rule.start.get(p.name, p.default) for p in rule.parameters if p.name not in self.rule.search}
        return dataclasses.replace(rule, parameters=kept, fixed={**rule.fixed, **frozen})

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


# --------------------------------------------------------------------------- validation

def _check_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` (ints accepted for floats), or an ExperimentError."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is None and hint is Any:
        return value
    if type(None) in args:  # Optional[...]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExperimentError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExperimentError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ExperimentError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ExperimentError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ExperimentError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ExperimentError(f"{where}: expected a table, got {value!r}")
        return {k: _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported type {hint} at {where}")


def _fill(cls, data: dict, where: str):
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name != "source"]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ExperimentError(f"{where}: unknown key(s) {', '.join(unknown)}; expected one of: {', '.join(names)}")
    values = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ExperimentError(f"{key}: expected a table [{name}], got {value!r}")
            values[name] = _fill(hint, value, key)
        else:
            values[name] = _check_type(value, hint, key)
    return cls(**values)


def _require(condition: bool, where: str, expected: str, value: Any) -> None:
    if not condition:
        raise ExperimentError(f"{where}: expected {expected}, got {value!r}")


def _check_range(pair: list[float], where: str, positive: bool = True) -> None:
    _require(len(pair) == 2 and pair[0] <= pair[1] and (not positive or pair[0] > 0), where,
             "[low, high] with " + ("0 < low <= high" if positive else "low <= high"), pair)


def validate(exp: Experiment) -> Experiment:
    """Check values and cross-references; raise ExperimentError naming the key."""
    r, n, t, o, s = exp.rule, exp.network, exp.trials, exp.objective, exp.search
    try:
        rule = get_rule(r.name, mask=r.mask)
    except UnknownRuleError as err:
        raise ExperimentError(f"rule.name: {err}") from None
    except ValueError as err:
        raise ExperimentError(f"rule.mask: {err}") from None
    _require(r.neuron in NEURONS, "rule.neuron", f"one of {', '.join(sorted(NEURONS))}", r.neuron)
    _require(len(r.plastic) > 0 and all(ct in CONNECTION_TYPES for ct in r.plastic) and len(set(r.plastic)) == len(r.plastic),
             "rule.plastic", f"distinct connection types from {', '.join(CONNECTION_TYPES)}", r.plastic)
    for key, table in (("rule.search", r.search or []), ("rule.start", r.start)):
        unknown = sorted(set(table) - set(rule.names))
        _require(not unknown, key, f"parameters of rule {r.name!r}: {', '.join(rule.names)}", unknown)
    unknown = sorted(set(r.fixed) - set(rule.fixed))
    _require(not unknown, "rule.fixed", f"fixed parameters of rule {r.name!r}: {', '.join(sorted(rule.fixed))}", unknown)
    _require(r.search is None or len(r.search) > 0, "rule.search", "at least one parameter", r.search)
    for p in rule.parameters:
        if p.name in r.start:
            _require(p.low <= r.start[p.name] <= p.high, f"rule.start.{p.name}", f"a value in [{p.low}, {p.high}]",
                     r.start[p.name])

    _require(n.kind in ("recurrent", "single_neuron"), "network.kind", "'recurrent' or 'single_neuron'", n.kind)
    if n.kind == "single_neuron":
        _require(set(r.plastic) <= {"EE", "IE"}, "rule.plastic", "EE and/or IE for a single neuron (its afferents)",
                 r.plastic)
    for key in ("n_e", "n_i", "n_e_inputs", "n_i_inputs"):
        _require(getattr(n, key) >= 1, f"network.{key}", "an integer >= 1", getattr(n, key))
    _require(0 < n.p <= 1, "network.p", "a probability in (0, 1]", n.p)
    for key in ("delay", "resolution", "input_rate", "input_weight", "input_rate_e", "input_rate_i"):
        _require(getattr(n, key) > 0, f"network.{key}", "a positive number", getattr(n, key))
    _require(n.delay >= n.resolution, "network.delay", f"at least the resolution ({n.resolution} ms)", n.delay)
    for key in ("weights", "w_max"):
        table = getattr(n, key)
        unknown = sorted(set(table) - set(CONNECTION_TYPES))
        _require(not unknown, f"network.{key}", f"keys from {', '.join(CONNECTION_TYPES)}", unknown)
        for ct, value in table.items():
            _require(value > 0, f"network.{key}.{ct}", "a positive magnitude (inhibitory signs are applied for you)", value)
    for ct in r.plastic:
        _require(ct in n.w_max, f"network.w_max.{ct}", "a bound for every plastic connection type", None)
        _require(n.weights.get(ct, 0) <= n.w_max[ct], f"network.weights.{ct}", f"at most w_max ({n.w_max[ct]})",
                 n.weights.get(ct))

    _require(t.n >= 1, "trials.n", "an integer >= 1", t.n)
    for key in ("weight_scale", "input_rate_scale", "w_max_scale"):
        _check_range(getattr(t, key), f"trials.{key}")

    _require(o.population in ("E", "I"), "objective.population", "'E' or 'I'", o.population)
    _require(o.target_rate is None or o.target_rate > 0, "objective.target_rate", "a positive rate in Hz", o.target_rate)
    for key in ("t_train", "t_score", "chunk", "max_wall_s"):
        _require(getattr(o, key) > 0, f"objective.{key}", "a positive number of seconds", getattr(o, key))
    _require(o.l1 >= 0, "objective.l1", "a non-negative weight", o.l1)
    _check_range(o.rate_band, "objective.rate_band", positive=False)
    if o.constraints:
        from .objectives import FSBI_CONSTRAINTS  # the metrics a constraint may name
    for metric, interval in o.constraints.items():
        _require(metric in FSBI_CONSTRAINTS, f"objective.constraints.{metric}",
                 f"a metric from {', '.join(sorted(FSBI_CONSTRAINTS))}", metric)
        _check_range(interval, f"objective.constraints.{metric}", positive=False)
    _require(o.target_rate is not None or o.constraints, "objective", "a target_rate or some constraints", None)

    _require(s.population_size >= 2, "search.population_size", "an integer >= 2", s.population_size)
    _require(0 < s.sigma0 <= 1, "search.sigma0", "a fraction of the search range in (0, 1]", s.sigma0)
    _require(s.max_generations >= 1, "search.max_generations", "an integer >= 1", s.max_generations)
    _require(s.threads >= 1, "search.threads", "an integer >= 1", s.threads)
    return exp


def parse(data: dict, source: str = "<dict>") -> Experiment:
    """An experiment from a dict as TOML gives it; ExperimentError names ``source`` and the key."""
    try:
        exp = _fill(Experiment, data, "")
        exp.source = source
        return validate(exp)
    except ExperimentError as err:
        raise ExperimentError(f"{source}: {err}") from None


def load(path: str | Path) -> Experiment:
    """Read and validate an experiment file; a name without a path is looked up among the
    experiments shipped with nestplast (``nestplast/experiments/*.toml``)."""
    path = Path(path)
    if not path.exists() and (EXPERIMENTS_DIR / path.with_suffix(".toml").name).exists():
        path = EXPERIMENTS_DIR / path.with_suffix(".toml").name
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml")))
        raise ExperimentError(f"{path}: no such experiment file (shipped experiments: {shipped})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML: {err}") from None
    return parse(data, str(path))


def default() -> Experiment:
    """The built-in default experiment (``nestplast/experiments/default.toml``)."""
    return load(EXPERIMENTS_DIR / "default.toml")


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


__all__ = ["Experiment", "ExperimentError", "load", "parse", "default", "available", "CONNECTION_TYPES", "RULES"]
