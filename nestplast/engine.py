"""The run loop that search, inference and filtering share.

A *strategy* (:mod:`nestplast.strategies`) proposes candidates and learns from their losses; a
*problem* turns a candidate into tasks (candidate x trial), evaluates one task into an
:class:`~nestplast.tasks.Evaluation`, and turns a candidate's evaluations into one loss; the
*transport* (:mod:`nestplast.parallel`) spreads tasks over MPI ranks; the *store*
(:mod:`nestplast.store`) records every evaluation the moment it arrives and the pickled strategy
after every generation. The loop is pycma's::

    while not strategy.stop():
        candidates = strategy.ask()
        strategy.tell(candidates, losses(evaluate(tasks(candidates))))

A strategy that learns from more than losses (the filter) also has ``observe(candidates,
features)``, called before ``tell`` when the problem has ``features`` (see :class:`Problem`).

A killed run resumes from the strategy stored after its last complete generation; evaluations of
the interrupted generation already in the store are reused, not repeated.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .parallel import SharedError, Transport
from .store import RunStore, as_stored
from .strategies import Strategy
from .tasks import Candidate, Evaluation, Task, by_candidate


class Problem(Protocol):
    def tasks(self, generation: int, candidates: Sequence[Candidate]) -> list[Task]:
        """The tasks that evaluate ``candidates`` (the same for the same generation, always)."""

    def evaluate(self, task: Task) -> Evaluation:
        """One task, on whichever rank it lands; failures are returned as data, never raised."""

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        """One candidate's loss from the evaluations of its tasks."""

    # Optional: a problem with ``features(candidate, evaluations) -> dict[str, float]`` (e.g. every
    # metric, averaged over trials) and a strategy with ``observe(candidates, features)`` (the
    # filter) get ``strategy.observe(...)`` before every ``tell``; other strategies see only losses.


@dataclass
class Outcome:
    """How a run ended (rank 0)."""

    generations: int  # complete generations (rounds), this run and the ones it resumed
    evaluations: int  # evaluations recorded (candidate x trial)
    failed: int  # evaluations that went wrong (an error, a timeout, a NaN)
    blowups: int  # evaluations whose network ran away (aborted early, scored)
    best_loss: float  # the best candidate's loss as the problem scores it (NaN: none yet)
    best_theta: list[float] | None  # its parameters, in the experiment's layout order (exp.layout().as_dict)
    stop: dict  # why it stopped, as the strategy says it (pycma's stop dictionary, e.g. {"maxiter": 12})


def _timed(evaluate: Callable[[Task], Evaluation]) -> Callable[[Task], Evaluation]:
    """A problem's ``evaluate``, its evaluations' ``wall_time_s`` measured where the problem leaves
    it 0 (the fits' did: every evaluation of an inference was recorded as taking 0 s)."""
    def timed(task: Task) -> Evaluation:
        started = time.perf_counter()
        evaluation = evaluate(task)
        if not evaluation.wall_time_s:
            evaluation.wall_time_s = time.perf_counter() - started
        return evaluation
    return timed


