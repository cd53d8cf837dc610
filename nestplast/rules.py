"""Plasticity rules: what each NESTML rule is, its parameters, and how a parameter vector maps
onto NEST synapse-model settings.

A :class:`Rule` describes one NESTML synapse model with free parameters: the NESTML source,
the searched parameters (defaults, bounds, which are searched in log space) and the fixed ones.
Rules are looked up by name with :func:`get_rule`::

    rule = get_rule("doublet")
    rule.synapse_params(rule.defaults(), eta=1e-3, Wmax=-5.0)   # -> dict for nest.CopyModel

The ``mlp`` rule (``get_rule("mlp", hidden=10)``) replaces the update with two small neural networks,
one for pre and one for postsynaptic spikes; :class:`MLPWeights`, :func:`mlp_theta` and
:func:`mlp_networks` go between its parameter vector and weight matrices. :class:`MLPSpec` shapes
other MLP rules (more inputs: slow traces, the postsynaptic neuron's low-passed voltage and input;
deeper networks; frozen hidden layers), among them the fSBI rule ``get_rule("mlp_fsbi")``.

A :class:`RuleLayout` lays one parameter vector ``theta`` out over several connection types
(e.g. ``EE``, ``EI``, ``IE``, ``II``), each with its own copy of the rule.

Sign convention for all rules: the rule acts on the magnitude ``|w|`` and the synapse keeps the
sign of ``Wmax``, so an inhibitory synapse (negative weights in NEST) is given ``Wmax < 0``;
``|w|`` is clipped to ``[|Wmin|, |Wmax|]``. A positive update therefore always strengthens a
synapse, excitatory or inhibitory, as in NEST's ``vogels_sprekeler_synapse``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import UnknownNameError
from .neurons import POST_INPUTS
from .values import is_number, is_whole, plain

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


# A search's best_theta where no candidate had all its trials ok, given as a rule's parameters
NO_RULE = ("theta is None: no rule to give settings for (a search's best_theta is None where no candidate had all "
           "its trials ok)")


def weight_bounds(params: Mapping[str, float]) -> tuple[float, float]:
    """[|Wmin|, |Wmax|], into which a rule clips |w|, from its NEST settings ``params`` (no Wmin:
    0; no Wmax: unbounded)."""
    return abs(params.get("Wmin", 0.0)), abs(params.get("Wmax", math.inf))


def is_time_constant(name: str) -> bool:
    """Whether a rule's parameter is a time constant: named ``tau*`` (``IE.tau_pre`` by its type too),
    in ms, positive, and no term of the rule (the L1 penalty leaves it out)."""
    return name.rsplit(".", 1)[-1].startswith("tau")


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
    w_abs, **inputs)`` returning the change of ``|w|`` before the factor ``eta`` (vectorised);
    ``inputs`` are the ``extra_inputs`` the rule reads (from :data:`RULE_INPUTS`: slow traces and
    postsynaptic state variables, which the paired neuron must carry: :attr:`post_inputs`).
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
    update: Callable[..., np.ndarray] | None = None
    extra_inputs: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, object]:
        """The keyword arguments that make this rule again with :func:`get_rule` (an MLP's shape;
        JSON-ready): ``get_rule(rule.name, mask, **rule.options)``. Empty for the other rules."""
        if not isinstance(self.update, MLPUpdate):
            return {}
        spec = self.update.spec
        if self.name == "mlp_fsbi":
            return {"frozen_seed": spec.frozen_seed}
        return {"inputs": list(spec.inputs), "layers": list(spec.layers), "activations": list(spec.activations),
                "frozen_seed": spec.frozen_seed, "scales": None if spec.scales is None else list(spec.scales)}

    @property
    def post_inputs(self) -> tuple[str, ...]:
        """The postsynaptic neuron's state variables the rule reads (names in
        :data:`nestplast.neurons.POST_INPUTS`): the build adds them to the paired neuron."""
        return tuple(name for name in self.extra_inputs if name in POST_INPUTS)

    @property
    def describes_update(self) -> bool:
        """Whether Python can compute the update (:meth:`weight_change`, :meth:`stdp_window`);
        a user's NESTML rule is compiled only."""
        return bool(self.terms) or self.update is not None

    @property
    def has_stdp_window(self) -> bool:
        """Whether :meth:`stdp_window` can draw the rule alone: Python describes its update, and it
        reads no postsynaptic state (``mlp_fsbi``'s V_bar, C_exc, C_inh), which a pair of spikes
        does not fix."""
        return self.describes_update and not self.post_inputs

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
        """NEST synapse-model settings for parameter vector ``theta`` (or a name->value mapping, in
        which a parameter left out takes the rule's default: 0 for a coefficient, so only a rule's
        nonzero terms need be given), with the fixed parameters from the rule's defaults,
        overridden by ``fixed``. Every value given must be a number."""
        if isinstance(theta, Mapping):
            unknown = set(theta) - set(self.names)
            if settable := sorted(unknown & set(self.fixable)):  # not searched: settings, given by keyword
                raise UnknownParameterError(
                    f"rule {self.name!r}: {', '.join(settable)} not searched, so set as keyword arguments, e.g. "
                    f"synapse_params({{...}}, {settable[0]}=value); searched (the mapping's): {self.names}")
            if unknown:
                raise UnknownParameterError(f"rule {self.name!r} has no parameter(s) {sorted(unknown)}; "
                                       f"searched: {self.names}, fixed: {self.fixable}")
            values = {**dict(zip(self.names, self.defaults())), **theta}
        else:
            theta = np.asarray(theta, dtype=float)
            if theta.shape != (len(self.parameters),):
                raise ValueError(f"rule {self.name!r} takes {len(self.parameters)} parameters "
                                 f"({', '.join(self.names)}), got shape {theta.shape}")
            values = dict(zip(self.names, theta.tolist()))
        unknown = set(fixed) - set(self.fixed) - set(self.source_parameters)
        if searched := sorted(set(fixed) & set(self.names)):  # the rule has it, but theta sets it (and would win)
            raise UnknownParameterError(
                f"rule {self.name!r}: {', '.join(searched)} searched, so set by theta, not as a fixed setting: "
                f"give theta as a mapping, e.g. synapse_params({{**theta, {searched[0]!r}: value}}, ...)")
        if unknown:
            raise UnknownParameterError(f"rule {self.name!r} has no fixed parameter(s) {sorted(unknown)}; "
                                   f"fixed: {self.fixable}, searched: {self.names}")
        given = {**fixed, **(dict(theta) if isinstance(theta, Mapping) else {})}
        # NEST's CopyModel refused a string much later, naming its own types ("TypeMismatch ... std::string")
        if wrong := sorted(k for k, v in given.items() if not isinstance(v, numbers.Real)):  # bool: a NESTML boolean
            raise TypeError(f"rule {self.name!r}: {', '.join(f'{k} = {given[k]!r}' for k in wrong)}: expected a number")
        # a boolean is a NESTML boolean's value only: Wmax=True went to NEST as 1.0
        if flags := sorted(k for k, v in given.items() if isinstance(v, bool) and (
                k in self.names or (k in self.fixed and not isinstance(self.fixed[k], bool)))):
            raise TypeError(f"rule {self.name!r}: {', '.join(f'{k} = {given[k]!r}' for k in flags)}: expected a number, "
                            "not true or false")
        # a fraction (a number NEST has no type for) as a float; integers stay (NESTML's integer parameters),
        # as Python's own (an np.int64 Wmax came back as numpy's)
        params = {k: float(v) if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) else plain(v)
                  for k, v in {**self.fixed, **fixed, **values}.items()}
        # NEST takes NaN without a word (the built-in rules' clipping max(|Wmin|, NaN) then sends every weight to |Wmin|)
        if undefined := sorted(k for k, v in params.items() if isinstance(v, numbers.Real) and math.isnan(v)):
            raise ValueError(f"rule {self.name!r}: {', '.join(undefined)} = NaN: NEST would take it without a word, "
                             "and the weights would mean nothing")
        if "Wmax" in {**fixed, **values}:  # given: the sign it will have (a search signs each type's Wmax later)
            self.check_bound_signs(params.get("Wmin", 0.0), params["Wmax"])
        return params

    def check_bound_signs(self, w_min: float, w_max: float) -> None:
        """Refuse a negative ``Wmin`` with a positive ``Wmax``: a rule with a parameter ``Wmax``
        keeps each weight at the sign of ``Wmax``, so read as a signed lower bound that lets weights
        cross 0 (NEST's ``stdp_dopamine_synapse``) it is none. nestplast's own rules clip ``|w|`` to
        ``[|Wmin|, |Wmax|]``: weights of 20 jumped to 50 under Wmin = -50 without a word. The
        compiled synapse refuses the same in NEST (``CopyModel``, ``SetDefaults``)."""
        if not w_min < 0 < w_max:
            return
        if self.path is None:
            raise ValueError(f"rule {self.name!r}: Wmin = {w_min:g} with Wmax = {w_max:g}: the rule keeps each weight "
                             f"at the sign of Wmax and clips |w| to [|Wmin|, |Wmax|], so this Wmin is a floor of "
                             f"{-w_min:g} on |w|, not a bound below 0 (weights never cross 0); give Wmin = 0 for no "
                             f"floor, or {-w_min:g} for that floor")
        raise ValueError(f"rule {self.name!r}: Wmin = {w_min:g} with Wmax = {w_max:g}: a rule with a parameter Wmax "
                         "keeps each weight at the sign of Wmax (weights never cross 0), so a negative Wmin is not a "
                         "bound below 0; give Wmin >= 0, or name bounds a weight may cross 0 within otherwise "
                         "(w_min, w_max)")

    def weight_change(self, params: Mapping[str, float], event: str, x_pre: np.ndarray,
                      x_post: np.ndarray, w: np.ndarray, **inputs: np.ndarray) -> np.ndarray:
        """The update ``dw`` of ``|w|`` at a ``"pre"`` or ``"post"`` spike, given the traces as
        read just before that spike (vectorised; no clipping); a rule with :attr:`extra_inputs`
        takes them by name (e.g. ``x_pre_slow=..., V_bar=...``). ``params``: every parameter by
        name, as :meth:`synapse_params` gives them."""
        self._check_described()
        if event not in ("pre", "post"):  # a typo ("Pre") gave an update of 0 without a word
            raise ValueError(f"rule {self.name!r}: event is 'pre' or 'post', got {event!r}")
        if set(inputs) != set(self.extra_inputs):
            raise ValueError(f"rule {self.name!r} reads the inputs {list(self.extra_inputs)} besides x_pre, "
                             f"x_post and w; got {sorted(inputs)}")
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x_pre, x_post, w, *inputs.values())))
        x_pre, x_post, w = arrays[:3]
        with self._named_params():
            if self.update is not None:
                return params["eta"] * self.update(params, event, x_pre, x_post, np.abs(w),
                                                   **dict(zip(inputs, arrays[3:])))
            total = np.zeros_like(x_pre)
            for term in self.terms:
                if term.event == event:
                    a, b, c = (int(ch) for ch in term.abc)
                    total = total + params[term.param] * x_pre**a * x_post**b * np.abs(w) ** c
            return params["eta"] * total

    def _check_described(self) -> None:
        # a user's NESTML rule has no Python update: its weight changes and window came out all 0
        if not self.describes_update:
            raise ValueError(f"rule {self.name!r} ({self.path or 'a NESTML file'}) is compiled only: Python does not "
                             "know its update, so weight_change and stdp_window cannot compute it; simulate it in NEST")

    @contextlib.contextmanager
    def _named_params(self):
        try:
            yield
        except KeyError as err:  # a bare KeyError: 'eta' said neither what was missing nor where it comes from
            raise ValueError(f"rule {self.name!r}: params has no {err.args[0]!r}; give every parameter by name, "
                             "e.g. rule.synapse_params(theta, eta=..., ...)") from None

    def changes_nothing(self, fixed: Mapping[str, float] | None = None, *, draws: int = 8, seed: int = 0) -> bool:
        """Whether no searched parameter changes any update anywhere in the box: moved alone, at
        ``draws`` random points of it (``fixed`` as given), each leaves every update the same, so
        a search has nothing to find (e.g. an MLP's output weights searched over a hidden layer
        held at 0). Time constants and the bounds of |w| act on the traces and the clipping, not
        the update, and a rule compiled from NESTML only is not described here: neither is judged."""
        judged = [i for i, name in enumerate(self.names) if not is_time_constant(name) and name not in ("Wmin", "Wmax")]
        if not self.describes_update or not judged:
            return False
        rng = np.random.default_rng(seed)
        x_pre, x_post, w, inputs = self._usual_inputs(rng)
        low, high = (np.array([getattr(q, end) for q in self.parameters]) for end in ("low", "high"))
        log = np.array([q.log for q in self.parameters])

        def draw() -> np.ndarray:
            u = rng.random(len(low))
            return np.where(log, np.exp(np.log(np.where(log, low, 1.0)) + u * np.log(np.where(log, high / low, 1.0))),
                            low + u * (high - low))

        def updates(theta: np.ndarray) -> np.ndarray:
            params = self.synapse_params(theta, **(fixed or {}))
            return np.concatenate([self.weight_change(params, event, x_pre, x_post, w, **inputs) for event in ("pre", "post")])

        for _ in range(draws):
            theta, other = draw(), draw()
            base = updates(theta)
            for i in judged:
                moved = theta.copy()
                moved[i] = other[i]
                if not np.allclose(updates(moved), base, rtol=1e-9, atol=1e-12):
                    return False
        return True

    def _usual_inputs(self, rng: np.random.Generator, n: int = 64) -> tuple:
        """``n`` draws of the traces, weights and the neuron's inputs over their usual ranges:
        (x_pre, x_post, w, the :attr:`extra_inputs` by name)."""
        x_pre, x_post, w = rng.uniform(0.0, 2.0, n), rng.uniform(0.0, 2.0, n), rng.uniform(0.0, 200.0, n)
        inputs = {name: rng.uniform(0.0, 2.0, n) if name in SLOW_TRACES else rng.uniform(-70.0, -50.0, n)
                  if name == "V_bar" else rng.uniform(0.0, 100.0, n) for name in self.extra_inputs}
        return x_pre, x_post, w, inputs

    def changes_no_weight(self, params: Mapping[str, float], seed: int = 0) -> bool:
        """Whether the rule at ``params`` (every parameter by name, as :meth:`synapse_params` gives
        them) updates no weight at all: every update 0 at either spike, over the usual traces and
        weights (e.g. every coefficient 0, a search's start). False for a rule compiled from
        NESTML only, which Python cannot run."""
        if not self.describes_update:
            return False
        x_pre, x_post, w, inputs = self._usual_inputs(np.random.default_rng(seed))
        return not any(np.any(self.weight_change(params, event, x_pre, x_post, w, **inputs)) for event in ("pre", "post"))

    def stdp_window(self, params: Mapping[str, float], dt_ms: np.ndarray, w: float = 0.0,
                    **post: float) -> np.ndarray:
        """Weight change for one pre/post spike pair against ``dt = t_post - t_pre`` (ms), starting
        from weight ``w`` with empty traces: the first spike's update plus the second's. A rule
        reading :attr:`post_inputs` takes their (constant) values by name, e.g. ``V_bar=-65.0``."""
        self._check_described()
        dt = np.asarray(dt_ms, dtype=float)
        zero = np.zeros_like(dt)
        missing = set(self.post_inputs) - set(post)
        if missing or set(post) - set(self.post_inputs):
            raise ValueError(f"rule {self.name!r}: give the postsynaptic inputs {list(self.post_inputs)}, "
                             f"got {sorted(post)}")

        def change(event: str, pre_seen: bool, post_seen: bool, w_now: np.ndarray) -> np.ndarray:
            # the traces of the other spike of the pair, decayed over |dt|, where this spike sees them
            def trace(name: str, seen: bool) -> np.ndarray:
                with self._named_params():
                    tau = params[SLOW_TRACES.get(name, "tau_" + name[2:])]
                return np.exp(-np.abs(dt) / tau) if seen else zero
            extra = {name: trace(name, pre_seen if name.startswith("x_pre") else post_seen)
                     if name in SLOW_TRACES else post[name] + zero for name in self.extra_inputs}
            return self.weight_change(params, event, trace("x_pre", pre_seen), trace("x_post", post_seen),
                                      w_now, **extra)

        # post after pre: the pre spike sees no trace, the post spike sees x_pre = decay_pre
        first_pre = change("pre", False, False, w + zero)
        causal = first_pre + change("post", True, False, w + first_pre)
        first_post = change("post", False, False, w + zero)
        acausal = first_post + change("pre", False, True, w + first_post)
        # At dt = 0 NEST's convention: the post spike is handled first and reads x_pre before the
        # pre spike's jump; the pre spike reads x_post from strictly earlier post spikes: neither sees the other.
        coincident = first_post + change("pre", False, False, w + first_post)
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
    rate rho0: tau_pre = tau_post = tau, alpha = -2 rho0 tau, beta = 0, gamma = kappa = 1. NEST's
    ``vogels_sprekeler_synapse`` with ``tau`` is the same rule on neurons whose ``tau_minus`` is
    ``tau``: it reads the postsynaptic trace with the neuron's ``tau_minus`` (20 ms by default)."""
    if wrong := [f"{name} = {value!r}" for name, value in (("target_rate_hz", target_rate_hz), ("tau_ms", tau_ms))
                 if not is_number(value)]:
        raise TypeError(f"vogels_sprekeler: {', '.join(wrong)}: expected a number")
    # Python's floats: np.float32(10.0) gave alpha = np.float32(-0.4), -0.4000000059604645 in NEST
    target_rate_hz, tau_ms = float(target_rate_hz), float(tau_ms)
    # a negative rate gave alpha > 0: a rule that strengthens inhibition at every pre spike, no target
    if not (target_rate_hz >= 0 and math.isfinite(target_rate_hz)):
        raise ValueError(f"vogels_sprekeler: the target rate is in Hz, 0 or more, got {target_rate_hz}")
    if not (tau_ms > 0 and math.isfinite(tau_ms)):
        raise ValueError(f"vogels_sprekeler: tau is in ms, more than 0, got {tau_ms}")
    return {"tau_pre": tau_ms, "tau_post": tau_ms, "alpha": -2.0 * target_rate_hz * tau_ms / 1000.0,
            "beta": 0.0, "gamma": 1.0, "kappa": 1.0}


