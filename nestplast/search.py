"""Search: find the parameters of a plasticity rule with which a spiking network meets an
experiment's objective (target rate, constraints), by CMA-ES through :mod:`nestplast.engine`.

The search's problem: a candidate is evaluated on ``trials.n`` randomised trials, the same for
every candidate of a generation (common random numbers); its loss is the mean over its trials.
Reproducible: generation g samples from a seed derived from (run seed, g), and trial j of
generation g from (run seed, g, j), whatever the number of ranks and however often the run was
resumed (with MPI inside NEST: for a fixed number of ranks, which a resume keeps to). ::

    from nestplast import experiment
    from nestplast.search import run_search
    outcome = run_search(experiment.default(), "runs/default")

Command line: ``python -m nestplast.search [EXPERIMENT] [--out RUN_DIR] [--resume]``
(:mod:`nestplast.commands.search`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .analysis.search import describe_stop, silent_note
from .engine import Outcome
from .experiment import Experiment, unread_filter_keys
from .networks import draw_trials, inert_note, nest_settings
from .objectives import aggregate_trials
from .parallel import Transport
from .runs import all_failed, as_experiment, commonest_failure, idle_ranks_note, long_simulation_note, run_loop, search_space
from .store import RunStore, StoreError
from .strategies import Budget, Strategy, make_strategy
from .strategies.cmaes import default_population_size
from .tasks import Candidate, Evaluation, Task

if TYPE_CHECKING:
    from mpi4py.MPI import Comm



class SearchProblem:
    """Candidates x trials of an experiment's network, scored by its objective."""

    def __init__(self, exp: Experiment, evaluator: Callable[[Task], Evaluation]):
        self.exp, self.evaluator = exp, evaluator

    def tasks(self, generation: int, candidates: Sequence[Candidate]) -> list[Task]:
        trials = draw_trials(self.exp.trials, np.random.SeedSequence([self.exp.seed, generation]))
        return [Task(generation, c.index, trial, c.theta) for c in candidates for trial in trials]

    def evaluate(self, task: Task) -> Evaluation:
        return self.evaluator(task)

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        return aggregate_trials([e.loss for e in evaluations])


def budget(exp: Experiment) -> Budget:
    """When the search of ``exp`` stops (``search.max_generations`` and the other limits)."""
    s = exp.search
    return Budget(max_generations=s.max_generations, max_evaluations=s.max_evaluations, max_wall_s=s.max_wall_s,
                  target_loss=s.target_loss)


def new_strategy(exp: Experiment) -> Strategy:
    """The search's strategy (``search.strategy``) at its start, as ``exp`` sets it up."""
    s = exp.search
    options = {"cma_options": s.cma_options} if s.strategy == "cmaes" else {}
    return make_strategy(s.strategy, search_space(exp), budget(exp), population_size=s.population_size, seed=exp.seed,
                         sigma0=s.sigma0, evaluate_mean=s.evaluate_mean, **options)


