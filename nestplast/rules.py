"""Plasticity rules: what each NESTML rule is, its parameters, and how a parameter vector maps
onto NEST synapse-model settings.

A :class:`Rule` describes one NESTML synapse model with free parameters: the NESTML source,
the searched parameters (defaults, bounds, which are searched in log space) and the fixed ones.
Rules are looked up by name with :func:`get_rule`::

    rule = get_rule("doublet")
    rule.synapse_params(rule.defaults(), eta=1e-3, Wmax=-5.0)   # -> dict for nest.CopyModel

A :class:`RuleLayout` lays one parameter vector ``theta`` out over several connection types
(e.g. ``EE``, ``EI``, ``IE``, ``II``), each with its own copy of the rule.

Sign convention for all rules: the rule acts on the magnitude ``|w|`` and the synapse keeps the
sign of ``Wmax``, so an inhibitory synapse (negative weights in NEST) is given ``Wmax < 0``;
``|w|`` is clipped to ``[|Wmin|, |Wmax|]``. A positive update therefore always strengthens a
synapse, excitatory or inhibitory, as in NEST's ``vogels_sprekeler_synapse``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import UnknownNameError

MODELS_DIR = Path(__file__).resolve().parent.parent / "nestml_models"

# Exponents (a, b, c) of x_pre^a x_post^b |w|^c in the Taylor rule, each in 0..2.
TAYLOR_TERMS: tuple[str, ...] = tuple("".join(map(str, abc)) for abc in itertools.product(range(3), repeat=3))


class UnknownRuleError(UnknownNameError):
    """An unknown rule name; the message lists the available rules."""


class UnknownParameterError(UnknownNameError):
    """A parameter the rule does not have; the message lists the rule's parameters."""


@dataclass(frozen=True)
class Parameter:
    """A searched rule parameter: its default, bounds and whether it is searched in log space."""

    name: str
    default: float
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Term:
    """One term of a rule's update: ``params[param] * x_pre^a * x_post^b * |w|^c`` at ``event``."""

    param: str
    event: str  # "pre" or "post"
    abc: str  # exponents, e.g. "010"


