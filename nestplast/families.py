"""Rule families: the fSBI filter (:class:`~nestplast.strategies.filter.Filter`) on an experiment's
NEST network, through the same engine, store and MPI transport as the search.

One simulation is one evaluation of the search (:class:`~nestplast.evaluate.Evaluator`: a fresh
kernel, the network, every metric of the fSBI table in ``Evaluation.metrics``). A candidate rule's
*features* are its metrics averaged over its trials (NaN if any trial blew up or failed); it is
*accepted* when every constrained metric lies inside the round's bounds, and its loss is 0 then,
else how far outside it lies (the search's interval penalty; blow-ups and failures keep the
search's scores, >= 160), so that the engine's summaries and the store work unchanged. That is the
candidate's loss, in the ``generations`` table's summaries; each simulation's ``loss`` in the
``evaluations`` table stays the search's score of it (its target rate included), not the verdict:
the verdict is :func:`family` (``family.csv``). ::

    from nestplast import experiment
    from nestplast.families import run_filter, family, recheck
    run_filter(experiment.load("families_short"), "runs/families")
    fam = family("runs/families")                                  # the accepted rules
    tight = family("runs/families", {"cv_isi": (0.9, 1e9)})        # re-filtered from the store
    print(recheck("runs/families", n_trials=2).fraction)           # passing again on fresh seeds

The input rate as a nuisance (``filter.nuisance_input_rate = [low, high]`` Hz): every simulation
(candidate x trial) draws its own Poisson drive from U(low, high), from a seed of (run seed,
round, candidate, trial); it replaces that trial's ``input_rate_scale`` (the trial's NEST seed,
initial weights and w_max stay the round's common ones) and is recorded as the evaluation's
metric ``input_rate``. The rule's parameters alone are what the flow learns about.

Command line: ``python -m nestplast filter`` (:mod:`nestplast.commands.filter`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine import Outcome
from .errors import UserError
from .evaluate import Evaluator
from .experiment import METRIC_INTERVALS, Experiment, ExperimentError, NetworkSpec, TrialSpec, run_experiment, unmeasured, validate
from .kernel import lent_kernel
from .networks import Trial, draw_trials
from .objectives import aggregate_trials, interval_penalty
from .parallel import Transport, check_comm_given, together
from .runs import as_experiment, build_module, idle_ranks_note, long_simulation_note, run_loop, search_space
from .search import SearchProblem
from .store import DB_NAME, RUN_KINDS, RunStore, StoreError, check_same_kind, stored_kind
from .strategies import Budget
from .strategies.filter import Filter, inside, require_sbi, round_constraints
from .tasks import FAILURES, Candidate, Evaluation, Task, by_candidate
from .values import is_number, is_whole
from .wording import counted

if TYPE_CHECKING:
    from mpi4py.MPI import Comm

NUISANCE_STREAM = 0x6E75  # keeps the nuisance's random stream apart from the trials'
RECHECK_STREAM = 0x7265  # fresh seeds for the re-check, apart from every round's


# --------------------------------------------------------------------------- one candidate

def candidate_features(evaluations: Sequence[Evaluation]) -> dict[str, float]:
    """Every scalar metric averaged over the candidate's trials; all NaN unless every trial ran
    to its end (``ok``)."""
    names = sorted({k for e in evaluations for k, v in (e.metrics or {}).items()
                    if is_number(v)})
    if not evaluations or any(e.status != "ok" for e in evaluations):
        return dict.fromkeys(names, math.nan)
    return {k: float(np.mean([float(e.metrics.get(k, math.nan)) for e in evaluations])) for k in names}


def candidate_loss(evaluations: Sequence[Evaluation], constraints: Mapping[str, Sequence[float]]) -> float:
    """0 for an accepted candidate; else its relative distance outside the bounds (a NaN metric
    counts 1), or for a blow-up or failure the search's mean loss over its trials (>= 160)."""
    if any(e.status != "ok" for e in evaluations):
        return aggregate_trials([e.loss for e in evaluations])
    features = {**dict.fromkeys(constraints, math.nan), **candidate_features(evaluations)}  # missing: NaN
    return interval_penalty(features, constraints)


