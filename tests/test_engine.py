"""The engine and its strategies on a problem with a known answer (no simulator needed): pycma's
stop criteria end the run and are recorded, a second strategy plugs into the same loop, and a
run interrupted in the middle of a generation resumes to exactly the uninterrupted run."""

import math

import numpy as np
import pytest
from helpers import OPTIMUM, SPACE, Sphere, TrialStandIn

from nestplast import engine
from nestplast.parallel import Transport
from nestplast.store import RunStore
from nestplast.strategies import Budget, SearchSpace, make_strategy
from nestplast.tasks import Evaluation, Task, by_candidate


def run(tmp_path, name, budget, strategy="cmaes", problem=None, store=None):
    """The engine's run and its store, open (the caller closes it); closed if the run raises, as the
    search closes its store however it ends."""
    store = store or RunStore.create(tmp_path / name, experiment={}, seed=3)
    chosen = make_strategy(strategy, SPACE, budget, population_size=6, seed=3)
    try:
        return engine.run(problem or Sphere(), chosen, store, Transport()), store
    except BaseException:
        store.close()
        raise


def rows(store):
    return [(e.generation, e.candidate, e.trial, e.theta, e.loss) for e in store.evaluations()]


def test_cmaes_finds_the_optimum_and_records_pycmas_stop(tmp_path):
    outcome, store = run(tmp_path, "cma", Budget(max_generations=60))
    with store:
        assert outcome.stop == store.stop() and set(outcome.stop) & {"maxiter", "tolfun", "tolx"}
        best = np.array(outcome.best_theta)
        np.testing.assert_allclose(best[:2], OPTIMUM[:2], atol=0.05)
        assert abs(np.log10(best[2]) - 1.0) < 0.05
        assert outcome.generations == store.counts()["generations"] <= 60
        # the mean is evaluated every generation (candidate -1), for the record
        assert {e.candidate for e in store.evaluations(generation=0)} == {-1, 0, 1, 2, 3, 4, 5}


def test_the_evaluated_mean_stays_inside_the_box():
    """The optimum beyond the box's corner pulls pycma's mean out of it; the mean that is evaluated
    (candidate -1) is mapped into the box, as the samples are, so that no rule outside the bounds is
    run or reported as best."""
    strategy = make_strategy("cmaes", SPACE, Budget(max_generations=25), population_size=6, seed=3)
    low, high = SPACE.search_bounds()
    outside = 0
    while strategy.stop() is None:
        z_mean = strategy.es.mean.copy()
        outside += bool(np.any(z_mean < low) or np.any(z_mean > high))
        candidates = strategy.ask()
        for c in candidates:
            z = SPACE.to_search(c.theta)
            assert np.all(z >= low - 1e-12) and np.all(z <= high + 1e-12), (c.index, c.theta)
        strategy.tell(candidates, [-float(np.sum(SPACE.to_search(c.theta))) for c in candidates])
    assert outside > 0, "the mean never left the box: the test shows nothing"


def test_pycma_options_reach_pycma_and_its_stop():
    """``cma_options``: a loosened criterion of pycma's own ends the run, by its name, before the
    default one would; the options are in pycma's, evaluated as pycma evaluates them."""

    def converge(**options):
        strategy = make_strategy("cmaes", SPACE, Budget(max_generations=200), population_size=6, seed=3, **options)
        sphere = Sphere()
        while strategy.stop() is None:
            candidates = strategy.ask()
            strategy.tell(candidates, [sphere.evaluate(Task(0, c.index, TrialStandIn(0, 0), c.theta)).loss for c in candidates])
        return strategy

    default, loose = converge(), converge(cma_options={"tolfun": 0.05, "CMA_diagonal": True})
    assert loose.stop() == {"tolfun": 0.05} and loose.generation < default.generation
    assert loose.es.opts["CMA_diagonal"] is True
    assert make_strategy("cmaes", SPACE, Budget(max_generations=5), population_size=6, seed=3,
                         cma_options={"tolx": "1e-3 * N"}).es.opts["tolx"] == pytest.approx(3e-3)  # N = 3 parameters


