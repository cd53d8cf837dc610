"""The model of the population-mode work queue (nestplast.queue_model) against schedules worked out
by hand, and its reader of measured evaluation times against a store written by RunStore."""

import math

import pytest

from nestplast.queue_model import longest_first, measured_efficiency, overheads, read_run, schedule_generation, schedule_run, sizing
from nestplast.store import RunStore, StoreError
from nestplast.tasks import Evaluation


@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
@pytest.mark.parametrize("waves", [1, 3])
def test_equal_tasks_fill_every_rank(ranks, waves):
    """n = waves x ranks tasks of 1 s: every rank evaluates `waves` of them, nobody waits."""
    s = schedule_generation([1.0] * (waves * ranks), ranks)
    assert s.makespan_s == waves
    assert s.busy_s == (float(waves),) * ranks and s.efficiency == 1.0


def test_the_earlier_hand_out_left_ranks_idle():
    """8 tasks on 8 ranks, every worker filled to two in turn: workers 1-4 got two each, rank 0
    and workers 5-7 none (two waves instead of one)."""
    s = schedule_generation([1.0] * 8, 8, breadth_first=False)
    assert s.assigned == (1, 1, 2, 2, 3, 3, 4, 4) and s.makespan_s == 2.0 and s.efficiency == 0.5


def test_rank_0_leaves_tasks_to_idle_workers():
    """3 ranks, tasks [0.1, 0.1, 1, 1]: the workers hold tasks 0 and 1 (only two left for two
    workers). Taking task 2 at once (``always``, parallel.py before), rank 0 is busy until 1 s
    while both workers wait from 0.1 s: task 3 ends at 2 s. ``spare``: both workers have room,
    so rank 0 waits and hands tasks 2 and 3 out at 0.1 s: done at 1.1 s."""
    tasks = [0.1, 0.1, 1.0, 1.0]
    always = schedule_generation(tasks, 3, root="always")
    assert always.makespan_s == pytest.approx(2.0) and always.assigned == (1, 2, 0, 1)
    spare = schedule_generation(tasks, 3)
    assert spare.makespan_s == pytest.approx(1.1) and spare.assigned == (1, 2, 1, 2)
    with pytest.raises(ValueError, match=r"root must be one of \('spare', 'always', 'never'\)"):
        schedule_generation(tasks, 3, root="sometimes")


def test_a_dedicated_rank_0_only_hands_out():
    s = schedule_generation([1.0] * 6, 4, root="never")
    assert s.makespan_s == 2.0 and s.busy_s == (0.0, 2.0, 2.0, 2.0) and s.efficiency == 0.75
    assert 0 not in s.assigned


def test_one_task_more_than_ranks_takes_a_second_wave():
    assert schedule_generation([1.0] * 5, 4).makespan_s == 2.0
    assert schedule_generation([1.0] * 3, 8).efficiency == 3 / 8


def test_a_long_task_behind_short_ones():
    """Two ranks, tasks [1, 1, 1, 10]. The worker is handed tasks 0 and 1 (two queued); rank 0
    evaluates task 2 (t = 1), then task 3 itself (only one task left: the worker keeps its
    backlog of one): 1 + 10 = 11 s, the worker done at 2 s."""
    s = schedule_generation([1.0, 1.0, 1.0, 10.0], 2)
    assert s.makespan_s == 11.0 and s.assigned == (1, 1, 0, 0) and s.busy_s == (11.0, 2.0)
    # longest first: the worker holds the 10 s task and one more (queued behind it): 10 + 1 = 11 s
    assert schedule_generation(longest_first([1.0, 1.0, 1.0, 10.0]), 2).makespan_s == 11.0
    # one queued per worker: the 1 s task behind the long one goes to rank 0 instead
    assert schedule_generation([10.0, 1.0, 1.0, 1.0], 2, queued_per_worker=1).makespan_s == 10.0


def test_rank_0_busy_leaves_a_worker_waiting():
    """Two ranks: the worker holds two 1 s tasks; rank 0 evaluates two 0.2 s tasks and a 1 s one
    (t = 1.4); only then does it see the result that arrived at t = 1 and hand out task 5; the
    worker (done at 2) takes tasks 5 and 9 (as measured on two MPI ranks in tests/test_engine.py)."""
    durations = [1.0, 1.0, 0.2, 0.2, 1.0, 1.0, 0.2, 0.2, 1.0, 1.0, 1.0, 1.0]
    s = schedule_generation(durations, 2)
    assert s.assigned == (1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0)
    assert s.makespan_s == pytest.approx(4.8) and s.busy_s == pytest.approx((4.8, 4.0))


def test_overheads_add_up_per_result_and_per_generation():
    run = schedule_run([[1.0, 1.0], [2.0]], 1, generation_s=0.5, result_s=0.1)
    assert run.makespan_s == pytest.approx(2.2 + 0.5 + 2.1 + 0.5)
    assert run.work_s == 4.0


