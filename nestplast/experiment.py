"""Experiments: what a run simulates and optimises, read from a TOML file and validated before
anything runs.

Every key, its default, its meaning and its check live in one table: the dataclasses below, one
per TOML table, each field declared with :func:`option`. Validation is derived from that table
(:func:`validate`), ``python -m nestplast.search --show-defaults`` prints it, and the built-in
default experiment (``nestplast/experiments/default.toml``) is the table's defaults (a test holds
them equal)::

    name = "istdp-small"
    [rule]       which rule, neuron, which connection types learn, fixed values, start point
    [network]    the spiking network (recurrent E/I or single neuron) and its input
    [trials]     how many randomised trials per candidate, and the ranges randomised
    [objective]  the loss: target rate, constraint intervals, L1 penalty, timing, blow-up band
    [search]     the strategy (CMA-ES), its stopping criteria, NEST threads per rank
    [filter]     rule families (``nestplast filter``): rounds, simulations, bounds per round, nuisance

An unknown key, a value of the wrong type or out of range, or an unknown rule is reported as
``ExperimentError`` naming the file, the key and what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import shutil
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from .errors import UnknownNameError, UserError
from .neurons import DRIVE_PARAMS, NEURONS, get_neuron
from .objectives import FSBI_CONSTRAINTS, RATE_BIN_MS, SPIKES_PER_BIN, noise_shift
from .rules import REWARD_INPUT, RULES, Rule, RuleLayout, get_rule, is_time_constant
from .store import DB_NAME, RunStore
from .values import is_number, is_whole, plain

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
CONNECTION_TYPES = ("EE", "EI", "IE", "II")  # source then target: "IE" is I -> E
PER_TYPE_KEYS = ("name", "mask", "mlp", "search", "start", "fixed")  # what rule.by_type may change per type


class ExperimentError(UserError, ValueError):
    """A malformed experiment: the message names the file, the key and what was expected."""


# --------------------------------------------------------------------------- the options table

@dataclass(frozen=True)
class Check:
    """A condition on one value, and the words for what is expected when it fails."""

    test: Callable[[Any], bool]
    expected: str


POSITIVE = Check(lambda v: 0 < v < math.inf, "a positive number")
NON_NEGATIVE = Check(lambda v: 0 <= v < math.inf, "a non-negative number")
SECONDS = Check(lambda v: 0 < v < math.inf, "a positive number of seconds")
AT_LEAST_1 = Check(lambda v: v >= 1, "an integer >= 1")
POPULATION_SIZE = Check(lambda v: v >= 1, "an integer >= 1; >= 2 in a recurrent network")
PROBABILITY = Check(lambda v: 0 < v <= 1, "a probability in (0, 1]")
SEED = Check(lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
LOSS = Check(lambda v: 0 <= v < math.inf, "a loss >= 0 (losses are never negative: a lower target never stops a run)")


def one_of(*values: Any) -> Check:
    """A key whose value is one of ``values``."""
    return Check(lambda v: v in values, " or ".join(repr(v) for v in values))


def interval(positive: bool = False) -> Check:
    """A key whose value is [low, high] with low <= high (and low > 0 where ``positive``)."""
    return Check(lambda v: len(v) == 2 and v[0] <= v[1] and (not positive or v[0] > 0),
                 "[low, high] with " + ("0 < low <= high" if positive else "low <= high"))


def magnitudes(keys: tuple[str, ...]) -> Check:
    """A table of positive, finite magnitudes keyed by some of ``keys`` (connection types)."""
    return Check(lambda t: set(t) <= set(keys) and all(0 < v < math.inf for v in t.values()),
                 f"positive magnitudes keyed by {', '.join(keys)} (inhibitory signs are applied for you)")


def optional(check: Check) -> Check:
    """``check``, or no value (None)."""
    return Check(lambda v: v is None or check.test(v), check.expected)


def option(default: Any, doc: str, check: Check | None = None, *, resumable: bool = False) -> Any:
    """One experiment key: its ``default``, what it means (``doc``), and the ``check`` its value
    must pass. ``resumable`` keys may differ when a run is resumed (they only say when to stop)."""
    metadata = {"doc": doc, "check": check, "resumable": resumable}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class _Table:
    """An experiment table that refuses attributes it does not have: in Python, a misspelt key
    (``exp.search.max_generation = 5``) would otherwise be a new attribute, silently ignored."""

    def __setattr__(self, name: str, value: Any) -> None:
        keys = [f.name for f in fields(self)]
        if name not in keys:
            close = difflib.get_close_matches(name, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AttributeError(f"{type(self).__name__} has no option {name!r}{hint}; its options: {', '.join(keys)}")
        object.__setattr__(self, name, value)


@dataclass
class RuleSpec(_Table):
    name: str = option("doublet", f"plasticity rule: {', '.join(RULES)} (with `file`: a label for your own rule; "
                                  "left at doublet, the file's model name)")
    file: str | None = option(None, "your own NESTML synapse file (relative to the experiment file); "
                                    "see rule.parameters")
    parameters: dict[str, dict[str, Any]] = option({}, "with `file`: the searched parameters, e.g. "
                                                       "A_plus = { low = 0.0, high = 2.0, default = 0.5, log = false }")
    weight: str = option("w", "with `file`: the rule's weight variable")
    neuron: str = option("iaf_psc_exp", "postsynaptic neuron model the rule is compiled with",
                         one_of(*sorted(NEURONS)))
    mask: str | None = option(None, "taylor and reward only: the free terms, e.g. 'pre:000,pre:010,post:100' "
                                    "(unset: taylor frees all 54, reward 'pre:010,forget')")
    mlp: dict[str, Any] = option({}, "mlp and mlp_fsbi only: the network's shape, e.g. { hidden = 4, inputs = "
                                     "[\"x_pre\", \"x_post\"] }; for mlp: hidden (or layers), inputs, activations, "
                                     "frozen_seed, scales; for mlp_fsbi: frozen_seed (see nestplast.rules.MLPSpec)")
    plastic: list[str] = option(["IE"], "connection types that learn (source then target: IE is I -> E)",
                                Check(lambda v: 0 < len(v) == len(set(v)) and set(v) <= set(CONNECTION_TYPES),
                                      f"distinct connection types from {', '.join(CONNECTION_TYPES)}"))
    search: list[str] | None = option(None, "searched parameter names (default: all of the rule's); "
                                            "the others stay at their start value")
    start: dict[str, float] = option({}, "start point of the search, by parameter (default: the rule's defaults)")
    fixed: dict[str, float] = option({}, "fixed synapse parameters, e.g. eta (the rule's defaults otherwise; "
                                         "Wmax comes from network.w_max)")
    by_type: dict[str, dict[str, Any]] = option({}, "co-active rules: per plastic connection type, another rule or "
                                                    "other settings (keys name, mask, mlp, search, start, fixed), e.g. "
                                                    "IE = { name = \"mlp\" }; a type not named here takes the rule above; "
                                                    "a key not set is the rule's above (mask, mlp, search and start "
                                                    "only for the same rule); "
                                                    "a mask or mlp of its own only with another name (one module holds "
                                                    "one variant of a rule: choose a type's terms with search); "
                                                    "for the same rule, fixed and start add to the rule's",
                                                Check(lambda t: set(t) <= set(CONNECTION_TYPES) and all(
                                                    isinstance(v, dict) and set(v) <= set(PER_TYPE_KEYS)
                                                    for v in t.values()),
                                                      "tables keyed by connection type, each with keys from "
                                                      "name, mask, mlp, search, start, fixed"))


@dataclass
class NetworkSpec(_Table):
    kind: str = option("recurrent", "'recurrent' E/I network, or 'single_neuron' with plastic afferents",
                       one_of("recurrent", "single_neuron"))
    n_e: int = option(200, "recurrent: excitatory neurons", POPULATION_SIZE)
    n_i: int = option(50, "recurrent: inhibitory neurons", POPULATION_SIZE)
    p: float = option(0.2, "recurrent: connection probability (fixed in-degree p * N_source, rounded, at least 1; "
                           "no neuron connects to itself)", PROBABILITY)
    neuron_params: dict[str, float] = option({"tau_m": 20.0, "t_ref": 2.0, "tau_syn_ex": 5.0, "tau_syn_in": 10.0},
                                             "neuron parameters, NEST's names (tau_syn_ex, t_ref) accepted; a table "
                                             "given replaces this one (keys left out take the NESTML neuron's own)")
    weights: dict[str, float] = option({"EE": 30.0, "EI": 30.0, "IE": 60.0, "II": 60.0},
                                       "initial weight per connection type (pA or nS)", magnitudes(CONNECTION_TYPES))
    w_max: dict[str, float] = option({"EE": 100.0, "EI": 100.0, "IE": 300.0, "II": 300.0},
                                     "upper bound of |w| per plastic connection type", magnitudes(CONNECTION_TYPES))
    delay: float = option(1.5, "synaptic delay (ms; whole steps of network.resolution)", POSITIVE)
    input_rate: float = option(8000.0, "recurrent: Poisson drive into each neuron (Hz)", POSITIVE)
    input_weight: float = option(25.0, "recurrent: weight of the Poisson drive", POSITIVE)
    drive: str | None = option(None, "recurrent: 'internal', drawn inside each neuron (the same statistics "
                               "at a tenth of the cost; iaf_psc_exp), or 'poisson_generator', NEST's device; "
                               "unset: 'internal' where the neuron has it", optional(one_of("poisson_generator", "internal")))
    n_e_inputs: int = option(800, "single neuron: excitatory Poisson afferents", AT_LEAST_1)
    n_i_inputs: int = option(200, "single neuron: inhibitory Poisson afferents", AT_LEAST_1)
    input_rate_e: float = option(5.0, "single neuron: rate of each excitatory afferent (Hz)", POSITIVE)
    input_rate_i: float = option(5.0, "single neuron: rate of each inhibitory afferent (Hz)", POSITIVE)
    resolution: float = option(0.1, "simulation time step (ms; whole us, NEST's tic)", POSITIVE)

    def __setattr__(self, name: str, value: Any) -> None:
        changed = name == "drive" and value != getattr(self, "drive", None)
        super().__setattr__(name, value)
        if changed:  # given (or unset) by the user: no longer the one validate() chose for a neuron
            object.__setattr__(self, "drive_chosen_for", None)


@dataclass
class TrialSpec(_Table):
    n: int = option(2, "randomised trials per candidate (common random numbers within a generation)", AT_LEAST_1)
    weight_scale: list[float] = option([1.0, 1.0], "initial plastic weights x U(low, high)", interval(positive=True))
    input_rate_scale: list[float] = option([0.85, 1.15], "input rate x U(low, high): a rule must hold the target "
                                                         "whatever the drive", interval(positive=True))
    w_max_scale: list[float] = option([1.0, 1.0], "w_max x U(low, high)", interval(positive=True))


@dataclass
class ObjectiveSpec(_Table):
    target_rate: float | None = option(10.0, 'target rate of `population` (Hz); "none" (a string): no target-rate term',
                                       optional(POSITIVE))
    population: str = option("E", "the population scored: 'E' or 'I'", one_of("E", "I"))
    constraints: dict[str, list[float]] = option({"cv_isi": [0.7, 1e9], "w_blow": [0.0, 0.1]},
                                                 "accepted [low, high] per metric; outside adds a penalty (a table "
                                                 "given replaces this one)",
                                                 Check(lambda t: all(interval().test(v) for v in t.values()),
                                                       "[low, high] intervals with low <= high"))
    l1: float = option(0.0, "weight of the L1 penalty on the coefficients (not on time constants, tau_*)", NON_NEGATIVE)
    t_train: float = option(4.0, "seconds of plasticity before scoring", SECONDS)
    t_score: float = option(1.0, "seconds of scoring (plasticity goes on)", SECONDS)
    chunk: float = option(0.5, "seconds between checks of the rate band and the wall time", SECONDS)
    rate_band: list[float] = option([0.1, 100.0], "Hz; a low-passed rate outside is a blow-up and ends the "
                                                  "evaluation early (low-passed over 1 s from 10 Hz: a network silent "
                                                  "from the start leaves a low bound of 0.1 Hz after 4.6 s, one that "
                                                  "fired first later; one still inside is scored, silence by the "
                                                  "target_rate term: 50 at 0 Hz for 10 Hz)",
                                       # an empty band fails every evaluation
                                       Check(lambda v: len(v) == 2 and v[0] < v[1], "[low, high] with low < high"))
    max_wall_s: float = option(600.0, "seconds per evaluation; beyond: a timeout", SECONDS)


@dataclass
class SearchSpec(_Table):
    strategy: str = option("cmaes", "cmaes (pycma) or prior (independent draws from the box)",
                           one_of("cmaes", "prior"))
    population_size: int = option(8, "candidates per generation",
                                  Check(lambda v: v >= 2, "an integer >= 2"))
    sigma0: float = option(0.3, "CMA-ES initial step, as a fraction of each parameter's search range",
                           Check(lambda v: 0 < v <= 1, "a fraction of the search range in (0, 1]"))
    max_generations: int = option(12, "stop after this many generations (pycma maxiter)", AT_LEAST_1,
                                  resumable=True)
    max_evaluations: int | None = option(None, "stop at the end of the generation that takes the candidates "
                                         "evaluated beyond this many (pycma maxfevals)", optional(AT_LEAST_1),
                                         resumable=True)
    max_wall_s: float | None = option(None, "stop after this many seconds of evaluating (pycma timeout)",
                                      optional(SECONDS), resumable=True)
    target_loss: float | None = option(None, "stop once a candidate's loss, or the evaluated mean's, is at most this (pycma ftarget)",
                                       optional(LOSS), resumable=True)
    evaluate_mean: bool = option(True, "also evaluate the distribution's mean every generation (for the record; "
                                       "cmaes only: prior's draws have no mean)")
    cma_options: dict[str, Any] = option({}, "further pycma options (cma.CMAOptions(), e.g. { tolfun = 1e-3, "
                                             "CMA_diagonal = true }); not those the keys above set (popsize, "
                                             "maxiter, ...)")
    threads: int = option(1, "NEST threads per rank (ranks x threads = cores); changes the random streams",
                          AT_LEAST_1)
    # Faster (about 1.4x on 2 ranks), but NEST 3.10 then carries state from one simulation to the
    # next, so a resumed run or another rank/thread split can diverge from the uninterrupted run.
    compressed_spikes: bool = option(False, "with MPI inside NEST: NEST's compressed spike delivery (faster; "
                                            "results then depend on the order of simulations)")


def _metric_intervals(table: Any) -> bool:
    """Whether ``table`` holds [low, high] intervals keyed by metrics a constraint may name (FSBI_CONSTRAINTS)."""
    return isinstance(table, dict) and all(
        name in FSBI_CONSTRAINTS and isinstance(v, list) and len(v) == 2
        and all(is_number(b) for b in v)  # true is no bound
        and v[0] <= v[1] for name, v in table.items())


def _schedule(entries: Any) -> bool:
    return all(isinstance(e, dict) and set(e) == {"round", "constraints"} and is_whole(e["round"])
               and e["round"] >= 0 and _metric_intervals(e["constraints"])
               for e in entries)


METRIC_INTERVALS = Check(_metric_intervals, "[low, high] intervals (low <= high) keyed by metrics of the fSBI table: "
                                            + ", ".join(FSBI_CONSTRAINTS))
# The fSBI table (objectives.FSBI_CONSTRAINTS) without the final mean weights, which are in fSBI's
# conductance units (w_max = 20): add them for such a network. No upper bound is 1e9: the options
# table prints numbers as JSON, which has no infinity (TOML's inf would need its own case there,
# and runs recorded with 1e9 would then differ from the default on resume).
FILTER_CONSTRAINTS = {name: [low, min(high, 1e9)] for name, (low, high) in FSBI_CONSTRAINTS.items()
                      if not name.startswith("w_mean_")}


@dataclass
class FilterSpec(_Table):
    rounds: int = option(5, "rounds of `nestplast filter` (one generation each: draw, simulate, keep, refine)",
                         AT_LEAST_1, resumable=True)
    simulations_per_round: int = option(200, "candidate rules drawn and simulated per round (each on trials.n trials)",
                                        Check(lambda v: v >= 2, "an integer >= 2"))
    constraints: dict[str, list[float]] = option(FILTER_CONSTRAINTS, "accepted [low, high] per metric (mean over a "
                                                 "rule's trials) in every round; default the fSBI table without its "
                                                 "final mean weights (fSBI's units)", METRIC_INTERVALS)
    schedule: list[dict[str, Any]] = option([], "from round N on, bounds that replace or add to `constraints`, e.g. "
                                               "[{ round = 2, constraints = { cv_isi = [0.8, 1e9] } }]",
                                            Check(_schedule, "a list of { round = N (>= 0), constraints = { metric = "
                                                             "[low, high] } } with metrics of the fSBI table"))
    nuisance_input_rate: list[float] | None = option(None, "recurrent network: each simulation's Poisson drive (Hz) "
                                                           "drawn from U(low, high) and recorded as its input_rate "
                                                           "(instead of trials.input_rate_scale)",
                                                     optional(interval(positive=True)))
    max_epochs: int = option(200, "most training epochs per round of the flow (sbi NPE) and the classifier", AT_LEAST_1)
    restrict: bool = option(True, "restrict the prior away from blow-ups with sbi's RestrictionEstimator")


@dataclass
class Experiment(_Table):
    """An experiment: its ``name``, ``seed`` and one table per TOML table (``rule``, ``network``,
    ``trials``, ``objective``, ``search``, ``filter``; every key is in ``--show-defaults``).
    Made by :func:`load` or :func:`default`; change it in Python by attribute
    (``exp.search.max_generations = 3``) or with :func:`dataclasses.replace`: a misspelt name is
    refused at once, and the values are checked (:func:`validate`) when a run starts. For a
    variant that leaves ``exp`` as it was, change a ``copy.deepcopy(exp)``: ``dataclasses.replace``
    copies the top level only, and ``variant.search.max_generations = 5`` changes both."""

    name: str = option("default-istdp", "the experiment's name (default run directory: runs/<name>; a folder's "
                                        "name, not empty, no /)")
    seed: int = option(1, "seed of every random stream of the run", SEED)
    rule: RuleSpec = field(default_factory=RuleSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    trials: TrialSpec = field(default_factory=TrialSpec)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    filter: FilterSpec = field(default_factory=FilterSpec)
    source: str = "<built-in>"

    def layout(self) -> RuleLayout:
        """The searched parameter vector: the searched parameters of each plastic connection type's rule."""
        by_type = {ct: self.searched_rule(ct) for ct in self.rule.by_type if ct in self.rule.plastic}
        return RuleLayout(self.searched_rule(), tuple(self.rule.plastic), by_type)

    def rule_spec(self, ct: str | None = None) -> RuleSpec:
        """The [rule] table as it applies to connection type ``ct`` (``rule.by_type`` applied)."""
        if ct is None or ct not in self.rule.by_type:
            return self.rule
        changes = dict(self.rule.by_type[ct])
        if "name" in changes:  # another built-in rule, not the user's file
            changes.update(file=None, parameters={}, weight="w")
            if changes["name"] != self.rule.name:  # a mask or shape is its rule's: another rule does not take it over
                changes.setdefault("mask", None)
                changes.setdefault("mlp", {})
                # nor the searched parameters and their start: another rule's have other names (inherited,
                # they were refused as unknown until the type was given start = {} by hand)
                changes.setdefault("search", None)
                changes.setdefault("start", {})
        if "fixed" in changes and self._same_rule(changes):
            # the same rule: a setting given for the type adds to rule.fixed (IE = { fixed = { Wmin = 0.1 } }
            # must not drop the eta = 0.5 that rule.fixed gives every type)
            changes["fixed"] = {**self.rule.fixed, **changes["fixed"]}
        if "start" in changes and self._same_rule(changes):  # as fixed: the type's start adds to rule.start
            changes["start"] = {**self.rule.start, **changes["start"]}
        return dataclasses.replace(self.rule, **changes, by_type={})

    def _same_rule(self, per_type: dict) -> bool:
        """Whether a ``rule.by_type`` entry keeps the rule above (only other settings)."""
        return "name" not in per_type or (per_type["name"] == self.rule.name and self.rule.file is None)

    def fixed_added_to(self) -> list[str]:
        """The plastic types whose ``by_type`` fixed settings now add to ``rule.fixed`` where they
        replaced them until 2026-11-26 (a run begun then ran those types without the rule's)."""
        return [ct for ct, t in self.rule.by_type.items() if ct in self.rule.plastic and "fixed" in t
                and self._same_rule(t) and set(self.rule.fixed) - set(t["fixed"])]

    def base_rule(self, ct: str | None = None) -> Rule:
        """The rule as named (for connection type ``ct``): a built-in one, or the user's from ``rule.file``."""
        r = self.rule_spec(ct)
        if r.file is None:
            return get_rule(r.name, mask=r.mask, **r.mlp)
        from .user_rules import rule_from_file

        return rule_from_file(r.file, r.parameters, name=None if r.name == "doublet" else r.name,
                              weight_variable=r.weight)

    def searched_rule(self, ct: str | None = None) -> Rule:
        """The rule (for connection type ``ct``) with only ``rule.search`` parameters free (the
        others fixed at their start)."""
        r = self.rule_spec(ct)
        rule = self.base_rule(ct)
        if r.search is None:
            return rule
        kept = tuple(p for p in rule.parameters if p.name in r.search)
        frozen = {p.name: r.start.get(p.name, p.default) for p in rule.parameters if p.name not in r.search}
        return dataclasses.replace(rule, parameters=kept, fixed={**rule.fixed, **frozen})

    def fixed(self, ct: str) -> dict[str, float]:
        """The fixed settings of connection type ``ct``'s rule."""
        return self.rule_spec(ct).fixed

    def module_rules(self) -> list[Rule]:
        """The rules one module must hold: one per distinct rule on the plastic types."""
        return self.layout().rules

    def to_dict(self) -> dict:
        """Every option as plain data (what a run records), without ``source``."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    def digest(self) -> str:
        """A hash of everything that determines the run's results (not when it stops)."""
        data = self.to_dict()
        for section, key in resumable_keys():
            data[section].pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


