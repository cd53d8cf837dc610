"""Sampling from the prior: every generation, independent draws from the search box (uniform,
log-uniform for log-space parameters). No learning: a baseline for the search, and the first
round of a filter."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..tasks import Candidate
from . import Budget, SearchSpace, generation_seed


class PriorSampling:
    """Independent draws from the search box, ``population_size`` per generation (module doc)."""

    step, shows_loss = "gen", True  # the progress line's words (see Strategy)

    def __init__(self, space: SearchSpace, budget: Budget, *, population_size: int, seed: int):
        self.space, self.budget, self.population_size, self.seed = space, budget, population_size, seed
        self.generation = 0
        self.evaluations = 0
        self.best = np.inf
        self.wall_s = 0.0  # spent between ask and tell, summed over resumed sessions
        self._asked_at: float | None = None

    def set_budget(self, budget: Budget) -> None:
        self.budget = budget

    def ask(self) -> list[Candidate]:
        rng = np.random.default_rng(generation_seed(self.seed, self.generation))
        low, high = self.space.search_bounds()
        z = rng.uniform(low, high, size=(self.population_size, self.space.size))
        self._asked_at = time.perf_counter()
        return self.space.candidates(z)

    def tell(self, candidates: Sequence[Candidate], losses: Sequence[float]) -> None:
        if self._asked_at is not None:
            self.wall_s += time.perf_counter() - self._asked_at
            self._asked_at = None
        self.generation += 1
        self.evaluations += len(candidates)
        self.best = min([self.best, *map(float, losses)])

    def stop(self) -> dict | None:
        b = self.budget
        reasons = {
            "maxiter": b.max_generations is not None and self.generation >= b.max_generations,
            # as pycma's maxfevals (countevals - 1 >= maxfevals): both strategies stop at the same count
            "maxfevals": b.max_evaluations is not None and self.evaluations - 1 >= b.max_evaluations,
            "timeout": b.max_wall_s is not None and self.wall_s >= b.max_wall_s,
            "ftarget": b.target_loss is not None and self.best <= b.target_loss,
        }
        limits = {"maxiter": b.max_generations, "maxfevals": b.max_evaluations, "timeout": b.max_wall_s,
                  "ftarget": b.target_loss}
        return {k: limits[k] for k, hit in reasons.items() if hit} or None

    def describe(self) -> str:
        return f"prior draws {self.evaluations:5d}"
