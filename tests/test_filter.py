"""The filter (rule families by simulation-based inference) on a toy simulator whose accepted
region is known exactly, then on NEST: the family found lies inside the region and spans it,
acceptance rises over the prior's, a resumed run asks the same candidates, re-filtering from the
store keeps exactly the subset that tighter bounds allow, and bad constraints are refused."""

import math
import pickle

import numpy as np
import pytest

from nestplast import engine
from nestplast.families import candidate_features, candidate_loss
from nestplast.parallel import Transport
from nestplast.store import RunStore
from nestplast.strategies import Budget, SearchSpace, make_strategy
from nestplast.strategies.filter import round_constraints
from nestplast.tasks import Evaluation, Task

pytest.importorskip("sbi", reason="the filter needs sbi and torch: pip install -e '.[families]' (setup.sh does)")

# x, y in [-2, 2], tau in [1, 100] (log), u in [-2, 2] which no metric depends on
SPACE = SearchSpace(names=("x", "y", "tau", "u"), low=(-2.0, -2.0, 1.0, -2.0), high=(2.0, 2.0, 100.0, 2.0),
                    log=(False, False, True, False), start=(0.0, 0.0, 10.0, 0.0))
# accepted: |x + y| <= 0.5, 0 <= x - y <= 1.5, 10 <= tau <= 100: a rotated rectangle x [1, 2] in
# log10 tau x all of u; x > 1.2 blows up (no metric), a region the rectangle does not reach
BOUNDS = {"a": (-0.5, 0.5), "b": (0.0, 1.5), "c": (1.0, 2.0)}
ROUNDS, PER_ROUND = 4, 150


class Trial:
    def __init__(self, index, seed):
        self.index, self.seed = index, seed


def toy_metrics(theta):
    x, y, tau, _ = theta
    if x > 1.2:
        return None  # a blow-up
    return {"a": x + y, "b": x - y, "c": math.log10(tau)}


def truly_inside(theta, bounds=BOUNDS):
    m = toy_metrics(theta)
    return m is not None and all(lo <= m[k] <= hi for k, (lo, hi) in bounds.items())


class Toy:
    """The engine's problem protocol, with the filter's loss and features (nestplast.families)."""

    def __init__(self, schedule=()):
        self.schedule, self.calls = list(schedule), 0

    def tasks(self, generation, candidates):
        return [Task(generation, c.index, Trial(0, generation), c.theta) for c in candidates]

    def evaluate(self, task):
        self.calls += 1
        m = toy_metrics(task.theta)
        e = Evaluation(task.generation, task.candidate, 0, list(task.theta), task.trial.seed,
                       metrics=m or {}, loss=0.0 if m else 200.0, status="ok" if m else "blowup")
        return e

    def loss(self, candidate, evaluations):
        return candidate_loss(evaluations, round_constraints(BOUNDS, self.schedule, evaluations[0].generation))

    def features(self, candidate, evaluations):
        return candidate_features(evaluations)


def run_toy(path, rounds=ROUNDS, schedule=(), store=None, strategy=None):
    store = store or RunStore.create(path, experiment={}, seed=5)
    strategy = strategy or make_strategy("filter", SPACE, Budget(max_generations=rounds), population_size=PER_ROUND,
                                         seed=5, constraints=BOUNDS, schedule=schedule, max_epochs=60)
    engine.run(Toy(schedule), strategy, store, Transport())
    return strategy, store


def accepted_thetas(store, bounds=BOUNDS):
    return [e.theta for e in store.evaluations() if e.status == "ok" and all(
        lo <= e.metrics[k] <= hi for k, (lo, hi) in bounds.items())]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return run_toy(tmp_path_factory.mktemp("toy") / "run")


def test_the_family_lies_inside_the_region_and_spans_it(toy_run):
    strategy, store = toy_run
    acceptance = strategy.acceptance()
    prior = 0.5 * 1.0 * 0.5 / 16  # the rectangle's area / the (x, y) box, times half of log10 tau
    assert acceptance[0] < 0.06 and acceptance[-1] > 4 * prior and acceptance[-1] > acceptance[0]
    family = accepted_thetas(store)
    assert len(family) == int(strategy.accepted.sum()) >= 40
    assert all(truly_inside(theta) for theta in family)
    # rejected candidates are all outside: nothing inside the region was refused
    others = [e.theta for e in store.evaluations() if e.theta not in family]
    assert not any(truly_inside(theta) for theta in others)
    z = np.array([SPACE.to_search(t) for t in family])
    a, b = z[:, 0] + z[:, 1], z[:, 0] - z[:, 1]
    # the accepted points reach across most of every extent of the region, u's whole range included
    assert np.ptp(a) > 0.7 and np.ptp(b) > 1.0 and np.ptp(z[:, 2]) > 0.7 and np.ptp(z[:, 3]) > 3.0
    # the classifier keeps the proposals out of the blow-up region: far fewer than the prior's 20 %
    late = [e for e in store.evaluations() if e.generation == ROUNDS - 1]
    assert np.mean([e.status == "blowup" for e in late]) < 0.1


def test_a_resumed_filter_asks_the_same_candidates(tmp_path, toy_run):
    _, full = toy_run
    partial_strategy, partial = run_toy(tmp_path / "part", rounds=2)
    resumed = pickle.loads(partial.load_optimizer(1))
    resumed.set_budget(Budget(max_generations=3))
    run_toy(None, store=partial, strategy=resumed)
    asked = [(e.generation, e.candidate, tuple(e.theta)) for e in partial.evaluations()]
    uninterrupted = [(e.generation, e.candidate, tuple(e.theta)) for e in full.evaluations() if e.generation < 3]
    assert asked == uninterrupted