def test_cmaes_searches_a_single_parameter():
    """One searched parameter (e.g. a rule without its forgetting term): pycma's per-coordinate
    scaling fails in 1-D, so the strategy gives it one sigma instead."""
    space = SearchSpace(("a",), (-2.0,), (2.0,), (False,), (0.0,))
    strategy = make_strategy("cmaes", space, Budget(max_generations=30), population_size=8, seed=1)
    while strategy.stop() is None:
        candidates = strategy.ask()
        strategy.tell(candidates, [(c.theta[0] - 0.7) ** 2 for c in candidates])
    assert strategy.es.result.xbest[0] == pytest.approx(0.7, abs=1e-3)
    # a flat, noisy loss grows the step, which pycma's own step limit cannot handle in 1-D
    noisy = make_strategy("cmaes", space, Budget(max_generations=60), population_size=8, seed=1)
    rng = np.random.default_rng(0)
    while noisy.stop() is None:
        candidates = noisy.ask()
        noisy.tell(candidates, rng.random(len(candidates)).tolist())
    assert noisy.generation == 60


@pytest.mark.parametrize("budget, reason", [
    (Budget(max_generations=3), "maxiter"),
    (Budget(max_evaluations=12), "maxfevals"),
    (Budget(target_loss=0.5), "ftarget"),
    (Budget(max_wall_s=1e-9), "timeout"),
])
def test_every_limit_maps_onto_a_stop_reason(tmp_path, budget, reason):
    for strategy in ("cmaes", "prior"):
        outcome, store = run(tmp_path, f"{strategy}-{reason}", budget, strategy=strategy)
        with store:
            assert reason in outcome.stop and reason in store.stop(), (strategy, outcome.stop)
        if reason == "maxiter":
            assert outcome.generations == 3
        if reason == "maxfevals":  # as pycma stops: once the candidates exceed 12 (prior sampling stopped at 12)
            assert outcome.generations == 3, (strategy, outcome)
        if reason == "ftarget":
            assert outcome.best_loss <= 0.5 + 0.01


def test_prior_sampling_draws_inside_the_box_log_uniform(tmp_path):
    outcome, store = run(tmp_path, "prior", Budget(max_generations=40), strategy="prior")
    with store:
        thetas = np.array([e.theta for e in store.evaluations() if e.trial == 0])
    assert len(thetas) == 40 * 6 and outcome.stop == {"maxiter": 40}
    assert np.all(thetas >= SPACE.low) and np.all(thetas <= SPACE.high)
    # log-uniform: about half the draws of tau below the geometric middle, 10
    assert 0.4 < np.mean(thetas[:, 2] < 10.0) < 0.6
    assert 0.4 < np.mean(thetas[:, 0] < 0.0) < 0.6


def test_flat_generation_stops_at_once(tmp_path):
    class Flat(Sphere):
        def evaluate(self, task):
            e = super().evaluate(task)
            e.loss = 7.0
            return e
    outcome, store = run(tmp_path, "flat", Budget(max_generations=10), problem=Flat())
    store.close()
    assert "tolflatfitness" in outcome.stop and outcome.generations == 1


@pytest.mark.parametrize("strategy, per_generation", [("cmaes", 14), ("prior", 12)])  # (6 [+ mean]) x 2 trials
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, strategy, per_generation):
    budget = Budget(max_generations=5)
    whole, whole_store = run(tmp_path, "whole", budget, strategy=strategy)
    with pytest.raises(KeyboardInterrupt):  # in the middle of generation 2
        run(tmp_path, "cut", budget, strategy=strategy, problem=Sphere(interrupt_after=2 * per_generation + 5))
    with whole_store, RunStore.open(tmp_path / "cut") as store:
        assert store.last_complete_generation() == 1 and len(store.evaluations(generation=2)) == 5
        before = rows(store)
        resumed = store.load_strategy(1)
        problem = Sphere()
        outcome = engine.run(problem, resumed, store, Transport())
        assert problem.calls == 3 * per_generation - 5, "the 5 evaluations recorded before the interruption are reused"
        assert set(map(str, before)) <= set(map(str, rows(store)))
        assert rows(store) == rows(whole_store) and outcome.best_loss == whole.best_loss
        assert math.isclose(outcome.best_loss, min(g["best_loss"] for g in store.generations()))


