"""CMA-ES: a thin wrapper on pycma's ``CMAEvolutionStrategy``.

The run's limits map onto pycma's own options (``max_generations`` -> ``maxiter``,
``max_evaluations`` -> ``maxfevals``, ``max_wall_s`` -> ``timeout``, ``target_loss`` ->
``ftarget``), any other pycma option can be given (``search.cma_options``), and
:meth:`CMAES.stop` is pycma's ``es.stop()``: its dictionary (pycma's own criteria such as
``tolfun`` or ``tolflatfitness`` included) is the run's stop reason.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..tasks import Candidate
from ..values import is_number
from . import Budget, SearchSpace, generation_seed

if TYPE_CHECKING:
    from ..store import RunStore

# The pycma options that the experiment's own keys or nestplast set: cma_options may not set them.
OWNED_OPTIONS = {
    "bounds": "the rule's parameter bounds", "CMA_stds": "search.sigma0", "maxstd_boundrange": "search.sigma0",
    "popsize": "search.population_size", "popsize_factor": "search.population_size (pycma multiplies it by this)",
    "seed": "seed", "maxiter": "search.max_generations",
    "maxfevals": "search.max_evaluations", "timeout": "search.max_wall_s", "ftarget": "search.target_loss",
    "randn": "nestplast (a sampler that a resumed run continues exactly)",
    "verbose": "nestplast (pycma's output is off; the run's progress lines and store say what it does)",
    # nestplast asks and tells pycma itself, so pycma's logger never runs: its log is rebuilt from the store
    **{name: "nestplast (pycma's own log is written from the run's store by python -m nestplast.report RUN_DIR, "
             "into RUN_DIR/outcmaes)"
       for name in ("verb_append", "verb_disp", "verb_disp_overwrite", "verb_filenameprefix", "verb_log",
                    "verb_log_expensive", "verb_plot", "verb_time")},
}


TRIAL_GENERATIONS = 3  # generations of made-up losses that pycma runs with a user's cma_options before a run


def check_cma_options(options: dict) -> None:
    """Refuse (ValueError starting with the option's name) an option pycma does not know, one of
    :data:`OWNED_OPTIONS`, or a value that is not a number, true/false or a string."""
    import difflib

    import cma

    known = cma.CMAOptions()
    for name, value in options.items():
        if name in OWNED_OPTIONS:
            raise ValueError(f"{name}: set by {OWNED_OPTIONS[name]}, not here")
        if not (is_number(value) or isinstance(value, (bool, str))):  # per-parameter lists would be in search coordinates
            raise ValueError(f"{name}: expected a number, true/false or a string pycma evaluates (e.g. '1e-3 * N'), "
                             f"got {value!r}")
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{name}: not an option of pycma {cma.__version__}{hint}; cma.CMAOptions() lists them")


def default_population_size(n_parameters: int) -> int:
    """pycma's default population for ``n_parameters`` (its ``popsize`` option, evaluated as pycma does)."""
    import cma

    return int(cma.CMAOptions().eval("popsize", loc={"N": n_parameters}))


class SeededNormal:
    """pycma's source of normal samples, reseeded every generation. pycma's default binds
    ``np.random.randn``, whose RandomState is copied when the optimiser is pickled: a resumed
    optimiser would not follow ``np.random.seed``. This one travels inside the pickle."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAES:
    """CMA-ES over a :class:`SearchSpace`: bounds, log10 coordinates where the space says so, and
    ``sigma0`` as a fraction of each parameter's range. With ``evaluate_mean`` the distribution's
    mean is evaluated too every generation (candidate -1), for the record; pycma is told only
    its own samples."""

    step, shows_loss = "gen", True  # the progress line's words (see Strategy)

    def __init__(self, space: SearchSpace, budget: Budget, *, population_size: int, seed: int,
                 sigma0: float = 0.3, evaluate_mean: bool = True, cma_options: dict | None = None):
        import cma

        check_cma_options(cma_options or {})

        low, high = space.search_bounds()
        stds = (high - low) * sigma0
        # pycma's per-coordinate scaling fails in one dimension (CMA-ES/pycma#302), including the
        # one it applies itself to keep the step below a third of the range: there, one sigma,
        # unlimited. Elsewhere that limit is raised to sigma0 where sigma0 is larger: a sigma0 of 0.5
        # or 0.9 sampled with a step of a third, as if the option did nothing
        scaled = ({"CMA_stds": stds.tolist(), "maxstd_boundrange": max(1 / 3, sigma0)} if space.size > 1
                  else {"maxstd_boundrange": math.inf})
        options = {
            "bounds": [low.tolist(), high.tolist()], **scaled,
            "popsize": population_size, "seed": seed, "verbose": -9, "randn": SeededNormal(seed),
            # A generation in which most candidates score the same (every rule fails, or the rule
            # has no effect, e.g. a learning rate of 0) ends the run at once: more of them cannot help.
            "tolflatfitness": 0,
            **self._limits(budget),
            **(cma_options or {}),
        }
        self.space, self.seed, self.evaluate_mean, self.budget = space, seed, evaluate_mean, budget
        sigma = 1.0 if space.size > 1 else float(stds[0])
        x0 = space.to_search(space.start).tolist()
        if cma_options:
            self.es = self._start_with(cma_options, x0, sigma, options)
        else:
            self.es = cma.CMAEvolutionStrategy(x0, sigma, options)
        self._asked: list[np.ndarray] = []
        self.mean_loss: float | None = None  # the last generation's mean's (candidate -1)

    @staticmethod
    def _start_with(cma_options: dict, x0: list[float], sigma: float, options: dict):
        """pycma's strategy with a user's ``cma_options`` among ``options``; a ValueError naming them
        for what pycma cannot use: an error as it evaluates them, a string it will not evaluate (it
        stays a string: CMA_elitist = "abc" would be true), a failure in its first generations."""
        import cma

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                es = cma.CMAEvolutionStrategy(x0, sigma, options)
            except Exception as err:
                raise ValueError(f"pycma could not start with {cma_options}: {type(err).__name__}: {err}") from err
        for warning in caught:
            if "is not a safe string" in str(warning.message):
                raise ValueError(f"pycma could not evaluate a value of {cma_options}: {warning.message}")
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        # pycma checks some options only in tell (CMA_mu above the population), some in a later ask
        # (mean_shift_line_samples with a population of 2 failed at generation 1, on every resume too)
        trial = copy.deepcopy(es)
        try:
            for _ in range(TRIAL_GENERATIONS):
                points = trial.ask()
                trial.tell(points, [float(k) for k in range(len(points))])
        except Exception as err:
            raise ValueError(f"pycma could not run its first {TRIAL_GENERATIONS} generations with {cma_options}: "
                             f"{type(err).__name__}: {err}") from err
        return es

    @staticmethod
    def _limits(budget: Budget) -> dict:
        return {"maxiter": budget.max_generations or math.inf, "maxfevals": budget.max_evaluations or math.inf,
                "timeout": budget.max_wall_s or math.inf,
                "ftarget": -math.inf if budget.target_loss is None else budget.target_loss}

    def set_budget(self, budget: Budget) -> None:
        """New limits for a resumed run (e.g. more generations)."""
        self.budget = budget
        self.es.opts.set(self._limits(budget))
        self.es.stop(check_in_same_iteration=True)  # pycma re-checks once per iteration unless told

    @property
    def generation(self) -> int:
        return self.es.countiter

    def ask(self) -> list[Candidate]:
        self.es.opts["randn"].reseed(generation_seed(self.seed, self.generation))
        self._asked = self.es.ask()
        # The mean as pycma's result gives it (xfavorite): mapped into the bounds, as ask() maps its
        # samples; the raw mean may lie outside them.
        mean = [self.es.result.xfavorite] if self.evaluate_mean else []
        return self.space.candidates([*self._asked, *mean], [*range(len(self._asked)), *([-1] if mean else [])])

    def tell(self, candidates: Sequence[Candidate], losses: Sequence[float]) -> None:
        by_index = {c.index: loss for c, loss in zip(candidates, losses)}
        self.es.tell(self._asked, [float(by_index[k]) for k in range(len(self._asked))])
        self._asked = []
        self.mean_loss = by_index.get(-1)  # pycma is not told it, so its ftarget never sees it

    def stop(self) -> dict | None:
        reasons = dict(self.es.stop())
        # The run's best may be the mean (the report names it): it meets target_loss as a sample would
        mean_loss, target = getattr(self, "mean_loss", None), self.budget.target_loss
        if mean_loss is not None and target is not None and mean_loss <= target:
            reasons.setdefault("ftarget", target)
        return reasons or None

    @property
    def wall_s(self) -> float:
        """Seconds spent between ask and tell, summed over resumed sessions: what pycma's
        ``timeout`` (``search.max_wall_s``) compares."""
        return float(self.es.timer.elapsed)

    @property
    def step_size(self) -> float:
        """The sampling's standard deviation over each parameter's range, averaged: the step as
        sigma0 means it (pycma's sigma multiplies CMA_stds, sigma0 x each range, and starts at 1
        whatever sigma0 is)."""
        low, high = self.space.search_bounds()
        return float(np.mean(self.es.stds / (high - low)))

    def describe(self) -> str:
        return f"step {self.step_size:8.3g}"


def write_pycma_log(store: RunStore, folder: str | os.PathLike[str]) -> Path | None:
    """pycma's own log of a CMA-ES run (``cma.CMADataLogger``'s files), rebuilt from the strategy
    that ``store`` (a :class:`~nestplast.store.RunStore`) keeps after every generation, into
    ``folder``: ``cma.plot(folder)`` then draws pycma's standard figure (losses, sigma, the mean,
    the standard deviations and principal axes per coordinate). pycma's coordinates are the search
    coordinates, numbered in the order of the run's parameter names, log10 for time constants.
    None (nothing written) for another strategy or a run without a complete generation."""
    import cma

    logger = None
    for generation in store.generations():
        strategy = store.load_strategy(generation["generation"])
        if not isinstance(strategy, CMAES):
            return None
        if logger is None:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            logger = cma.CMADataLogger(f"{folder}/").register(strategy.es)
        logger.add(strategy.es)
    return None if logger is None else Path(folder)