@dataclass(frozen=True)
class Rule:
    """One NESTML plasticity rule with free parameters.

    ``parameters`` are searched (their order is the order in ``theta``); ``fixed`` holds the
    other synapse parameters with their defaults (learning rate, weight bounds, ...).
    ``synaptic_traces`` are state variables that NESTML must keep in the synapse rather than move
    into the postsynaptic neuron, so that every parameter stays a synapse parameter that
    ``nest.CopyModel`` can set per candidate.
    """

    name: str
    synapse: str
    source: str
    parameters: tuple[Parameter, ...]
    fixed: Mapping[str, float]
    weight_variable: str = "w"
    synaptic_traces: tuple[str, ...] = ("x_pre", "x_post")
    description: str = ""
    terms: tuple[Term, ...] = ()  # the update, for drawing and checking it in Python
    path: str | None = None  # the user's NESTML file, for messages (built-in rules: None)
    # A user's rule: every parameter its NESTML file declares, so any of them can be fixed; their
    # defaults are the file's own (NESTML expressions with units, not repeated here).
    source_parameters: tuple[str, ...] = ()

    @property
    def fixable(self) -> list[str]:
        """Parameters that may be given fixed values (not searched)."""
        return sorted((set(self.fixed) | set(self.source_parameters)) - set(self.names))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def defaults(self) -> np.ndarray:
        return np.array([p.default for p in self.parameters], dtype=float)

    def synapse_params(self, theta: Sequence[float] | Mapping[str, float], **fixed: float) -> dict[str, float]:
        """NEST synapse-model settings for parameter vector ``theta`` (or a name->value mapping),
        with the fixed parameters from the rule's defaults, overridden by ``fixed``."""
        if isinstance(theta, Mapping):
            unknown = set(theta) - set(self.names)
            if unknown:
                raise UnknownParameterError(f"rule {self.name!r} has no parameter(s) {sorted(unknown)}; "
                                       f"searched: {self.names}, fixed: {sorted(self.fixed)}")
            values = {**dict(zip(self.names, self.defaults())), **theta}
        else:
            theta = np.asarray(theta, dtype=float)
            if theta.shape != (len(self.parameters),):
                raise ValueError(f"rule {self.name!r} takes {len(self.parameters)} parameters "
                                 f"({', '.join(self.names)}), got shape {theta.shape}")
            values = dict(zip(self.names, theta.tolist()))
        unknown = set(fixed) - set(self.fixed) - set(self.source_parameters)
        if unknown:
            raise UnknownParameterError(f"rule {self.name!r} has no fixed parameter(s) {sorted(unknown)}; "
                                   f"fixed: {self.fixable}, searched: {self.names}")
        return {**self.fixed, **fixed, **values}

    def weight_change(self, params: Mapping[str, float], event: str, x_pre: np.ndarray,
                      x_post: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The update ``dw`` of ``|w|`` at a ``"pre"`` or ``"post"`` spike, given the traces as
        read just before that spike (vectorised; no clipping)."""
        x_pre, x_post, w = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x_pre, x_post, w)))
        total = np.zeros_like(x_pre)
        for term in self.terms:
            if term.event == event:
                a, b, c = (int(ch) for ch in term.abc)
                total = total + params[term.param] * x_pre**a * x_post**b * np.abs(w) ** c
        return params["eta"] * total

    def stdp_window(self, params: Mapping[str, float], dt_ms: np.ndarray, w: float = 0.0) -> np.ndarray:
        """Weight change for one pre/post spike pair against ``dt = t_post - t_pre`` (ms), starting
        from weight ``w`` with empty traces: the first spike's update plus the second's."""
        dt = np.asarray(dt_ms, dtype=float)
        zero = np.zeros_like(dt)
        decay_pre = np.exp(-np.abs(dt) / params["tau_pre"])
        decay_post = np.exp(-np.abs(dt) / params["tau_post"])
        # post after pre: the pre spike sees no trace, the post spike sees x_pre = decay_pre
        first_pre = self.weight_change(params, "pre", zero, zero, w + zero)
        causal = first_pre + self.weight_change(params, "post", decay_pre, zero, w + first_pre)
        first_post = self.weight_change(params, "post", zero, zero, w + zero)
        acausal = first_post + self.weight_change(params, "pre", zero, decay_post, w + first_post)
        # At dt = 0 NEST's convention: the post spike is handled first and reads x_pre before the
        # pre spike's jump; the pre spike reads x_post from strictly earlier post spikes: neither sees the other.
        coincident = first_post + self.weight_change(params, "pre", zero, zero, w + first_post)
        return np.where(dt > 0, causal, np.where(dt < 0, acausal, coincident))


def _read(name: str) -> str:
    return (MODELS_DIR / name).read_text()


def doublet_rule() -> Rule:
    """The fSBI doublet rule: pre spike ``w += eta (alpha + kappa x_post)``, post spike
    ``w += eta (beta + gamma x_pre)``; time constants searched in log space over [10, 100] ms."""
    return Rule(
        name="doublet",
        synapse="doublet_synapse",
        source=_read("doublet_synapse.nestml"),
        parameters=(
            Parameter("tau_pre", 20.0, 10.0, 100.0, log=True),
            Parameter("tau_post", 20.0, 10.0, 100.0, log=True),
            Parameter("alpha", 0.0, -2.0, 2.0),
            Parameter("beta", 0.0, -2.0, 2.0),
            Parameter("gamma", 0.0, -2.0, 2.0),
            Parameter("kappa", 0.0, -2.0, 2.0),
        ),
        fixed={"eta": 1.0, "Wmin": 0.0, "Wmax": 100.0},
        description="fSBI doublet rule: pre spike eta*(alpha + kappa*x_post), post spike eta*(beta + gamma*x_pre)",
        terms=(Term("alpha", "pre", "000"), Term("kappa", "pre", "010"),
               Term("beta", "post", "000"), Term("gamma", "post", "100")),
    )


def vogels_sprekeler(target_rate_hz: float = 10.0, tau_ms: float = 20.0) -> dict[str, float]:
    """Doublet parameters of Vogels-Sprekeler inhibitory STDP (Vogels et al. 2011) for a target
    rate rho0: tau_pre = tau_post = tau, alpha = -2 rho0 tau, beta = 0, gamma = kappa = 1."""
    return {"tau_pre": tau_ms, "tau_post": tau_ms, "alpha": -2.0 * target_rate_hz * tau_ms / 1000.0,
            "beta": 0.0, "gamma": 1.0, "kappa": 1.0}


def parse_mask(mask: Iterable[str] | str | None) -> dict[str, tuple[str, ...]]:
    """Parse a Taylor mask: terms such as ``"pre:010"`` or ``"post:100"`` (event, then exponents
    a b c of x_pre^a x_post^b |w|^c), as a list or a comma-separated string. ``None`` or ``"all"``
    frees all 27 terms of both events."""
    if mask is None or mask == "all":
        return {"pre": TAYLOR_TERMS, "post": TAYLOR_TERMS}
    items = [m.strip() for m in mask.split(",")] if isinstance(mask, str) else [str(m).strip() for m in mask]
    chosen: dict[str, set[str]] = {"pre": set(), "post": set()}
    for item in filter(None, items):
        event, _, abc = item.partition(":")
        if event not in chosen or abc not in TAYLOR_TERMS:
            raise ValueError(f"bad Taylor mask term {item!r}: expected 'pre:abc' or 'post:abc' "
                             f"with a, b, c in 0..2 (e.g. 'pre:010', 'post:100')")
        chosen[event].add(abc)
    if not chosen["pre"] and not chosen["post"]:
        raise ValueError("the Taylor mask frees no term")
    return {event: tuple(sorted(terms)) for event, terms in chosen.items()}


def _taylor_sum(event: str, terms: Sequence[str]) -> str:
    """NESTML expression of the masked sum, with no multiplication by an exponent of 0."""
    names = ("x_pre", "x_post", "w_abs")
    products = []
    for abc in terms:
        factors = [f"th_{event}_{abc}"]
        for name, power in zip(names, (int(ch) for ch in abc)):
            factors += [name] * power  # x*x is cheaper and exact where pow() may not be
        products.append(" * ".join(factors))
    return " + ".join(products) if products else "0.0"


def taylor_rule(mask: Iterable[str] | str | None = None) -> Rule:
    """The Taylor (Volterra) rule ``dw = eta sum theta_abc x_pre^a x_post^b |w|^c``, with separate
    coefficients at pre and at post spikes; ``mask`` (see :func:`parse_mask`) chooses the terms."""
    import jinja2

    terms = parse_mask(mask)
    template = jinja2.Template(_read("taylor_synapse.nestml.jinja2"), keep_trailing_newline=True)
    source = template.render(synapse="taylor_synapse", pre_terms=terms["pre"], post_terms=terms["post"],
                             pre_sum=_taylor_sum("pre", terms["pre"]), post_sum=_taylor_sum("post", terms["post"]))
    parameters = tuple(Parameter(f"th_{event}_{abc}", 0.0, -2.0, 2.0)
                       for event in ("pre", "post") for abc in terms[event])
    return Rule(
        name="taylor",
        synapse="taylor_synapse",
        source=source,
        parameters=parameters,
        fixed={"tau_pre": 20.0, "tau_post": 20.0, "eta": 1.0, "Wmin": 0.0, "Wmax": 100.0},
        description="Taylor rule: eta * sum th_abc x_pre^a x_post^b |w|^c at pre and at post spikes",
        terms=tuple(Term(f"th_{event}_{abc}", event, abc) for event in ("pre", "post") for abc in terms[event]),
    )


RULES = {"doublet": doublet_rule, "taylor": taylor_rule}


def get_rule(name: str, mask: Iterable[str] | str | None = None) -> Rule:
    """The rule called ``name`` (``doublet`` or ``taylor``; ``mask`` applies to ``taylor``)."""
    if name not in RULES:
        raise UnknownRuleError(f"unknown rule {name!r}; available rules: {', '.join(sorted(RULES))}")
    if name == "taylor":
        return taylor_rule(mask)
    if mask is not None:
        raise ValueError(f"rule {name!r} takes no mask (only 'taylor' does)")
    return RULES[name]()


@dataclass(frozen=True)
class RuleLayout:
    """One parameter vector over several connection types, each with its own copy of ``rule``:
    ``theta`` is the concatenation of one block of ``rule.parameters`` per connection type."""

    rule: Rule
    connection_types: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.rule.parameters) * len(self.connection_types)

    @cached_property
    def names(self) -> list[str]:
        return [f"{ct}.{n}" for ct in self.connection_types for n in self.rule.names]

    def _tile(self, values: Iterable[float]) -> np.ndarray:
        return np.tile(np.asarray(list(values), dtype=float), len(self.connection_types))

    def defaults(self) -> np.ndarray:
        return self._tile(p.default for p in self.rule.parameters)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (self._tile(p.low for p in self.rule.parameters),
                self._tile(p.high for p in self.rule.parameters))

    def log_mask(self) -> np.ndarray:
        return self._tile(p.log for p in self.rule.parameters).astype(bool)

    def split(self, theta: Sequence[float]) -> dict[str, np.ndarray]:
        """``theta`` cut into one block per connection type."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.size,):
            raise ValueError(f"expected {self.size} parameters ({len(self.rule.parameters)} per connection type "
                             f"{', '.join(self.connection_types)}), got shape {theta.shape}")
        return dict(zip(self.connection_types, np.split(theta, len(self.connection_types))))

    def as_dict(self, theta: Sequence[float]) -> dict[str, float]:
        """Named parameters, e.g. ``{"IE.alpha": -0.2, ...}``."""
        return dict(zip(self.names, np.asarray(theta, dtype=float).tolist()))

    def to_search_space(self, theta: Sequence[float]) -> np.ndarray:
        """Map ``theta`` to the optimiser's coordinates (log10 for log-space parameters)."""
        z = np.array(theta, dtype=float)
        z[self.log_mask()] = np.log10(z[self.log_mask()])
        return z

    def from_search_space(self, z: Sequence[float]) -> np.ndarray:
        theta = np.array(z, dtype=float)
        theta[self.log_mask()] = 10.0 ** theta[self.log_mask()]
        return theta
