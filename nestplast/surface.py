"""Intervals without more simulations: a quadratic response surface of every segment's errors,
fitted to the candidates a search has already simulated near its best, and a bootstrap over
segments on that surface.

Refitting a closed-loop model for every bootstrap draw would repeat the whole search each time.
Instead, each segment's error terms are modelled as quadratics in the parameters over the
candidates closest in loss to the best (CMA-ES has sampled that neighbourhood densely by the end
of a run), and each draw's loss, a weighted sum of segment errors, is minimised on the surfaces
inside the box those candidates span. The surfaces also smooth the spike-count noise that makes
the loss of a spiking model rough at small scales. ::

    surface = ResponseSurface.fit(thetas, errors, best=theta_hat)
    draws = bootstrap_minima(surface, loss_of_errors, n_draws=200, n_segments=..., fitted=mask, seed=1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def quadratic_features(z: np.ndarray) -> np.ndarray:
    """Rows [1, z_i, z_i z_j (i <= j)] of the points ``z`` (n x d)."""
    z = np.atleast_2d(z)
    i, j = np.triu_indices(z.shape[1])
    return np.hstack([np.ones((z.shape[0], 1)), z, z[:, i] * z[:, j]])


def n_quadratic_terms(d: int) -> int:
    """The number of coefficients of a full quadratic in ``d`` variables."""
    return (d + 1) * (d + 2) // 2


@dataclass
class ResponseSurface:
    """Quadratics (one per error term) over scaled coordinates ``(theta - centre) / scale``,
    trusted inside ``box`` (the span of the points they were fitted to)."""

    centre: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray  # n_terms x (error shape, flattened)
    shape: tuple[int, ...]
    box: list[tuple[float, float]]

    @classmethod
    def fit(cls, thetas: np.ndarray, errors: np.ndarray, *, best: Sequence[float],
            bounds: Sequence[tuple[float, float]] | None = None) -> ResponseSurface:
        """Least-squares quadratics of ``errors`` (n x ...) over ``thetas`` (n x d), centred on
        ``best``; needs more points than quadratic terms."""
        thetas, errors = np.asarray(thetas, dtype=float), np.asarray(errors, dtype=float)
        n, d = thetas.shape
        if n <= n_quadratic_terms(d):
            raise ValueError(f"a quadratic surface in {d} parameters needs more than {n_quadratic_terms(d)} points, got {n}")
        centre = np.asarray(best, dtype=float)
        spread = thetas.std(axis=0)
        scale = np.where(spread > 0, spread, 1.0)
        features = quadratic_features((thetas - centre) / scale)
        coefficients, *_ = np.linalg.lstsq(features, errors.reshape(n, -1), rcond=None)
        low, high = thetas.min(axis=0), thetas.max(axis=0)
        if bounds is not None:
            low = np.maximum(low, [b[0] for b in bounds])
            high = np.minimum(high, [b[1] for b in bounds])
        return cls(centre, scale, coefficients, errors.shape[1:], list(zip(low.tolist(), high.tolist())))

    def __call__(self, theta: Sequence[float]) -> np.ndarray:
        """The modelled errors at ``theta``."""
        z = (np.asarray(theta, dtype=float) - self.centre) / self.scale
        return (quadratic_features(z) @ self.coefficients).reshape(self.shape)


def bootstrap_minima(surface: ResponseSurface, loss: Callable[[np.ndarray, np.ndarray, np.ndarray], float], *,
                     n_draws: int, n_segments: int, fitted: np.ndarray, seed: int) -> np.ndarray:
    """``n_draws`` minimisers of ``loss(errors, counts, theta)`` on the surface, each with the
    ``fitted`` segments (a boolean mask) resampled with replacement (``counts``; 0 for the others)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng([seed, 7])
    chosen = np.flatnonzero(fitted)
    start = np.clip(surface.centre, [b[0] for b in surface.box], [b[1] for b in surface.box])
    minima = []
    for _ in range(n_draws):
        counts = np.zeros(n_segments)
        np.add.at(counts, rng.choice(chosen, size=chosen.size), 1.0)
        found = minimize(lambda t, c=counts: loss(surface(t), c, t), start, method="L-BFGS-B", bounds=surface.box)
        minima.append(found.x)
    return np.asarray(minima).reshape(n_draws, start.size)


def surface_intervals(names: Sequence[str], bounds: Sequence[tuple[float, float]], theta: Sequence[float],
                      thetas: np.ndarray, errors: np.ndarray, loss: Callable[[np.ndarray, np.ndarray, np.ndarray], float],
                      *, n_draws: int, fitted: np.ndarray, seed: int) -> tuple[dict[str, tuple[float, float]], list, list[str]]:
    """95 % intervals around the estimate ``theta`` from the simulated candidates ``thetas`` with
    their per-segment ``errors``: surfaces fitted to those nearest the best in ``loss`` (all
    fitted segments counted once), then :func:`bootstrap_minima`; each interval widened to hold
    the estimate. NaN intervals (and no draws) where there are too few candidates. Also the
    warnings a reader needs: why there are no intervals, and intervals that end where the
    candidates end (the surface is trusted only there, so the true interval may be wider)."""
    theta = np.asarray(theta, dtype=float)
    need = n_quadratic_terms(theta.size)
    none = {n: (np.nan, np.nan) for n in names}
    if n_draws == 0 or fitted.sum() < 2:
        return none, [], []
    if len(thetas) <= need:  # the intervals came out as "-" without a word
        return none, [], [f"no intervals: a quadratic surface in {theta.size} coefficients needs more than {need} "
                          f"simulated candidates, the fit has {len(thetas)} (give more generations or a larger "
                          "population)"]
    losses = np.array([loss(e, fitted, t) for e, t in zip(errors, thetas)])
    if np.ptp(losses) <= 1e-9 * max(1.0, float(np.max(np.abs(losses)))):  # a flat surface: every draw at its start
        return none, [], [f"no intervals: all {len(thetas)} simulated candidates fit the data equally well, so the data "
                          "do not constrain the coefficients and their values mean nothing (e.g. choices never "
                          "rewarded, so that the reward signal R is 0, or no spikes that the rule's terms need)"]
    nearest = np.argsort(losses)[:max(3 * need, 30)]
    surface = ResponseSurface.fit(thetas[nearest], errors[nearest], best=theta, bounds=bounds)
    draws = bootstrap_minima(surface, loss, n_draws=n_draws, n_segments=len(fitted), fitted=fitted, seed=seed)
    intervals = {n: (min(float(np.percentile(draws[:, i], 2.5)), float(theta[i])),
                     max(float(np.percentile(draws[:, i], 97.5)), float(theta[i]))) for i, n in enumerate(names)}
    # an end at the box's edge, where the box stops short of the rule's own bound (that one: at_bound)
    cut = [n for n, (low, high), (box_low, box_high), (rule_low, rule_high) in zip(names, intervals.values(),
                                                                                    surface.box, bounds)
           if (np.isclose(low, box_low, rtol=1e-9, atol=1e-12) and box_low > rule_low)
           or (np.isclose(high, box_high, rtol=1e-9, atol=1e-12) and box_high < rule_high)]
    notes = [f"the intervals of {', '.join(cut)} end where the simulated candidates near the best end (the region "
             "the search sampled): they may be wider; more generations sample more of it"] if cut else []
    if point := [n for n, (low, high) in intervals.items() if low == high]:
        notes.append(f"the intervals of {', '.join(point)} have zero width: every bootstrap draw stopped at the "
                     "estimate, where the fitted surface is flat along them (the data may not constrain them)")
    return intervals, draws.tolist(), notes
