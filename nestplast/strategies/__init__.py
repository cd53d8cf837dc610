"""Strategies: what proposes the next candidates, and learns from their losses.

A strategy follows pycma's ask-and-tell interface (``cma.interfaces.OOOptimizer``)::

    while strategy.stop() is None:
        candidates = strategy.ask()
        strategy.tell(candidates, [loss(c) for c in candidates])

It is pickled whole after every generation (the run's store keeps it), so that a resumed run
asks exactly the candidates the uninterrupted run would have asked. A new strategy is one small
module here, made by :func:`make_strategy` and described in :data:`STRATEGIES`; the search's
``search.strategy`` offers those that search (the experiment's options table lists them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..tasks import Candidate


@dataclass(frozen=True)
class SearchSpace:
    """The box a strategy searches: parameter names, bounds, which are searched in log10, and a
    start point. Strategies work in the search coordinates (log10 where ``log``); candidates
    carry parameter values."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    log: tuple[bool, ...]
    start: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.names)

    def to_search(self, theta: Sequence[float]) -> np.ndarray:
        """Parameter values in search coordinates."""
        z = np.array(theta, dtype=float)
        mask = np.asarray(self.log, dtype=bool)
        z[mask] = np.log10(z[mask])
        return z

    def from_search(self, z: Sequence[float]) -> np.ndarray:
        """Search coordinates as parameter values."""
        theta = np.array(z, dtype=float)
        mask = np.asarray(self.log, dtype=bool)
        theta[mask] = 10.0 ** theta[mask]
        return theta

    def candidates(self, rows: Sequence[Sequence[float]], indices: Sequence[int] | None = None) -> list[Candidate]:
        """Candidates of the points ``rows`` in search coordinates, numbered ``indices`` (default 0, 1, ...)."""
        indices = range(len(rows)) if indices is None else indices
        return [Candidate(k, tuple(self.from_search(z).tolist())) for k, z in zip(indices, rows)]

    def search_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the box in search coordinates."""
        return self.to_search(self.low), self.to_search(self.high)


@dataclass(frozen=True)
class Budget:
    """When to stop, whatever the strategy (``None``: no limit)."""

    max_generations: int | None = None
    max_evaluations: int | None = None  # candidates evaluated (each over all its trials), stopping once exceeded
    max_wall_s: float | None = None  # seconds spent evaluating, summed over resumed sessions
    target_loss: float | None = None


class Strategy(Protocol):
    generation: int  # generations told so far: the index of the next one asked
    budget: Budget
    step: str  # what the progress line calls a generation ("gen"; the filter's "round")
    shows_loss: bool  # whether the progress line shows the best and median loss (the filter shows acceptance)

    def set_budget(self, budget: Budget) -> None:
        """New limits, e.g. for a resumed run given more generations."""

    def ask(self) -> list[Candidate]:
        """The next generation's candidates."""

    def tell(self, candidates: Sequence[Candidate], losses: Sequence[float]) -> None:
        """The losses of the candidates of the last :meth:`ask`, in the same order."""

    def stop(self) -> dict | None:
        """Why to stop (e.g. ``{"maxiter": 12}``, as pycma says it), or None to go on."""

    def describe(self) -> str:
        """A few words on the strategy's state for the progress line (e.g. ``step 0.21``)."""


def generation_seed(seed: int, generation: int) -> int:
    """The seed of generation ``generation`` of a run seeded ``seed`` (the same whatever the
    number of ranks and however often the run was resumed)."""
    return int(np.random.SeedSequence([seed, generation]).generate_state(1)[0])


def make_strategy(name: str, space: SearchSpace, budget: Budget, *, population_size: int, seed: int,
                  sigma0: float = 0.3, evaluate_mean: bool = True, **options) -> Strategy:
    """The strategy called ``name`` (see :data:`STRATEGIES`); ``options`` go to the filter
    (``constraints``, ``schedule``, ``max_epochs``, ``restrict``), or to CMA-ES (``cma_options``:
    pycma's own)."""
    if name == "cmaes":
        from .cmaes import CMAES

        return CMAES(space, budget, population_size=population_size, seed=seed, sigma0=sigma0,
                     evaluate_mean=evaluate_mean, cma_options=options.get("cma_options"))
    if name == "prior":
        from .prior import PriorSampling

        return PriorSampling(space, budget, population_size=population_size, seed=seed)
    if name == "filter":
        from .filter import Filter

        return Filter(space, budget, population_size=population_size, seed=seed, **options)
    raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")


STRATEGIES = {"cmaes": "CMA-ES (pycma): the search", "prior": "independent draws from the prior box (a baseline)",
              "filter": "rule families by simulation-based inference (sbi; the families extra)"}

__all__ = ["Budget", "SearchSpace", "Strategy", "STRATEGIES", "generation_seed", "make_strategy"]
