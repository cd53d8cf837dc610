"""Noise-driven pruning of recurrent rate networks (Moore & Chaudhuri): the rule.

For dx/dt = A x + noise with stationary covariance C, synapse ij (from j to i) is kept with
probability

    p_ij proportional to |W_ij| (C_ii + C_jj - 2 sign(W_ij) C_ij),

the variance of x_i - sign(W_ij) x_j: large for a synapse whose two neurons the rest of the
network does not already tie together. The probabilities are normalised so that the expected
number of kept synapses is the target, clipped at 1 (the normalisation is repeated until the
clipped probabilities still sum to the target), and a kept weight becomes W_ij / p_ij, so that
the pruned matrix equals the original in expectation. Controls: p proportional to |W|
("magnitude") and uniform p ("uniform"). A symmetric matrix (up to rounding) is pruned pair by pair and stays
symmetric. The diagonal (self-coupling) is not pruned; it becomes zero, stays as it was, or
("row-sum", the default) takes back each row's removed off-diagonal magnitude so that every
row keeps its diagonal-dominance margin: a network whose dynamics matrix W - leak I is
strictly diagonally dominant with a negative diagonal stays stable (Gershgorin); with no margin
(the authors' network) a neuron or cluster cut off by pruning is left with a mode that never
decays. Any option can give an unstable pruned network; :func:`nestplast.pruning_measures.compare_rules`
says which options keep a draw stable.

How closely a pruned network keeps the original's dynamics, and the rules compared:
:mod:`nestplast.pruning_measures`. Tables and plots: :mod:`nestplast.analysis.pruning`.
Command line: ``python -m nestplast prune --help`` (:mod:`nestplast.commands.prune`), also
``python -m nestplast.prune``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .errors import UserError
from .rate_network import RateModel, check_weights, is_symmetric, lyapunov_covariance, settling_time, simulate
from .values import is_number

PRUNING_RULES = ("noise", "magnitude", "uniform")
DIAGONALS = ("row-sum", "original", "zero")


class InvalidPruningArgument(UserError, ValueError):
    """An unknown rule or diagonal option, a fraction kept outside (0, 1], a covariance of the
    wrong shape, not finite or with no variance to rank the synapses by, or activity too short
    or of the wrong shape to estimate one."""


# ------------------------------------------------------------------------------------- rule

def _synapses(W: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the prunable synapses: nonzero and off the diagonal; for a symmetric
    matrix the upper triangle only (one entry per pair)."""
    rows, cols = np.nonzero(W)
    keep = rows < cols if symmetric else rows != cols
    return rows[keep], cols[keep]


def _scores(W: np.ndarray, rows: np.ndarray, cols: np.ndarray, rule: str, covariance) -> np.ndarray:
    w = W[rows, cols]
    if rule == "noise":
        C = np.asarray(covariance, dtype=float)
        d = np.diag(C)
        variance = d[rows] + d[cols] - 2.0 * np.sign(w) * C[rows, cols]  # Var(x_i - sign(w) x_j)
        # A variance is non-negative; clip the rounding error of nearly identical neurons.
        return np.abs(w) * np.maximum(variance, 0.0)
    if rule == "magnitude":
        return np.abs(w)
    if rule == "uniform":
        return np.ones(len(w))
    raise InvalidPruningArgument(f"unknown pruning rule {rule!r}; choose from {', '.join(PRUNING_RULES)}")


def noise_scores(W: ArrayLike, covariance: ArrayLike) -> np.ndarray:
    """The noise rule's unnormalised keep scores |W_ij| (C_ii + C_jj - 2 sign(W_ij) C_ij) for each
    off-diagonal synapse (zero elsewhere)."""
    W = np.asarray(W, dtype=float)
    _check_covariance(covariance, W)  # a smaller one failed with numpy's IndexError
    rows, cols = _synapses(W, symmetric=False)
    scores = np.zeros_like(W)
    scores[rows, cols] = _scores(W, rows, cols, "noise", covariance)
    return scores


def _check_covariance(covariance: ArrayLike, W: np.ndarray, *, read: bool = True) -> None:
    """Refuse a covariance of another shape than ``W``; and with ``read`` (a rule that reads it),
    one with NaN or infinite entries, or with a negative variance (not a covariance: the noise
    rule's refusal blamed too little activity)."""
    if isinstance(covariance, OnlineCovariance):  # "covariance shape () does not match the weights"
        raise InvalidPruningArgument("covariance is an OnlineCovariance: give the matrix it holds, its .covariance()")
    if np.shape(covariance) != W.shape:
        raise InvalidPruningArgument(f"covariance shape {np.shape(covariance)} does not match the weights {W.shape}")
    if not read:
        return
    covariance = np.asarray(covariance, dtype=float)
    if not np.isfinite(covariance).all():
        raise InvalidPruningArgument("covariance holds NaN or infinite entries (activity with NaN rates?)")
    if (negative := np.flatnonzero(np.diag(covariance) < 0)).size:
        raise InvalidPruningArgument(f"covariance has {negative.size} negative variance(s) on its diagonal (the first "
                                     f"at [{negative[0]}, {negative[0]}]): not a covariance")