def mask_terms(mask: Iterable[str] | str | None) -> list[tuple[str, str]]:
    """The (event, abc) terms of a Taylor mask (see :func:`parse_mask`), in the order given: the
    order of the rule's parameters, so that coefficients given as a vector follow the mask."""
    if mask is None or mask == "all":
        return [(event, abc) for event in ("pre", "post") for abc in TAYLOR_TERMS]
    items = [m.strip() for m in mask.split(",")] if isinstance(mask, str) else [str(m).strip() for m in mask]
    if "" in items:
        raise ValueError(f"an empty term in the Taylor mask {mask!r} (two commas, or one at the end?)")
    terms: list[tuple[str, str]] = []
    for item in items:
        event, _, abc = item.partition(":")
        if event not in ("pre", "post") or abc not in TAYLOR_TERMS:
            raise ValueError(f"bad Taylor mask term {item!r}: expected 'pre:abc' or 'post:abc' "
                             f"with a, b, c in 0..2 (e.g. 'pre:010', 'post:100')")
        if (event, abc) in terms:  # a typo for another term: fitted as one term fewer, without a word
            raise ValueError(f"the Taylor mask {mask!r} names {item!r} twice; give each term once")
        terms.append((event, abc))
    if not terms:
        raise ValueError("the Taylor mask frees no term")
    return terms