def test_a_stored_evaluation_of_other_parameters_is_never_reused(tmp_path):
    """A resume that asks other candidates than the run recorded (a filter run killed in its first
    round and resumed by the search; a pycma that draws otherwise; here: another seed) reused the
    recorded evaluations as the new candidates' by their numbers: their losses, silently wrong."""
    from nestplast.parallel import SharedError

    with pytest.raises(KeyboardInterrupt):  # in the middle of generation 0
        run(tmp_path, "cut", Budget(max_generations=5), problem=Sphere(interrupt_after=5))
    with RunStore.open(tmp_path / "cut") as store:
        before = rows(store)
        other = make_strategy("cmaes", SPACE, Budget(max_generations=5), population_size=6, seed=4)
        problem, started = Sphere(), []
        with pytest.raises(SharedError, match=r"evaluation \(generation 0, candidate 0, trial 0\) was of other parameters"):
            engine.run(problem, other, store, Transport(), on_start=lambda: started.append(True))
        assert problem.calls == 0 and rows(store) == before, "nothing evaluated, nothing recorded"
    assert not started, "a refused resume records no new settings"


def test_evaluations_are_grouped_by_candidate_in_trial_order():
    made = [Evaluation(g, k, j, [0.0], 1) for g, k, j in [(1, 0, 1), (0, 2, 0), (1, 0, 0), (0, 2, 1)]]
    grouped = by_candidate(made)
    assert list(grouped) == [(1, 0), (0, 2)]
    assert [e.trial for e in grouped[(1, 0)]] == [0, 1] and [e.trial for e in grouped[(0, 2)]] == [0, 1]


def test_a_resumed_strategy_takes_new_limits(tmp_path):
    outcome, store = run(tmp_path, "short", Budget(max_generations=2))
    with store:
        strategy = store.load_strategy(1)
        assert strategy.stop() == {"maxiter": 2}
        strategy.set_budget(Budget(max_generations=4))
        assert strategy.stop() is None
        assert engine.run(Sphere(), strategy, store, Transport()).generations == 4


# Tasks that take these many units of time (busy waiting), in the order handed out.
QUEUE_UNITS = [1.0, 1.0, 0.2, 0.2, 1.0, 1.0, 0.2, 0.2, 1.0, 1.0, 1.0, 1.0]
QUEUE_SCRIPT = """
import json, sys, time
from mpi4py import MPI
from nestplast.parallel import Transport
units, unit = json.loads(sys.argv[1]), float(sys.argv[2])
def evaluate(i):
    start = time.perf_counter()
    while time.perf_counter() - start < units[i] * unit:
        pass
    return (i, MPI.COMM_WORLD.Get_rank())
transport = Transport(MPI.COMM_WORLD)
if transport.is_worker:
    transport.serve(evaluate)
else:
    print(json.dumps(transport.map(list(range(len(units))), evaluate, lambda result: None)))
    transport.close()
"""


SIGNAL_WHILE_WAITING = """
import json, os, signal, sys, threading, time
from mpi4py import MPI
from nestplast.parallel import Transport
transport = Transport(MPI.COMM_WORLD)
if transport.is_worker:
    transport.serve(lambda task: time.sleep(30))  # rank 0 waits for this result
else:
    start = time.perf_counter()  # before the timer starts: a busy machine may run the timer first
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        transport.map([0, 1], lambda task: None, lambda result: None)
    except KeyboardInterrupt:
        with open(sys.argv[1], "w") as f:
            json.dump(time.perf_counter() - start, f)
        MPI.COMM_WORLD.Abort(3)
"""