def test_sizing_prefers_tasks_that_fill_the_ranks():
    rows = sizing([1.0], 8, populations=[3, 7], trials=[1, 2], generations=2)
    # 7 + mean = 8 tasks, (3 + mean) x 2 = 8, (7 + mean) x 2 = 16: whole waves
    assert {(p, n) for p, n, e in rows if e == 1.0} == {(7, 1), (3, 2), (7, 2)}
    assert dict(((p, n), e) for p, n, e in rows)[(3, 1)] == 0.5


def _store(tmp_path, name, ranks, times):
    """A store as a run writes it: evaluations (start, seconds, rank), then each generation's record."""
    store = RunStore.create(tmp_path / name, experiment={}, seed=1, meta={"ranks": ranks})
    for g, (tasks, recorded) in enumerate(times):
        for (candidate, trial, start, seconds, status, rank) in tasks:
            store.record_evaluation(Evaluation(g, candidate, trial, [0.0], 7, loss=1.0, status=status,
                                               wall_time_s=seconds, rank=rank, created=start))
        store.record_generation(g, b"state", {"best_loss": 1.0})
        store._db.execute("UPDATE generations SET created=? WHERE generation=?", (recorded, g))
    store._db.commit()
    store.close()


def test_measured_times_come_back_in_task_order(tmp_path):
    # generation 0: the mean (-1) recorded first but handed out last; an unfinished generation 1
    _store(tmp_path, "one", 1, [([(-1, 0, 102.1, 1.0, "ok", 0), (0, 1, 100.5, 0.5, "blowup", 0),
                                  (0, 0, 100.0, 0.5, "ok", 0), (1, 0, 101.0, 1.0, "ok", 0)], 103.2)])
    run = read_run(tmp_path / "one")
    assert [(t.candidate, t.trial) for t in run.tasks[0]] == [(0, 0), (0, 1), (1, 0), (-1, 0)]
    assert run.durations() == [[0.5, 0.5, 1.0, 1.0]]
    assert [t.aborted for t in run.tasks[0]] == [False, True, False, False]
    assert run.ranks == 1 and run.work_s() == 3.0
    assert run.span_s(0) == pytest.approx(3.2) and run.loop_s() == pytest.approx(3.2)
    assert overheads(run) == pytest.approx(0.2)
    _store(tmp_path, "two", 2, [([(0, 0, 100.0, 1.0, "ok", 1), (0, 1, 100.0, 0.5, "ok", 0),
                                  (1, 0, 100.5, 0.5, "ok", 0), (-1, 0, 101.0, 1.0, "ok", 0)], 102.0)])
    two = read_run(tmp_path / "two")
    assert measured_efficiency(run, two) == pytest.approx(3.2 / (2 * 2.0))
    with pytest.raises(ValueError):
        overheads(two)
    with pytest.raises(StoreError, match="no run directory"):
        read_run(tmp_path / "none")
    # a folder whose name SQLite's URI would misread (it opened the wrong file), read as the report reads it
    _store(tmp_path, "run #1?", 1, [([(0, 0, 100.0, 0.5, "ok", 0)], 100.7)])
    assert read_run(tmp_path / "run #1?").durations() == [[0.5]]


def test_a_real_run_reads_back(tmp_path):
    """The reader on a store that the engine wrote (tests/test_engine.py's toy problem): every
    task, the mean last, the times the evaluations took."""
    from helpers import SPACE, Sphere

    from nestplast import engine
    from nestplast.parallel import Transport
    from nestplast.strategies import Budget, make_strategy

    store = RunStore.create(tmp_path / "run", experiment={}, seed=3, meta={"ranks": 1})
    engine.run(Sphere(), make_strategy("cmaes", SPACE, Budget(max_generations=2), population_size=4, seed=3),
               store, Transport())
    store.close()
    run = read_run(tmp_path / "run")
    assert sorted(run.tasks) == [0, 1]
    assert [(t.candidate, t.trial) for t in run.tasks[1]] == [(c, j) for c in (0, 1, 2, 3, -1) for j in (0, 1)]
    assert all(t.seconds >= 0 and t.start > 0 for ts in run.tasks.values() for t in ts)
    assert math.isfinite(overheads(run)) and run.loop_s() >= run.work_s()


def test_results_that_arrive_together_are_committed_once():
    """Rank 0 records each result (result_s) and commits each burst once (commit_s), as
    parallel.map_tasks does: two results arriving at the same time cost one commit; alone
    (serial), every result is a commit."""
    r, c = 0.01, 0.1
    together = schedule_generation([1.0, 1.0], 3, result_s=r, commit_s=c)
    assert together.makespan_s == pytest.approx(1.0 + 2 * r + c)
    apart = schedule_generation([1.0, 2.0], 3, result_s=r, commit_s=c)
    assert apart.makespan_s == pytest.approx(2.0 + r + c)  # the first burst is done long before
    assert schedule_generation([1.0, 1.0], 1, result_s=r, commit_s=c).makespan_s == pytest.approx(2.0 + 2 * (r + c))