def parse_mask(mask: Iterable[str] | str | None) -> dict[str, tuple[str, ...]]:
    """Parse a Taylor mask: terms such as ``"pre:010"`` or ``"post:100"`` (event, then exponents
    a b c of x_pre^a x_post^b |w|^c), as a list or a comma-separated string. ``None`` or ``"all"``
    frees all 27 terms of both events. Each event's terms, in the order given."""
    terms = mask_terms(mask)
    return {event: tuple(abc for e, abc in terms if e == event) for event in ("pre", "post")}


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

    given = mask_terms(mask)  # the parameters' order: a vector of coefficients follows the mask
    # the NESTML source in one order, whatever the mask's: one module for one set of terms
    terms = {event: tuple(sorted(abc for e, abc in given if e == event)) for event in ("pre", "post")}
    template = jinja2.Template(_read("taylor_synapse.nestml.jinja2"), keep_trailing_newline=True)
    source = template.render(synapse="taylor_synapse", pre_terms=terms["pre"], post_terms=terms["post"],
                             pre_sum=_taylor_sum("pre", terms["pre"]), post_sum=_taylor_sum("post", terms["post"]))
    parameters = tuple(Parameter(f"th_{event}_{abc}", 0.0, -2.0, 2.0) for event, abc in given)
    return Rule(
        name="taylor",
        synapse="taylor_synapse",
        source=source,
        parameters=parameters,
        fixed={"tau_pre": 20.0, "tau_post": 20.0, "eta": 1.0, "Wmin": 0.0, "Wmax": 100.0},
        description="Taylor rule: eta * sum th_abc x_pre^a x_post^b |w|^c at pre and at post spikes",
        terms=tuple(Term(f"th_{event}_{abc}", event, abc) for event, abc in given),
    )