SECTIONS = {"rule": RuleSpec, "network": NetworkSpec, "trials": TrialSpec, "objective": ObjectiveSpec,
            "search": SearchSpec, "filter": FilterSpec}


def resumable_keys() -> list[tuple[str, str]]:
    """(table, key) of the options a resumed run may change: when to stop."""
    return [(name, f.name) for name, cls in SECTIONS.items() for f in fields(cls) if f.metadata.get("resumable")]


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The keys (dotted) whose values differ between two experiments given as dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        where = f"{prefix}{key}"
        if not prefix and key in SECTIONS and isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += differences(a[key], b[key], where + ".")
        elif a.get(key) != b.get(key):
            out.append(f"{where}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def show_defaults(exp: Experiment | None = None) -> str:
    """The options table as TOML: every key with its default (or its value in ``exp``), its meaning
    and what it accepts (keys without a value are commented out; a key set to none says so)."""
    def lines(instance) -> list[str]:
        out = []
        for f in fields(instance):
            if dataclasses.is_dataclass(getattr(instance, f.name)) or f.name == "source":
                continue
            check = f.metadata["check"]
            doc = f.metadata["doc"] + (f" [{check.expected}]" if check else "")
            value = getattr(instance, f.name)
            if value is None and f.default is not None:  # set to none (e.g. no target rate): kept, or a file made
                out.append(f'{f.name} = "none"  # {doc}')  # from this table would bring the default back
            else:
                out.append(f"# {f.name} =  # {doc}" if value is None else f"{f.name} = {_toml(value)}  # {doc}")
        return out

    top = Experiment() if exp is None else exp
    what = "default" if exp is None else f"value in {exp.source}"
    text = [f"# nestplast experiment options: key = {what}  # meaning [accepted values]", *lines(top)]
    for name in SECTIONS:
        text += ["", f"[{name}]", *lines(getattr(top, name))]
    return "\n".join(text)


# --------------------------------------------------------------------------- validation

def _check_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` (ints accepted for floats), or an ExperimentError."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is None and hint is Any:  # a numpy number from Python code as Python's (the run's JSON takes no numpy)
        return plain(value) if is_number(value) else value
    if type(None) in args:  # Optional[...]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        if isinstance(value, str) and value.lower() == "none" and inner[0] is not str:
            return None  # TOML has no null: the options table's "none"
        return _check_type(value, inner[0], where)
    # numbers.Real/Integral: numpy scalars from Python code too (kept as numpy, they would not go into
    # the run's JSON record)
    if hint is float:
        if not is_number(value) or math.isnan(value):
            raise ExperimentError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if not is_whole(value):
            raise ExperimentError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ExperimentError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ExperimentError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if getattr(value, "ndim", None) == 1 and hasattr(value, "tolist"):  # a numpy array, as family() takes it
            value = value.tolist()
        if not isinstance(value, (list, tuple)):  # a tuple from Python code
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
        # a key of another section (max_generations under [objective]), or written above every [section]
        top = {f.name for f in fields(Experiment)} - set(SECTIONS) - {"source"}
        homes = {k: [f"in [{s}]" for s, spec in SECTIONS.items() if k in {f.name for f in fields(spec)}]
                 + (["at the top, above every [section]"] if where and k in top else []) for k in unknown}
        hint = "".join(f" ({k} belongs {' or '.join(h)})" for k, h in homes.items() if h)
        if not where:
            raise ExperimentError(f"unknown top-level key(s) {', '.join(unknown)}{hint}; expected one of: "
                                  f"{', '.join(names)}")
        raise ExperimentError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}; expected one of: {', '.join(names)}")
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


def _whole(steps: float) -> bool:
    """Whether ``steps`` is a whole number, to the rounding of a quotient of decimals."""
    return abs(steps - round(steps)) < 1e-6 * max(1.0, steps)


def _require(condition: bool, where: str, expected: str, value: Any) -> None:
    if not condition:
        raise ExperimentError(f"{where}: expected {expected}, got {value!r}")


def _check_options(instance, where: str) -> None:
    """Every option's type (converted as a file's would be: ints to floats, numpy scalars to
    Python's) and its own check, from the options table. The types matter for an experiment
    changed in Python, which has not been through :func:`parse`."""
    hints = get_type_hints(type(instance))
    for f in fields(instance):
        value = getattr(instance, f.name)
        key = f"{where}.{f.name}" if where else f.name
        if f.name == "source":
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(value, hints[f.name]):
                raise ExperimentError(f"{key}: expected a {hints[f.name].__name__}, got {value!r}")
            _check_options(value, key)
            continue
        value = _check_type(value, hints[f.name], key)
        setattr(instance, f.name, value)
        check = f.metadata.get("check")
        if check is not None and not check.test(value) and isinstance(value, dict):
            for name, entry in value.items():  # a table: name the entry at fault (the message quoted the whole table)
                _require(check.test({name: entry}), f"{key}.{name}", check.expected, entry)
        if check is not None:
            _require(check.test(value), key, check.expected, value)


def validate(exp: Experiment, *, to_run: bool = True, search: bool = True) -> Experiment:
    """Check every option (:func:`option`'s checks) and the cross-references between them; raise
    ExperimentError naming the key. ``to_run``: also refuse what would make every evaluation of a
    run fail, and pycma options it cannot use (not for reading a recorded run: a run made before
    such a check still reports). ``search``: the run scores ``objective.target_rate`` (a filter
    does not, and its default of 10 Hz refused a narrowed rate_band)."""
    _check_options(exp, "")
    r, n, o = exp.rule, exp.network, exp.objective
    _validate_rule(exp, None, "rule")
    for ct in r.by_type:
        _require(ct in r.plastic, f"rule.by_type.{ct}", f"a plastic connection type ({', '.join(r.plastic)})", ct)
        _validate_rule(exp, ct, f"rule.by_type.{ct}")
    synapses: dict[str, tuple[str, Rule]] = {}
    for ct in r.plastic:  # one module holds one variant of each NESTML synapse
        rule, spec = exp.base_rule(ct), exp.rule_spec(ct)
        first_ct, first = synapses.setdefault(rule.synapse, (ct, rule))
        if first.source == rule.source:
            continue
        if first.path != rule.path:  # a file's model named as a built-in's or another file's: no mask differs
            def origin(one: Rule) -> str:
                return f"your file {one.path}" if one.path else f"the built-in rule {one.name!r}"

            _require(False, f"rule.by_type.{ct if ct in r.by_type else first_ct}",
                     f"one NESTML model per name in a module: {origin(rule)} ({ct}) and {origin(first)} ({first_ct}) "
                     f"both define {rule.synapse}; rename the model in your file (model NAME_synapse:)",
                     rule.synapse)
        # a variant is a mask (taylor, reward) or a shape (mlp): name the one that differs ("got None" for a shape)
        what, given = ("mask", spec.mask) if spec.mask is not None or not spec.mlp else ("MLP shape", spec.mlp)
        _require(False, f"rule.by_type.{ct}", f"the same variant of {rule.synapse} on every type that uses it (one "
                 "module holds one: one mask, one MLP shape; choose terms per type with `search` instead)",
                 f"another {what}, {given}")

    if n.kind == "single_neuron":
        _require(set(r.plastic) <= {"EE", "IE"}, "rule.plastic", "EE and/or IE for a single neuron (its afferents)",
                 r.plastic)
    else:  # a population connects to itself without autapses: one neuron has no source, and NEST's
        # Connect looked for one forever (deaf to Ctrl-C and SIGTERM)
        for key in ("n_e", "n_i"):
            _require(getattr(n, key) >= 2, f"network.{key}", "at least 2 in a recurrent network (each neuron draws its "
                     "inputs from the others of its population)", getattr(n, key))
    _require(n.delay >= n.resolution, "network.delay", f"at least the resolution ({n.resolution} ms)", n.delay)
    neuron = get_neuron(r.neuron)
    if getattr(n, "drive_chosen_for", None) not in (None, r.neuron):  # chosen for another neuron: choose again
        n.drive = None
    if n.drive is None:  # resolved here, so that a run records the drive it used
        n.drive = "poisson_generator" if neuron.drive_target is None else "internal"
        object.__setattr__(n, "drive_chosen_for", r.neuron)  # exp.rule.neuron = ... in Python: follow it
    # a single neuron's afferents are parrots of their own generators: no drive, whatever it says
    _require(n.kind == "single_neuron" or n.drive != "internal" or neuron.drive_target is not None, "network.drive",
             f"'poisson_generator' for the neuron {r.neuron} (it has no internal drive)", n.drive)
    if any(rule.post_inputs for rule in exp.module_rules()):  # the build adds them (nestplast.builder)
        neuron = neuron.with_rule_inputs()
    for key in neuron.unknown_params(n.neuron_params):  # else every simulation would fail in NEST's Create
        default = " (the default neuron_params are for iaf_psc_exp: give the neuron's own)" if (
            n.neuron_params == NetworkSpec().neuron_params) else ""
        own = ", ".join(k for k in neuron.parameters if k not in DRIVE_PARAMS)  # the drive's keys are refused below
        _require(False, f"network.neuron_params.{key}", f"a parameter of the neuron {r.neuron}{default}: "
                 f"{own}, or NEST's name of one ({', '.join(a for a, _ in neuron.renamed)})", key)
    for ct in r.plastic:
        _require(ct in n.w_max, f"network.w_max.{ct}", "a bound for every plastic connection type", None)
        _require(n.weights.get(ct, 0) <= n.w_max[ct], f"network.weights.{ct}", f"at most w_max ({n.w_max[ct]})",
                 n.weights.get(ct))

    for key in ("chunk", "t_train", "t_score"):  # NEST simulates whole steps only
        # in seconds against a step in ms: both named, and the step as a possible cause (a user who
        # changed only network.resolution was told to fix chunk)
        _require(_whole(1000.0 * getattr(o, key) / n.resolution), f"objective.{key}",
                 f"seconds that are whole steps of network.resolution = {n.resolution} ms (or a resolution that "
                 f"divides {1000.0 * getattr(o, key):g} ms)", getattr(o, key))
    for metric in o.constraints:
        _require(metric in FSBI_CONSTRAINTS, f"objective.constraints.{metric}",
                 f"a metric from {', '.join(sorted(FSBI_CONSTRAINTS))}", metric)
    _require(o.target_rate is not None or o.constraints, "objective", "a target_rate or some constraints", None)
    if to_run:
        _check_runnable(exp, search)
    return exp


# metrics a single neuron never has, and why
NOT_OF_ONE_NEURON = {"rate_i": "its inhibitory afferents are inputs, not an I population",
                     "spatial_fano": "a spread across neurons", "std_rate_spatial": "a spread across neurons"}


def unmeasured(exp: Experiment, metric: str) -> str | None:
    """Why the simulations of ``exp`` never measure ``metric`` (a constraint on it could not be met),
    or None where they do."""
    if metric.startswith("w_mean_") and (ct := metric.removeprefix("w_mean_")) not in exp.rule.plastic:
        return (f"{ct} does not learn (rule.plastic = {exp.rule.plastic}), so it has no final mean weight; the "
                f"plastic types' are {', '.join(f'w_mean_{t}' for t in exp.rule.plastic)}")
    if exp.network.kind == "single_neuron" and metric in NOT_OF_ONE_NEURON:
        return f"network.kind = 'single_neuron' never measures {metric} ({NOT_OF_ONE_NEURON[metric]})"
    return None


# the network keys only one kind of network reads (their docs in NetworkSpec say which)
KIND_ONLY_KEYS = {"recurrent": ("n_e", "n_i", "p", "input_rate", "input_weight"),
                  "single_neuron": ("n_e_inputs", "n_i_inputs", "input_rate_e", "input_rate_i")}


def unused_network_keys(exp: Experiment) -> str:
    """A note naming the network keys set away from their defaults that ``exp``'s kind of network
    never reads (e.g. ``n_e`` for a single neuron), "" if none."""
    n, defaults = exp.network, NetworkSpec()
    unused = [f"network.{key}" for kind, keys in KIND_ONLY_KEYS.items() if kind != n.kind for key in keys
              if getattr(n, key) != getattr(defaults, key)]
    # the drive: unset, validate() resolves it for the neuron; a single neuron's afferents have their own
    resolved = "poisson_generator" if get_neuron(exp.rule.neuron).drive_target is None else "internal"
    if n.kind == "single_neuron" and n.drive not in (None, resolved):
        unused.append("network.drive")
    if not unused:
        return ""
    return (f"note: {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not read by a network.kind = "
            f"'{n.kind}' run (its own: {', '.join(KIND_ONLY_KEYS[n.kind])})")


def noisy_target_note(exp: Experiment) -> str:
    """A note where the scored population fires fewer than :data:`~nestplast.objectives.SPIKES_PER_BIN`
    spikes in the scoring window at the target rate: counting noise then puts the target-rate
    term's minimum above the target (:func:`~nestplast.objectives.noise_shift`), "" otherwise."""
    n, o = exp.network, exp.objective
    if o.target_rate is None:
        return ""
    neurons = 1 if n.kind == "single_neuron" else n.n_e if o.population == "E" else n.n_i
    spikes = neurons * o.target_rate * o.t_score
    if spikes >= SPIKES_PER_BIN:
        return ""
    enough = SPIKES_PER_BIN / (neurons * o.target_rate)
    return (f"note: at objective.target_rate = {o.target_rate:g} Hz the scored population ({neurons} neuron"
            f"{'s' if neurons > 1 else ''}) fires about {spikes:.3g} spikes in the {o.t_score:g} s scoring window: "
            f"counting noise puts the target-rate term's minimum about {noise_shift(o.target_rate, spikes):.2g} Hz "
            f"above the target; objective.t_score = {enough:.3g} s would bring it within "
            f"{noise_shift(o.target_rate, SPIKES_PER_BIN):.2g} Hz")


def replaced_neuron_defaults(exp: Experiment) -> str:
    """A note naming the default ``network.neuron_params`` that a table given without them dropped
    (``{ tau_m = 10.0 }`` ran with the NESTML neuron's tau_syn of 2 ms, not 5 and 10), "" if none or
    where the defaults are not this neuron's."""
    neuron, defaults, given = get_neuron(exp.rule.neuron), NetworkSpec().neuron_params, exp.network.neuron_params
    if given == defaults or neuron.unknown_params(defaults):
        return ""
    renamed = dict(neuron.renamed)
    kept = {renamed.get(key, key) for key in given}
    dropped = [f"{key} {value:g}" for key, value in defaults.items() if renamed.get(key, key) not in kept]
    if not dropped:
        return ""
    return (f"note: network.neuron_params replaces its default table: without {', '.join(dropped)} (the defaults), "
            f"the neuron {neuron.name} runs with its own NESTML values of them; give them in the table to keep them")


def unread_filter_keys(exp: Experiment) -> str:
    """A note for a search's headline naming the ``[filter]`` keys set away from their defaults:
    only ``nestplast filter`` reads them (a nuisance input rate changed no search), "" if none."""
    defaults = FilterSpec()
    changed = [f"filter.{f.name}" for f in fields(FilterSpec) if getattr(exp.filter, f.name) != getattr(defaults, f.name)]
    if not changed:
        return ""
    return f"note: {', '.join(changed)} {'is' if len(changed) == 1 else 'are'} read by nestplast filter only, not by a search"


def _check_simulates_as_written(exp: Experiment) -> None:
    """Settings NEST would run as something else than the experiment says, or that make every rule
    score alike. Checked for a run only: an earlier run's stored experiment is still read."""
    n, o = exp.network, exp.objective
    # NEST's clock counts tics of 1 us (tics_per_ms = 1000): a finer step fails in every simulation
    _require(_whole(1000.0 * n.resolution), "network.resolution", "a multiple of NEST's tic, 0.001 ms", n.resolution)
    # on the tic exactly: numpy's float32 0.1 (0.10000000149) passed, and NEST refused it in every evaluation
    n.resolution = round(1000.0 * n.resolution) / 1000.0
    # NEST rounds a delay to whole steps: 1.55 ms at 0.1 ms ran as 1.6 ms, recorded as 1.55
    _require(_whole(n.delay / n.resolution), "network.delay", f"a multiple of network.resolution ({n.resolution} ms)",
             n.delay)
    # a delay as long as the run: no spike of the network reaches another neuron, every rule scores alike
    _require(n.delay < 1000.0 * (o.t_train + o.t_score), "network.delay",
             f"less than the simulated time (objective.t_train + t_score = {1000.0 * (o.t_train + o.t_score):g} ms)",
             n.delay)
    neuron = get_neuron(exp.rule.neuron)
    if neuron.codependency[2] == "nS":  # iaf_psc_exp's pA read as nS: every network saturated
        kept = [k for k in ("weights", "w_max", *(("input_weight",) if n.kind == "recurrent" else ()))
                if getattr(n, k) == getattr(NetworkSpec(), k)]
        _require(not kept, ", ".join(f"network.{k}" for k in kept),
                 f"the neuron {exp.rule.neuron}'s own (nS: its input is a conductance); the defaults are "
                 "iaf_psc_exp's currents in pA, which saturate it (e.g. families_paper: weights EE, EI 0.3, IE, II 3; "
                 "w_max 20; input 2500 Hz x 0.3)", "the defaults")
    named: dict[str, str] = {}
    for key in n.neuron_params:  # tau_syn_ex and tau_syn_exc both: the one written last won, silently
        own = dict(neuron.renamed).get(key, key)
        _require(own not in named, f"network.neuron_params.{key}", f"one name per parameter ({named.get(own)} is "
                 f"NEST's or NESTML's name of the same {own})", key)
        named[own] = key
    for key, value in n.neuron_params.items():
        # tau_m = inf: accepted, and NEST ran a neuron that never integrates
        _require(not is_number(value) or math.isfinite(value), f"network.neuron_params.{key}", "a finite number", value)
        # tau_m = 0.02 (seconds meant): a silent network, every rule alike
        _require(not key.startswith("tau") or not is_number(value) or value >= n.resolution,
                 f"network.neuron_params.{key}", f"a time constant in ms, at least network.resolution "
                 f"({n.resolution:g} ms; seconds meant?)", value)
    for key in set(n.neuron_params) & set(DRIVE_PARAMS):  # set by the network from input_rate and input_weight
        _require(False, f"network.neuron_params.{key}", "a parameter of the neuron, not of its drive (network.input_rate "
                 "in Hz and network.input_weight set that, and the trials and the filter's nuisance rate vary it)", key)
    (low, high), shrunk = exp.trials.weight_scale, exp.trials.w_max_scale[0]
    key = "w_max_scale" if high <= 1 else "weight_scale"
    for ct in exp.rule.plastic:
        # a trial's start weight beyond its w_max is clipped to it, one below Wmin jumps to it: either
        # way the trials would not start where the experiment says
        start, bound = n.weights[ct] * high, n.w_max[ct] * shrunk
        _require(start <= bound, f"trials.{key}",
                 f"start weights within w_max on every trial: network.weights.{ct} x {high:g} = {start:g} is above "
                 f"network.w_max.{ct} x trials.w_max_scale's low {shrunk:g} = {bound:g}, and would be clipped to it",
                 getattr(exp.trials, key))
        # a rule of one's own too: Wmin is the lower bound of |w| there as in the built-in rules and the
        # example (its weights jumped to a fixed Wmin = 500, and the run blamed a learning rate of 0)
        w_min = exp.fixed(ct).get("Wmin")
        given = f"rule.by_type.{ct}.fixed" if "Wmin" in exp.rule.by_type.get(ct, {}).get("fixed", {}) else "rule.fixed"
        _require(w_min is None or abs(w_min) <= n.weights[ct] * low, f"Wmin of {ct}'s rule ({given})",
                 f"at most the smallest start weight, network.weights.{ct} x trials.weight_scale's low = "
                 f"{n.weights[ct] * low:g} (the weights would jump to Wmin at their first update)", w_min)
        # a rule keeps the sign of Wmax (positive from E): a negative Wmin there reads as a bound below 0 and is
        # none; nestplast's rules make it a floor of |Wmin| (Rule.check_bound_signs; from I both are negative, a
        # magnitude either way). The compiled synapse refuses it too, at each evaluation's CopyModel
        own = exp.base_rule(ct).path is not None
        _require(w_min is None or w_min >= 0 or ct[0] == "I", f"Wmin of {ct}'s rule ({given})",
                 "at least 0 on an excitatory connection: the rule keeps each weight at the sign of Wmax (weights "
                 "never cross 0), so a negative Wmin is not a bound below 0" +
                 ("" if own else f"; it clips |w| to [|Wmin|, |Wmax|], so Wmin = {w_min} would be a floor of "
                  f"{abs(w_min or 0):g} on |w|"), w_min)
        # the reward signal is the choice task's: a network holds it at 0, and no rule learns
        where = f"rule.by_type.{ct}" if ct in exp.rule.by_type else "rule"
        _require(REWARD_INPUT not in exp.base_rule(ct).fixed, f"{where} (on {ct})",
                 "a rule that learns without the reward signal R, which only the two-choice task sets (nestplast "
                 "infer --task choices); in a search or filter R stays 0, and every candidate ran alike",
                 exp.rule_spec(ct).name)
    _require(bool(exp.filter.constraints), "filter.constraints", "at least one metric (none accepts every rule)",
             exp.filter.constraints)


def _check_runnable(exp: Experiment, search: bool = True) -> None:
    """Settings valid on their own under which every evaluation would fail or score NaN (a cluster
    job of 320s), and pycma options that pycma cannot use."""
    # "" ran in runs/ itself (a later run's folder then inside it), "../x" outside runs/ (for a run
    # only: a run recorded before this check still reports)
    _require(exp.name.strip() not in ("", ".", "..") and not {"/", "\\", os.sep} & set(exp.name), "name",
             "a folder's name: not empty, no /", exp.name)
    n, o = exp.network, exp.objective
    built = ("EE", "IE") if n.kind == "single_neuron" else CONNECTION_TYPES  # every one is connected
    missing = [ct for ct in built if ct not in n.weights]  # else every evaluation fails with a KeyError
    _require(not missing, "network.weights", f"a weight for every connection type of the {n.kind} network "
             f"({', '.join(built)}; missing {', '.join(missing)})", n.weights)
    _check_simulates_as_written(exp)
    _require(n.kind != "single_neuron" or o.population == "E", "objective.population",
             "'E' for network.kind = 'single_neuron' (its one neuron; the inhibitory afferents are inputs)", o.population)
    if o.target_rate is not None:
        _require(1000.0 * o.t_score >= RATE_BIN_MS - 1e-6, "objective.t_score",
                 f"at least {RATE_BIN_MS / 1000:g} s with a target_rate (the scored rate is taken in "
                 f"{RATE_BIN_MS / 1000:g} s bins; a shorter window has none)", o.t_score)
    for metric in o.constraints:  # a metric the run does not measure fails every evaluation with a KeyError
        if why := unmeasured(exp, metric):
            raise ExperimentError(f"objective.constraints.{metric}: {why}, so every evaluation would fail")
    low, high = o.rate_band  # low < high: the option's own check
    if search and o.target_rate is not None:  # a rule that holds the target would be cut short as a blow-up
        _require(low < o.target_rate < high, "objective.target_rate", f"a rate inside objective.rate_band "
                 f"({low:g} to {high:g} Hz; rates are in Hz), a band around it, or 'none'", o.target_rate)
        scored = f"rate_{o.population.lower()}"  # a constraint on the same rate: no rule could score 0
        if scored in o.constraints:
            c_low, c_high = o.constraints[scored]
            _require(c_low <= o.target_rate <= c_high, "objective.target_rate", f"a rate inside "
                     f"objective.constraints.{scored} ({c_low:g} to {c_high:g} Hz), which penalises the target "
                     "itself; or one of them changed", o.target_rate)
    _require("Wmax" not in exp.rule.parameters, "rule.parameters.Wmax", "no Wmax: nestplast sets it from "
             "network.w_max (with the sign of the connection type), over any searched value", exp.rule.parameters.get("Wmax"))
    for ct in exp.rule.plastic:  # a user's rule: what NEST would refuse, or misread, for every candidate
        rule = exp.base_rule(ct)
        if rule.path is None:
            continue
        from .user_rules import check_negative_wmax, check_nest_units

        own = exp.rule.by_type.get(ct, {}).get("fixed", {})  # the type's, added to rule.fixed's (same rule)
        try:
            check_nest_units(rule, rule.names, "rule.parameters")
            # a value nestplast sets reaches NEST unconverted; named where it was given
            check_nest_units(rule, [n for n in exp.fixed(ct) if n in own], f"rule.by_type.{ct}.fixed")
            check_nest_units(rule, [n for n in exp.fixed(ct) if n not in own], "rule.fixed")
            if ct.startswith("I"):  # an inhibitory source: nestplast gives the rule a negative Wmax
                check_negative_wmax(rule, ct, "rule.plastic")
        except UserError as err:
            raise ExperimentError(str(err)) from None
    for ct in exp.rule.plastic:  # tau_plus = 0.02 (seconds meant): traces gone within a step, every rule alike
        own = exp.rule.by_type.get(ct, {}).get("fixed", {})
        times = [(f"rule.{'by_type.' + ct + '.' if name in own else ''}fixed.{name}", value)
                 for name, value in exp.fixed(ct).items() if is_time_constant(name)]
        times += [(f"rule.parameters.{p.name} (its low bound)", p.low)
                  for p in exp.searched_rule(ct).parameters if is_time_constant(p.name)]
        for key, value in times:
            _require(value >= n.resolution, key, f"a time constant in ms, at least network.resolution "
                     f"({n.resolution:g} ms; seconds meant?)", value)
    for ct in exp.rule.plastic:  # a search with nothing to find: it ran on, every candidate the same rule
        if exp.searched_rule(ct).changes_nothing(exp.fixed(ct)):
            own = "search" in exp.rule.by_type.get(ct, {})
            _require(False, f"rule.{f'by_type.{ct}.' if own else ''}search (on {ct})",
                     "parameters that change the rule's update somewhere in their bounds: with the others where "
                     "they are held (their start, e.g. an MLP's hidden layer at 0, which leaves its output weights "
                     "nothing to weigh), these change nothing; search those too, or give them a rule.start",
                     exp.searched_rule(ct).names)
    # CMA-ES's step: the prior strategy draws from the whole box, and took sigma0 = 0.05 without a word
    _require(exp.search.strategy == "cmaes" or exp.search.sigma0 == SearchSpec().sigma0, "search.sigma0",
             "no step unless search.strategy = 'cmaes' (prior draws from the whole box)", exp.search.sigma0)
    if exp.search.strategy != "cmaes":  # prior's draws ignored a start, and nothing said so
        for ct in exp.rule.plastic:
            started = sorted(set(exp.rule_spec(ct).start) & set(exp.searched_rule(ct).names))
            own = "start" in exp.rule.by_type.get(ct, {})
            _require(not started, f"rule.{f'by_type.{ct}.' if own else ''}start (on {ct})",
                     "no start for a searched parameter unless search.strategy = 'cmaes' (prior draws from the whole "
                     "box; a start holds a parameter that is not searched)", started)
    if exp.search.cma_options:
        _require(exp.search.strategy == "cmaes", "search.cma_options", "no options unless search.strategy = 'cmaes'",
                 exp.search.cma_options)
        from .search import new_strategy

        try:  # the names, and the values as pycma checks them when it starts (some only in its first tell)
            new_strategy(exp)
        except ValueError as err:
            raise ExperimentError(f"search.cma_options: {err}") from None


def _validate_rule(exp: Experiment, ct: str | None, where: str) -> None:
    """The [rule] table's cross-references, as they apply to connection type ``ct``."""
    r = exp.rule_spec(ct)

    def origin(key: str) -> str:  # where the user wrote the key: rule.by_type.<type> inherits what it does not set
        if ct is None or key in exp.rule.by_type[ct]:
            return f"{where}.{key}"
        return f"rule.{key} (inherited by {where}, which may set its own {key})"

    if r.file is None:
        _require(not r.parameters, "rule.parameters", "no table without rule.file (a built-in rule's bounds are "
                 "its own)", r.parameters)
        _require(r.weight == "w", "rule.weight", "no value without rule.file", r.weight)
    else:
        _require(r.mask is None, f"{where}.mask", "no mask with rule.file (masks are the taylor rule's)", r.mask)
    _require(not r.mlp or (r.file is None and r.name in ("mlp", "mlp_fsbi")), origin("mlp"),
             "no table: only the rules mlp and mlp_fsbi have a shape to set", r.mlp)
    try:
        rule = exp.base_rule(ct)
    except UnknownNameError as err:
        # rule.name is the label of one's own file's rule: given again for a type, it read as a built-in's name
        label = (f"; {exp.rule.name!r} labels the rule of rule.file: to keep that rule on {ct}, leave name out"
                 if ct is not None and exp.rule.file is not None and r.name == exp.rule.name else "")
        raise ExperimentError(f"{where}.name: {err}{label}") from None
    except UserError as err:  # a user's rule file
        raise ExperimentError(str(err)) from None
    except (ValueError, TypeError) as err:  # TypeError: a value of the wrong kind in rule.mlp (a number for inputs)
        raise ExperimentError(f"{origin('mlp' if r.mlp and r.mask is None else 'mask')}: {err}") from None
    for key, table in (("search", r.search or []), ("start", r.start)):
        unknown = sorted(set(table) - set(rule.names))
        _require(not unknown, origin(key), f"parameters of rule {rule.name!r}: {', '.join(rule.names)}", unknown)
    _require("Wmax" not in r.fixed, f"{origin('fixed')}.Wmax", "no Wmax here: the bound is network.w_max.<type> "
             "(its sign is applied per connection type)", r.fixed.get("Wmax"))
    unknown = sorted(set(r.fixed) - set(rule.fixable))
    searched = " (to hold a searched parameter at a value, leave it out of rule.search and give the value in " \
               "rule.start)" if set(unknown) & set(rule.names) else ""
    fixable = [name for name in rule.fixable if name != "Wmax"]  # refused above: network.w_max sets it
    _require(not unknown, origin("fixed"), f"fixed parameters of rule {rule.name!r}: {', '.join(fixable)}"
             f"{searched}", unknown)
    for name, value in r.fixed.items():  # eta = inf: every evaluation "ok" at one loss, and NumPy's "invalid value"
        _require(math.isfinite(value), f"{origin('fixed')}.{name}", "a finite number", value)
    _require(r.fixed.get("eta", 1.0) != 0, f"{origin('fixed')}.eta", "a nonzero learning rate (with eta = 0 no "
             "candidate learns, and every one scores the same)", r.fixed.get("eta"))
    _require(r.search is None or len(r.search) > 0, f"{where}.search", "at least one parameter", r.search)
    _require(r.search is None or len(set(r.search)) == len(r.search), f"{where}.search",
             "each parameter once (as rule.plastic's types)", r.search)
    for p in rule.parameters:
        if p.name in r.start:
            _require(p.low <= r.start[p.name] <= p.high, f"{where}.start.{p.name}", f"a value in [{p.low}, {p.high}]",
                     r.start[p.name])


def parse(data: dict, source: str = "<dict>", *, to_run: bool = True, search: bool = True) -> Experiment:
    """An experiment from a dict as TOML gives it; ExperimentError names ``source`` and the key.
    A relative ``rule.file`` is taken relative to the file ``source`` names. ``to_run`` and
    ``search``: see :func:`validate`."""
    try:
        exp = _fill(Experiment, data, "")
        exp.source = source
        if exp.rule.file is not None and not Path(exp.rule.file).is_absolute() and Path(source).is_file():
            given, exp.rule.file = exp.rule.file, str((Path(source).parent / exp.rule.file).resolve())
            if not Path(exp.rule.file).exists() and Path(given).is_file():  # written relative to the working directory
                relative = os.path.relpath(Path(given).resolve(), Path(source).resolve().parent)
                raise ExperimentError(f"rule.file: {given!r} is taken relative to the experiment file, and there is "
                                      f"no {exp.rule.file}; for the file {Path(given).resolve()} write "
                                      f"file = {relative!r} (or an absolute path)")
        return validate(exp, to_run=to_run, search=search)
    except ExperimentError as err:
        raise ExperimentError(f"{source}: {err}") from None


RULE_COPY_DIR = "rule"  # in a run's folder: the copy of its own NESTML rule file (see keep_rule_file)


def keep_rule_file(exp: Experiment, run_dir: str | Path) -> None:
    """Copy the experiment's own NESTML rule file (``rule.file``) into the run's folder, so that the
    run can be reported and resumed where the file is not (moved, or the run copied off a cluster)."""
    if exp.rule.file is not None:
        kept = Path(run_dir) / RULE_COPY_DIR
        kept.mkdir(exist_ok=True)
        shutil.copyfile(exp.rule.file, kept / Path(exp.rule.file).name)


_EDITED_SAID: set[str] = set()  # the run copies whose edited originals this process has warned of


def run_experiment(recorded: dict, run_dir: str | Path) -> Experiment:
    """The experiment a run recorded (``RunStore.experiment()``), its rule file taken from the run's
    copy where the original is gone or was edited since: a run is one rule, and its report read the
    edited file's parameter names and module."""
    file = (recorded.get("rule") or {}).get("file")
    # a relative path (set in Python, relative to the working directory then) is read relative to
    # the run's folder, as a file's is to its experiment
    original = Path(run_dir) / file if file else None
    kept = Path(run_dir) / RULE_COPY_DIR / Path(file).name if file else None
    if kept is not None and kept.is_file() and (not original.is_file() or original.read_bytes() != kept.read_bytes()):
        if original.is_file() and str(kept) not in _EDITED_SAID:  # a report reads the run twice: said once
            _EDITED_SAID.add(str(kept))
            warnings.warn(f"{original} was edited since the run in {run_dir} began: the run's own copy, {kept}, "
                          f"is the rule it ran, and is read instead", stacklevel=2)
        recorded = {**recorded, "rule": {**recorded["rule"], "file": str(kept.resolve())}}
    exp = parse(recorded, str(Path(run_dir) / DB_NAME), to_run=False)
    _check_parameter_order(exp, Path(run_dir))
    return exp


def _check_parameter_order(exp: Experiment, run_dir: Path) -> None:
    """Refuse a run whose evaluations name theta's entries in another order than ``exp`` reads
    them: a Taylor mask's coefficients were sorted by term before nestplast 0.3, and each recorded
    theta would be reported (or resumed) as other values."""
    if not (run_dir / DB_NAME).is_file():
        return
    with RunStore.open(run_dir, read_only=True) as store:
        recorded, began = store.recorded_parameters(), store.meta().get("nestplast", "an earlier version")
    names = exp.layout().names
    if recorded and recorded != names:
        raise ExperimentError(f"{run_dir}: its evaluations hold the parameters in the order {', '.join(recorded)}, "
                              f"this nestplast reads them in the order {', '.join(names)} (before 0.3 a Taylor "
                              f"mask's coefficients were sorted by term), so each recorded theta would be read as "
                              f"other values: report or resume it with nestplast {began}, which began it")


def load(path: str | Path, *, search: bool = True) -> Experiment:
    """Read and validate an experiment file; a name without a path is looked up among the
    experiments shipped with nestplast (``nestplast/experiments/*.toml``). ``search``: for a
    search (see :func:`validate`), not a filter."""
    path = Path(path)
    if not path.exists() and (EXPERIMENTS_DIR / path.with_suffix(".toml").name).exists():
        path = EXPERIMENTS_DIR / path.with_suffix(".toml").name
    if path.is_dir():  # "no such experiment file" of a path that exists
        run = " (a run's folder: go on with it with --out FOLDER --resume)" if (path / DB_NAME).is_file() else ""
        raise ExperimentError(f"{path}: a folder, not an experiment file{run}")
    if not path.is_file():
        raise ExperimentError(f"{path}: no such experiment file (shipped experiments: {', '.join(available())})")
    try:
        data = tomllib.loads(text := path.read_text(encoding="utf-8-sig"))  # TOML is UTF-8; a BOM is skipped
    except UnicodeDecodeError:  # a run's results.sqlite given as the experiment: a traceback
        raise ExperimentError(f"{path}: not an experiment file (not text; an experiment is a TOML file, a run's "
                              "results.sqlite is continued with --out RUN_DIR --resume)") from None
    except tomllib.TOMLDecodeError as err:
        # TOML has no null: the options table's none is a string
        hint = ('; none is written in quotes: key = "none"' if re.search(r"=\s*none\s*(#.*)?$", text, re.I | re.M) else "")
        raise ExperimentError(f"{path}: not valid TOML: {err}{hint}") from None
    return parse(data, str(path), search=search)


def default() -> Experiment:
    """The built-in default experiment: every option at its default (the same as
    ``nestplast/experiments/default.toml``)."""
    return validate(Experiment())


def available() -> list[str]:
    """The names of the experiments shipped with nestplast (for :func:`load`)."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


__all__ = ["Experiment", "ExperimentError", "load", "parse", "default", "available", "show_defaults", "differences",
           "CONNECTION_TYPES"]
