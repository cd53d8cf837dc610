"""How closely a pruned rate network keeps the dynamics of the original, and the pruning rules
(:mod:`nestplast.prune`) compared by it.

All measures compare the dynamics matrices M = W - leak I (eigenvalues in units of 1/tau):

- relative eigenvalue error |lambda'_k - lambda_k| / |lambda_k|, its mean and max over all
  eigenvalues and its mean over the ``slowest`` eigenvalues (largest real part). The noise rule's
  advantage lies at the slow end of the spectrum, which the mean over all eigenvalues hides: on
  the authors' demo network at 20 % kept, the 10 slowest have error 0.023 (noise) against 0.30
  (magnitude) and 0.37 (uniform), the mean over all 0.039, 0.046 and 0.066
  (benchmarks/prune_benchmark.py).
- Rayleigh-quotient error of the pruned matrix on the original eigenvectors.
- trajectory error: the pruned against the unpruned network, both simulated in NEST with the
  same noise (:func:`trajectory_error`).
- decay trajectory error, the authors' measure: the noise-free linear decay from random initial
  states, error per time step (:func:`decay_trajectory_error`).
- the largest real eigenvalue of the pruned dynamics matrix: the pruned network is unstable when
  it is >= 0 (within rounding error: :data:`STABLE_BELOW`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from .prune import DIAGONALS, PRUNING_RULES, Pruned, prune
from .rate_network import (
    STABLE_BELOW,
    InvalidWeightMatrix,
    RateModel,
    check_weights,
    dynamics_matrix,
    is_symmetric,
    lyapunov_covariance,
    simulate,
)

SLOWEST = 10      # eigenvalues at the slow end of the spectrum that the slow-end error averages
DECAY_TAUS = 40   # default length of the decay trajectories, in time constants (the authors' 40)
DECAY_STEPS = 40  # time steps at which the decay trajectory error is taken
# STABLE_BELOW (from rate_network): stable when every eigenvalue's real part is below it.


# ----------------------------------------------------------------------------------- spectrum

class Error(NamedTuple):
    mean: float
    max: float


class Spectrum(NamedTuple):
    """Eigenvalues and eigenvectors (columns) of a dynamics matrix; real and sorted if symmetric."""

    values: np.ndarray
    vectors: np.ndarray
    symmetric: bool


def spectrum(W: ArrayLike, leak: float = 1.0) -> Spectrum:
    """Eigen-decomposition of the dynamics matrix M = W - leak I."""
    M = np.asarray(W, dtype=float) - leak * np.eye(len(W))
    if is_symmetric(M):
        values, vectors = np.linalg.eigh(M)
        return Spectrum(values, vectors, True)
    values, vectors = np.linalg.eig(M)
    return Spectrum(values, vectors, False)


def eigenvalues(W: ArrayLike, leak: float = 1.0) -> tuple[np.ndarray, bool]:
    """Eigenvalues of W - leak I (sorted if symmetric) without the eigenvectors, and whether symmetric."""
    M = np.asarray(W, dtype=float) - leak * np.eye(len(W))
    if is_symmetric(M):
        return np.linalg.eigvalsh(M), True
    return np.linalg.eigvals(M), False


def _relative_errors(reference: Spectrum, values: np.ndarray, symmetric: bool) -> np.ndarray:
    """|lambda'_k - lambda_k| / |lambda_k| for each original eigenvalue, in the order of
    ``reference.values``: pairs by sorting when both matrices are symmetric, otherwise by the
    assignment that minimises the total relative error (complex spectra)."""
    if reference.symmetric and symmetric:
        return np.abs(values - reference.values) / np.abs(reference.values)
    cost = np.abs(values[:, None] - reference.values[None, :]) / np.abs(reference.values)[None, :]
    rows, cols = linear_sum_assignment(cost)
    errors = np.empty(len(cols))
    errors[cols] = cost[rows, cols]
    return errors


def _check_same_size(shape: tuple, W_pruned) -> None:
    if np.shape(W_pruned) != shape:
        raise ValueError(f"pruned matrix shape {np.shape(W_pruned)} does not match the original's {shape}")


def _slowest(reference: Spectrum, slowest: int) -> np.ndarray:
    """Indices of the ``slowest`` original eigenvalues: those with the largest real part."""
    if slowest < 1:  # 0 would average nothing (NaN), a negative number all but the last few
        raise ValueError(f"slowest must be at least 1, got {slowest}")
    return np.argsort(reference.values.real)[::-1][:slowest]


def eigenvalue_errors(W: ArrayLike, W_pruned: ArrayLike, leak: float = 1.0, *, reference: Spectrum | None = None) -> np.ndarray:
    """Relative error |lambda'_k - lambda_k| / |lambda_k| of each eigenvalue of the dynamics
    matrix, in the order of the original's :func:`spectrum` (``reference``, if computed already).
    Eigenvalues are paired by sorting when both matrices are symmetric and by an optimal
    assignment otherwise."""
    reference = reference or spectrum(W, leak)
    _check_same_size(reference.vectors.shape, W_pruned)
    return _relative_errors(reference, *eigenvalues(W_pruned, leak))


def eigenvalue_error(W: ArrayLike, W_pruned: ArrayLike, leak: float = 1.0, *, reference: Spectrum | None = None) -> Error:
    """Mean and max over all eigenvalues of :func:`eigenvalue_errors`."""
    errors = eigenvalue_errors(W, W_pruned, leak, reference=reference)
    return Error(float(errors.mean()), float(errors.max()))


def slow_eigenvalue_error(W: ArrayLike, W_pruned: ArrayLike, leak: float = 1.0, *, slowest: int = SLOWEST,
                          reference: Spectrum | None = None) -> float:
    """Mean of :func:`eigenvalue_errors` over the ``slowest`` original eigenvalues, those with the
    largest real part (the slowest modes of the dynamics). All of them if there are fewer."""
    reference = reference or spectrum(W, leak)
    errors = eigenvalue_errors(W, W_pruned, leak, reference=reference)
    return float(errors[_slowest(reference, slowest)].mean())


def rayleigh_error(W: ArrayLike, W_pruned: ArrayLike, leak: float = 1.0, *, reference: Spectrum | None = None) -> Error:
    """Relative error of the Rayleigh quotients v_k* M' v_k / v_k* v_k of the pruned dynamics
    matrix M' on the original eigenvectors v_k against the original eigenvalues."""
    reference = reference or spectrum(W, leak)
    _check_same_size(reference.vectors.shape, W_pruned)
    V = reference.vectors
    M = np.asarray(W_pruned, dtype=float) - leak * np.eye(len(V))
    quotients = np.einsum("ik,ik->k", V.conj(), M @ V) / np.einsum("ik,ik->k", V.conj(), V)
    errors = np.abs(quotients - reference.values) / np.abs(reference.values)
    return Error(float(errors.mean()), float(errors.max()))


