"""A model of the population-mode work queue of :mod:`nestplast.parallel`, to predict parallel
efficiency on more ranks than one can measure, from evaluation times measured in a real run.

What is modelled (as :func:`nestplast.parallel.map_tasks` does it):

- rank 0 hands tasks out in task order and keeps ``QUEUED_PER_WORKER`` tasks queued at every
  worker (one each once no more tasks are left than workers); a worker evaluates its queue in
  order and sends each result back;
- rank 0 evaluates a task itself when no worker has room for it (more tasks left than workers
  holding fewer than ``QUEUED_PER_WORKER``) or it is the last task, otherwise it waits for the
  next result; while it evaluates, results wait and nothing is handed out; it takes every result
  that arrived and refills the queues between its own tasks;
- every generation ends at a barrier (the engine tells the strategy after every generation), so a
  generation takes as long as its last task, and the next starts on every rank at once.

Not modelled: message latency (a result is a few kB; an evaluation takes seconds) and the cores'
contention on a shared machine (every rank is taken to run an evaluation as fast as one rank
alone: true on a cluster node with ranks x threads <= cores). ``result_s`` (rank 0's time to
record one result), ``commit_s`` (its time to commit the results that arrived together: one disk
sync per burst) and ``generation_s`` (rank 0's time between generations: tell, store, ask) can be
given; :func:`overheads` measures the last from a one-rank run.

::

    run = read_run("runs/default")                    # measured evaluation times, per generation
    schedule_run(run.durations(), ranks=64).efficiency
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .parallel import QUEUED_PER_WORKER
from .store import RunStore


@dataclass(frozen=True)
class Schedule:
    """The modelled course of one or more generations on ``ranks`` ranks."""

    ranks: int
    makespan_s: float  # from the first task handed out to the last result (plus overheads)
    busy_s: tuple[float, ...]  # seconds each rank spent evaluating
    assigned: tuple[int, ...] = ()  # the rank that evaluates each task (one generation)

    @property
    def work_s(self) -> float:
        return sum(self.busy_s)

    @property
    def efficiency(self) -> float:
        """Time evaluating / (ranks x makespan): the share of the ranks' time spent evaluating."""
        return self.work_s / (self.ranks * self.makespan_s) if self.makespan_s > 0 else math.nan


ROOT_RULES = ("spare", "always", "never")


def schedule_generation(durations: Sequence[float], ranks: int, *, root: str = "spare",
                        queued_per_worker: int = QUEUED_PER_WORKER, result_s: float = 0.0,
                        commit_s: float = 0.0, breadth_first: bool = True) -> Schedule:
    """One generation's tasks, with these evaluation times in the order they are handed out, on
    ``ranks`` ranks. When rank 0 evaluates a task itself (``root``): ``spare``, as parallel.py
    does, when no worker has room for it (more tasks left than workers holding fewer than
    ``queued_per_worker``) or it is the last task; ``always`` whenever it has looked at the
    results (parallel.py before); ``never`` (a dedicated rank 0).
    ``breadth_first=False``: the earlier hand-out of parallel.py (every worker filled to two tasks
    in turn, so that with fewer than 2 x workers tasks the last workers got none)."""
    if root not in ROOT_RULES:
        raise ValueError(f"root must be one of {ROOT_RULES}")
    if ranks < 1:
        raise ValueError("ranks must be >= 1")
    durations = [float(d) for d in durations]
    if ranks == 1:  # serial: no MPI, one evaluation after the other
        return Schedule(1, sum(durations) + (result_s + commit_s) * len(durations), (sum(durations),),
                        (0,) * len(durations))
    workers = range(1, ranks)
    pending = deque(enumerate(durations))
    assigned = [0] * len(durations)
    queued = [0] * ranks
    room = len(workers)  # workers holding fewer than queued_per_worker tasks
    free_at = [0.0] * ranks  # when each worker finishes what it holds
    busy = [0.0] * ranks
    arrivals: list[tuple[float, int]] = []  # (time a result reaches rank 0, worker), a heap
    t = 0.0  # rank 0's clock

    def send(w: int) -> None:
        nonlocal room
        i, d = pending.popleft()
        assigned[i] = w
        free_at[w] = max(t, free_at[w]) + d
        busy[w] += d
        queued[w] += 1
        room -= queued[w] == queued_per_worker
        heapq.heappush(arrivals, (free_at[w], w))

    def hand_out(to: Sequence[int]) -> None:
        # parallel.py's hand_out() looks at every worker; between two calls only the worker whose
        # result came in can have been given room (the queue only shrinks), so looking at that one
        # gives the same (and keeps 1024 ranks fast)
        if breadth_first:
            for depth in range(1, queued_per_worker + 1):
                for w in to:
                    if queued[w] < depth and pending and (depth == 1 or len(pending) > len(workers)):
                        send(w)
            return
        depth = queued_per_worker if len(pending) > len(workers) else 1
        for w in to:
            while queued[w] < depth and pending:
                send(w)

    def take_result() -> None:  # the next result to arrive (waiting for it if need be)
        nonlocal t, room
        arrived, w = heapq.heappop(arrivals)
        t = max(t, arrived) + result_s
        room += queued[w] == queued_per_worker
        queued[w] -= 1
        hand_out((w,))

    def receive(wait: bool) -> None:  # every result that has arrived (with wait: at least one), one commit
        nonlocal t
        received = False
        while arrivals and (wait or arrivals[0][0] <= t):
            take_result()
            wait, received = False, True
        t += commit_s if received else 0.0

    hand_out(workers)
    while pending:
        receive(wait=False)
        if not pending:
            break
        if root == "always" or (root == "spare" and (len(pending) > room or len(pending) == 1)):
            _, d = pending.popleft()
            t += d + result_s + commit_s
            busy[0] += d
        else:
            receive(wait=True)
    while arrivals:
        receive(wait=True)
    return Schedule(ranks, t, tuple(busy), tuple(assigned))