@pytest.mark.mpi
def test_a_signal_reaches_rank_0_while_it_waits_for_a_result(tmp_path):
    """Rank 0 waited for a worker's result in a blocking receive, where Python runs no signal
    handler: a Ctrl-C or SIGTERM took effect only when the next result came (here after 30 s)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script, seen = tmp_path / "waiting.py", tmp_path / "seen.json"
    script.write_text(SIGNAL_WHILE_WAITING)
    out = subprocess.run([str(Path(sys.executable).parent / "mpiexec"), "-n", "2", sys.executable, str(script),
                          str(seen)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and seen.is_file(), out.stderr
    assert 1.0 <= json.loads(seen.read_text()) < 5.0


@pytest.mark.mpi
@pytest.mark.alone  # busy-waiting ranks: a compiler beside them moved tasks to other ranks
@pytest.mark.parametrize("ranks, units", [(2, QUEUE_UNITS), (3, [0.1, 0.5, 1.0, 1.0])])
def test_population_queue_follows_the_queue_model(tmp_path, ranks, units):
    """The real work queue on MPI ranks hands tasks to the ranks that nestplast.queue_model says
    (margins of 0.4 units = 0.16 s), results in task order.

    2 ranks: task 5 goes to the worker, whose result of task 0 arrived while rank 0 evaluated
    task 4 (MPICH's first Iprobe after that used to miss it, and rank 0 took task 5 itself while
    the worker ran dry). 3 ranks: rank 0 leaves task 2 to worker 1 (done at 0.1) instead of
    taking it at once and keeping worker 1 waiting until it is done (as it used to)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from nestplast.queue_model import schedule_generation

    script = tmp_path / "queue.py"
    script.write_text(QUEUE_SCRIPT)
    mpiexec = Path(sys.executable).parent / "mpiexec"
    out = subprocess.run([str(mpiexec), "-n", str(ranks), sys.executable, str(script), json.dumps(units), "0.4"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert [i for i, _ in results] == list(range(len(units)))
    expected = schedule_generation(units, ranks).assigned
    assert tuple(rank for _, rank in results) == expected


def test_the_mean_meeting_target_loss_stops_the_run():
    """The report's best was the mean (candidate -1) at 0.520 under target_loss 0.525, and the run
    went on to its last generation: pycma's ftarget sees only its own samples."""
    strategy = make_strategy("cmaes", SPACE, Budget(max_generations=10, target_loss=0.525), population_size=4, seed=1)
    candidates = strategy.ask()
    assert [c.index for c in candidates] == [0, 1, 2, 3, -1]
    strategy.tell(candidates, [3.0, 2.0, 4.0, 5.0, 0.52])
    assert strategy.stop() == {"ftarget": 0.525}
    strategy.set_budget(Budget(max_generations=10, target_loss=0.5))  # resumed with a lower target: on it goes
    assert strategy.stop() is None


@pytest.mark.parametrize("sigma0", [0.05, 0.3])
def test_the_progress_line_shows_the_step_as_sigma0_means_it(sigma0):
    """It showed pycma's sigma, a multiplier that starts at 1 whatever sigma0 is (0.883 after one
    generation for sigma0 = 0.01 and 1.0 alike): as if the option did nothing."""
    strategy = make_strategy("cmaes", SPACE, Budget(max_generations=10), population_size=6, seed=1, sigma0=sigma0)
    assert strategy.describe() == f"step {sigma0:8.3g}"


@pytest.mark.parametrize("sigma0", [0.2, 0.6, 1.0])
def test_a_sigma0_above_a_third_is_the_step_sampled(sigma0):
    """pycma keeps each step below a third of its range (maxstd_boundrange): sigma0 0.5, 0.9 and
    1.0 all sampled with 0.333 in two or more dimensions, and the store held the same candidates."""
    strategy = make_strategy("cmaes", SPACE, Budget(max_generations=10), population_size=6, seed=1, sigma0=sigma0)
    strategy.ask()
    assert strategy.describe() == f"step {sigma0:8.3g}"


def test_the_median_of_a_generation_is_of_its_sampled_candidates():
    """The evaluated mean (candidate -1) was counted in the median: 9.78 where the four sampled
    candidates' median was 37.67 (and pycma's own log said 65.58, its upper median)."""
    from nestplast.engine import _summary
    from nestplast.tasks import Candidate

    candidates = [Candidate(k, (0.0,)) for k in range(4)] + [Candidate(-1, (0.0,))]
    summary = _summary(candidates, [9.77, 65.58, 3.33, 218.86, 9.78], [], [])
    assert summary["median_loss"] == pytest.approx((9.77 + 65.58) / 2) and summary["best_loss"] == 3.33