# ------------------------------------------------------------------------------- trajectories

def check_trajectory_duration(duration: float, *, interval: float = 1.0, name: str = "duration",
                              zero_skips: bool = False) -> None:
    """Raise ValueError unless ``duration`` gives trajectories to compare: a whole number of
    sampling ``interval``s (ms), at least two (one sample, or none, gave a NaN error or one from
    a single point). ``zero_skips``: 0 is allowed too, meaning no trajectories."""
    if zero_skips and duration == 0:
        return
    samples = duration / interval
    if math.isfinite(samples) and samples >= 2 and abs(samples - round(samples)) < 1e-9:
        return
    skip = "0 (no trajectories) or " if zero_skips else ""
    if interval == 1:
        rule = "a whole number of ms, at least 2 (the rates are sampled every ms)"
    else:
        rule = f"a whole number of intervals of {interval:g} ms, at least 2 (the rates are sampled every interval)"
    raise ValueError(f"{name} must be {skip}{rule}, got {duration:g}")


def relative_trajectory_error(reference: np.ndarray, rates: np.ndarray) -> float:
    """||X' - X|| / ||X|| over all samples and neurons."""
    return float(np.linalg.norm(rates - reference) / np.linalg.norm(reference))


def trajectory_error(W: ArrayLike, W_pruned: ArrayLike, duration: float = 200.0, model: RateModel = RateModel(), *,
                     seed: int = 0, interval: float = 1.0) -> float:
    """Relative trajectory error of the pruned against the unpruned network, both simulated in
    NEST from rest for ``duration`` ms with the same noise (same seed). ``duration``: a whole
    number of ``interval``s, at least two (:func:`check_trajectory_duration`)."""
    check_trajectory_duration(duration, interval=interval)
    _check_same_size(np.shape(W), W_pruned)
    reference = simulate(W, duration, model, seed=seed, interval=interval, warmup=0.0).rates
    rates = simulate(W_pruned, duration, model, seed=seed, interval=interval, warmup=0.0).rates
    return relative_trajectory_error(reference, rates)