def keep_probabilities(scores: ArrayLike, n_keep: float) -> np.ndarray:
    """Probabilities proportional to ``scores`` (non-negative), clipped at 1, that sum to
    ``n_keep``: after each clipping the rest are normalised again, until none exceeds 1. When
    fewer than ``n_keep`` scores are positive, every one of them is kept with probability 1."""
    scores = np.asarray(scores, dtype=float)
    if (scores < 0).any():
        raise ValueError("scores must be non-negative")
    if not (is_number(n_keep) and 0 <= n_keep < math.inf):  # -1 gave negative "probabilities"
        raise ValueError(f"n_keep must be a number of synapses >= 0, got {n_keep!r}")
    positive = scores > 0
    if n_keep >= positive.sum():
        return positive.astype(float)
    clipped = np.zeros(scores.shape, dtype=bool)
    while True:
        free = positive & ~clipped
        p = np.where(clipped, 1.0, scores * (n_keep - clipped.sum()) / scores[free].sum())
        over = p > 1.0
        if not over[~clipped].any():
            return p
        clipped |= over


@dataclass
class Pruned:
    """A pruned weight matrix and how it was drawn."""

    weights: np.ndarray        # pruned W, same shape as the original
    probabilities: np.ndarray  # keep probability of each off-diagonal synapse (0 elsewhere)
    rule: str
    synapses: int              # off-diagonal synapses in the original
    target: float              # synapses asked for: keep * synapses
    expected: float            # expected number kept, sum of the probabilities
    kept: int                  # off-diagonal synapses actually kept

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.synapses if self.synapses else 1.0


def prune(W: ArrayLike, keep: float = 0.2, rule: str = "noise", *, covariance: ArrayLike | None = None,
          diagonal: str = "row-sum", seed: int | np.random.Generator | None = None, model: RateModel = RateModel()) -> Pruned:
    """Prune weight matrix ``W`` to a fraction ``keep`` of its off-diagonal synapses (expected).

    ``rule`` is "noise" (needs the stationary covariance: ``covariance``, e.g. estimated from
    activity with :class:`OnlineCovariance`, or by default the Lyapunov solution of the linear
    network ``model``), "magnitude" or "uniform". ``diagonal`` is "row-sum", "original" or
    "zero"; the draw of the off-diagonal synapses does not depend on it, so the same ``seed``
    with another ``diagonal`` prunes the same synapses. ``seed`` (an int or a numpy Generator)
    makes the draw reproducible. Raises :class:`InvalidPruningArgument` for bad arguments and
    :class:`~nestplast.rate_network.InvalidWeightMatrix` for a matrix that is not square, not
    finite or unstable.
    """
    if rule not in PRUNING_RULES:
        raise InvalidPruningArgument(f"unknown pruning rule {rule!r}; choose from {', '.join(PRUNING_RULES)}")
    if diagonal not in DIAGONALS:
        raise InvalidPruningArgument(f"unknown diagonal option {diagonal!r}; choose from {', '.join(DIAGONALS)}")
    if not (is_number(keep) and 0.0 < keep <= 1.0):  # "0.5" failed on numpy's '<' between float and str
        raise InvalidPruningArgument(f"keep must be a fraction in (0, 1], got {keep!r}")
    W = check_weights(W, model.leak)
    if rule == "noise" and covariance is None:
        covariance = lyapunov_covariance(W, model)
    if covariance is not None:
        _check_covariance(covariance, W, read=rule == "noise")  # the only rule that reads it

    symmetric = is_symmetric(W)  # up to rounding; the pruned matrix is then exactly symmetric
    rows, cols = _synapses(W, symmetric)
    per_entry = 2 if symmetric else 1  # a symmetric pair is two synapses
    synapses = per_entry * len(rows)
    scores = _scores(W, rows, cols, rule, covariance)
    if len(scores) and not scores.any():
        # Every synapse would be removed without a word: the covariance has no variance to go by.
        raise InvalidPruningArgument(
            "the covariance gives every synapse a zero noise score (no variance of x_i - sign(W_ij) x_j): "
            "estimate it from more activity (at least two distinct samples)")
    p = keep_probabilities(scores, keep * synapses / per_entry)
    rng = np.random.default_rng(seed)
    kept = rng.random(len(p)) < p

    pruned = np.zeros_like(W)
    probabilities = np.zeros_like(W)
    pruned[rows[kept], cols[kept]] = W[rows[kept], cols[kept]] / p[kept]
    probabilities[rows, cols] = p
    if symmetric:
        pruned += pruned.T
        probabilities += probabilities.T

    if diagonal != "zero":
        np.fill_diagonal(pruned, np.diag(W))
    if diagonal == "row-sum":
        removed = _offdiagonal_magnitude(W) - _offdiagonal_magnitude(pruned)
        pruned[np.diag_indices_from(pruned)] += removed
    return Pruned(weights=pruned, probabilities=probabilities, rule=rule, synapses=synapses,
                  target=keep * synapses, expected=per_entry * float(p.sum()),
                  kept=per_entry * int(kept.sum()))