class FilterProblem(SearchProblem):
    """The search's problem (candidates x the round's trials on the experiment's network), with
    the nuisance input rate, the round's bounds as the loss, and every metric as features."""

    def tasks(self, generation: int, candidates: Sequence[Candidate]) -> list[Task]:
        return [dataclasses.replace(t, trial=self.with_nuisance(t.trial, generation, t.candidate))
                for t in super().tasks(generation, candidates)]

    def with_nuisance(self, trial: Trial, generation: int, candidate: int, stream: int = NUISANCE_STREAM) -> Trial:
        """``trial`` with its own input rate drawn from ``filter.nuisance_input_rate`` (if set)."""
        band = self.exp.filter.nuisance_input_rate
        if band is None:
            return trial
        rng = np.random.default_rng([self.exp.seed, stream, generation + 1, candidate + 1, trial.index])
        return dataclasses.replace(trial, input_rate_scale=float(rng.uniform(*band)) / self.exp.network.input_rate)

    def evaluate(self, task: Task) -> Evaluation:
        evaluation = self.evaluator(task)
        if self.exp.network.kind == "recurrent":  # a single neuron's afferents are not driven at network.input_rate
            evaluation.metrics["input_rate"] = self.exp.network.input_rate * task.trial.input_rate_scale
        return evaluation

    def bounds(self, generation: int) -> dict[str, tuple[float, float]]:
        return round_constraints(self.exp.filter.constraints, self.exp.filter.schedule, generation)

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        return candidate_loss(evaluations, self.bounds(evaluations[0].generation))

    def features(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> dict[str, float]:
        return candidate_features(evaluations)


def check_constraints(exp: Experiment) -> None:
    """Refuse bounds on a metric the experiment cannot measure (the mean weight of a connection
    type that does not learn: ``w_mean_EE`` without EE in ``rule.plastic``; ``rate_i`` of a single
    neuron), and a nuisance input rate where there is no one Poisson drive: each accepted no rule,
    or drove the network at another rate than the one recorded, without a word."""
    f = exp.filter
    if exp.network.kind == "single_neuron" and f.nuisance_input_rate is not None:  # it scaled input_rate_e/_i
        raise ExperimentError(f"{exp.source}: filter.nuisance_input_rate: drawn for a recurrent network's drive "
                              "(network.input_rate); a single neuron's afferents (network.input_rate_e, input_rate_i) "
                              "vary with trials.input_rate_scale instead")
    # the default table, never written in the file, is named as such (the user was told to fix a key
    # they never set)
    default = " (the default table's: give filter.constraints of your own)" if (
        f.constraints == type(f)().constraints) else ""
    for where, table in [("filter.constraints", f.constraints)] + [
            (f"filter.schedule[{k}].constraints", e["constraints"]) for k, e in enumerate(f.schedule)]:
        for name in table:  # a single neuron and the default table: rate_i, spatial_fano, std_rate_spatial
            if why := unmeasured(exp, name):
                raise ExperimentError(f"{exp.source}: {where}.{name}{default if where == 'filter.constraints' else ''}: "
                                      f"{why}, so no rule could pass this bound")


def new_filter(exp: Experiment) -> Filter:
    """The filter of ``exp`` at its first round."""
    f = exp.filter
    return Filter(search_space(exp), Budget(max_generations=f.rounds), population_size=f.simulations_per_round,
                  seed=exp.seed, constraints=f.constraints, schedule=f.schedule, max_epochs=f.max_epochs,
                  restrict=f.restrict)


# --------------------------------------------------------------------------- the run

def run_filter(exp: Experiment | str | os.PathLike, out: str | Path, *, resume: bool = False, comm: Comm | None = None,
               progress: Callable[[str], None] | None = None) -> Outcome | None:
    """Run (or resume) the filter of ``exp`` (an Experiment, or an experiment file's path) with its
    results in ``out`` (the search's store); rank 0 returns the engine's
    :class:`~nestplast.engine.Outcome`, other MPI ranks None. ``progress`` receives one line per
    round (rank 0)."""
    if isinstance(exp, (str, os.PathLike)) and (Path(exp) / DB_NAME).is_file():  # a run's folder: of a filter
        # (a search's warned of its search keys the filter does not read, then was refused)
        check_same_kind(stored_kind(exp), "filter", Path(exp))
    exp = as_experiment(exp)

    transport = Transport(comm)
    # validated first: a value set in Python (a schedule given as one table) failed in the checks
    # below with a bare TypeError
    together(comm, lambda: check_constraints(validate(exp, search=False)))
    nest_first = "nest" in sys.modules and "torch" not in sys.modules
    together(comm, require_sbi if transport.is_root else (lambda: None))  # before anything is simulated
    if nest_first and transport.is_root:
        warnings.warn(NEST_BEFORE_TORCH, RuntimeWarning, stacklevel=2)
    # said when the run began: on every resume (every slice of filter.slurm) it repeated what the stored
    # experiment, which cannot be edited, holds
    resuming = resume and (Path(out) / DB_NAME).is_file()
    if (ignored := search_keys_ignored(exp)) and transport.is_root and not resuming:
        warnings.warn(ignored, UserWarning, stacklevel=2)
    for k, entry in enumerate(exp.filter.schedule):  # e.g. round = 5 of 5 rounds: the family ignored it, silently
        if entry["round"] >= exp.filter.rounds and transport.is_root:
            warnings.warn(f"{exp.source}: filter.schedule[{k}] starts at round {entry['round']}, but rounds count from 0 and this "
                          f"run's last is round {exp.filter.rounds - 1}: its bounds apply only if the run is resumed "
                          "with more rounds (--rounds)", UserWarning, stacklevel=2)

    def headline(transport: Transport) -> str:
        space = search_space(exp)
        return (f"filter: {exp.name} ({exp.source}); {space.size} parameters; {counted(exp.filter.rounds, 'round')} x "
                f"{counted(exp.filter.simulations_per_round, 'rule')} x {counted(exp.trials.n, 'trial')}; "
                f"mode {transport.mode}"
                f"{'' if comm is None else f' on {transport.size} ranks'}; results in {out}"
                # the fSBI metrics are the E population's unless objective.population says otherwise
                + (f"\nmetrics of the {exp.objective.population} population (objective.population)"
                   if exp.objective.population != "E" else "") + long_simulation_note(exp)
                + idle_ranks_note(transport, exp.filter.simulations_per_round,
                                  f"{exp.filter.simulations_per_round} rules", exp.trials.n))

    return run_loop(exp, out, FilterProblem,
                    lambda store, where, say: _resume(store, exp, where, say) or new_filter(exp),
                    headline, kind="filter", resume=resume, comm=comm, progress=progress)


# The search's keys a filter has its own for: all of [search] but threads and compressed_spikes, and
# what makes [objective]'s score (a filter records it as evaluations.loss, but judges by its bounds;
# objective.population it uses: the rate band watches it, and the ISI metrics are of it)
FILTER_COUNTERPARTS = {"search.population_size": "filter.simulations_per_round", "search.max_generations": "filter.rounds",
                       "objective.constraints": "filter.constraints", "objective.target_rate": "filter.constraints",
                       "network.input_rate": "filter.nuisance_input_rate",
                       "trials.input_rate_scale": "filter.nuisance_input_rate"}
FILTER_USES = {"search.threads", "search.compressed_spikes"}


def search_keys_ignored(exp: Experiment) -> str:
    """What a filter run of ``exp`` says of the search's keys it ignores (set away from their
    defaults, e.g. a population size meant for the filter's rules per round); "" if none."""
    ignored = []
    for section in ("search", "objective"):
        table, defaults = getattr(exp, section), type(getattr(exp, section))()
        ignored += [f"{section}.{f.name}" for f in dataclasses.fields(table)
                    if (f"{section}.{f.name}" in FILTER_COUNTERPARTS or section == "search")
                    and f"{section}.{f.name}" not in FILTER_USES
                    and getattr(table, f.name) != getattr(defaults, f.name)]
    hint = ""
    if (band := exp.filter.nuisance_input_rate) is not None:  # each simulation's drive is drawn from it instead
        # an input_rate inside the band is its centre as written (the shipped experiments), not a setting lost
        if exp.network.input_rate != NetworkSpec().input_rate and not band[0] <= exp.network.input_rate <= band[1]:
            ignored.append("network.input_rate")
            if band[1] * 10.0 < exp.network.input_rate:  # [0.9, 1.1] meant as a scale: every network silent
                hint = (f"; filter.nuisance_input_rate = [{band[0]:g}, {band[1]:g}] is in Hz, like network.input_rate "
                        f"({exp.network.input_rate:g} Hz), not a scale of it")
        if exp.trials.input_rate_scale != TrialSpec().input_rate_scale:
            ignored.append("trials.input_rate_scale")
    if not ignored:
        return ""
    own: dict[str, list[str]] = {}
    for key in ignored:
        if key in FILTER_COUNTERPARTS:
            own.setdefault(FILTER_COUNTERPARTS[key], []).append(key)
    instead = [f"{theirs} for {' and '.join(keys)}" for theirs, keys in own.items()]
    return (f"{exp.source}: {', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} not used by a filter run"
            + (f" (the filter's own: {', '.join(instead)})" if instead else "") + hint)


NEST_BEFORE_TORCH = (
    "NEST was imported before torch in this process: torch's float32 arithmetic then rounds differently "
    "in the last digits (measured on a matrix product; NEST loads its libraries globally), and the flow, "
    "trained on it, proposes other rules from round 1 on than the same run started from the command line "
    "(which imports torch first). Both are valid runs; to reproduce one, import torch (or call "
    "nestplast.strategies.filter.require_sbi()) before NEST, as the command does.")


def _resume(store: RunStore, exp: Experiment, out: Path, say: Callable[[str], None]) -> Filter | None:
    last = store.last_complete_generation()
    if last is None:
        return None
    strategy = store.load_strategy(last)
    if not isinstance(strategy, Filter):
        raise StoreError(f"{out} holds a search, not a filter: resume it with python -m nestplast.search --out "
                         f"{shlex.quote(str(out))} --resume")
    strategy.set_budget(Budget(max_generations=exp.filter.rounds))  # more rounds may be asked for
    say(f"resuming {out} after round {last}")
    return strategy


# --------------------------------------------------------------------------- the family, from the store

@dataclass
class Family:
    """The accepted rules of a filter run: ``rows`` (one per rule: round, candidate, parameters
    by name, mean metrics), judged by ``constraints``; ``acceptance`` per round: ``simulated``,
    ``accepted`` under the round's own bounds (what the filter did), ``in_family`` (its rows here),
    and the rules without metrics: ``failed`` and ``blowups`` (on any trial)."""

    rows: list[dict]
    constraints: dict[str, tuple[float, float]]
    acceptance: list[dict]
    simulated: int  # candidate rules simulated
    traces: list[dict]  # each row's rates and mean weights over time (its trial 0)
    valid: list[dict]  # the mean metrics of every simulated rule that ran to its end (for plots)
    rounds_planned: int | None = None  # the run's filter.rounds
    stop: dict | None = None  # why the run stopped; None while it runs or after it was cut short
    parameters: list[str] = field(default_factory=list)  # the rule's searched parameters, in order

    @property
    def columns(self) -> list[str]:
        """A row's keys: round, candidate, parameters, metrics (a table of no rule has the same header)."""
        if self.rows:
            return [k for k in self.rows[0] if k != "theta"]
        metrics = sorted({k for v in self.valid for k in v}) or list(self.constraints)
        return ["round", "candidate", *self.parameters, *metrics]

    @property
    def distinct(self) -> int:
        """Distinct rules (distinct parameter vectors)."""
        return len({tuple(r["theta"]) for r in self.rows})

    def __repr__(self) -> str:  # the rows' every metric would flood a notebook
        return (f"Family({counted(len(self.rows), 'accepted rule')} ({self.distinct} distinct) "
                f"of {self.simulated} simulated, "
                f"judged by {', '.join(self.constraints)})")


def candidates(store: RunStore) -> list[tuple[int, int, list[Evaluation]]]:
    """(round, candidate, its evaluations by trial) for every candidate in the store."""
    return [(g, c, es) for (g, c), es in sorted(by_candidate(store.evaluations()).items())]


def final_constraints(exp: Experiment, rounds: int) -> dict[str, tuple[float, float]]:
    """The bounds of the run's last round (the family is judged by these)."""
    return round_constraints(exp.filter.constraints, exp.filter.schedule, max(rounds - 1, 0))


def check_bounds(constraints: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """``constraints`` as ``(low, high)`` floats by metric; refuse bounds on a metric the filter
    does not measure, or upside down: either accepted no rule, without a word (ExperimentError
    naming the metric)."""
    if not isinstance(constraints, Mapping):
        raise ExperimentError(f"constraints: expected a mapping of metric -> (low, high), got {constraints!r}")
    out = {}
    for name, bounds in constraints.items():
        # numpy's numbers and arrays (np.percentile(x, [5, 95])) are the numbers they hold
        pair = ([float(b) if is_number(b) else b for b in bounds]
                if isinstance(bounds, (list, tuple, np.ndarray)) else bounds)
        if not METRIC_INTERVALS.test({name: pair}):
            raise ExperimentError(f"constraints.{name} = {bounds!r}: expected {METRIC_INTERVALS.expected}")
        out[name] = (float(pair[0]), float(pair[1]))
    return out


def family(run_dir: str | Path, constraints: Mapping[str, Sequence[float]] | None = None) -> Family:
    """The accepted rules of the filter run in ``run_dir``, from its store alone (no simulation):
    judged by the last round's bounds, with ``constraints`` replacing or adding bounds (to
    tighten a constraint or add one, and re-filter every simulation of every round)."""
    extra = check_bounds(constraints or {})
    check_filter_run(run_dir)
    with RunStore.open(run_dir, read_only=True) as store:
        exp = run_experiment(store.experiment(), run_dir)
        rounds = store.last_complete_generation()
        rounds = 0 if rounds is None else rounds + 1
        everything = candidates(store)
        stop = store.stop()
    judged = final_constraints(exp, rounds)
    judged.update(extra)
    layout = exp.layout()
    rows, traces, valid, per_round = [], [], [], {}
    for generation, candidate, evaluations in everything:
        if generation >= rounds:
            continue  # an interrupted round: not yet told to the filter
        features = candidate_features(evaluations)
        own = round_constraints(exp.filter.constraints, exp.filter.schedule, generation)
        member = inside(features, judged)
        count = per_round.setdefault(generation, [0, 0, 0, 0, 0])
        count[0] += 1
        count[1] += inside(features, own)
        count[2] += member
        # why a rule has no metrics: a failure (an error, NaN, a timeout) or a blow-up, on any trial
        count[3] += any(e.failed for e in evaluations)
        count[4] += not any(e.failed for e in evaluations) and any(e.status == "blowup" for e in evaluations)
        if all(e.status == "ok" for e in evaluations):
            valid.append(features)
        if member:
            traces.append((evaluations[0].metrics or {}).get("trace") or {})
            theta = evaluations[0].theta
            rows.append({"round": generation, "candidate": candidate, "theta": list(theta),
                         **layout.as_dict(theta), **{k: features[k] for k in sorted(features)}})
    for name in extra:  # a bound on what no simulation measured accepted no rule, without a word
        # what the experiment never measures, whatever its simulations did (all blown up: none to look at)
        if why := unmeasured(exp, name):
            raise ExperimentError(f"constraints.{name}: {why}, so no rule of {run_dir} could pass this bound")
        if valid and not any(name in v for v in valid):
            raise ExperimentError(f"constraints.{name}: no simulation of {run_dir} measured {name}, so no rule "
                                  "could pass this bound")
    # "accepted" is what the filter did (the round's own bounds); "in_family" counts the round's rules
    # in this family (judged by ``judged``): the two differ under a schedule or re-filtered bounds
    acceptance = [{"round": g, "simulated": n, "accepted": a, "fraction": a / n, "in_family": m, "failed": f,
                   "blowups": b} for g, (n, a, m, f, b) in sorted(per_round.items())]
    return Family(rows=rows, constraints=judged, acceptance=acceptance, simulated=sum(c[0] for c in per_round.values()),
                  traces=traces, valid=valid, rounds_planned=exp.filter.rounds, stop=stop, parameters=layout.names)


# --------------------------------------------------------------------------- fresh seeds

@dataclass
class Recheck:
    """Accepted rules simulated again on fresh trials: ``passed[i]`` for ``family.rows[i]``."""

    family: Family
    passed: list[bool]
    evaluations: list[list[Evaluation]]

    @property
    def fraction(self) -> float:
        """The fraction of the accepted rules that pass again (NaN for none)."""
        return float(np.mean(self.passed)) if self.passed else math.nan

    def __repr__(self) -> str:
        return f"Recheck({sum(self.passed)} of {len(self.passed)} accepted rules pass again)"


@lent_kernel("nestplast.families.recheck")
def recheck(run_dir: str | Path, n_trials: int = 2, *, comm: Comm | None = None, limit: int | None = None,
            progress: Callable[[str], None] | None = None) -> Recheck | None:
    """Simulate the accepted rules of ``run_dir`` again, each on ``n_trials`` fresh trials (new NEST
    seeds, new nuisance draws, the experiment's trial ranges), and judge them by the same bounds
    (mean over the fresh trials); at most ``limit`` rules (the first ones). MPI-parallel like a
    run; rank 0 returns the :class:`Recheck`.

    Every simulation is kept in ``run_dir/recheck`` (a store of its own) as it ends, so a re-check
    that was cut short goes on where it stopped when called again; one with more trials or a
    higher ``limit`` simulates only what is new."""

    run_dir = Path(run_dir)
    # refused before anything runs: limit=0 re-checked nothing, and a negative one (a slice) every
    # rule but the last ones, each without a word
    if not is_whole(n_trials) or n_trials < 1:
        raise UserError(f"recheck: n_trials: expected a number of trials >= 1, got {n_trials!r}")
    if limit is not None and (not is_whole(limit) or limit < 1):
        raise UserError(f"recheck: limit: expected a number of rules >= 1 (or None: every rule), got {limit!r}")
    check_comm_given(comm, "this re-check")
    transport = Transport(comm)
    say = progress if progress is not None and transport.is_root else (lambda line: None)

    def load():
        check_filter_run(run_dir)  # before its experiment is read: a fit's settings are none (a traceback)
        with RunStore.open(run_dir, read_only=True) as store:
            return store.experiment(), run_experiment(store.experiment(), run_dir)

    recorded, exp = together(comm, load)
    fam = together(comm, lambda: family(run_dir) if transport.is_root else None)  # a refusal ends every rank
    rows = fam.rows[:limit] if fam is not None else []
    if (len(rows) if comm is None else comm.bcast(len(rows), root=0)) == 0:  # no store, no module, nothing to do
        return Recheck(family=fam, passed=[], evaluations=[]) if transport.is_root else None
    store = together(comm, lambda: open_recheck(run_dir, recorded, exp.seed) if transport.is_root else None)
    try:
        module = together(comm, lambda: build_module(exp, quiet=not transport.is_root))
        problem = FilterProblem(exp, Evaluator(exp, module, rank=transport.rank,
                                               comm=comm if transport.mode == "network" else None))
        if transport.is_worker:
            transport.serve(problem.evaluate)
            return None
        kept = {} if store is None else {(e.generation, e.candidate, e.trial): e for e in store.evaluations()
                                         if e.status not in FAILURES}  # a failure is tried again
        spec = dataclasses.replace(exp.trials, n=n_trials)
        tasks, reused = [], []
        for k, row in enumerate(rows):
            # the trials come from the rule's place in the family (k); the store keys by the rule
            # itself (its round and candidate), and a kept simulation counts only on the same seed
            trials = draw_trials(spec, np.random.SeedSequence([exp.seed, RECHECK_STREAM, k]))
            for t in trials:
                task = Task(row["round"], row["candidate"], problem.with_nuisance(t, -1, k, RECHECK_STREAM),
                            tuple(row["theta"]))
                old = kept.get((task.generation, task.candidate, t.index))
                if old is not None and old.seed == t.seed and tuple(old.theta) == task.theta:
                    reused.append(old)
                else:
                    tasks.append(task)
        tasks = transport.share(tasks)
        say(f"re-check: {counted(len(rows), 'accepted rule')} x {counted(n_trials, 'fresh trial')}"
            + (f", {len(tasks)} to simulate ({len(reused)} kept from an earlier re-check in {run_dir / RECHECK_DIR})"
               if reused else ""))
        done, every = [0], max(1, len(tasks) // 10)

        def arrived(evaluation: Evaluation) -> None:
            store.record_evaluation(evaluation, replace=True, commit=False)  # replace: a failure tried again
            done[0] += 1
            if done[0] % every == 0 or done[0] == len(tasks):  # a line per tenth: a long re-check is not silent
                say(f"  {done[0]} of {len(tasks)} simulations")

        results = transport.map(tasks, problem.evaluate, arrived,
                                flush=store.commit if store is not None else (lambda: None))
        transport.close()
    finally:
        if store is not None:
            store.close()  # what arrived is kept, however this ends
    if not transport.is_root:
        return None
    grouped = by_candidate(results + reused)
    by_rule = [grouped.get((row["round"], row["candidate"]), []) for row in rows]
    passed = [inside(candidate_features(es), fam.constraints) for es in by_rule]
    return Recheck(family=dataclasses.replace(fam, rows=rows, traces=fam.traces[:len(rows)]), passed=passed,
                   evaluations=by_rule)


RECHECK_DIR = "recheck"  # inside the run: the re-check's own store


def open_recheck(run_dir: Path, experiment: dict, seed: int) -> RunStore:
    """The store of ``run_dir``'s re-check: the one an earlier re-check left, or a new one."""
    where = run_dir / RECHECK_DIR
    if not (where / DB_NAME).is_file():
        try:
            where.mkdir(exist_ok=True)
        except OSError as err:
            raise StoreError(f"{where} cannot be made ({err.strerror}): the re-check keeps its simulations there; "
                             "copy the run somewhere writable") from None
        return RunStore.create(where, experiment, seed, meta={"kind": "recheck", "of": str(run_dir), "started": time.time()})
    store = RunStore.open(where)
    try:
        # what gives the results, not when to stop: a resumed filter with more rounds is the same run
        same = run_experiment(store.experiment(), run_dir).digest() == run_experiment(experiment, run_dir).digest()
    except BaseException:
        store.close()
        raise
    if not same:  # e.g. a new run made in a folder that held another one
        store.close()
        raise StoreError(f"{where} holds the re-check of another experiment than {run_dir}'s: move it away "
                         "(or delete it) to re-check this run")
    return store


def check_filter_run(run_dir: str | Path) -> None:
    """Refuse (StoreError) a ``run_dir`` without a finished filter round, saying what it holds."""
    if is_filter_run(run_dir):  # a search's generations are no rounds, its candidates no family
        return
    kind = stored_kind(run_dir)
    if kind in RUN_KINDS and kind != "filter":
        raise StoreError(f"{run_dir} holds {RUN_KINDS[kind][0]}, not a filter run (python -m nestplast report "
                         f"{shlex.quote(str(run_dir))} shows what it holds)")
    what = "a filter run" if kind == "filter" else "a search run (made before runs recorded their kind), or a filter run"
    raise StoreError(f"{run_dir} holds no filter round: {what} that has not finished its first round "
                     f"(python -m nestplast report {shlex.quote(str(run_dir))} shows what it holds)")


def is_filter_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a filter run (its stored strategy is a :class:`Filter`)."""
    with RunStore.open(run_dir, read_only=True) as store:
        last = store.last_complete_generation()
        return last is not None and isinstance(store.load_strategy(last), Filter)


__all__ = ["FilterProblem", "Family", "Recheck", "run_filter", "family", "check_bounds", "recheck", "open_recheck", "new_filter",
           "candidate_features", "candidate_loss", "is_filter_run"]


if __name__ == "__main__":  # python -m nestplast.families: the same as python -m nestplast filter
    from .commands.filter import main

    sys.exit(main())