def run_search(exp: Experiment | str | os.PathLike, out: str | Path, *, resume: bool = False, comm: Comm | None = None,
               progress: Callable[[str], None] | None = None) -> Outcome | None:
    """Run (or resume) a search of ``exp`` (an Experiment, or an experiment file's path) with its
    results in ``out``; rank 0 returns the :class:`~nestplast.engine.Outcome` (``generations``,
    ``evaluations``, ``failed``, ``blowups``, ``best_loss``, ``best_theta``: the best candidate whose
    every trial ran ok, as the command line and the report name it, NaN and None where none did;
    ``stop``: pycma's stop reasons), other MPI ranks None.
    ``progress`` receives the headline (with its notes), one line per generation and the closing
    summary, each one string, some of several lines (rank 0).

    The search resets the NEST kernel for every simulation. In a session that holds its own NEST
    network, that network is discarded (a :class:`~nestplast.kernel.KernelResetWarning` says so);
    afterwards, also after an error or Ctrl-C, the kernel is empty with the session's settings
    (resolution, threads, seed, ...), verbosity and installed modules restored
    (:func:`nestplast.kernel.lent_kernel`): create your nodes again, and your model copies and
    defaults (``nest.CopyModel``, ``nest.SetDefaults``; a warning at the end names them).

    Raises :class:`~nestplast.experiment.ExperimentError` for a malformed experiment and
    :class:`~nestplast.store.StoreError` for a folder it cannot start or resume in (both
    :class:`nestplast.UserError`, before anything runs); a Ctrl-C's KeyboardInterrupt carries a note
    on what is kept and how to go on."""
    exp = as_experiment(exp)

    def headline(transport: Transport) -> str:
        space = search_space(exp)
        line = (f"search: {exp.name} ({exp.source}); {space.size} parameters ({', '.join(space.names)}); "
                f"{exp.search.strategy}, population {exp.search.population_size}; mode {transport.mode}"
                f"{'' if comm is None else f' on {transport.size} ranks'}; results in {out}")
        usual = default_population_size(space.size)
        if exp.search.strategy == "cmaes" and 2 * exp.search.population_size < usual:
            line += (f"\nnote: a population of {exp.search.population_size} is less than half pycma's default of "
                     f"{usual} for {space.size} parameters; CMA-ES may settle early (search.population_size)")
        if note := unread_filter_keys(exp):  # a nuisance input rate changed no search, without a word
            line += f"\n{note}"
        s = exp.search
        mean = int(s.strategy == "cmaes" and s.evaluate_mean)
        return line + long_simulation_note(exp) + idle_ranks_note(
            transport, s.population_size + mean, f"{s.population_size} candidates{' and the mean' if mean else ''}",
            exp.trials.n)

    result = run_loop(exp, out, SearchProblem,
                      lambda store, where, say: _resume_strategy(store, exp, where, say) or new_strategy(exp),
                      headline, kind="search", resume=resume, comm=comm, progress=progress)
    if result is None:
        return None
    # the best rule as the command line and the report name it; the optimiser's best may be a candidate
    # that blew up on a trial (its penalty counted), handed back while the command said "no rule found"
    with RunStore.open(out, read_only=True) as store:
        best = store.best_candidates(1)
    result = dataclasses.replace(result, best_loss=best[0]["loss"] if best else math.nan,
                                 best_theta=best[0]["theta"] if best else None)
    if progress is not None:
        progress(summary_lines(exp, result, Path(out)))
    return result


def _resume_strategy(store: RunStore, exp: Experiment, out: Path, say: Callable[[str], None]) -> Strategy | None:
    last = store.last_complete_generation()
    if last is None:
        return None
    strategy = store.load_strategy(last)
    if not hasattr(strategy, "ask"):
        raise StoreError(f"{out} was made by an older nestplast whose optimiser state cannot be resumed")
    if hasattr(strategy, "observe"):  # the filter's, which learns from every metric: the search gives it none
        raise StoreError(f"{out} holds a filter run (rule families), not a search: go on with "
                         f"python -m nestplast filter --out {shlex.quote(str(out))} --resume")
    strategy.set_budget(budget(exp))  # a resumed run may be given more generations
    say(f"resuming {out} after generation {last}")
    return strategy


def summary_lines(exp: Experiment, outcome: Outcome, out: Path) -> str:
    """The lines printed when a search ends: how it stopped, its best rule as the report names it
    (``outcome`` as :func:`run_search` returns it: the lowest mean loss among candidates whose every
    trial ran ok; or, where every evaluation failed, the commonest reason), and the command that
    reports on it."""
    best = outcome.best_theta is not None
    lines = [f"done ({describe_stop(outcome.stop)}): {outcome.generations} generations, "
             f"{outcome.evaluations} evaluations, {outcome.blowups} blow-ups, {outcome.failed} failed; "
             + (f"best loss {outcome.best_loss:.4f}" if best else "no candidate with all its trials ok")]
    with RunStore.open(out, read_only=True) as store:
        if note := silent_note(store.evaluations(status="ok"), exp.network.kind):  # none where every evaluation failed
            lines.append(note)
    if all_failed(outcome.evaluations, outcome.failed):
        lines.append(f"every evaluation failed, so no rule was found; {commonest_failure(out)}")
    elif best:
        params = exp.layout().as_dict(outcome.best_theta)
        lines.append("best parameters: " + ", ".join(f"{k} = {v:.4g}" for k, v in params.items()))
        if note := inert_note(exp, nest_settings(exp, outcome.best_theta)):
            lines.append(note)
    else:
        lines.append("no rule found: every candidate blew up or failed on some trial (the report says how)")
    lines.append(f"report: python -m nestplast.report {shlex.quote(str(out))}")  # pasted into a shell as is
    return "\n".join(lines)


__all__ = ["SearchProblem", "run_search", "budget", "new_strategy", "summary_lines"]

if __name__ == "__main__":  # python -m nestplast.search
    from .commands.search import main

    sys.exit(main())
