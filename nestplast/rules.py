"""Plasticity rules: what each NESTML rule is, its parameters, and how a parameter vector maps
onto NEST synapse-model settings.

A :class:`Rule` describes one NESTML synapse model with free parameters: the NESTML source,
the searched parameters (defaults, bounds, which are searched in log space) and the fixed ones.
Rules are looked up by name with :func:`get_rule`::

    rule = get_rule("doublet")
    rule.synapse_params(rule.defaults(), eta=1e-3, Wmax=-5.0)   # -> dict for nest.CopyModel

The ``mlp`` rule (``get_rule("mlp", hidden=10)``) replaces the update with two small neural networks,
one for pre and one for postsynaptic spikes; :class:`MLPWeights`, :func:`mlp_theta` and
:func:`mlp_networks` go between its parameter vector and weight matrices.

A :class:`RuleLayout` lays one parameter vector ``theta`` out over several connection types
(e.g. ``EE``, ``EI``, ``IE``, ``II``), each with its own copy of the rule.

Sign convention for all rules: the rule acts on the magnitude ``|w|`` and the synapse keeps the
sign of ``Wmax``, so an inhibitory synapse (negative weights in NEST) is given ``Wmax < 0``;
``|w|`` is clipped to ``[|Wmin|, |Wmax|]``. A positive update therefore always strengthens a
synapse, excitatory or inhibitory, as in NEST's ``vogels_sprekeler_synapse``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
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

    The update is described for Python by ``terms`` (a sum of monomials) or, where a sum of
    monomials cannot express it, by ``update``: a function ``update(params, event, x_pre, x_post,
    w_abs)`` returning the change of ``|w|`` before the factor ``eta`` (vectorised).
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
    update: Callable[[Mapping[str, float], str, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def describes_update(self) -> bool:
        """Whether Python can compute the update (:meth:`weight_change`, :meth:`stdp_window`);
        a user's NESTML rule is compiled only."""
        return bool(self.terms) or self.update is not None

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
        if self.update is not None:
            return params["eta"] * self.update(params, event, x_pre, x_post, np.abs(w))
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


# --------------------------------------------------------------------------- the MLP rule

MLP_INPUTS = ("x_pre", "x_post", "w_abs")  # the networks' inputs, in the order of W1's columns
MLP_HIDDEN = 10  # default number of hidden units
LEAKY_SLOPE = 0.01  # leaky ReLU below zero, as in the model-based inference of plasticity rules
MLP_EVENTS = ("pre", "post")


def _check_hidden(hidden: object) -> int:
    # bool is an int in Python, but hidden=True is surely a mistake
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ValueError(f"rule 'mlp': hidden must be a whole number of hidden units, at least 1; got {hidden!r}")
    return int(hidden)


def mlp_names(hidden: int, event: str) -> list[str]:
    """Parameter names of one event's network, in their order in ``theta``: ``W1`` row by row
    (``{event}_W1_{j}_{i}``: input ``i`` of :data:`MLP_INPUTS` to hidden unit ``j``), then
    ``{event}_b1_{j}``, ``{event}_W2_{j}`` (hidden unit ``j`` to the output) and ``{event}_b2``."""
    return ([f"{event}_W1_{j}_{i}" for j in range(hidden) for i in range(len(MLP_INPUTS))]
            + [f"{event}_b1_{j}" for j in range(hidden)]
            + [f"{event}_W2_{j}" for j in range(hidden)]
            + [f"{event}_b2"])