def _pruned_trajectory_error(unpruned: np.ndarray, pruned: np.ndarray, rule: str, duration: float, model: RateModel,
                             seed: int) -> float:
    """The trajectory error of the network ``rule`` pruned: inf where NEST's step cannot integrate it
    (one such draw ended the whole comparison with an error that blamed the user's matrix), and
    simulate's warnings said of this network, by the rule's name."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            rates = simulate(pruned, duration, model, seed=seed, warmup=0.0).rates
            error = relative_trajectory_error(unpruned, rates)
        except InvalidWeightMatrix as err:
            if err.reason != "unstable in NEST":
                raise
            said.append(warnings.WarningMessage(f"{err}; its trajectory error is inf", RuntimeWarning, "", 0))
            error = math.inf
    for warning in said:  # "the fastest mode of W" was the pruned network's, named nowhere
        warnings.warn(f"the network pruned by the {rule} rule: {warning.message}", warning.category, stacklevel=3)
    return error


class DecayError(NamedTuple):
    """The decay trajectory error at each sample time."""

    times: np.ndarray   # ms
    errors: np.ndarray  # mean over the initial states of ||x'(t) - x(t)|| / ||x(t)||

    @property
    def mean(self) -> float:
        """The error averaged over the sample times."""
        return float(self.errors.mean())


def _propagator(W, model: RateModel, dt: float) -> np.ndarray:
    """exp(A dt) for A = (W - leak I) / tau: the exact step of the noise-free linear dynamics."""
    A = dynamics_matrix(W, model)
    if np.array_equal(A, A.T):
        values, vectors = np.linalg.eigh(A)
        return (vectors * np.exp(values * dt)) @ vectors.T
    return scipy.linalg.expm(A * dt)


def decay_trajectory_error(W: ArrayLike, W_pruned: ArrayLike, model: RateModel = RateModel(), *, duration: float | None = None,
                           steps: int = DECAY_STEPS, states: int = 20, seed: int = 0) -> DecayError:
    """The authors' trajectory measure: how far the pruned network's free decay strays from the
    original's, relative to the original's size, at each time step.

    With x_s(t) = exp(t (W - leak I) / tau) x_s(0) the noise-free, input-free linear dynamics of
    the original and x'_s(t) the same with the pruned W', from ``states`` initial states x_s(0)
    with entries drawn U(0, 1) (as the authors draw theirs), the error at each of the ``steps``
    times t_k = k duration / steps (k = 1 .. steps) is

        e(t_k) = 1/states sum_s ||x'_s(t_k) - x_s(t_k)|| / ||x_s(t_k)||     (Euclidean norms).

    The steps are exact (matrix exponential), so the measure is deterministic given ``seed``.
    ``duration`` defaults to 40 tau (the authors' 40 time units), by which the slow modes carry
    the activity. Returns the times (ms) and e at each; ``.mean`` averages e over the times.
    The authors add weak noise and input to the same comparison; this measure leaves them out
    so that it sees the deterministic dynamics alone.
    """
    duration = DECAY_TAUS * model.tau if duration is None else duration
    if duration <= 0 or steps < 1 or states < 1:
        raise ValueError(f"duration, steps and states must be positive, got {duration}, {steps}, {states}")
    _check_same_size(np.shape(W), W_pruned)
    dt = duration / steps
    return _decay_error(_propagator(W, model, dt), _propagator(W_pruned, model, dt), dt, steps, states, seed)


def _decay_error(step: np.ndarray, step_pruned: np.ndarray, dt: float, steps: int, states: int,
                 seed: int) -> DecayError:
    x = x_pruned = np.random.default_rng(seed).random((len(step), states))  # one state per column
    errors = np.empty(steps)
    overflowed = np.zeros(states, dtype=bool)
    # A long decay can leave the floating-point range: an unstable pruned network's grows past it
    # (its error inf from then on, not the NaN of inf - inf that follows), and the original's can
    # shrink to 0 (0/0, NaN). The summary shows these as such, not as a skipped measure.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for k in range(steps):
            x, x_pruned = step @ x, step_pruned @ x_pruned
            overflowed |= ~np.isfinite(x_pruned).all(axis=0)
            errors[k] = np.mean(np.where(overflowed, np.inf,
                                         np.linalg.norm(x_pruned - x, axis=0) / np.linalg.norm(x, axis=0)))
    return DecayError(dt * np.arange(1, steps + 1), errors)


# ----------------------------------------------------------------------------- the rules compared

def measure(W: ArrayLike, pruned: Pruned, *, leak: float = 1.0, slowest: int = SLOWEST,
            reference: Spectrum | None = None) -> dict:
    """The spectral measures of one pruned matrix, as a flat dict: eigenvalue error (mean, max,
    mean over the ``slowest``), Rayleigh error (mean, max), synapses kept, and the largest real
    eigenvalue of the pruned dynamics matrix (unstable unless below :data:`STABLE_BELOW`)."""
    reference = reference or spectrum(W, leak)
    values, symmetric = eigenvalues(pruned.weights, leak)
    errors = _relative_errors(reference, values, symmetric)
    ray = rayleigh_error(W, pruned.weights, leak, reference=reference)
    return {"eigenvalue_error": float(errors.mean()), "eigenvalue_error_max": float(errors.max()),
            "eigenvalue_error_slowest": float(errors[_slowest(reference, slowest)].mean()),
            "rayleigh_error": ray.mean, "rayleigh_error_max": ray.max,
            "kept": pruned.kept, "kept_fraction": pruned.kept_fraction,
            "largest_real_eigenvalue": float(values.real.max())}


def sweep(W: ArrayLike, keeps: Sequence[float], rules: Sequence[str] = PRUNING_RULES, *, seeds: Sequence[int] = (0,),
          covariance: ArrayLike | None = None, diagonal: str = "row-sum", model: RateModel = RateModel(),
          slowest: int = SLOWEST, reference: Spectrum | None = None) -> list[dict]:
    """Spectral measures (:func:`measure`) for each fraction kept and rule, averaged over the
    pruning ``seeds``. One row per (keep, rule)."""
    rules = (rules,) if isinstance(rules, str) else rules  # "noise" is one rule, not five letters
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one seed")
    W = check_weights(W, model.leak)
    if covariance is None and "noise" in rules:
        covariance = lyapunov_covariance(W, model)
    reference = reference or spectrum(W, model.leak)
    rows = []
    for keep in keeps:
        for rule in rules:
            results = [measure(W, prune(W, keep, rule, covariance=covariance, diagonal=diagonal, seed=s, model=model),
                               leak=model.leak, slowest=slowest, reference=reference) for s in seeds]
            row = {"keep": keep, "rule": rule}
            row.update({key: float(np.mean([r[key] for r in results])) for key in results[0]})
            row["kept"] = _count([r["kept"] for r in results])
            rows.append(row)
    return rows


def _count(counts: Sequence[int]) -> int | float:
    """Synapses kept, the mean over the seeds: a whole number (one seed's, as the command's sweep
    has) stays an int, as in the summary."""
    mean = float(np.mean(counts))
    return int(mean) if mean.is_integer() else mean


def stable_diagonals(W: ArrayLike, keep: float, rule: str, *, covariance: ArrayLike | None = None, seed: int = 0,
                     model: RateModel = RateModel()) -> list[str]:
    """The diagonal options with which the draw of ``seed`` (the same synapses whatever the
    option) gives a stable pruned network."""
    stable = []
    for diagonal in DIAGONALS:
        pruned = prune(W, keep, rule, covariance=covariance, diagonal=diagonal, seed=seed, model=model)
        if eigenvalues(pruned.weights, model.leak)[0].real.max() < STABLE_BELOW:
            stable.append(diagonal)
    return stable


@dataclass
class Comparison:
    """The pruning rules compared on one network at one fraction kept (see :func:`compare_rules`)."""

    weights: np.ndarray            # the original W
    keep: float
    diagonal: str
    slowest: int
    model: RateModel
    reference: Spectrum            # of the original's dynamics matrix
    pruned: dict[str, Pruned]      # per rule
    measures: dict[str, dict]      # per rule: measure() plus trajectory errors and stability
    decay: dict[str, DecayError] = field(default_factory=dict)  # per rule, if measured

    def summary(self) -> dict:
        """Everything but the matrices, ready for JSON: a skipped measure is None, a measure that
        is not finite (a decay that left the floating-point range) the string "inf", "-inf" or
        "nan", which JSON has no number for and ``float()`` reads back."""
        return {"keep": self.keep, "nodes": len(self.weights),
                "synapses": next(iter(self.pruned.values())).synapses, "diagonal": self.diagonal,
                "slowest": self.slowest,
                "rules": {rule: {key: _json_number(value) for key, value in m.items()}
                          for rule, m in self.measures.items()}}


def _json_number(value):
    # None would read as "skipped", the mark of a measure not taken
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def compare_rules(W: ArrayLike, *, keep: float = 0.2, rules: Sequence[str] = PRUNING_RULES,
                  covariance: ArrayLike | None = None, diagonal: str = "row-sum", seed: int = 0,
                  model: RateModel = RateModel(), duration: float = 200.0,
                  slowest: int = SLOWEST, decay_duration: float | None = None, decay_states: int = 20) -> Comparison:
    """Prune ``W`` by each of ``rules`` to the fraction ``keep`` and measure each result.

    ``covariance``: the noise rule's (default: the Lyapunov solution of ``model``'s linear
    network). ``seed`` seeds the pruning draws, the NEST noise and the initial states.
    ``duration``: ms of the NEST :func:`trajectory_error` (0: skipped, ``None`` in the
    measures; otherwise a whole number of ms, at least 2: :func:`check_trajectory_duration`).
    ``decay_duration``: ms of the :func:`decay_trajectory_error` (default 40 tau; 0: skipped),
    from ``decay_states`` initial states. Each rule's measures: those of
    :func:`measure` with the mean error of the ``slowest`` eigenvalues, ``trajectory_error``,
    ``decay_trajectory_error``, ``stable`` and, when unstable, ``stable_diagonals`` (the diagonal
    options that keep the same draw stable; ``None`` when it is stable).
    """
    rules = (rules,) if isinstance(rules, str) else tuple(rules)  # "noise" is one rule, not five letters
    if not rules:
        raise ValueError("no rules to compare")
    # Checked before any work: a negative decay_duration would run time backwards, without a word.
    if duration < 0 or (decay_duration is not None and decay_duration < 0) or decay_states < 1 or slowest < 1:
        raise ValueError(f"duration and decay_duration must be >= 0 ms, decay_states and slowest >= 1; got "
                         f"{duration}, {decay_duration}, {decay_states} and {slowest}")
    check_trajectory_duration(duration, zero_skips=True)  # 0.5 ms gave no samples and a trajectory error None
    W = check_weights(W, model.leak)
    if covariance is None and "noise" in rules:
        covariance = lyapunov_covariance(W, model)
    reference = spectrum(W, model.leak)
    pruned = {rule: prune(W, keep, rule, covariance=covariance, diagonal=diagonal, seed=seed, model=model)
              for rule in rules}
    measures = {rule: measure(W, p, leak=model.leak, slowest=slowest, reference=reference)
                for rule, p in pruned.items()}
    for rule, m in measures.items():
        m["stable"] = m["largest_real_eigenvalue"] < STABLE_BELOW
        m["stable_diagonals"] = None if m["stable"] else stable_diagonals(
            W, keep, rule, covariance=covariance, seed=seed, model=model)

    unpruned = simulate(W, duration, model, seed=seed, warmup=0.0).rates if duration > 0 else None
    if decay_duration != 0:
        dt = (DECAY_TAUS * model.tau if decay_duration is None else decay_duration) / DECAY_STEPS
        step = _propagator(W, model, dt)  # the original's, once for all rules
    decay = {}
    for rule, p in pruned.items():
        m = measures[rule]
        m["trajectory_error"] = None
        if unpruned is not None:
            m["trajectory_error"] = _pruned_trajectory_error(unpruned, p.weights, rule, duration, model, seed)
        m["decay_trajectory_error"] = None
        if decay_duration != 0:
            decay[rule] = _decay_error(step, _propagator(p.weights, model, dt), dt, DECAY_STEPS, decay_states, seed)
            m["decay_trajectory_error"] = decay[rule].mean
    # the number of eigenvalues the mean was over: 100 asked of a 3-node network was recorded as 100
    return Comparison(weights=W, keep=keep, diagonal=diagonal, slowest=min(slowest, len(W)), model=model,
                      reference=reference,
                      pruned=pruned, measures=measures, decay=decay)
