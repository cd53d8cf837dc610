"""Inference: the coefficients of a plasticity rule fitted to recorded weight trajectories.

The clamped forward model (:mod:`nestplast.trajectories`; NEST's replay, :mod:`nestplast.replay`,
is its reference) replays the recorded spikes through the rule; the recording's sample times are
cut into segments, each started from its recorded weights, and the loss is the squared error of
the predicted weights over that of the all-zero rule (which keeps every weight where the segment
started): 0 is a perfect fit, 1 no better than no plasticity; plus an L1 penalty. CMA-ES through
:mod:`nestplast.engine` finds the minimum (MPI, store, resume), a local polish refines it, and a
bootstrap over segments gives 95 % intervals. Every ``hold_out``-th segment is kept out of the
fit: R^2 and the % of deviance explained are measured there. ::

    from nestplast import infer, recording
    fit = infer.fit(recording.load("data.npz"), infer.RuleChoice("taylor", mask="post:100,post:011"),
                    fixed={"eta": 0.5, "tau_pre": 20.0, "tau_post": 20.0, "Wmax": 1000.0}, out="runs/fit")
    print(fit.coefficients, fit.intervals, fit.r2_held_out)
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__, engine
from .builder import build
from .errors import UserError
from .kernel import lent_kernel
from .objectives import l1_penalty, relative_error
from .parallel import Transport, check_comm_given, together
from .recording import Recording, RecordingError, check_time_unit, data_warnings, varies
from .rules import MASKED_RULES, Rule, get_rule, is_time_constant, weight_bounds
from .store import DB_NAME, RunStore, StoreError, as_stored, check_same_kind, check_same_parameters, note_what_is_kept
from .strategies import Budget, SearchSpace, make_strategy
from .tasks import FIT_FAILURE_LOSS, Candidate, Evaluation, Task, by_candidate
from .trajectories import ClampedTrajectories
from .values import is_number, is_whole, plain

if TYPE_CHECKING:
    from mpi4py.MPI import Comm

    from .closed_loop import Background, ClosedLoopFit

PRECISION = 1e-9  # the numpy forward model against NEST's replay (tests/test_inference.py)
# the advice the warnings end with, by name: infer-demo gives the same advice in its own options
# (--fixed takes settings, not searched coefficients: that advice was refused by the command)
UNCONSTRAINED_ADVICE = "record longer or more spikes, or fit a rule without it (taylor: a --mask without its term)"
FEWER_SEGMENTS_ADVICE = "give fewer --segments"


def more_segments_advice(units: str) -> str:
    """Advice for a fit with too few of its ``units`` (segments, trials) to bootstrap: more of
    them, or more sample times."""
    return f"give more {units} (--segments) or more sample times"


@dataclass(frozen=True)
class RuleChoice:
    """Which rule to fit: a built-in name (``taylor`` with a ``mask``, ``doublet``). A mask given
    as a list of terms is kept as their text, ``"post:100,post:011"``."""

    name: str = "taylor"
    mask: str | None = None

    def __post_init__(self) -> None:
        # a misspelt name or a mask of another type passed here and failed only when the fit ran
        # (an int mask with "'int' object is not iterable")
        if not isinstance(self.name, str):
            raise TypeError(f"RuleChoice: name: expected a rule's name such as 'taylor', got {self.name!r}")
        if isinstance(self.mask, (list, tuple)) and all(isinstance(term, str) for term in self.mask):
            object.__setattr__(self, "mask", ",".join(self.mask))  # as get_rule takes it; one form to compare on resume
        if self.mask is not None and not isinstance(self.mask, str):
            raise TypeError(f"RuleChoice: mask: expected terms such as 'post:100,post:011' (or a list of them), "
                            f"got {self.mask!r}")
        self.rule()  # an unknown rule, or a bad mask, named here

    def rule(self) -> Rule:
        return get_rule(self.name, mask=self.mask)


@dataclass(frozen=True)
class Segment:
    """Sample times ``first`` .. ``last`` (indices) of a recording: started from the recorded
    weights at ``first``, scored on the others."""

    index: int
    first: int
    last: int
    seed: int = 0


class FitSettingsError(UserError, ValueError):
    """A fit's rule or settings that cannot describe any recording (a time constant of 0, NaN, a
    delay of 0): refused before the fit, which would otherwise run on numbers that mean nothing."""


def check_settings(rule: Rule, fixed: Mapping[str, float], delay: float, mode: str = "clamped") -> None:
    """Refuse what NEST would refuse or the forward model cannot run: a NaN setting, time constants
    or a delay of 0 or less, a learning rate of 0 (nothing to fit), and (clamped mode) a rule the
    numpy model cannot compute."""
    if searched := [name for name in fixed if name in rule.names]:
        # synapse_params's own refusal advised synapse_params({**theta, ...}), which means nothing in a fit
        raise FitSettingsError(
            f"fixed: {', '.join(searched)} {'is a coefficient' if len(searched) == 1 else 'are coefficients'} that "
            f"the fit searches (rule {rule.name!r}: {', '.join(rule.names)}), so not a fixed setting; leave it out of "
            "the fixed settings (--fixed), or fit a rule without it (taylor: a mask, --mask or RuleChoice's, "
            "without its term)")
    try:
        params = rule.synapse_params(rule.defaults(), **fixed)
    except ValueError as err:  # e.g. a NaN setting
        raise FitSettingsError(str(err)) from None
    if mode == "clamped" and (rule.extra_inputs or not rule.describes_update or "tau_pre" not in params):
        raise FitSettingsError(f"rule {rule.name!r} cannot be fitted to a recording's weights: it reads more than the "
                               "pre and post spikes and the weight; fit taylor (with --mask), doublet or mlp")
    if not (math.isfinite(delay) and delay > 0):
        raise FitSettingsError(f"delay: the synaptic (dendritic) delay must be > 0 ms, as in NEST, got {delay:g}")
    for name, value in params.items():
        # a time constant of 0 or less, which the compiled rule refuses, gave the numpy model's traces
        # no meaning (a NaN, which made every loss NaN, synapse_params refuses)
        if is_time_constant(name) and not 0 < value < math.inf:
            raise FitSettingsError(f"{name} = {value:g}: time constants must be finite and > 0 ms")
        if name == "eta" and math.isinf(value):
            raise FitSettingsError(f"{name} = {value:g}: must be a finite number")
    check_learning_rate(params)


def check_learning_rate(params: Mapping[str, float]) -> None:
    """Refuse a fixed learning rate of 0 (or NaN): no weight changes whatever the coefficients, so
    the data constrain none of them, and a fit would run for minutes to report the coefficients
    unconstrained and blame the data (the search refuses the same in an experiment file)."""
    eta = params.get("eta")
    if not isinstance(eta, numbers.Real):
        return
    if math.isnan(eta):
        raise FitSettingsError("eta = NaN: expected a nonzero learning rate (NEST would take it without a word, and "
                               "the weights would mean nothing); give eta a number (--fixed eta=..., in Python "
                               "fixed={'eta': ...})")
    if eta == 0:
        raise FitSettingsError("eta = 0: expected a nonzero learning rate (with eta = 0 no weight ever changes, "
                               "whatever the coefficients, so no data can constrain them); give eta a nonzero value "
                               "(--fixed eta=..., in Python fixed={'eta': ...})")


def segments(n_samples: int, n_segments: int) -> list[Segment]:
    """``n_segments`` consecutive segments over the sample times (neighbours share a boundary)."""
    if n_samples < 2:
        raise RecordingError("weights: at least two sample times are needed to fit a rule")
    n_segments = max(1, min(n_segments, n_samples - 1))
    edges = np.linspace(0, n_samples - 1, n_segments + 1).round().astype(int)
    return [Segment(i, int(a), int(b)) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])) if b > a]


POLISH_EVALUATIONS = 3000  # the polish's loss evaluations per run of Powell, at most
PROGRESS_EVERY_S = 30.0  # a line at most this often while the polish or the bootstrap runs


def polish(objective: Callable[[np.ndarray], float], start: Sequence[float], bounds: Sequence[tuple[float, float]], *,
           xtol: float, ftol: float, maxfev: int, progress: Callable[[str], None] | None = None,
           restart: bool = True) -> tuple[np.ndarray, float, bool]:
    """scipy's bounded Powell from ``start`` with at most ``maxfev`` loss evaluations and, where it
    stops at that limit (and ``restart``), once more from there with fresh directions: (the point,
    its loss, whether it converged). Powell's directions can degenerate along a curved valley: from CMA-ES's best
    point one run spent all 3000 evaluations and stopped at loss 5e-5, while a restart from where
    it stopped reached 2e-29 in 97. (Restarting more often lost the directions it builds with many
    coefficients: on Rosenbrock's function in 4-D, pieces of 300 stopped at 4e-4, one run at 6e-17.)
    ``progress`` hears where a long one stands (an MLP rule's 102 coefficients polished for minutes
    without a word)."""
    from scipy.optimize import minimize

    x = np.asarray(start, dtype=float)
    for attempt in range(2 if restart else 1):
        calls, best, said = 0, math.inf, time.monotonic()

        def told(point: np.ndarray) -> float:
            nonlocal calls, best, said
            calls += 1
            best = min(best, value := float(objective(point)))
            if progress and time.monotonic() - said >= PROGRESS_EVERY_S:
                progress(f"polish: {calls} of at most {maxfev} loss evaluations, loss {best:.4g}")
                said = time.monotonic()
            return value

        found = minimize(told, x, method="Powell", bounds=bounds, options={"xtol": xtol, "ftol": ftol, "maxfev": maxfev})
        x, loss = found.x, float(found.fun)
        # status 1 and 2: an evaluation or iteration limit (0: converged; others: no use going on)
        if found.status not in (1, 2):
            break
        if progress and not attempt and restart:
            progress(f"polish: at its limit of {maxfev} loss evaluations at loss {loss:.4g}: once more from there, "
                     "with fresh directions")
    return x, loss, found.status == 0


def is_held_out(k: int, n: int, every: int) -> bool:
    """Whether item ``k`` of ``n`` (a segment, a closed-loop block, an animal) is held out: every
    ``every``-th is (0: none), and of a single item none (nothing would be left to fit)."""
    return bool(every) and n > 1 and k % every == every - 1


def check_weight_range(recording: Recording, params: Mapping[str, float]) -> None:
    """Refuse recorded weights outside the rule's ``[|Wmin|, |Wmax|]``: the rule clips every weight
    into that range at its first update, so a fit to weights beyond it (``Wmax`` left at the
    rule's default below the data's weights, or weights in other units) could only come out wrong."""
    w_low, w_high = weight_bounds(params)
    magnitudes = np.abs(recording.weights[~np.isnan(recording.weights)])  # NaN: a sample not taken
    if magnitudes.max() > w_high or magnitudes.min() < w_low:
        # the advice names the bound the weights cross (Wmin=50 on weights from 20 was told to set Wmax)
        suggested = {**({"Wmax": _roomy(magnitudes.max())} if magnitudes.max() > w_high else {}),
                     **({"Wmin": "0"} if magnitudes.min() < w_low else {})}
        raise WeightRangeError(
            f"weights: recorded |weights| range over [{magnitudes.min():g}, {magnitudes.max():g}], outside the rule's "
            f"[|Wmin|, |Wmax|] = [{w_low:g}, {w_high:g}], into which it clips every weight; set {' and '.join(suggested)} "
            f"to hold the recorded weights, e.g. --fixed {','.join(f'{k}={v}' for k, v in suggested.items())} "
            f"(in Python fixed={{..., {', '.join(f'{k!r}: {v}' for k, v in suggested.items())}}})",
            recorded=(float(magnitudes.min()), float(magnitudes.max())), allowed=(w_low, w_high))


class WeightRangeError(RecordingError):
    """Recorded weights outside the rule's ``[|Wmin|, |Wmax|]`` (:func:`check_weight_range`);
    ``recorded`` and ``allowed``: the two ranges of ``|w|``, for callers that advise otherwise."""

    def __init__(self, message: str, *, recorded: tuple[float, float] = (math.nan, math.nan),
                 allowed: tuple[float, float] = (math.nan, math.nan)):  # defaults: an unpickled copy
        super().__init__(message)
        self.recorded, self.allowed = recorded, allowed


def _roomy(value: float) -> str:
    """A power of ten at least twice ``value``, for suggestions."""
    return f"{10.0 ** math.ceil(math.log10(max(2.0 * value, 1e-300))):g}"


class ClampedFit:
    """The engine's problem: a candidate's loss over the fit segments (one task per segment)."""

    def __init__(self, recording: Recording, rule: Rule, fixed: Mapping[str, float], *, delay: float,
                 fit_segments: Sequence[Segment], l1: float = 0.0):
        self.check_weights(recording, rule, fixed)
        self.recording, self.rule, self.fixed, self.delay, self.l1 = recording, rule, dict(fixed), delay, l1
        self.fit_segments = list(fit_segments)
        self.rank = 0  # the MPI rank this copy evaluates on, for the record
        self._models: dict[int, ClampedTrajectories] = {}

    @staticmethod
    def check_weights(recording: Recording, rule: Rule, fixed: Mapping[str, float]) -> None:
        """Refuse a recording without sampled weights, or with weights the rule would clip."""
        if not recording.has_weights:
            raise RecordingError("weights: the recording has no sampled weights to fit (weight_synapses, weight_times, "
                                 "weights); the clamped mode fits weights, the closed mode (--mode closed) spikes")
        check_weight_range(recording, rule.synapse_params(np.zeros(len(rule.names)), **fixed))
        # no change to explain: every coefficient fits as well as any other (the loss unnormalised,
        # the polish ran to its evaluation limit for minutes before saying so)
        if recording.weight_times.size >= 2 and not varies(recording.weights).any():
            raise RecordingError(f"weights: all {len(recording.weight_synapses)} recorded weights keep their first "
                                 f"value over the {recording.weight_times.size} sample times: no weight change for a "
                                 "rule to explain (record where the weights learn, or fit the spikes: --mode closed)")

    def params(self, theta: Sequence[float]) -> dict[str, float]:
        return self.rule.synapse_params(np.asarray(theta, dtype=float), **self.fixed)

    def _model(self, segment: Segment) -> ClampedTrajectories:
        if segment.index not in self._models:
            times = self.recording.weight_times
            self._models[segment.index] = ClampedTrajectories(
                self.recording, self.recording.weight_synapses, times[segment.first:segment.last + 1],
                delay=self.delay, t_start=times[segment.first], t_stop=times[segment.last])
        return self._models[segment.index]

    def predict(self, theta: Sequence[float], segment: Segment) -> np.ndarray:
        """Predicted weights at the segment's sample times (the first is the recorded start); NaN
        for a synapse not sampled at the segment's start."""
        start = self.recording.weights[:, segment.first]
        unknown = np.isnan(start)
        # any weight the rule accepts runs the unknown ones, whose predictions are then dropped
        start = np.where(unknown, np.nan_to_num(self.recording.first_weights()), start)
        predicted = self._model(segment).weights(self.rule, self.params(theta), start)
        predicted[unknown] = np.nan
        return predicted

    def errors(self, theta: Sequence[float], segment: Segment) -> tuple[float, float, float]:
        """(squared error of the fit, of the all-zero rule, total sum of squares) on the segment,
        over the samples taken of synapses sampled at its start."""
        observed = self.recording.weights[:, segment.first:segment.last + 1]
        seen = ~np.isnan(observed[:, 1:]) & ~np.isnan(observed[:, :1])
        # a NaN prediction where the data have a sample is the rule's (it overflowed): it stays
        residual = np.where(seen, self.predict(theta, segment)[:, 1:] - observed[:, 1:], 0.0)
        zero = np.where(seen, observed[:, :1] - observed[:, 1:], 0.0)
        later = np.where(seen, observed[:, 1:], 0.0)
        mean = later.sum(axis=1, keepdims=True) / np.maximum(seen.sum(axis=1, keepdims=True), 1)
        centred = np.where(seen, later - mean, 0.0)
        return float(np.sum(residual**2)), float(np.sum(zero**2)), float(np.sum(centred**2))

    # ---- the engine's Problem

    def tasks(self, generation: int, candidates: Sequence[Candidate]) -> list[Task]:
        return [Task(generation, c.index, s, c.theta) for c in candidates for s in self.fit_segments]

    def evaluate(self, task: Task) -> Evaluation:
        sse, sse_zero, sst = self.errors(task.theta, task.trial)
        loss = relative_error(sse, sse_zero)
        status = "ok" if math.isfinite(loss) else "nan"
        return Evaluation(task.generation, task.candidate, task.trial.index, list(task.theta), task.trial.seed,
                          params=dict(zip(self.rule.names, task.theta)),
                          metrics={"sse": sse, "sse_zero": sse_zero, "sst": sst},
                          loss=loss if status == "ok" else FIT_FAILURE_LOSS, status=status, rank=self.rank)

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        return self.combined([e.metrics["sse"] for e in evaluations], [e.metrics["sse_zero"] for e in evaluations],
                             candidate.theta)

    def combined(self, sse: Sequence[float], sse_zero: Sequence[float], theta: Sequence[float],
                 counts: Sequence[float] | None = None, penalised: bool = True) -> float:
        """The loss: the squared error summed over segments (segment ``k`` counted ``counts[k]``
        times, default once each) over the all-zero rule's, plus (``penalised``) the L1 penalty on ``theta``."""
        counts = np.ones(len(sse)) if counts is None else np.asarray(counts, dtype=float)
        value = relative_error(float(np.dot(counts, sse)), float(np.dot(counts, sse_zero)))
        return value + (l1_penalty(theta, self.l1, self.rule.names) if penalised else 0.0)

    def objective(self, segments_: Sequence[Segment], counts: Sequence[float] | None = None,
                  penalised: bool = True) -> Callable:
        """theta -> loss over ``segments_`` (with multiplicities ``counts``), for local optimisers;
        ``penalised=False``: the data's part alone, without the L1 penalty."""
        def loss(theta):
            errors = np.array([self.errors(theta, s) for s in segments_])
            return self.combined(errors[:, 0], errors[:, 1], theta, counts, penalised)
        return loss


@dataclass
class Fit:
    """What a fit found: coefficients with 95 % intervals, and how well the rule explains data it
    was not fitted to."""

    rule: str
    mask: str | None
    names: list[str]
    coefficients: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    fixed: dict[str, float]
    loss: float
    r2_held_out: float
    deviance_explained_held_out: float  # % of the all-zero rule's squared error removed
    deviance_explained_fit: float
    r2_activity_held_out: float = math.nan  # the closed mode: R^2 of the binned postsynaptic counts
    stop: dict = field(default_factory=dict)
    bootstrap: list[list[float]] = field(default_factory=list)
    intervals_from: str = "bootstrap over segments, each draw refitted"
    unidentified: list[str] = field(default_factory=list)  # coefficients the data do not constrain at all
    at_bound: list[str] = field(default_factory=list)  # coefficients stopped at an end of their search range
    warnings: list[str] = field(default_factory=list)  # why the numbers above may not mean what they seem
    # the synaptic delay (ms) the coefficients were fitted at: nest.Connect's, with nest_params
    delay: float | None = None

    @property
    def nest_params(self) -> dict[str, float]:
        """The fitted rule's settings for ``nest.CopyModel`` (``Wmax`` with the sign of your weights);
        a property, as a choices fit's ``nest_params`` is a field."""
        return RuleChoice(self.rule, self.mask).rule().synapse_params(self.coefficients, **self.fixed)

    def to_json(self) -> dict:
        """JSON-ready (no NaN: an interval without bootstrap refits is None)."""
        data = asdict(self)
        rule = RuleChoice(self.rule, self.mask).rule()
        data["nest_params"] = rule.synapse_params(self.coefficients, **self.fixed)  # as the property gives them
        data["options"] = rule.options  # get_rule(rule, mask, **options): as a choices fit's
        data.pop("bootstrap")
        data["intervals"] = json_intervals(self.intervals)
        for key in ("r2_held_out", "deviance_explained_held_out", "deviance_explained_fit", "r2_activity_held_out"):
            data[key] = None if math.isnan(data[key]) else data[key]
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> Fit:
        """The fit that :meth:`to_json` wrote (fit.json), without its bootstrap draws: for
        ``nestplast report``, which should print it as the fit did, warnings included."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["intervals"] = intervals_from_json(data["intervals"])
        for key in ("r2_held_out", "deviance_explained_held_out", "deviance_explained_fit", "r2_activity_held_out"):
            values[key] = math.nan if values.get(key) is None else values[key]
        return cls(**values)


def json_intervals(intervals: Mapping[str, tuple[float, float]]) -> dict[str, list[float] | None]:
    """``intervals`` for JSON: None for an interval that could not be computed (NaN)."""
    return {n: None if any(map(math.isnan, v)) else list(v) for n, v in intervals.items()}


def intervals_from_json(intervals: Mapping[str, list[float] | None]) -> dict[str, tuple[float, float]]:
    """:func:`json_intervals` read back: (NaN, NaN) for an interval that could not be computed."""
    return {n: (math.nan, math.nan) if v is None else tuple(v) for n, v in intervals.items()}


# fit's integer options: the least value each takes (the command's --segments, --hold-out, ... alike)
COUNT_MINIMA = {"n_segments": 1, "hold_out": 0, "population_size": 2, "max_generations": 1, "n_bootstrap": 0,
                "seed": 0, "restarts": 0, "trials": 1}


def _choice_for(rule: Rule) -> str:
    """The :class:`RuleChoice` that gives ``rule``, as Python text, for messages."""
    terms = [re.fullmatch(r"th_(pre|post)_([0-9]{3})", name) for name in rule.names]
    if rule.name == "taylor" and terms and all(terms):
        return f"RuleChoice('taylor', {','.join(f'{m[1]}:{m[2]}' for m in terms)!r})"
    if rule.path is None:  # a built-in rule
        return f"RuleChoice({rule.name!r})"
    return "none: a fit takes the built-in rules by name, e.g. RuleChoice('taylor', mask) or RuleChoice('doublet')"


def check_counts(counts: Mapping[str, object]) -> None:
    """Refuse a count of a fit (a key of :data:`COUNT_MINIMA`) that is not a whole number at least
    its minimum: max_generations = 0 meant no limit to pycma, and a choices fit ran without end."""
    for name, value in counts.items():
        if not is_whole(value):
            raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
        if value < COUNT_MINIMA[name]:
            raise FitSettingsError(f"{name}: expected an integer >= {COUNT_MINIMA[name]}, got {value}")


def check_fit_arguments(recording, choice, fixed, *, mode: str, delay, l1, out, progress,
                        counts: Mapping[str, object], closed_only: Sequence[str] = ()) -> Recording:
    """Refuse what :func:`fit` cannot take, with what to pass instead (a notebook's first tries
    failed deep inside with AttributeErrors: a Rule or a rule's name for ``choice``, a path for
    ``recording``, ``n_segments="5"``), and ``closed_only``, the closed mode's arguments given to
    another mode (a clamped fit ran, ignoring a background, as the command refuses to); then the
    settings (:func:`check_settings`). The recording, read from its file where ``recording`` is a path."""
    if isinstance(recording, (str, os.PathLike)):
        from .recording import load

        recording = load(recording)  # as nestplast.load_recording(path); its errors name the file
    elif not isinstance(recording, Recording):
        raise TypeError(f"recording: expected a Recording (nestplast.load_recording('data.npz'), or "
                        f"nestplast.recording.Recording(...) from your arrays) or the path of a recording file, "
                        f"got {type(recording).__name__}")
    example = "RuleChoice('taylor', 'post:100,post:011') from nestplast.infer (also nestplast.RuleChoice)"
    if isinstance(choice, Rule):
        raise TypeError(f"choice: expected a RuleChoice, e.g. {example}, got Rule {choice.name!r}; for this rule: "
                        f"{_choice_for(choice)} (a fit records the rule by name and mask, to resume it and to build "
                        f"the fitted rule)")
    if isinstance(choice, str):
        raise TypeError(f"choice: expected a RuleChoice, e.g. {example}, got the name {choice!r}; give "
                        f"RuleChoice({choice!r}{', mask=...' if choice in MASKED_RULES else ''})")
    if not isinstance(choice, RuleChoice) or not isinstance(choice.name, str):
        raise TypeError(f"choice: expected a RuleChoice, e.g. {example}, got {type(choice).__name__}")
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed: expected a dict of the fixed settings, e.g. {{'eta': 0.5, 'Wmax': 1000.0}}, got "
                        f"{type(fixed).__name__}")
    # values that are not numbers: synapse_params refuses them (check_settings, below)
    if mode not in ("clamped", "closed"):
        raise ValueError(f"mode: expected 'clamped' or 'closed', got {mode!r}")
    if mode != "closed" and closed_only:
        what, them = ("arguments", "them") if len(closed_only) > 1 else ("an argument", "it")
        raise FitSettingsError(f"{', '.join(closed_only)}: {what} of mode='closed'; this {mode} fit would ignore "
                               f"{them} (give mode='closed', or leave {them} out)")
    for name, value in {"delay": delay, "l1": l1}.items():
        if not is_number(value):
            raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    if not l1 >= 0:
        raise FitSettingsError(f"l1: expected a penalty weight >= 0, got {l1:g}")
    check_counts(counts)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected a folder's path (or None: a temporary folder, removed at the end), got {type(out).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a function of one line of text (e.g. print) or None, got "
                        f"{type(progress).__name__}")
    check_time_unit(recording)
    check_settings(choice.rule(), fixed, delay, mode)
    return recording


def out_or_temporary(fit_function):
    """``out=None``: the fit's store lives in a temporary folder removed when the fit returns (the
    result returned holds what it found); every such call left a folder in /tmp, a sweep ten."""
    @functools.wraps(fit_function)
    def fit_in(*args, out=None, resume=False, **kwargs):
        if out is None and resume:
            raise FitSettingsError("resume=True continues the fit stored in out: give that folder (out=None keeps "
                                   "nothing to resume)")
        try:
            if out is not None:
                return fit_function(*args, out=out, resume=resume, **kwargs)
            with tempfile.TemporaryDirectory(prefix="nestplast-fit-") as scratch:
                result = fit_function(*args, out=scratch, resume=False, **kwargs)
            if result is not None:  # advice to resume it would meet "out=None keeps nothing to resume"
                result.warnings = [w.replace(RESUME_ADVICE, NOTHING_KEPT_ADVICE) for w in result.warnings]
            return result
        except KeyboardInterrupt as err:
            note_what_is_kept(err, out)
            raise
    return fit_in


@lent_kernel("nestplast.infer.fit")
@out_or_temporary
def fit(recording: Recording | str | os.PathLike, choice: RuleChoice, fixed: Mapping[str, float], *, delay: float = 1.0,
        n_segments: int = 10, hold_out: int = 5, l1: float = 0.0, population_size: int = 8,
        max_generations: int = 60, n_bootstrap: int = 30, seed: int = 1, out: str | Path | None = None,
        resume: bool = False, comm: Comm | None = None, progress: Callable[[str], None] | None = None,
        mode: str = "clamped", background: Background | None = None, trials: int = 1, w_unrecorded: float | None = None,
        restarts: int = 0) -> Fit | None:
    """Fit ``choice``'s coefficients (the others ``fixed``) to ``recording``: ``mode`` "clamped"
    (weight trajectories on the replayed spikes; every ``hold_out``-th segment held out, 0: none) or
    "closed" (:mod:`nestplast.closed_loop`: the post neurons driven by the rule and ``background``,
    a :class:`~nestplast.closed_loop.Background` or a (rate Hz, weight) pair, over ``trials`` background realisations; the
    intervals from a bootstrap on quadratic surfaces of the simulated candidates,
    :mod:`nestplast.surface`). ``restarts`` more CMA-ES runs (other seeds, doubled
    population each) keep the best. ``recording``: a :class:`~nestplast.recording.Recording` or the
    path of a recording file (read with :func:`nestplast.recording.load`). ``out``: the fit's folder
    (its store, to ``resume``, and fit.json); None: a temporary one, removed when the fit returns.
    Rank 0 returns the :class:`Fit`."""
    # refused by every rank together (under MPI each rank printed it and the job ended in MPI_Abort),
    # before anything runs or any folder is made; a recording's path is read here
    closed_only = [name for name, given in (("background", background is not None), ("trials", trials != 1),
                                            ("w_unrecorded", w_unrecorded is not None)) if given]
    recording = together(comm, lambda: check_fit_arguments(
        recording, choice, fixed, mode=mode, delay=delay, l1=l1, out=out, progress=progress,
        counts={"n_segments": n_segments, "hold_out": hold_out, "population_size": population_size,
                "max_generations": max_generations, "n_bootstrap": n_bootstrap, "seed": seed, "restarts": restarts,
                "trials": trials}, closed_only=closed_only))
    n_segments, hold_out, population_size, max_generations, n_bootstrap, seed, restarts, trials = map(
        int, (n_segments, hold_out, population_size, max_generations, n_bootstrap, seed, restarts, trials))
    # numpy numbers (a Wmax from the data's float32 weights) as Python's: fit.json, written after the
    # whole fit, refused them, and the fit's result was lost
    fixed, delay, l1 = {k: plain(v) for k, v in fixed.items()}, float(delay), float(l1)
    if mode == "closed":
        return _fit_closed(recording, choice, fixed, background=background, delay=delay, l1=l1, trials=trials,
                           w_unrecorded=w_unrecorded, population_size=population_size,
                           max_generations=max_generations, seed=seed, out=out, resume=resume, comm=comm,
                           progress=progress, restarts=restarts, n_segments=n_segments, hold_out=hold_out,
                           n_bootstrap=n_bootstrap)

    rule = choice.rule()
    ClampedFit.check_weights(recording, rule, fixed)  # before the segments, which need the sample times
    all_segments = segments(recording.weight_times.size, n_segments)
    held = [s for s in all_segments if is_held_out(s.index, len(all_segments), hold_out)]
    fitted = [s for s in all_segments if s not in held]
    if not fitted:
        raise RecordingError(f"hold_out = {hold_out} holds out every one of the {len(all_segments)} segments, leaving "
                             f"none to fit; hold out every 2nd or later segment, or none (0)")
    problem = ClampedFit(recording, rule, fixed, delay=delay, fit_segments=fitted, l1=l1)
    settings = {"mode": "clamped", "delay": delay, "n_segments": n_segments, "hold_out": hold_out, "l1": l1}
    outcome, out = search_with_restarts(problem, rule, choice, fixed, settings, recording, population_size,
                                        max_generations, seed, out, resume, comm, progress, restarts)
    if outcome is None:
        return None
    # polish the best candidate locally, inside the bounds
    say = progress or (lambda line: None)
    bounds = [(p.low, p.high) for p in rule.parameters]
    objective = problem.objective(fitted)
    # said: with many coefficients (an MLP rule) the polish and the bootstrap take minutes after the last generation
    say(f"polish: the best candidate refined by scipy's Powell ({len(bounds)} coefficients, at most "
        f"{POLISH_EVALUATIONS} loss evaluations, twice if it stops there)"
        # a resume of a finished search ran them again from scratch, which a user took for lost work
        + ("; the polish and the bootstrap are not stored, so a resume runs them again" if resume else ""))
    polished, polished_loss, converged = polish(objective, outcome.best_theta, bounds, xtol=1e-8, ftol=1e-14,
                                                maxfev=POLISH_EVALUATIONS, progress=say)
    theta = polished if polished_loss <= outcome.best_loss else np.asarray(outcome.best_theta)
    # bootstrap over the fit segments: refit on resampled segments, starting from the fit
    rng = np.random.default_rng([seed, 7])
    draws = []
    # one segment resampled is always itself: its "interval" would have zero width whatever the
    # data's noise, so there is none (NaN), and a warning says why
    n_draws = n_bootstrap if len(fitted) > 1 else 0
    if n_draws:
        say(f"bootstrap: {n_draws} refits on resampled segments for the intervals (each at most 400 loss evaluations)")
    started, said = time.monotonic(), time.monotonic()
    for k in range(n_draws):
        counts = np.bincount(rng.integers(0, len(fitted), len(fitted)), minlength=len(fitted))
        # looser than the polish: a refit only has to find the resampled minimum to well within the
        # interval's width, and noisy data would otherwise run every refit to its evaluation limit
        # once: noisy data run most refits to their limit, and a second run would double the bootstrap
        refit, _, _ = polish(problem.objective(fitted, counts), theta, bounds, xtol=1e-6, ftol=1e-10, maxfev=400,
                             restart=False)
        draws.append(refit.tolist())
        if time.monotonic() - said > PROGRESS_EVERY_S and k + 1 < n_draws:  # a long recording's refits took an hour
            said = time.monotonic()
            left = (said - started) / (k + 1) * (n_draws - k - 1)
            say(f"bootstrap: {k + 1} of {n_draws} refits done, ~{left / 60:.1f} min left")
    draws_array = np.asarray(draws) if draws else np.empty((0, len(theta)))
    # percentile intervals, widened to hold the estimate itself (with exact data the draws differ
    # only by the optimiser's tolerance, and need not straddle it) and to at least the forward
    # model's own precision against NEST (1e-9 relative): below that, differences mean nothing
    floor = PRECISION * max(1e-300, float(np.max(np.abs(theta))))
    intervals = {n: (min(float(np.percentile(draws_array[:, i], 2.5)), float(theta[i])) - floor,
                     max(float(np.percentile(draws_array[:, i], 97.5)), float(theta[i])) + floor)
                 if len(draws) else (math.nan, math.nan) for i, n in enumerate(rule.names)}

    def explained(segs):
        if not segs:
            return math.nan, math.nan
        sse, sse_zero, sst = np.array([problem.errors(theta, s) for s in segs]).sum(axis=0)
        # weights that never change leave nothing to explain: NaN, not -inf % or R^2 = -3e9
        # (sst, a sum around the mean, need not be exactly 0 then: test the exact sse_zero)
        if not sse_zero > 0:
            return math.nan, math.nan
        return 100.0 * (1.0 - sse / sse_zero), 1.0 - sse / sst if sst > 0 else math.nan

    deviance_fit, _ = explained(fitted)
    deviance_held, r2_held = explained(held)
    result = Fit(rule=choice.name, mask=choice.mask, names=list(rule.names),
                 coefficients=dict(zip(rule.names, map(float, theta))), intervals=intervals, fixed=dict(fixed),
                 loss=float(objective(theta)), r2_held_out=float(r2_held), deviance_explained_held_out=float(deviance_held),
                 deviance_explained_fit=float(deviance_fit), stop=outcome.stop, bootstrap=draws, delay=delay,
                 # by the data alone: the L1 penalty changes with every coefficient, and hid them all
                 unidentified=[rule.names[i] for i in unconstrained(problem.objective(fitted, penalised=False),
                                                                    theta, bounds)])
    for name in result.unidentified:  # its bootstrap draws all sat where it started: [2, 2] looked exact
        result.intervals[name] = (math.nan, math.nan)
    result.at_bound = at_bounds(rule, theta, result.unidentified)
    result.warnings = data_warnings(recording) + fit_warnings(result, n_fitted=len(fitted), n_held=len(held),
                                                              n_bootstrap=n_bootstrap, what=("segment", "segments"))
    if not converged:  # it ended at the estimate's end of its own interval, the refits going on past it
        result.warnings.append(f"the polish stopped twice at its limit of {POLISH_EVALUATIONS} loss evaluations before "
                               f"converging (loss {polished_loss:.4g}): the coefficients may be off; resume with more "
                               "--max-generations for a better start")
    if held and math.isnan(r2_held) and not math.isnan(deviance_held):
        # R^2 is measured around each held-out segment's own mean: one scored sample has none to measure
        # around (many --segments for few sample times); the summary printed "R^2 nan" without a reason
        result.warnings.append(f"no held-out R^2: each held-out segment has a single sample time after its start "
                               f"({recording.weight_times.size} sample times cut into {len(all_segments)} segments); "
                               f"{FEWER_SEGMENTS_ADVICE}")
    (Path(out) / "fit.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def at_bounds(rule: Rule, theta: Sequence[float], skip: Sequence[str] = ()) -> list[str]:
    """The coefficients (but ``skip``) that ended at an end of their search range: the best value
    may lie beyond it, and a bootstrap that cannot cross the bound makes the interval look narrow."""
    names = []
    for p, value in zip(rule.parameters, theta):
        near = 1e-6 * (p.high - p.low)
        if p.name not in skip and (value <= p.low + near or value >= p.high - near):
            names.append(p.name)
    return names


def at_bound_warning(names: Sequence[str]) -> str:
    """The warning for coefficients ``names`` that ended at an end of their search range."""
    return (f"{', '.join(names)} stopped at the end of the search range (the rule's bounds): the best value may lie "
            "beyond, and its interval is cut there; rescale eta with --fixed so the coefficients fall inside")


MIN_BOOTSTRAP = 20  # bootstrap draws below which the intervals are not yet 95 % intervals (warned of)
# CMA-ES's step (its spread over each range, averaged) above which a search its generation limit
# stopped had not converged (the README's fit ends at 2e-7; one stopped after 10 of 60 at 0.05)
UNCONVERGED_STEP = 1e-3
# deviance explained (%) on the fitted data from which the polished fit is exact, wherever CMA-ES stopped
EXACT_FIT = 100.0 - 1e-6
RESUME_ADVICE = "--resume, resume=True, goes on from here"
# a Python fit with out=None ran in a temporary folder, gone when it returned
NOTHING_KEPT_ADVICE = "out=None kept nothing to resume: give out=FOLDER and a later resume=True goes on from there"


def search_warnings(stop: dict | None, n_bootstrap: int, n_fitted: int, exact: bool = False) -> list[str]:
    """What any fit (a recording's, choices') says of its search and its bootstrap: stopped by its
    generation limit far from converged (the truth outside every interval, without a word; not
    where the polished fit is ``exact``), and too few draws to be called a 95 % interval."""
    warnings = []
    stop = stop or {}
    if "maxiter" in stop and stop.get("step", 0.0) > UNCONVERGED_STEP and not exact:
        warnings.append(f"the search stopped at its generation limit ({stop['maxiter']}) with its step still "
                        f"{stop['step']:.2g} of each range, far from converged: the coefficients and intervals may "
                        f"be off; give more generations (--max-generations, max_generations in Python; {RESUME_ADVICE})")
    if 0 < n_bootstrap < MIN_BOOTSTRAP and n_fitted >= 2:  # one draw and the estimate were called a 95 % interval
        warnings.append(f"the intervals come from {n_bootstrap} bootstrap draws, too few for their 2.5 and 97.5 "
                        f"percentiles to be a 95 % interval: give --bootstrap {MIN_BOOTSTRAP} or more (n_bootstrap in Python)")
    return warnings


FEW_FOR_INTERVALS = 5  # fitted segments (or animals) below which a bootstrap's intervals are warned of


# Deviance explained on the fitted data (%) below which a negative held-out R^2 is not put down to
# noise alone: the wrong rule on noise-free data explained 23 %, the true one under 5 % noise most
EXPLAINED_MOSTLY = 50.0


def fit_warnings(result: Fit, *, n_fitted: int, n_held: int, n_bootstrap: int, what: tuple[str, str],
                 zero_loss: float | None = None) -> list[str]:
    """What a reader of ``result`` must know before trusting it, one sentence each (printed by the
    command, kept in fit.json): coefficients at their search bounds, intervals that could not be
    computed, measures that are undefined, a rule worse than no plasticity on held-out data, or
    (``zero_loss``: the all-zero rule's loss, where the deviance alone does not tell) on the fitted.
    ``what``: the fit's unit, singular and plural (segment, segments)."""
    one, what = what
    warnings = []
    if result.unidentified:  # printed by the command only: a Python fit's warnings said nothing
        warnings.append(f"the data do not constrain {', '.join(result.unidentified)}: moved over its whole range, each "
                        f"leaves the fit unchanged, so its value means nothing and it has no interval "
                        f"({UNCONSTRAINED_ADVICE})")
    # Oja's rule fitted to the last digit was called "far from converged, may be off": the polish finished it
    warnings += search_warnings(result.stop, n_bootstrap, n_fitted, exact=result.deviance_explained_fit >= EXACT_FIT)
    if result.at_bound:
        warnings.append(at_bound_warning(result.at_bound) + ", and check --fixed (Wmax, taus) and the units of the data")
    if n_bootstrap and n_fitted < 2:
        warnings.append(f"no meaningful intervals: the fit has {n_fitted} {one}, and a bootstrap over one "
                        f"{one} cannot tell how uncertain the coefficients are; {more_segments_advice(what)}")
    elif n_bootstrap and n_fitted < FEW_FOR_INTERVALS:
        # 2 segments resampled give 3 distinct draws: "95 %" intervals 10 times too narrow missed the truth
        distinct = math.comb(2 * n_fitted - 1, n_fitted)
        warnings.append(f"the intervals are not 95 % intervals: a bootstrap over only {n_fitted} {what} has at most "
                        f"{distinct} distinct draws, and its intervals come out far too narrow (they may miss the "
                        f"true coefficients); {more_segments_advice(what)}")
    if result.deviance_explained_fit < 0:  # the search found nothing better than no rule on its own data
        warnings.append(f"the fitted rule describes even the {what} it was fitted to worse than no plasticity at all "
                        f"({result.deviance_explained_fit:.1f} % deviance explained): the search found no rule for "
                        f"these data (check the units of the data, --fixed, --delay and the mask)")
    elif zero_loss is not None and result.loss > zero_loss:
        # the closed mode: counts left unchanged (0.0 % deviance) and weights worse than no rule's passed unwarned
        warnings.append(f"the fitted rule scores worse than no plasticity at all on the {what} it was fitted to (loss "
                        f"{result.loss:.4g} against the all-zero rule's {zero_loss:.4g}): the search found no rule for "
                        f"these data (check the background, --fixed, --delay and the mask; more --max-generations)")
    if not n_held:  # the summary said "R^2 nan" (infer-demo with a short recording) without a reason
        warnings.append(f"no {one} held out (--hold-out 0, or fewer {what} than --hold-out): no held-out R^2 or "
                        f"deviance explained; the fit is measured on the {what} it was fitted to only")
    elif math.isnan(result.deviance_explained_held_out):
        warnings.append(f"the held-out {what} have nothing to explain (the all-zero rule fits them exactly, e.g. "
                        f"weights that never change): no held-out measures")
    elif result.deviance_explained_held_out < 0:
        warnings.append(f"the fitted rule predicts the held-out {what} worse than no plasticity at all "
                        f"({result.deviance_explained_held_out:.1f} % deviance explained): its coefficients do not "
                        f"describe these data (check the mask, --fixed, --delay and the units of the data)")
    elif result.r2_held_out < 0 < result.deviance_explained_held_out:
        # the rule that made a recording with 5 % weight noise scored R^2 -1.3 and was taken for a failed fit
        said = (f"held-out R^2 {result.r2_held_out:.2f} is below 0 while the rule explains "
                f"{result.deviance_explained_held_out:.1f} % of the held-out deviance: R^2 measures the weights "
                f"against each synapse's mean over a {one}, and a {one} starts from its recorded first weights, "
                f"so weight changes small against the measurement noise give R^2 < 0 even for the rule that "
                f"made the data")
        if result.deviance_explained_fit >= EXPLAINED_MOSTLY:
            said += "; judge the fit by the deviance explained (0 % = no plasticity) and the intervals"
        else:  # noise-free additive STDP fitted with Oja's terms: 23 %, and the advice above had it trusted
            said += (f"; but the rule explains only {result.deviance_explained_fit:.1f} % of the fitted {what}' "
                     f"deviance too, which a rule that does not describe the data gives as well as noise does: try "
                     f"other terms (the mask) before trusting the coefficients and their intervals")
        warnings.append(said)
    return warnings


def unconstrained(objective: Callable[[np.ndarray], float], theta: np.ndarray,
                  bounds: Sequence[tuple[float, float]]) -> list[int]:
    """The coefficients the data say nothing about: moved alone to either end of its range, each
    leaves ``objective`` unchanged (to 1e-9 relative), so its value and interval mean nothing (no
    spikes that its term needs, weights that never change, too few samples)."""
    base = objective(theta)
    tolerance = 1e-9 * max(1.0, abs(base))

    def moved(i: int, value: float) -> np.ndarray:
        other = np.array(theta, dtype=float)
        other[i] = value
        return other

    return [i for i, ends in enumerate(bounds) if all(abs(objective(moved(i, end)) - base) <= tolerance for end in ends)]


def _space(rule: Rule) -> SearchSpace:
    return SearchSpace(names=tuple(rule.names), low=tuple(p.low for p in rule.parameters),
                       high=tuple(p.high for p in rule.parameters), log=tuple(p.log for p in rule.parameters),
                       start=tuple(p.default for p in rule.parameters))


def search_with_restarts(problem: engine.Problem, rule: Rule, choice: RuleChoice, fixed: Mapping[str, float],
                         settings: dict, recording, population_size: int, max_generations: int, seed: int,
                         out: str | os.PathLike, resume: bool, comm: Comm | None, progress: Callable[[str], None] | None,
                         restarts: int = 0) -> tuple[engine.Outcome | None, Path]:
    """CMA-ES through the engine on ``problem``, then ``restarts`` more runs with other seeds and a
    doubled population each time (IPOP, as pycma's restarts), each in ``out/restart-K``;
    (rank 0's best outcome or None, the run directory)."""
    check_comm_given(comm, "this fit")
    transport = Transport(comm)
    problem.rank = transport.rank
    out = Path(out)
    best = None
    for k in range(restarts + 1):
        open_store = lambda: None  # noqa: E731 (the other ranks' part: nothing)
        if transport.is_root:
            spec = {"rule": choice.name, "mask": choice.mask, "fixed": dict(fixed), **settings, "seed": seed + k,
                    "population_size": population_size * 2**k, "recording": recording.description,
                    "arrays_sha256": data_fingerprint(recording, skip=("description",)),
                    "data_sha256": data_fingerprint(recording)}  # what runs of nestplast <= 0.3.0 compare
            open_store = functools.partial(_open_fit_store, out if k == 0 else out / f"restart-{k}", spec, resume, rule,
                                           max_generations)
        # refused on every rank together: the workers would otherwise wait for tasks that never come
        store, strategy = together(comm, open_store), None
        if transport.is_root:
            last = store.last_complete_generation()
            if last is not None:
                strategy = store.load_strategy(last)
                strategy.set_budget(Budget(max_generations=max_generations))  # a resume may ask for more
                if progress is not None:  # as the search says it; the command's headline no longer does
                    progress(f"resuming {store.path.parent} after generation {last}")
            else:
                strategy = make_strategy("cmaes", _space(rule), Budget(max_generations=max_generations),
                                         population_size=population_size * 2**k, seed=seed + k, sigma0=0.3,
                                         evaluate_mean=False)
            if k and progress is not None:  # its generations count from 0 again: they read as the first run's
                progress(f"restart {k} of {restarts}: CMA-ES again, seed {seed + k}, population {population_size * 2**k}, "
                         f"in {store.path.parent}")
        try:
            outcome = engine.run(problem, strategy, store, transport, progress)
        finally:  # also on Ctrl-C: a notebook's next fit or --resume finds the run free
            if store is not None:
                store.close()
        if outcome is not None and "maxiter" in outcome.stop:
            # stopped by its budget, not by pycma's criteria: its last step says how far it was from converging
            outcome = replace(outcome, stop={**outcome.stop, "step": strategy.step_size})
        if outcome is not None and (best is None or outcome.best_loss < best.best_loss):
            best = outcome
    return best, out


def data_fingerprint(data, skip: Sequence[str] = ()) -> str:
    """SHA-256 of every field of a dataclass of arrays (a Recording, behaviour data) but those in
    ``skip``: a resumed fit must continue on the data it started with."""
    digest = hashlib.sha256()
    for f in fields(data):
        if f.name in skip:
            continue
        value = getattr(data, f.name)
        if value is None:  # an optional field left out (an object array's bytes would be its address)
            digest.update(f"{f.name}:None:".encode())
            continue
        value = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{f.name}:{value.dtype.str}:{value.shape}:".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _open_fit_store(folder: Path, spec: dict, resume: bool, rule: Rule, max_generations: int) -> RunStore:
    """A fit's store: the one to resume (once it is known to hold the same data and settings, theta
    of ``rule``'s parameters, and no more than ``max_generations``) or a new one."""
    if resume and (folder / DB_NAME).exists():
        store = RunStore.open(folder)
        try:
            check_same_kind(store.meta().get("kind"), "infer", folder)  # a search's settings are no fit's
            _check_same_run(store, spec, folder, rule.fixed)
            check_same_parameters(store, rule.names, folder)  # a mask's terms in another order: theta in another
            # it went on to the polish with its stop recorded as maxiter = the lower limit (the search refuses it)
            last = store.last_complete_generation()
            if last is not None and (done := last + 1) > max_generations:
                raise StoreError(f"cannot resume {folder} with max_generations = {max_generations} (--max-generations): "
                                 f"it already has {done} generations; give {done} or more")
        except BaseException:
            store.close()
            raise
        return store
    from .runs import software_versions  # what the fit's numbers depend on, as a search records it

    return RunStore.create(folder, experiment=spec, seed=spec["seed"],
                           meta={"nestplast": __version__, "kind": "infer", "versions": software_versions()})


def _check_same_run(store: RunStore, spec: dict, folder: Path, defaults: Mapping[str, float]) -> None:
    """Refuse to resume a run with other settings or data than it was started with: CMA-ES's saved
    state would otherwise continue on another problem (a crash for another mask; silently mixed
    results for other data). Keys a run of an older version did not record are not compared; fixed
    settings left out count as the rule's ``defaults``."""
    stored, wanted = store.experiment(), as_stored(spec)

    def terms(mask):
        return sorted(t.strip() for t in mask.split(",")) if isinstance(mask, str) else mask

    def same(key, then, now):
        # the data's description is free text (the same arrays renamed were refused as "the data differ"): a
        # run that records the arrays' fingerprint compares those alone
        if key == "recording" or (key == "data_sha256" and "arrays_sha256" in stored):
            return True
        if key == "mask":  # a mask's terms in another order are the same rule (theta's order: check_same_parameters)
            return terms(then) == terms(now)
        if key == "fixed":  # tau_pre = 20 given, then left at its default 20: the same settings
            return {**defaults, **then} == {**defaults, **now}
        return then == now

    changed = [key for key in wanted if key in stored and not same(key, stored[key], wanted[key])]
    if changed:
        what = "; ".join(f"{key}: {stored[key]!r} then, {wanted[key]!r} now" if not key.endswith("_sha256") else
                         "the data differ from the data it was started on" for key in changed)
        raise StoreError(f"{folder}: --resume continues a run with the same data and settings, but {what}; "
                         f"choose another --out for a new fit")


def _fit_closed(recording: Recording, choice: RuleChoice, fixed: Mapping[str, float], *, background, delay: float,
                l1: float, trials: int, w_unrecorded, population_size: int, max_generations: int, seed: int, out,
                resume: bool, comm, progress, restarts: int = 0, n_segments: int = 10, hold_out: int = 5,
                n_bootstrap: int = 30) -> Fit | None:
    from .closed_loop import Background, ClosedLoopFit

    if background is None:
        raise RecordingError("the closed-loop mode needs the postsynaptic neurons' background (rate and weight)")
    if isinstance(background, (tuple, list)) and len(background) == 2 and all(map(is_number, background)):
        background = Background(*map(float, background))  # (rate, weight), as the command's --background RATE,WEIGHT
    if not isinstance(background, Background):  # a bare AttributeError on .rate named nothing
        raise TypeError(f"background: expected closed_loop.Background(rate, weight) or a (rate, weight) pair, "
                        f"got {background!r}")
    rule = choice.rule()
    problem = ClosedLoopFit(recording, rule, fixed, background, delay=delay, trials=trials, seed=seed, l1=l1,
                            w_unrecorded=w_unrecorded, n_segments=n_segments, hold_out=hold_out)
    if problem.held.all():  # the loss would sum over no block: every rule would score 0
        raise RecordingError(f"hold_out = {hold_out} holds out every one of the {problem.n_segments} blocks, leaving "
                             "none to fit; hold out every 2nd or later block, or none (0)")
    settings = {"mode": "closed", "delay": delay, "l1": l1, "trials": trials,
                "background": [background.rate, background.weight], "n_segments": n_segments, "hold_out": hold_out}
    # compiled before the search, said as the search says it: the first generation's line came 40-50 s
    # after the headline, and its rate and time left counted the compile
    is_root = comm is None or comm.Get_rank() == 0
    together(comm, lambda: build(rule, background.neuron, quiet=progress is None) if is_root else None)
    outcome, out = search_with_restarts(problem, rule, choice, fixed, settings, recording, population_size,
                                        max_generations, seed, out, resume, comm, progress, restarts)
    if outcome is None:
        return None
    theta = np.asarray(outcome.best_theta)
    runs = [problem.outputs(problem.params(theta), t) for t in problem.trials]
    counts, weights = [r[0] for r in runs], [r[1] for r in runs]
    measures = problem.held_out(counts, weights)
    intervals, draws, interval_notes = _closed_intervals(problem, rule, out, theta, n_bootstrap, seed)
    result = Fit(rule=choice.name, mask=choice.mask, names=list(rule.names),
                 coefficients=dict(zip(rule.names, map(float, theta))), intervals=intervals, fixed=dict(fixed),
                 loss=problem.combined(*problem.errors_of(counts, weights), theta),
                 r2_held_out=measures["r2_weights_held_out"],
                 deviance_explained_held_out=measures["deviance_explained_held_out"],
                 deviance_explained_fit=measures["deviance_explained_fit"],
                 r2_activity_held_out=measures["r2_activity_held_out"], stop=outcome.stop, bootstrap=draws,
                 intervals_from="bootstrap over segments on quadratic surfaces of the simulated candidates", delay=delay)
    result.at_bound = at_bounds(rule, theta)
    result.warnings = data_warnings(recording) + fit_warnings(
        result, n_fitted=int(np.sum(~problem.held)), n_held=int(np.sum(problem.held)), n_bootstrap=n_bootstrap,
        what=("block", "blocks"), zero_loss=problem.combined(*problem.zero(), np.zeros(len(theta)))) + interval_notes
    (Path(out) / "fit.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def stored_evaluations(out: str | Path) -> list[list[Evaluation]]:
    """The evaluations scored "ok" of a fit's run in ``out`` and of each of its restarts
    (``out/restart-K``, :func:`search_with_restarts`), one list per run, read back from the stores."""
    runs = []
    for folder in [Path(out), *sorted(Path(out).glob("restart-*"))]:
        with RunStore.open(folder, read_only=True) as store:
            runs.append(store.evaluations(status="ok"))
    return runs


def simulated_candidates(problem: ClosedLoopFit, out: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate the closed-loop search simulated on all its trials (the run and its
    restarts): (thetas, per-segment errors of its mean outputs), read back from the stores."""
    thetas, errors = [], []
    for run in stored_evaluations(out):
        for evaluations in by_candidate(run).values():
            if len(evaluations) == len(problem.trials):
                thetas.append(evaluations[0].theta)
                errors.append(problem.segment_errors([np.asarray(e.metrics["counts"]) for e in evaluations],
                                                     [np.asarray(e.metrics["weights"]) for e in evaluations]))
    return np.asarray(thetas, dtype=float), np.asarray(errors, dtype=float)


def _closed_intervals(problem, rule: Rule, out, theta: np.ndarray, n_bootstrap: int, seed: int):
    """95 % intervals of the closed-loop fit: a bootstrap over the fitted segments, each draw
    minimised on quadratic surfaces of the segment errors (:mod:`nestplast.surface`) fitted to the
    simulated candidates nearest the best in loss; no further simulation."""
    from .surface import surface_intervals

    thetas, errors = simulated_candidates(problem, out)
    return surface_intervals(rule.names, [(p.low, p.high) for p in rule.parameters], theta, thetas, errors,
                             problem.weighted, n_draws=n_bootstrap, fitted=~problem.held, seed=seed)


if __name__ == "__main__":  # python -m nestplast.infer: the same as python -m nestplast infer (not a silent no-op)
    import sys

    from .commands.infer import main

    sys.exit(main())