@dataclass(frozen=True, eq=False)
class MLPWeights:
    """One event's network: ``h = leaky_relu(W1 @ (x_pre, x_post, |w|) + b1)`` with slope
    :data:`LEAKY_SLOPE` below zero, output ``tanh(W2 @ h + b2)`` in (-1, 1).
    Shapes: ``W1`` (hidden, 3), ``b1`` (hidden,), ``W2`` (hidden,), ``b2`` a number."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: float

    def __post_init__(self) -> None:
        W1 = np.asarray(self.W1, dtype=float)
        hidden = W1.shape[0] if W1.ndim == 2 else 0
        shapes = {"W1": (W1.shape, (hidden, len(MLP_INPUTS))), "b1": (np.shape(self.b1), (hidden,)),
                  "W2": (np.shape(self.W2), (hidden,)), "b2": (np.shape(self.b2), ())}
        wrong = [f"{name} has shape {got}, expected {want}" for name, (got, want) in shapes.items() if got != want]
        if hidden < 1 or wrong:
            raise ValueError("MLP weights: " + ("; ".join(wrong) or "W1 must have at least one row (hidden unit)"))
        object.__setattr__(self, "W1", W1)
        object.__setattr__(self, "b1", np.asarray(self.b1, dtype=float))
        object.__setattr__(self, "W2", np.asarray(self.W2, dtype=float))
        object.__setattr__(self, "b2", float(self.b2))

    @property
    def hidden(self) -> int:
        return self.W1.shape[0]

    def vector(self) -> np.ndarray:
        """The parameters in the order of :func:`mlp_names`."""
        return np.concatenate([self.W1.ravel(), self.b1, self.W2, [self.b2]])

    @classmethod
    def from_vector(cls, values: Sequence[float], hidden: int) -> MLPWeights:
        """The inverse of :meth:`vector`."""
        values = np.asarray(values, dtype=float)
        n_in = len(MLP_INPUTS)
        if values.shape != ((n_in + 2) * hidden + 1,):
            raise ValueError(f"one MLP with {hidden} hidden units takes {(n_in + 2) * hidden + 1} values, "
                             f"got shape {values.shape}")
        W1, b1, W2, b2 = np.split(values, np.cumsum([n_in * hidden, hidden, hidden]))
        return cls(W1.reshape(hidden, n_in), b1, W2, b2[0])

    @classmethod
    def from_params(cls, params: Mapping[str, float], event: str, hidden: int) -> MLPWeights:
        """The ``event`` network from named parameters (e.g. :meth:`Rule.synapse_params`)."""
        return cls.from_vector([params[name] for name in mlp_names(hidden, event)], hidden)

    def __call__(self, x_pre: np.ndarray, x_post: np.ndarray, w_abs: np.ndarray) -> np.ndarray:
        """The network's output, elementwise over the (broadcast) inputs."""
        x_pre, x_post, w_abs = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x_pre, x_post, w_abs)))
        # One hidden unit at a time, summed left to right as the generated NESTML is: the same
        # floating-point operations in the same order as NEST's.
        out = np.full(x_pre.shape, self.b2)
        for j in range(self.hidden):
            z = self.b1[j] + self.W1[j, 0] * x_pre + self.W1[j, 1] * x_post + self.W1[j, 2] * w_abs
            out = out + self.W2[j] * np.maximum(z, LEAKY_SLOPE * z)
        return np.tanh(out)


@dataclass(frozen=True)
class MLPUpdate:
    """The MLP rule's :attr:`Rule.update`: the event's network at ``(x_pre, x_post, |w|)``
    (a class rather than a closure, so that rules compare equal and pickle)."""

    hidden: int

    def __call__(self, params: Mapping[str, float], event: str, x_pre: np.ndarray, x_post: np.ndarray,
                 w_abs: np.ndarray) -> np.ndarray:
        return MLPWeights.from_params(params, event, self.hidden)(x_pre, x_post, w_abs)


def mlp_theta(pre: MLPWeights, post: MLPWeights) -> np.ndarray:
    """The MLP rule's parameter vector (order of ``get_rule("mlp", hidden).names``) from its two
    networks, which must have the same number of hidden units."""
    if pre.hidden != post.hidden:
        raise ValueError(f"the pre and post networks differ in size: {pre.hidden} and {post.hidden} hidden units")
    return np.concatenate([pre.vector(), post.vector()])