def run(problem: Problem, strategy: Strategy | None, store: RunStore | None, transport: Transport,
        progress: Callable[[str], None] | None = None, on_start: Callable[[], None] | None = None) -> Outcome | None:
    """Run ``strategy`` on ``problem`` until it stops; rank 0 returns the :class:`Outcome`.

    Rank 0 passes the strategy and the store; in network mode every other rank calls this too
    (with ``None`` for both) and takes part in every simulation; in population mode the other
    ranks serve tasks until rank 0 is done. A store's evaluations are reused only for the
    candidates they evaluated: where the first generation finds one of other parameters, every
    rank raises :class:`~nestplast.parallel.SharedError` and nothing is changed; ``on_start`` (rank
    0) is called once that is known (a resume records its new settings there)."""
    evaluate = _timed(problem.evaluate)
    if transport.is_worker:
        transport.serve(evaluate)
        return None
    say = progress or (lambda line: None)
    started, evaluated = time.perf_counter(), 0
    first = strategy.generation if strategy is not None else 0
    while True:
        stop = strategy.stop() if transport.is_root else None
        candidates, tasks, reused, refused = [], [], [], None
        if transport.is_root and stop is None:
            generation = strategy.generation
            candidates = strategy.ask()
            for task in problem.tasks(generation, candidates):
                done = store.get_evaluation(task.generation, task.candidate, task.trial.index)
                if done is not None and done.theta != as_stored(list(task.theta)):
                    refused = refused or _not_this_run(store, task)
                (reused if done is not None else tasks).append(done if done is not None else task)
        stop, tasks, refused = transport.share((stop, tasks, refused))
        if refused is not None:
            transport.close()  # population mode: the workers stop serving and end too
            raise SharedError(refused)
        if on_start is not None and transport.is_root:
            on_start()
            on_start = None
        if stop is not None:
            break
        if transport.is_root:  # each burst of results that arrived together in one commit
            results = transport.map(tasks, evaluate, lambda e: store.record_evaluation(e, commit=False),
                                    flush=store.commit)
        else:
            results = transport.map(tasks, evaluate, _ignore)
        evaluated += len(results)
        if not transport.is_root:
            continue
        evaluations = results + reused
        grouped = by_candidate(evaluations)
        evaluations_of = {c.index: grouped[(generation, c.index)] for c in candidates}
        losses = [problem.loss(c, evaluations_of[c.index]) for c in candidates]
        if hasattr(problem, "features") and hasattr(strategy, "observe"):  # e.g. the filter: every metric
            strategy.observe(candidates, [problem.features(c, evaluations_of[c.index]) for c in candidates])
        strategy.tell(candidates, losses)
        summary = _summary(candidates, losses, evaluations, results)
        store.record_generation(generation, pickle.dumps(strategy), summary)
        elapsed = time.perf_counter() - started
        say(_progress_line(generation, summary, strategy, evaluated / elapsed if elapsed > 0 else math.nan,
                           elapsed / (generation + 1 - first)))
    if not transport.is_root:
        return None
    transport.close()
    if strategy.generation == first > 0:  # it said "resuming after generation N", then "done", and nothing between
        why = ", ".join(f"{key} = {value}" for key, value in stop.items())
        say(f"note: nothing was left to run: the resumed run stopped at once, on {why}")
    store.record_stop(stop)
    return outcome(store, stop)


def _not_this_run(store: RunStore, task: Task) -> str:
    # A stored evaluation is reused only for the very candidate it evaluated: one of other parameters
    # (a filter run resumed by the search, killed before its first round was complete; a pycma or
    # nestplast that asks other candidates) would be scored as this one's.
    return (f"{store.path.parent}: its evaluation (generation {task.generation}, candidate {task.candidate}, trial "
            f"{task.trial.index}) was of other parameters than this run asks for there, so the run was made by "
            "another command (a filter run is resumed with `nestplast filter --resume`) or another version of "
            "nestplast or pycma; nothing was recorded. Resume it as it was made, or start a new run with another --out")


def _ignore(_evaluation: Evaluation) -> None:
    pass


def _summary(candidates: Sequence[Candidate], losses: Sequence[float], evaluations: Sequence[Evaluation],
             fresh: Sequence[Evaluation]) -> dict:
    losses = np.asarray(losses, dtype=float)
    # the median of the sampled candidates, as pycma's log has it: the evaluated mean (index -1) is no sample
    sampled = [loss for c, loss in zip(candidates, losses) if c.index >= 0] or list(losses)
    return {"best_loss": float(np.min(losses)), "median_loss": float(np.median(sampled)),
            "best_theta": list(candidates[int(np.argmin(losses))].theta),
            "n_evaluations": len(evaluations), "n_failed": sum(e.failed for e in evaluations),
            "n_blowups": sum(e.status == "blowup" for e in evaluations),
            "wall_time_s": float(sum(e.wall_time_s for e in fresh))}


def _progress_line(generation: int, summary: dict, strategy: Strategy, rate: float, per_generation: float) -> str:
    # blow-ups and failures are counted by trial (evaluation), as the store records them; the
    # filter's table counts rules (a rule with any trial blown up), so the line names its unit
    limit = strategy.budget.max_generations
    eta = f"  ~{(limit - generation - 1) * per_generation / 60:.1f} min left" if limit else ""
    loss = f"best {summary['best_loss']:9.4f}  median {summary['median_loss']:9.4f}  " if strategy.shows_loss else ""
    return (f"{strategy.step} {generation:3d}  {loss}{strategy.describe()}  {rate:5.2f} eval/s  "
            f"trials blown up {summary['n_blowups']:2d}, failed {summary['n_failed']:2d}{eta}")


def outcome(store: RunStore, stop: dict | None = None) -> Outcome:
    """The :class:`Outcome` of the run in ``store`` as it stands."""
    counts = store.counts()
    # the best candidate by the problem's own loss, as each generation recorded it
    told = [g for g in store.generations() if "best_theta" in g]
    best = min(told, key=lambda g: g["best_loss"]) if told else None
    return Outcome(generations=counts["generations"], evaluations=counts["evaluations"], failed=counts["failed"],
                   blowups=counts["blowups"], best_loss=best["best_loss"] if best else math.nan,
                   best_theta=best["best_theta"] if best else None,
                   stop=stop if stop is not None else (store.stop() or {}))