def schedule_run(generations: Sequence[Sequence[float]], ranks: int, *, generation_s: float = 0.0,
                 **options) -> Schedule:
    """Several generations one after the other (a barrier after each, plus ``generation_s``);
    ``options`` as for :func:`schedule_generation`."""
    makespan, busy = 0.0, np.zeros(ranks)
    for durations in generations:
        s = schedule_generation(durations, ranks, **options)
        makespan += s.makespan_s + generation_s
        busy += s.busy_s
    return Schedule(ranks, makespan, tuple(busy.tolist()))


def longest_first(durations: Sequence[float]) -> list[float]:
    """The same tasks, longest first (the order an oracle that knew the times would hand out)."""
    return sorted(durations, reverse=True)


# ---------------------------------------------------------------------------- measured runs


@dataclass(frozen=True)
class TaskTime:
    """One measured evaluation: when it started (Unix time), how long it took, how it ended."""

    generation: int
    candidate: int
    trial: int
    start: float
    seconds: float
    status: str
    rank: int

    @property
    def aborted(self) -> bool:
        """Cut short: the network ran away (a blow-up) or the evaluation timed out."""
        return self.status in ("blowup", "timeout")


@dataclass(frozen=True)
class MeasuredRun:
    """The evaluation times of a run (from its store), per generation in task order, and when
    each generation was recorded."""

    ranks: int
    tasks: dict[int, list[TaskTime]]
    recorded: dict[int, float]  # generation -> time its record was written

    def durations(self) -> list[list[float]]:
        return [[t.seconds for t in self.tasks[g]] for g in sorted(self.tasks)]

    def span_s(self, generation: int) -> float:
        """Measured wall time of a generation: from its first evaluation's start to its record."""
        return self.recorded[generation] - min(t.start for t in self.tasks[generation])

    def loop_s(self) -> float:
        """From the first evaluation's start to the last generation's record."""
        first = min(t.start for ts in self.tasks.values() for t in ts)
        return max(self.recorded.values()) - first

    def work_s(self) -> float:
        return sum(t.seconds for ts in self.tasks.values() for t in ts)


def read_run(run_dir: str | Path) -> MeasuredRun:
    """The evaluation times of the complete generations of the run in ``run_dir`` (read-only, as
    the report reads it: also a copy of a running run), in task order (candidates in the order
    asked, the mean last, trials within each)."""
    with RunStore.open(run_dir, read_only=True) as store:
        ranks = int(store.meta().get("ranks", 1))
        recorded = {g["generation"]: g["created"] for g in store.generations()}
        evaluations = store.evaluations()
    tasks: dict[int, list[TaskTime]] = {}
    for e in evaluations:
        if e.generation in recorded:
            tasks.setdefault(e.generation, []).append(
                TaskTime(e.generation, e.candidate, e.trial, e.created, e.wall_time_s, e.status, e.rank))
    for ts in tasks.values():
        ts.sort(key=lambda t: (t.candidate < 0, t.candidate, t.trial))  # the mean (-1) is asked last
    return MeasuredRun(ranks, tasks, recorded)


def overheads(run: MeasuredRun) -> float:
    """Rank 0's time per generation besides evaluating (tell, store, ask, recording results),
    from a one-rank run: the median of (generation's span - its evaluations' times)."""
    if run.ranks != 1:
        raise ValueError("overheads are measured on a one-rank run (there, nothing else overlaps)")
    gaps = [run.span_s(g) - sum(t.seconds for t in run.tasks[g]) for g in sorted(run.tasks)]
    return float(np.median(gaps))


def measured_efficiency(one: MeasuredRun, many: MeasuredRun) -> float:
    """Parallel efficiency of ``many`` against the one-rank run ``one`` of the same search:
    loop time on 1 rank / (ranks x loop time on ``many``)."""
    return one.loop_s() / (many.ranks * many.loop_s())


# ---------------------------------------------------------------------------- sizing


def sample_generations(pool: Sequence[float], tasks_per_generation: int, generations: int,
                       seed: int = 0) -> list[list[float]]:
    """Generations of evaluation times drawn (with replacement) from measured ones."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.asarray(pool, dtype=float), size=(generations, tasks_per_generation)).tolist()


def sizing(pool: Sequence[float], ranks: int, populations: Sequence[int], trials: Sequence[int], *,
           evaluate_mean: bool = True, generations: int = 200, seed: int = 0,
           **options) -> list[tuple[int, int, float]]:
    """Modelled efficiency of every (population size, trials per candidate) on ``ranks`` ranks,
    with evaluation times drawn from ``pool``: ``[(population, trials, efficiency), ...]``, best
    first. ``options`` as for :func:`schedule_generation`."""
    rows = []
    for population in populations:
        for n in trials:
            per_generation = (population + int(evaluate_mean)) * n
            gens = sample_generations(pool, per_generation, generations, seed)
            rows.append((population, n, schedule_run(gens, ranks, **options).efficiency))
    return sorted(rows, key=lambda r: -r[2])


__all__ = ["Schedule", "schedule_generation", "schedule_run", "longest_first", "TaskTime", "MeasuredRun",
           "read_run", "overheads", "ROOT_RULES", "measured_efficiency", "sample_generations", "sizing"]