def mlp_networks(theta: Sequence[float] | Mapping[str, float], hidden: int | None = None) -> dict[str, MLPWeights]:
    """The two networks, ``{"pre": ..., "post": ...}``, of an MLP rule's parameter vector ``theta``
    (its size gives ``hidden``) or of named parameters (e.g. :meth:`Rule.synapse_params`; give
    ``hidden`` or let the names tell). For a :class:`RuleLayout`, split ``theta`` first."""
    if isinstance(theta, Mapping):
        hidden = _check_hidden(hidden if hidden is not None else sum(1 for k in theta if k.startswith("pre_b1_")))
        return {event: MLPWeights.from_params(theta, event, hidden) for event in MLP_EVENTS}
    theta = np.asarray(theta, dtype=float)
    per_hidden = 2 * (len(MLP_INPUTS) + 2)  # parameters per hidden unit, both networks
    hidden = _check_hidden(hidden if hidden is not None else max(1, (theta.size - 2) // per_hidden))
    if theta.shape != (per_hidden * hidden + 2,):
        raise ValueError(f"an MLP rule with {hidden} hidden units takes {per_hidden * hidden + 2} parameters, "
                         f"got shape {theta.shape}")
    return {event: MLPWeights.from_vector(block, hidden) for event, block in zip(MLP_EVENTS, np.split(theta, 2))}


def mlp_rule(hidden: int = MLP_HIDDEN) -> Rule:
    """A multilayer-perceptron rule: at a pre spike ``|w| += eta * mlp_pre(x_pre, x_post, |w|)``,
    at a post spike ``|w| += eta * mlp_post(x_pre, x_post, |w|)``, each network with ``hidden``
    leaky-ReLU units and a tanh output (see :class:`MLPWeights`). Every weight and bias is a
    searched parameter, ``2 * (5 * hidden + 1)`` in all, with bounds [-2, 2] and default 0: all
    zero is the inert rule (tanh(0) = 0), a neutral start for a search or fit. The inputs are not
    rescaled: ``|w|`` enters as it is, so keep ``Wmax`` of order 1-10 or the ``|w|`` weights small.
    Traces, clipping and sign are the doublet's; tau_pre, tau_post, eta, Wmin, Wmax are fixed."""
    import jinja2

    hidden = _check_hidden(hidden)
    names = {event: mlp_names(hidden, event) for event in MLP_EVENTS}
    template = jinja2.Template(_read("mlp_synapse.nestml.jinja2"), keep_trailing_newline=True)
    source = template.render(synapse="mlp_synapse", hidden=hidden, slope=LEAKY_SLOPE,
                             parameters=names["pre"] + names["post"])
    return Rule(
        name="mlp",
        synapse="mlp_synapse",
        source=source,
        parameters=tuple(Parameter(name, 0.0, -2.0, 2.0) for event in MLP_EVENTS for name in names[event]),
        fixed={"tau_pre": 20.0, "tau_post": 20.0, "eta": 1.0, "Wmin": 0.0, "Wmax": 100.0},
        description=f"MLP rule: eta * tanh MLP (3 -> {hidden} leaky ReLU -> 1) of (x_pre, x_post, |w|), "
                    "one network at pre and one at post spikes",
        update=MLPUpdate(hidden),
    )


RULES = {"doublet": doublet_rule, "taylor": taylor_rule, "mlp": mlp_rule}


def get_rule(name: str, mask: Iterable[str] | str | None = None, *, hidden: int | None = None) -> Rule:
    """The rule called ``name`` (``doublet``, ``taylor`` or ``mlp``); ``mask`` applies to
    ``taylor``, ``hidden`` (the number of hidden units, default :data:`MLP_HIDDEN`) to ``mlp``."""
    if name not in RULES:
        raise UnknownRuleError(f"unknown rule {name!r}; available rules: {', '.join(RULES)}")
    if hidden is not None and name != "mlp":
        raise ValueError(f"rule {name!r} takes no hidden layer size (only 'mlp' does)")
    if name == "taylor":
        return taylor_rule(mask)
    if mask is not None:
        raise ValueError(f"rule {name!r} takes no mask (only 'taylor' does)")
    if name == "mlp":
        return mlp_rule(MLP_HIDDEN if hidden is None else hidden)
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