def _offdiagonal_magnitude(W: np.ndarray) -> np.ndarray:
    return np.abs(W).sum(axis=1) - np.abs(np.diag(W))


class OnlineCovariance:
    """The local, online form of the noise rule's statistics.

    Each synapse ij keeps running averages of its two neurons' rates, of their squares and of
    their product, from which it has its own C_ii, C_jj and C_ij; nothing else about the
    network. Feed recorded activity in chunks with :meth:`update`. Averages are cumulative
    (``timescale=None``) or exponential with ``timescale`` samples. Only the normalisation to
    the target number of kept synapses in :func:`prune` is global.
    """

    def __init__(self, W: ArrayLike, timescale: float | None = None):
        W = np.asarray(W, dtype=float)
        if timescale is not None and not timescale > 0:
            raise InvalidPruningArgument(f"timescale must be a positive number of samples (or None), got {timescale}")
        self.rows, self.cols = _synapses(W, symmetric=False)
        self.timescale = timescale
        self.samples = 0
        self._norm = 0.0
        # Per-neuron averages are what each synapse of that neuron would compute alike; they are
        # stored once per neuron instead of once per synapse.
        self._mean = np.zeros(len(W))
        self._square = np.zeros(len(W))
        self._cross = np.zeros(len(self.rows))

    def update(self, rates: np.ndarray) -> None:
        """Take in a chunk of samples (rows: time, columns: neurons)."""
        if hasattr(rates, "rates") and hasattr(rates, "times"):  # float() of an Activity: a bare TypeError
            raise InvalidPruningArgument("rates: an Activity (simulate()'s result): give its samples, activity.rates")
        rates = np.asarray(rates, dtype=float)
        n = len(self._mean)
        if rates.ndim != 2 or rates.shape[1] != n:
            transposed = " (transposed? rows must be times)" if rates.ndim == 2 and rates.shape[0] == n else ""
            raise InvalidPruningArgument(
                f"rates must be a (samples, {n} neurons) array, got shape {rates.shape}{transposed}")
        T = len(rates)
        if self.timescale is None:
            decay, w = 1.0, np.ones(T)
        else:
            a = np.exp(-1.0 / self.timescale)
            decay, w = a ** T, a ** np.arange(T - 1, -1, -1)
        weighted = rates * w[:, None]
        self._norm = decay * self._norm + w.sum()
        self._mean = decay * self._mean + weighted.sum(axis=0)
        self._square = decay * self._square + (weighted * rates).sum(axis=0)
        # Entry (i, j) of this product is synapse ij's own sum of x_i x_j over the chunk; one
        # matrix product computes all of them at once.
        self._cross = decay * self._cross + (weighted.T @ rates)[self.rows, self.cols]
        self.samples += T

    def covariance(self) -> np.ndarray:
        """Current estimates as a matrix: variances on the diagonal, C_ij at each synapse, zero
        where there is no synapse (never used by the rule)."""
        if self._norm == 0:
            raise ValueError("no activity seen yet: call update() first")
        mean = self._mean / self._norm
        C = np.zeros((len(mean), len(mean)))
        C[self.rows, self.cols] = self._cross / self._norm - mean[self.rows] * mean[self.cols]
        C[np.diag_indices_from(C)] = self._square / self._norm - mean ** 2
        return C


def probe_warmup(W: ArrayLike, duration: float, model: RateModel = RateModel()) -> float:
    """The warm-up before a probe of ``duration`` ms: :func:`~nestplast.rate_network.settling_time`
    (five of the slowest time constants), at most ``duration``. A mode slower than the probe barely
    moves within it, so a longer warm-up would change little of the estimate, and on a slow network
    (eigenvalue -1e-5) it would be hours of NEST time."""
    return min(settling_time(W, model), duration)


def probe_covariance(W: ArrayLike, duration: float, model: RateModel = RateModel(), *, seed: int = 0,
                     warmup: float | None = None) -> np.ndarray:
    """The covariance as each synapse estimates it online (:class:`OnlineCovariance`) from
    ``duration`` ms of the network's noise-driven activity in NEST, sampled each ms, after a
    ``warmup`` from rest (ms; default :func:`probe_warmup`)."""
    W = check_weights(W, model.leak)  # stable: the activity has a stationary covariance to estimate
    if warmup is None:
        warmup = probe_warmup(W, duration, model)
    rates = simulate(W, duration, model, seed=seed, warmup=warmup).rates
    if len(rates) < 2:  # a covariance needs two samples at least
        raise InvalidPruningArgument(f"{duration} ms of activity give {len(rates)} samples (one per ms): "
                                     "probe for longer to estimate a covariance")
    online = OnlineCovariance(W)
    online.update(rates)
    return online.covariance()


if __name__ == "__main__":  # python -m nestplast.prune: the same as python -m nestplast prune
    from .commands.prune import main

    sys.exit(main())