def reward_rule(mask: Iterable[str] | str | None = "pre:010,forget") -> Rule:
    """A three-factor Taylor rule for reward learning: at each presynaptic spike
    ``|w| += eta sum theta_abc x_post^a R^b |w|^c`` (``mask``: terms ``pre:abc``, exponents of the
    postsynaptic trace, the reward signal ``R`` and ``|w|``), and with ``forget`` in the mask,
    active forgetting ``d|w|/dt = -forget |w|`` between events (``forget`` in 1/s). ``R`` is a
    common property the caller sets between trials (:mod:`nestplast.choice_task`)."""
    import jinja2

    items = [m.strip() for m in mask.split(",")] if isinstance(mask, str) else [str(m).strip() for m in mask or ()]
    forget = "forget" in items
    pre = [m for m in items if m != "forget"]
    # "forget" alone is the rule without a reward term (the null model a comparison needs); it
    # became pre:010 and forget, so that --compare forget compared the rule with itself
    try:
        terms = parse_mask(pre) if pre else {"pre": () if forget else ("010",), "post": ()}
    except ValueError as err:
        raise ValueError(f"{err}; the reward rule's mask takes 'pre:abc' terms and 'forget'") from None
    if terms["post"]:
        raise ValueError("the reward rule acts at presynaptic spikes only: use 'pre:abc' terms (and 'forget')")
    names = ("x_post", "R", "w_abs")
    in_source = sorted(terms["pre"])  # one module for one set of terms; the parameters follow the mask
    pre_sum = " + ".join(" * ".join([f"th_pre_{abc}"] + [n for n, k in zip(names, map(int, abc)) for _ in range(k)])
                         for abc in in_source)
    template = jinja2.Template(_read("reward_synapse.nestml.jinja2"), keep_trailing_newline=True)
    source = template.render(synapse="reward_synapse", pre_terms=in_source, pre_sum=pre_sum, forget=forget)
    coefficients = {f"pre:{abc}": Parameter(f"th_pre_{abc}", 0.0, -2.0, 2.0) for abc in terms["pre"]}
    forgetting = {"forget": Parameter("forget", 0.0, -1.0, 1.0)} if forget else {}
    parameters = tuple({**coefficients, **forgetting}[item] for item in items) if pre else (
        *coefficients.values(), *forgetting.values())  # in the mask's order, as the Taylor rule's
    return Rule(
        name="reward",
        synapse="reward_synapse",
        source=source,
        parameters=parameters,
        fixed={"tau_post": 20.0, "eta": 1.0, "R": 0.0, "Wmin": 0.0, "Wmax": 100.0},
        synaptic_traces=("x_post",),
        description="three-factor rule: eta * sum th_abc x_post^a R^b |w|^c at pre spikes; forgetting between",
    )


