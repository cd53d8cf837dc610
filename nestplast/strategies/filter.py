"""The filter: rule families by simulation-based inference (fSBI, Confavreux et al. 2023).

Round after round (one round = one generation of the engine): draw candidates from the current
proposal, let the problem simulate them and measure every metric, keep those whose metrics lie
inside the round's bounds, and refine the proposal with sbi:

- round 0: the prior, uniform in the search box (log10 for time constants, like ``prior``);
- later rounds: neural posterior estimation (sbi's ``NPE``, a masked autoregressive flow) trained
  on *all* simulations so far whose metrics are finite (theta in search coordinates, metrics
  through ``arcsinh``, which keeps their order and tames rates of hundreds of Hz), and sbi's
  ``RestrictionEstimator``, a classifier of valid vs invalid simulations (a blow-up, a failure, a
  NaN metric) whose rejections keep proposals away from the regions where the network runs away.

Which observation the posterior is conditioned on: the fSBI bounds are a box, not a point, and
the family is everything inside it. Conditioning on the box's centre would collapse the proposal
onto the few rules that hit the centre, and the centre of e.g. twelve intervals need not be an
activity any network shows. So every candidate gets its own target: the metrics of a simulation
drawn from the round's pool (the accepted candidates so far; while there are fewer than
``MIN_TARGETS``, the ``MIN_TARGETS`` with the smallest violation), clipped into the round's bounds.
The proposal is then the mixture of p(theta | x) over accepted activity, i.e. p(theta | x inside
the bounds). Simulations of later rounds enter the training set as if drawn from the prior (as
sbi's truncated sequential NPE does): this concentrates the flow where the filter looks, and the
filter decides acceptance by simulation, never by the posterior.

The strategy holds only numpy data (theta, metrics, rounds); the flow and the classifier are
trained afresh in every :meth:`Filter.ask` from a seed derived from (run seed, round), so the
pickled strategy is small and a resumed run asks exactly the candidates of the uninterrupted one.
sbi and torch are imported here only, when a round needs them (the ``families`` extra).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType

import numpy as np

from ..errors import UserError
from ..tasks import Candidate
from . import Budget, SearchSpace, generation_seed
from .prior import PriorSampling

MIN_TARGETS = 10  # targets of a round before enough candidates are accepted
MIN_VALID = 10  # simulations with finite metrics before a flow is trained (the prior until then)
DRAWS, TRIES = 16, 4  # posterior draws per candidate and try, before the box or the classifier is given up
Constraints = dict[str, tuple[float, float]]


class MissingExtraError(UserError):
    """sbi or torch is not installed."""


def require_sbi() -> tuple[ModuleType, ModuleType]:
    """``(torch, sbi)``, or a :class:`MissingExtraError` saying how to install them."""
    try:
        import sbi
        import torch
    except ImportError as err:
        from ..kernel import nest_has_mpi

        if nest_has_mpi():  # jobs/build-nest-mpi.sh's NEST: the extra would bring the PyPI NEST over it
            how = ("pip install torch --index-url https://download.pytorch.org/whl/cpu && pip install 'sbi>=0.27' "
                   "(not the extra '.[families]': it would install the PyPI NEST, without MPI, over this one)")
        else:
            how = "pip install -e '.[families]' (./setup.sh installs it)"
        raise MissingExtraError(f"the filter needs sbi and torch ({err}); install them: {how}") from None
    return torch, sbi


def round_constraints(base: Mapping[str, Sequence[float]], schedule: Sequence[Mapping], generation: int) -> Constraints:
    """The bounds in force in round ``generation``: ``base``, then every schedule entry whose
    ``round`` is at most ``generation``, in order, each adding metrics or replacing bounds."""
    out = {k: (float(v[0]), float(v[1])) for k, v in base.items()}
    for entry in sorted(schedule, key=lambda e: e["round"]):
        if entry["round"] <= generation:
            out.update({k: (float(v[0]), float(v[1])) for k, v in entry["constraints"].items()})
    return out


def inside(features: Mapping[str, float], constraints: Mapping[str, Sequence[float]]) -> bool:
    """Whether every constrained metric is finite and inside its ``[low, high]``."""
    for name, (lo, hi) in constraints.items():
        x = float(features.get(name, math.nan))
        if not (math.isfinite(x) and lo <= x <= hi):
            return False
    return True


class Filter(PriorSampling):
    """The fSBI filter as an engine strategy (see the module's doc). The engine calls
    :meth:`observe` with every candidate's metrics (the problem's ``features``) before
    :meth:`tell`. ``constraints`` and ``schedule`` give each round's bounds
    (:func:`round_constraints`)."""

    step, shows_loss = "round", False  # the loss is only the distance outside the bounds: acceptance says more

    def __init__(self, space: SearchSpace, budget: Budget, *, population_size: int, seed: int,
                 constraints: Mapping[str, Sequence[float]], schedule: Sequence[Mapping] = (),
                 max_epochs: int = 200, restrict: bool = True):
        super().__init__(space, budget, population_size=population_size, seed=seed)
        self.constraints = {k: tuple(v) for k, v in constraints.items()}
        self.schedule = [dict(e) for e in schedule]
        self.max_epochs, self.restrict = max_epochs, restrict
        # the observation: every metric any round constrains, in a fixed order
        self.metrics = sorted(set(self.constraints).union(*(e["constraints"] for e in self.schedule)))
        self.z = np.zeros((0, space.size))  # every candidate so far, in search coordinates
        self.x = np.zeros((0, len(self.metrics)))  # its metrics (NaN: invalid)
        self.rounds = np.zeros(0, dtype=int)
        self.accepted = np.zeros(0, dtype=bool)
        self._observed: dict[int, Mapping[str, float]] = {}
        self.proposal_note = ""  # how the last round was drawn where not by the flow alone (describe)

    def bounds(self, generation: int) -> Constraints:
        return round_constraints(self.constraints, self.schedule, generation)

    # ------------------------------------------------------------------ ask / observe / tell

    def ask(self) -> list[Candidate]:
        valid = int(np.isfinite(self.x).all(axis=1).sum())
        # how this round was drawn, where it is not the flow's own proposal: the progress line says it
        self.proposal_note = ""
        if self.generation == 0 or valid < MIN_VALID:
            if self.generation > 0:
                self.proposal_note = (f"drawn from the prior: {valid} simulations so far gave finite metrics, "
                                      f"a flow needs {MIN_VALID}")
            return super().ask()  # the prior (also while too few simulations gave finite metrics)
        z, clipped = self._propose()
        if clipped:
            self.proposal_note = (f"{clipped} of {len(z)} clipped into the box: every draw for them left it"
                                  f"{' or was refused' if self.restrict else ''} (an undertrained flow: more "
                                  "filter.max_epochs)")
        self._asked_at = time.perf_counter()
        return self.space.candidates(z)

    def observe(self, candidates: Sequence[Candidate], features: Sequence[Mapping[str, float]]) -> None:
        """Every candidate's metrics (means over its trials; NaN where it blew up or failed)."""
        self._observed = {c.index: f for c, f in zip(candidates, features)}

    def tell(self, candidates: Sequence[Candidate], losses: Sequence[float]) -> None:
        if len(self._observed) != len(candidates):
            raise RuntimeError("the filter needs the problem's features: the engine calls observe() before tell()")
        bounds = self.bounds(self.generation)
        rows = [self._observed[c.index] for c in candidates]
        self.z = np.vstack([self.z, [self.space.to_search(c.theta) for c in candidates]])
        self.x = np.vstack([self.x, [[float(f.get(m, math.nan)) for m in self.metrics] for f in rows]])
        self.rounds = np.concatenate([self.rounds, np.full(len(candidates), self.generation)])
        self.accepted = np.concatenate([self.accepted, [inside(f, bounds) for f in rows]])
        self._observed = {}
        super().tell(candidates, losses)

    def acceptance(self) -> list[float]:
        """The fraction accepted in each round so far (under that round's bounds)."""
        return [float(self.accepted[self.rounds == r].mean()) for r in range(self.generation)]

    def describe(self) -> str:
        last = self.acceptance()[-1:] or [math.nan]
        note = getattr(self, "proposal_note", "")  # a strategy pickled before it had one: none
        return (f"accepted so far {int(self.accepted.sum()):4d}, each by its round's bounds (last round "
                f"{100 * last[0]:5.1f} %{'; ' + note if note else ''})")

    # ------------------------------------------------------------------ the proposal

    def _propose(self) -> tuple[np.ndarray, int]:
        """The round's candidates in search coordinates, and how many of them were clipped into the box."""
        torch, _ = require_sbi()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small flows train fastest on one thread; rank 0 also simulates
        try:
            with warnings.catch_warnings():
                # sbi warns of unconverged epochs (max_epochs is the user's budget), leakage out of
                # the box and batch sizes, all handled here
                warnings.simplefilter("ignore", UserWarning)
                return self._train_and_sample(torch)
        finally:
            torch.set_num_threads(threads)

    def _train_and_sample(self, torch) -> tuple[np.ndarray, int]:
        from sbi.inference import NPE
        from sbi.utils import BoxUniform, RestrictionEstimator

        seed = generation_seed(self.seed, self.generation)
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        low, high = (torch.as_tensor(b, dtype=torch.float32) for b in self.space.search_bounds())
        prior = BoxUniform(low, high)
        valid = np.isfinite(self.x).all(axis=1)
        z = torch.as_tensor(self.z, dtype=torch.float32)
        x = torch.as_tensor(np.arcsinh(self.x), dtype=torch.float32)
        quiet = contextlib.redirect_stdout(io.StringIO())  # sbi prints its epochs

        keep = None
        if self.restrict and min(valid.sum(), (~valid).sum()) >= 2 and valid.size >= 2 * MIN_VALID:
            with quiet:
                restriction = RestrictionEstimator(prior=prior, model="mlp", hidden_features=50)
                restriction.append_simulations(z, x)
                restriction.train(training_batch_size=_batch(valid.size), max_num_epochs=self.max_epochs)
                restricted = restriction.restrict_prior()

            def keep(theta):  # the classifier's decision: -inf outside the restricted prior
                return torch.isfinite(restricted.log_prob(theta, norm_restricted_prior=False))
        with quiet:
            npe = NPE(prior=prior, density_estimator="maf", show_progress_bars=False, tracker=NoTracking())
            npe.append_simulations(z[valid], x[valid])
            npe.train(training_batch_size=_batch(int(valid.sum())), max_num_epochs=self.max_epochs,
                      force_first_round_loss=True)
            posterior = npe.build_posterior()

        targets = self._targets(rng)
        chosen = torch.full((self.population_size, self.space.size), math.nan)
        open_ = torch.ones(self.population_size, dtype=torch.bool)
        with quiet:
            for _ in range(TRIES):
                # without sbi's own rejection, which draws thousands per target to fill the box
                draws = posterior.sample_batched((DRAWS,), x=targets[open_], reject_outside_prior=False,
                                                 show_progress_bars=False)  # (DRAWS, open targets, d)
                good = ((draws >= low) & (draws <= high)).all(dim=-1)
                if keep is not None:
                    good &= keep(draws.reshape(-1, self.space.size)).reshape(good.shape)
                found = good.any(dim=0)
                first = torch.argmax(good.int(), dim=0)  # the first good draw of each target
                where = torch.nonzero(open_).squeeze(1)
                chosen[where[found]] = draws[first[found], torch.arange(len(where))[found]]
                open_[where[found]] = False
                if not open_.any():
                    break
            # a target whose every draw left the box or was refused: its first draw, clipped into the box
            chosen[open_] = torch.clamp(draws[0, ~found], low, high)
        return chosen.detach().double().numpy(), int(open_.sum())

    def _targets(self, rng: np.random.Generator):
        """One observation per candidate: the metrics of a simulation from the pool (see the
        module's doc), clipped into this round's bounds, through arcsinh."""
        import torch

        bounds = self.bounds(self.generation)
        constrained = np.array([m in bounds for m in self.metrics])
        lo = np.array([bounds.get(m, (-np.inf, np.inf))[0] for m in self.metrics])
        hi = np.array([bounds.get(m, (-np.inf, np.inf))[1] for m in self.metrics])
        pool = self.x[np.isfinite(self.x).all(axis=1)]
        clipped = np.clip(pool, lo, hi)
        # violation of each pooled simulation under this round's bounds (relative, as the loss)
        scale = np.where(np.isfinite(lo) & (lo != 0), np.abs(lo), 1.0)
        distance = np.where(constrained, np.abs(pool - clipped) / scale, 0.0).sum(axis=1)
        n = max(int((distance == 0).sum()), min(MIN_TARGETS, len(pool)))
        best = clipped[np.argsort(distance, kind="stable")[:n]]
        picks = best[rng.integers(0, len(best), size=self.population_size)]
        return torch.as_tensor(np.arcsinh(picks), dtype=torch.float32)


class NoTracking:
    """sbi's tracker protocol, doing nothing: sbi's default writes TensorBoard logs into
    ./sbi-logs of whatever directory the run was started from."""

    log_dir = None

    def log_metric(self, name, value, step=None) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_params(self, params) -> None:
        pass

    def add_figure(self, name, figure, step=None) -> None:
        pass

    def flush(self) -> None:
        pass


def _batch(n: int) -> int:
    # a fifth of the data: few steps per epoch (fast), and sbi, which drops incomplete batches in
    # places, still gets several
    return int(max(2, min(200, n // 5)))


__all__ = ["Filter", "round_constraints", "inside", "require_sbi", "MissingExtraError"]
