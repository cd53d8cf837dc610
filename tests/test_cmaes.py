"""pycma's own log of a run, rebuilt from the strategies a run's store keeps."""

import pickle

import numpy as np

from nestplast.store import RunStore
from nestplast.strategies import Budget, SearchSpace, make_strategy
from nestplast.strategies.cmaes import write_pycma_log

SPACE = SearchSpace(names=("a", "tau"), low=(-2.0, 1.0), high=(2.0, 100.0), log=(False, True), start=(1.0, 10.0))


def loss(theta) -> float:
    return (theta[0] - 0.5) ** 2 + np.log10(theta[1] / 30.0) ** 2


def test_pycma_log_follows_the_stored_generations(tmp_path):
    """One line per stored generation in pycma's files: its evaluations, the best loss it was
    told (computed again here from the same losses) and its mean in search coordinates."""
    store = RunStore.create(tmp_path / "run", experiment={}, seed=3)
    strategy = make_strategy("cmaes", SPACE, Budget(max_generations=5), population_size=6, seed=3)
    best, means = [], []
    while strategy.stop() is None:
        candidates = strategy.ask()
        losses = [loss(c.theta) for c in candidates]
        strategy.tell(candidates, losses)
        best.append(min(f for c, f in zip(candidates, losses) if c.index >= 0))  # pycma is not told the mean's
        means.append(strategy.es.mean.copy())
        store.record_generation(strategy.generation - 1, pickle.dumps(strategy), {})
    store.close()

    with RunStore.open(tmp_path / "run", read_only=True) as store:
        folder = write_pycma_log(store, tmp_path / "log")
    fit = np.loadtxt(folder / "fit.dat", comments="%")
    assert fit[:, 0].tolist() == [1, 2, 3, 4, 5]  # iterations
    assert fit[:, 1].tolist() == [6, 12, 18, 24, 30]  # evaluations
    assert np.allclose(fit[:, 5], best)
    xmean = np.loadtxt(folder / "xmean.dat", comments="%")
    assert np.allclose(xmean[:, 5:], means)
    assert np.all(xmean[:, 6] < 2.0)  # tau in log10 coordinates, as searched


def test_no_pycma_log_for_another_strategy(tmp_path):
    strategy = make_strategy("prior", SPACE, Budget(max_generations=1), population_size=4, seed=3)
    strategy.tell(candidates := strategy.ask(), [loss(c.theta) for c in candidates])
    with RunStore.create(tmp_path / "run", experiment={}, seed=3) as store:
        store.record_generation(0, pickle.dumps(strategy), {})
        assert write_pycma_log(store, tmp_path / "log") is None and not (tmp_path / "log").exists()


def test_popsize_factor_is_refused_as_the_population_size_is_nestplasts():
    """pycma multiplies popsize by ``popsize_factor``: given in cma_options, a run of population_size 3
    evaluated 6 candidates a generation while its headline and store said 3."""
    import pytest

    with pytest.raises(ValueError, match="popsize_factor: set by search.population_size"):
        make_strategy("cmaes", SPACE, Budget(max_generations=1), population_size=3, seed=3,
                      cma_options={"popsize_factor": 2})
    strategy = make_strategy("cmaes", SPACE, Budget(max_generations=1), population_size=3, seed=3,
                             cma_options={"tolfun": 1e-3})
    assert len([c for c in strategy.ask() if c.index >= 0]) == 3


def test_pycmas_logging_options_are_refused_as_its_logger_never_runs():
    """verb_log = 1 with verb_filenameprefix was accepted and wrote nothing: nestplast asks and tells
    pycma itself, and writes pycma's log from the store (report's outcmaes/)."""
    import pytest

    for option in ({"verb_log": 1}, {"verb_filenameprefix": "/tmp/cmalog_"}):
        with pytest.raises(ValueError, match=rf"{next(iter(option))}: set by nestplast \(pycma's own log is written "
                                             r"from the run's store by python -m nestplast.report RUN_DIR"):
            make_strategy("cmaes", SPACE, Budget(max_generations=1), population_size=3, seed=3, cma_options=option)