# --------------------------------------------------------------------------- the MLP rule

MLP_INPUTS = ("x_pre", "x_post", "w_abs")  # the inference MLP's inputs, in the order of W1's columns
MLP_HIDDEN = 10  # default number of hidden units
LEAKY_SLOPE = 0.01  # leaky ReLU below zero, as in the model-based inference of plasticity rules
MLP_EVENTS = ("pre", "post")
# Every input an MLP rule can read: the traces (fast, and slow for triplet effects), |w|, and the
# postsynaptic neuron's low-passed voltage and co-dependency traces (nestplast.neurons.POST_INPUTS).
RULE_INPUTS = ("x_pre", "x_post", "w_abs", "x_pre_slow", "x_post_slow", *POST_INPUTS, "R")
REWARD_INPUT = "R"  # a third factor: the reward signal, a common property set between trials (nestplast.choice_task)
SLOW_TRACES = {"x_pre_slow": "tau_pre_slow", "x_post_slow": "tau_post_slow"}
SLOW_TAU = 100.0  # ms, default of tau_pre_slow and tau_post_slow
ACTIVATIONS = ("leaky_relu", "sigmoid", "tanh", "linear")
# The fSBI MLP rule: 6 inputs -> 50 sigmoid -> 4 sigmoid -> 1 linear, each input divided by its scale.
FSBI_INPUTS = ("x_pre", "x_post", "w_abs", "V_bar", "C_exc", "C_inh")
FSBI_SCALES = (2.0, 2.0, 1.0, 15.0, 15.0, 15.0)
FSBI_LAYERS = (50, 4)
FSBI_SEED = 0
FSBI_ETA = Parameter("eta", 0.01, 1e-3, 1.0, log=True)  # searched with the output layers
FROZEN_DECIMALS = 6  # frozen weights are numbers in the NESTML source with this many decimals


def _check_hidden(hidden: object) -> int:
    # bool is an int in Python, but hidden=True is surely a mistake
    if not is_whole(hidden) or hidden < 1:
        raise ValueError(f"MLP rule: hidden must be a whole number of hidden units, at least 1; got {hidden!r}")
    return int(hidden)


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "leaky_relu":
        return np.maximum(z, LEAKY_SLOPE * z)
    if name == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-z) = inf for z < -709: 0, as in C++
            return 1.0 / (1.0 + np.exp(-z))
    return np.tanh(z) if name == "tanh" else z


def _nestml_activation(name: str, z: str) -> str:
    return {"leaky_relu": f"max({z}, {LEAKY_SLOPE} * {z})", "sigmoid": f"1.0 / (1.0 + exp(-{z}))",
            "tanh": f"tanh({z})", "linear": z}[name]


@dataclass(frozen=True)
class MLPSpec:
    """The shape of an MLP rule, the same for its pre and its post network: ``inputs`` (names from
    :data:`RULE_INPUTS`), the sizes of the hidden ``layers``, one activation (from :data:`ACTIVATIONS`)
    per hidden layer and one for the single output, and ``scales`` (each input is divided by its
    scale, a fixed synapse parameter ``scale_<input>``; ``None``: inputs as they are).

    ``frozen_seed=None``: every weight and bias is searched. An integer: the hidden layers are
    frozen, drawn from that seed (:meth:`frozen_layers`) and written into the NESTML source as
    numbers; only the output layer and the learning rate ``eta`` are searched."""

    inputs: tuple[str, ...] = MLP_INPUTS
    layers: tuple[int, ...] = (MLP_HIDDEN,)
    activations: tuple[str, ...] = ("leaky_relu", "tanh")
    frozen_seed: int | None = None
    scales: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        # tuple("x_pre") is its letters, and tuple(3) said only "'int' object is not iterable"
        if isinstance(self.inputs, str) or not isinstance(self.inputs, Iterable):
            raise ValueError(f"MLP rule: inputs are a list of names, e.g. ['x_pre', 'x_post']; got {self.inputs!r}")
        if isinstance(self.scales, dict):  # the parameters are named scale_<input>: a dict is a natural guess
            raise ValueError(f"MLP rule: scales are one number per input, in the order of inputs "
                             f"({list(self.inputs)}); got a dict {self.scales}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "layers", tuple(_check_hidden(n) for n in self.layers))
        object.__setattr__(self, "activations", tuple(self.activations))
        unknown = [name for name in self.inputs if name not in RULE_INPUTS]
        if unknown or not self.inputs or len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"MLP rule: inputs must be distinct names from {', '.join(RULE_INPUTS)}; "
                             f"got {list(self.inputs)}")
        if not self.layers:
            raise ValueError("MLP rule: give at least one hidden layer")
        if len(self.activations) != len(self.layers) + 1 or not set(self.activations) <= set(ACTIVATIONS):
            raise ValueError(f"MLP rule: activations are one per hidden layer and one for the output "
                             f"({len(self.layers) + 1}), each of {', '.join(ACTIVATIONS)}; got {list(self.activations)}")
        if self.scales is not None:
            object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
            if len(self.scales) != len(self.inputs) or not all(s > 0 for s in self.scales):
                raise ValueError(f"MLP rule: scales are one positive number per input ({len(self.inputs)}); "
                                 f"got {list(self.scales)}")
        if self.frozen_seed is not None and (not is_whole(self.frozen_seed) or self.frozen_seed < 0):
            raise ValueError(f"MLP rule: frozen_seed must be a whole number >= 0 or None; got {self.frozen_seed!r}")

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(units, inputs) of each layer, the output layer last."""
        widths = [len(self.inputs), *self.layers, 1]
        return list(zip(widths[1:], widths[:-1]))

    def names(self, event: str) -> list[str]:
        """Searched parameter names of one event's network, in their order in ``theta``: per
        searched layer ``layer`` (1 = first hidden layer) its weights ``{event}_W{layer}_{j}_{i}`` (input ``i``
        to unit ``j``, row by row), then its biases ``{event}_b{layer}_{j}``; the output layer's are
        ``{event}_W{L}_{j}`` and ``{event}_b{L}``. A frozen rule searches the output layer only."""
        names = []
        for layer, (units, fan_in) in enumerate(self.sizes, start=1):
            if layer == len(self.sizes):
                names += [f"{event}_W{layer}_{i}" for i in range(fan_in)] + [f"{event}_b{layer}"]
            elif self.frozen_seed is None:
                names += [f"{event}_W{layer}_{j}_{i}" for j in range(units) for i in range(fan_in)]
                names += [f"{event}_b{layer}_{j}" for j in range(units)]
        return names

    def frozen_layers(self) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """The frozen hidden layers, ``{"pre": [(W, b), ...], "post": [...]}``: uniform in
        +-1/sqrt(fan-in) (PyTorch's default for a linear layer) from ``numpy.random.default_rng(frozen_seed)``,
        pre before post, layer by layer, weights before biases; rounded to :data:`FROZEN_DECIMALS`
        decimals, so that the numbers in the NESTML source are exactly these."""
        if self.frozen_seed is None:
            raise ValueError("this MLP rule has no frozen layers (frozen_seed=None)")
        return _frozen_layers(self.frozen_seed, tuple(self.sizes[:-1]))

    def network(self, params: Mapping[str, float], event: str) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """One event's whole network as ``[(W, b, activation), ...]`` from named parameters
        (e.g. :meth:`Rule.synapse_params`), the frozen layers included."""
        values = iter([params[name] for name in self.names(event)])
        layers = []
        frozen = self.frozen_layers()[event] if self.frozen_seed is not None else None
        for layer, ((units, fan_in), activation) in enumerate(zip(self.sizes, self.activations)):
            if frozen is not None and layer < len(frozen):
                W, b = frozen[layer]
            elif layer == len(self.sizes) - 1:
                W = np.array([[next(values) for _ in range(fan_in)]])
                b = np.array([next(values)])
            else:
                W = np.array([next(values) for _ in range(units * fan_in)]).reshape(units, fan_in)
                b = np.array([next(values) for _ in range(units)])
            layers.append((W, b, activation))
        return layers

    def forward(self, params: Mapping[str, float], event: str, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ``event`` network's output at ``inputs`` (name -> array, broadcast together), in the
        floating-point operations of the generated NESTML and in their order: each input divided by
        its scale, each unit's sum from its bias left to right over its inputs."""
        x = np.broadcast_arrays(*(np.asarray(inputs[name], dtype=float) for name in self.inputs))
        if self.scales is not None:  # the synapse's own scale_<input>, as NEST divides by it (rule.fixed may set it)
            x = [xi / params.get(f"scale_{name}", scale) for xi, name, scale in zip(x, self.inputs, self.scales)]
        for W, b, activation in self.network(params, event):
            h = []
            for j in range(W.shape[0]):
                z = np.full(x[0].shape, b[j])
                for i, xi in enumerate(x):
                    z = z + W[j, i] * xi
                h.append(_activate(activation, z))
            x = h
        return x[0]

    def nestml(self, event: str) -> list[str]:
        """The NESTML statements that compute ``dw``, the network's output, in an onReceive block."""
        def number(value: float) -> str:
            return f"{value:.{FROZEN_DECIMALS}f}"

        def weighted_sum(bias: str, weights: list[str], terms: list[str]) -> str:
            out = bias
            for weight, term in zip(weights, terms):
                if weight.startswith("-"):  # a frozen negative weight: "- 0.5 * x", exactly "+ (-0.5) * x"
                    out += f" - {weight[1:]} * {term}"
                else:
                    out += f" + {weight} * {term}"
            return out

        port = {name: f"{name}_post" for name in POST_INPUTS}
        lines = ["w_abs real = abs(w)"]
        x = [port.get(name, name) for name in self.inputs]
        if self.scales is not None:
            lines += [f"in_{i} real = {name} / scale_{self.inputs[i]}" for i, name in enumerate(x)]
            x = [f"in_{i}" for i in range(len(x))]
        frozen = self.frozen_layers()[event] if self.frozen_seed is not None else []
        n_layers = len(self.sizes)
        for layer, ((units, fan_in), activation) in enumerate(zip(self.sizes, self.activations), start=1):
            h = []
            for j in range(units):
                if layer == n_layers:
                    bias, weights = f"{event}_b{layer}", [f"{event}_W{layer}_{i}" for i in range(fan_in)]
                elif layer <= len(frozen):
                    W, b = frozen[layer - 1]
                    bias, weights = number(b[j]), [number(v) for v in W[j]]
                else:
                    bias, weights = f"{event}_b{layer}_{j}", [f"{event}_W{layer}_{j}_{i}" for i in range(fan_in)]
                z = f"z{layer}_{j}" if layer < n_layers else f"z{layer}"
                lines.append(f"{z} real = {weighted_sum(bias, weights, x)}")
                if layer < n_layers:
                    lines.append(f"h{layer}_{j} real = {_nestml_activation(activation, z)}")
                    h.append(f"h{layer}_{j}")
                else:
                    lines.append(f"dw real = {_nestml_activation(activation, z)}")
            x = h
        return lines

    def describe(self) -> str:
        shape = " -> ".join([str(len(self.inputs))] + [f"{n} {a}" for n, a in zip(self.layers, self.activations)]
                            + [f"1 {self.activations[-1]}"])
        return shape + (", hidden layers frozen" if self.frozen_seed is not None else "")


@functools.cache
def _frozen_layers(seed: int, sizes: tuple[tuple[int, int], ...]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for event in MLP_EVENTS:
        out[event] = []
        for units, fan_in in sizes:
            bound = 1.0 / np.sqrt(fan_in)
            W, b = rng.uniform(-bound, bound, (units, fan_in)), rng.uniform(-bound, bound, units)
            exact = np.vectorize(lambda v: float(f"{v:.{FROZEN_DECIMALS}f}"))  # the source's numbers, parsed
            out[event].append((exact(W), exact(b)))
    return out


def mlp_names(hidden: int, event: str) -> list[str]:
    """Parameter names of one event's network of the inference MLP (``get_rule("mlp", hidden=...)``),
    in their order in ``theta``: ``W1`` row by row (``{event}_W1_{j}_{i}``: input ``i`` of
    :data:`MLP_INPUTS` to hidden unit ``j``), then ``{event}_b1_{j}``, ``{event}_W2_{j}`` (hidden unit
    ``j`` to the output) and ``{event}_b2``."""
    return MLPSpec(layers=(_check_hidden(hidden),)).names(event)


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
    """The MLP rule's :attr:`Rule.update`: the event's network at the rule's inputs (a class
    rather than a closure, so that rules compare equal and pickle)."""

    spec: MLPSpec

    def __call__(self, params: Mapping[str, float], event: str, x_pre: np.ndarray, x_post: np.ndarray,
                 w_abs: np.ndarray, **inputs: np.ndarray) -> np.ndarray:
        return self.spec.forward(params, event, {"x_pre": x_pre, "x_post": x_post, "w_abs": w_abs, **inputs})


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


def mlp_rule(hidden: int = MLP_HIDDEN, *, spec: MLPSpec | None = None, name: str = "mlp") -> Rule:
    """A multilayer-perceptron rule: at a pre spike ``|w| += eta * mlp_pre(inputs)``, at a post
    spike ``|w| += eta * mlp_post(inputs)``, two networks of the same shape ``spec`` (an
    :class:`MLPSpec`; default: the inference MLP ``(x_pre, x_post, |w|) -> hidden leaky ReLU -> 1 tanh``,
    see :class:`MLPWeights`). Every searched weight and bias has bounds [-2, 2] and default 0,
    so the defaults are the inert rule for a tanh or linear output, a neutral start for a search or
    fit; with ``hidden`` units the inference MLP has ``2 * (5 * hidden + 1)`` parameters. Traces,
    clipping and sign are the doublet's; tau_pre, tau_post (and the slow traces' tau_pre_slow,
    tau_post_slow, default 100 ms), eta, Wmin, Wmax and the input scales are fixed, except that a
    frozen rule searches eta (log space, [1e-3, 1]). Inputs without scales enter as they are."""
    import jinja2

    spec = spec or MLPSpec(layers=(_check_hidden(hidden),))
    names = {event: spec.names(event) for event in MLP_EVENTS}
    searched = [Parameter(n, 0.0, -2.0, 2.0) for event in MLP_EVENTS for n in names[event]]
    if spec.frozen_seed is not None:
        searched.insert(0, FSBI_ETA)
    traces = ["x_pre", "x_post"] + [t for t in SLOW_TRACES if t in spec.inputs]
    taus = [(t, SLOW_TRACES.get(t, "tau_" + t[2:]), SLOW_TAU if t in SLOW_TRACES else 20.0) for t in traces]
    scales = list(zip(spec.inputs, spec.scales)) if spec.scales is not None else []
    reward = [(REWARD_INPUT, 0.0)] if REWARD_INPUT in spec.inputs else []  # set by the caller, not searched
    template = jinja2.Template(_read("mlp_synapse.nestml.jinja2"), keep_trailing_newline=True)
    source = template.render(
        synapse=f"{name}_synapse", inputs=spec.inputs, architecture=spec.describe(), frozen=spec.frozen_seed,
        traces=traces, taus=taus, eta_searched=spec.frozen_seed is not None,
        scales=scales, parameters=[(p.name, p.default) for p in searched] + reward,
        post_inputs=[i for i in spec.inputs if i in POST_INPUTS],
        networks={event: spec.nestml(event) for event in MLP_EVENTS})
    fixed = {tau: value for _trace, tau, value in taus}
    if spec.frozen_seed is None:
        fixed["eta"] = 1.0
    fixed |= {"Wmin": 0.0, "Wmax": 100.0} | {f"scale_{i}": s for i, s in scales} | dict(reward)
    return Rule(
        name=name,
        synapse=f"{name}_synapse",
        source=source,
        parameters=tuple(searched),
        fixed=fixed,
        synaptic_traces=tuple(traces),
        description=f"MLP rule: eta * MLP ({spec.describe()}) of ({', '.join(spec.inputs)}), "
                    "one network at pre and one at post spikes",
        update=MLPUpdate(spec),
        extra_inputs=tuple(i for i in spec.inputs if i not in MLP_INPUTS),
    )


def mlp_fsbi_rule(frozen_seed: int = FSBI_SEED) -> Rule:
    """The fSBI MLP rule (Confavreux et al. 2023): inputs ``x_pre, x_post, |w|, V_bar, C_exc,
    C_inh``, divided by ``2, 2, 1, 15, 15, 15`` (fixed ``scale_<input>`` parameters), then
    ``6 -> 50 sigmoid -> 4 sigmoid -> 1 linear``. The hidden layers are frozen, drawn from
    ``frozen_seed``; searched are ``eta`` and each network's 4 output weights and bias: 11
    parameters. The postsynaptic inputs come from the paired neuron, built with them
    (:meth:`nestplast.neurons.Neuron.with_rule_inputs`)."""
    spec = MLPSpec(inputs=FSBI_INPUTS, layers=FSBI_LAYERS, activations=("sigmoid", "sigmoid", "linear"),
                   frozen_seed=frozen_seed, scales=FSBI_SCALES)
    return mlp_rule(spec=spec, name="mlp_fsbi")


RULES = {"doublet": doublet_rule, "taylor": taylor_rule, "mlp": mlp_rule, "mlp_fsbi": mlp_fsbi_rule,
         "reward": reward_rule}


MASKED_RULES = ("taylor", "reward")  # the rules that take a mask of terms


def get_rule(name: str, mask: Iterable[str] | str | None = None, *, hidden: int | None = None,
             **mlp: object) -> Rule:
    """The rule called ``name`` (``doublet``, ``taylor``, ``mlp``, ``mlp_fsbi`` or ``reward``); ``mask``
    applies to ``taylor`` and ``reward``; ``hidden`` (the number of hidden units, default :data:`MLP_HIDDEN`) to ``mlp``, whose
    other shapes are given by the fields of :class:`MLPSpec` (``inputs``, ``layers``,
    ``activations``, ``frozen_seed``, ``scales``); ``mlp_fsbi`` takes ``frozen_seed``."""
    if name not in RULES:
        raise UnknownRuleError(f"unknown rule {name!r}; available rules: {', '.join(RULES)}")
    if hidden is not None and name != "mlp":
        raise ValueError(f"rule {name!r} takes no hidden layer size (only 'mlp' does)")
    allowed = {"mlp": set(MLPSpec.__dataclass_fields__), "mlp_fsbi": {"frozen_seed"}}.get(name, set())
    if set(mlp) - allowed:
        listed = sorted(allowed | ({"hidden"} if name == "mlp" else set()))  # hidden is get_rule's own argument
        raise ValueError(f"rule {name!r} takes no option(s) {sorted(set(mlp) - allowed)}"
                         + (f"; its options: {listed}" if allowed else ""))
    if name == "taylor":
        return taylor_rule(mask)
    if name == "reward":
        return reward_rule(mask) if mask is not None else reward_rule()
    if mask is not None:
        raise ValueError(f"rule {name!r} takes no mask (only {' and '.join(map(repr, MASKED_RULES))} do)")
    if name == "mlp":
        if hidden is not None and "layers" in mlp:
            raise ValueError("rule 'mlp': give hidden or layers, not both")
        if not mlp:
            return mlp_rule(MLP_HIDDEN if hidden is None else hidden)
        layers = mlp.pop("layers", (_check_hidden(MLP_HIDDEN if hidden is None else hidden),))
        return mlp_rule(spec=MLPSpec(layers=layers, **mlp))  # type: ignore[arg-type]
    if name == "mlp_fsbi":
        return mlp_fsbi_rule(**mlp)  # type: ignore[arg-type]
    return RULES[name]()


@dataclass(frozen=True)
class RuleLayout:
    """One parameter vector over several connection types, each with its own copy of ``rule``
    (or, for the types in ``by_type``, of another rule: co-active rules, e.g. a doublet rule on
    EE and an MLP on IE): ``theta`` is the concatenation of one block of parameters per
    connection type, in the order of ``connection_types``."""

    rule: Rule
    connection_types: tuple[str, ...]
    by_type: Mapping[str, Rule] = field(default_factory=dict, hash=False)

    def rule_of(self, ct: str) -> Rule:
        """The rule on connection type ``ct``."""
        return self.by_type.get(ct, self.rule)

    @property
    def rules(self) -> list[Rule]:
        """One rule per distinct NESTML synapse (what a module must hold), in the order of their
        first connection type; types that share a synapse differ at most in what is searched."""
        out: dict[str, Rule] = {}
        for ct in self.connection_types:
            out.setdefault(self.rule_of(ct).synapse, self.rule_of(ct))
        return list(out.values())

    @property
    def size(self) -> int:
        return sum(len(self.rule_of(ct).parameters) for ct in self.connection_types)

    @cached_property
    def names(self) -> list[str]:
        return [f"{ct}.{n}" for ct in self.connection_types for n in self.rule_of(ct).names]

    def _per_type(self, value: Callable[[Parameter], float]) -> np.ndarray:
        return np.asarray([value(p) for ct in self.connection_types for p in self.rule_of(ct).parameters], dtype=float)

    def defaults(self) -> np.ndarray:
        return self._per_type(lambda p: p.default)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._per_type(lambda p: p.low), self._per_type(lambda p: p.high)

    def log_mask(self) -> np.ndarray:
        return self._per_type(lambda p: p.log).astype(bool)

    def split(self, theta: Sequence[float]) -> dict[str, np.ndarray]:
        """``theta`` cut into one block per connection type."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.size,):
            per_type = ", ".join(f"{len(self.rule_of(ct).parameters)} for {ct}" for ct in self.connection_types)
            raise ValueError(f"expected {self.size} parameters ({per_type}), got shape {theta.shape}")
        ends = np.cumsum([len(self.rule_of(ct).parameters) for ct in self.connection_types])
        return dict(zip(self.connection_types, np.split(theta, ends[:-1])))

    def as_dict(self, theta: Sequence[float]) -> dict[str, float]:
        """Named parameters, e.g. ``{"IE.alpha": -0.2, ...}``; ``theta`` of another length (a
        result of another experiment) is refused, not cut to fit."""
        if theta is None:  # the README's own print of a search's best: "object of type 'float' has no len()"
            raise ValueError(NO_RULE)
        values = np.asarray(theta, dtype=float).tolist()
        if len(values) != len(self.names):
            raise ValueError(f"{len(values)} values for the {len(self.names)} parameters {', '.join(self.names)}: "
                             "theta is not of this layout (another experiment's result?)")
        return dict(zip(self.names, values))

    def from_dict(self, values: Mapping[str, float]) -> np.ndarray:
        """``theta`` from named parameters (:meth:`as_dict`'s names); a missing or unknown name is
        refused, not left at a default."""
        missing, unknown = [n for n in self.names if n not in values], sorted(set(values) - set(self.names))
        if missing or unknown:
            raise ValueError(f"named parameters: expected exactly {', '.join(self.names)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(unknown)}" if unknown else ""))
        return np.array([float(values[n]) for n in self.names])
