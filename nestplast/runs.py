"""A run: one experiment searched (or filtered) in its folder, as the search and the filter share it.

The experiment a file or a run's folder stands for, its compiled module and search space; the
run's store opened new or resumed, with the checks that a resume continues the same run (same
experiment, rule source, ranks, stop limits ahead); the notes of its headline; and
:func:`run_loop`, which puts them together around :func:`nestplast.engine.run`. The problems and
strategies are the search's (:mod:`nestplast.search`) and the filter's (:mod:`nestplast.families`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, engine
from .analysis import check_output_directory
from .analysis.search import failure_breakdown
from .engine import Outcome
from .errors import UserError
from .evaluate import Evaluator
from .experiment import (
    RULE_COPY_DIR,
    Experiment,
    differences,
    keep_rule_file,
    noisy_target_note,
    replaced_neuron_defaults,
    resumable_keys,
    run_experiment,
    unused_network_keys,
    validate,
)
from .kernel import lent_kernel
from .parallel import Transport, check_comm_given, crowded_cores_note, together
from .store import DB_NAME, RUN_KINDS, RunStore, StoreError, check_same_kind, note_what_is_kept, software_since, stored_kind
from .strategies import SearchSpace, Strategy
from .wording import counted

if TYPE_CHECKING:
    from mpi4py.MPI import Comm

    from .builder import Module


# simulated seconds per evaluation from which the headline asks whether ms were meant: 5 x the longest
# shipped experiment's (families_paper, 60 s); at 1000 s, t_train = 500 meant as ms ran without a word
LONG_SIMULATION_S = 300.0


def long_simulation_note(exp: Experiment) -> str:
    """A line for a run's headline when each evaluation simulates ``LONG_SIMULATION_S`` or more
    (e.g. t_train = 4000 meant as ms: every evaluation a timeout), else ''."""
    simulated = exp.objective.t_train + exp.objective.t_score
    if simulated < LONG_SIMULATION_S:
        return ""
    return f"\nnote: each evaluation simulates {simulated:g} s of network time (objective.t_train + t_score are in seconds, not ms)"


def idle_ranks_note(transport: Transport, per_trial: int, what: str, trials: int) -> str:
    """A line for a run's headline when the population mode has more ranks than a generation has
    tasks (``per_trial`` candidates, ``what`` they are, each on ``trials`` trials), else ''. The
    others would wait for every generation's end doing nothing: on a 16-core machine, 4 ranks x 4
    threads evaluated as many candidates per second as 16 x 1 (benchmarks/ranks_threads.py)."""
    tasks = per_trial * trials
    if transport.mode != "population" or transport.size <= tasks:
        return ""
    idle = transport.size - tasks
    return (f"\nnote: {transport.size} ranks for {tasks} tasks a generation ({what}, "
            f"{counted(trials, 'trial')} each): {counted(idle, 'rank stays', 'ranks stay')} "
            "idle; use fewer ranks with more --threads each (up to 4 threads per rank evaluate as many candidates "
            "per core as 1), or more candidates per generation")


def build_module(exp: Experiment, quiet: bool = True) -> Module:
    """The experiment's compiled module: every rule of its plastic types, with its neuron."""
    from .builder import build  # NESTML is imported only when a module is needed

    return build(exp.module_rules(), exp.rule.neuron, quiet=quiet)


def search_space(exp: Experiment) -> SearchSpace:
    """The searched parameters of ``exp``: bounds and log space from the rule, the start point
    from each type's ``rule.start`` (``rule.by_type`` applied; the rule's defaults otherwise)."""
    layout = exp.layout()
    low, high = layout.bounds()
    start = []
    for name, default in zip(layout.names, layout.defaults()):  # "IE.alpha": type IE's start of alpha
        ct, parameter = name.split(".", 1)
        start.append(exp.rule_spec(ct).start.get(parameter, default))  # rule.start alone ignored by_type's
    return SearchSpace(names=tuple(layout.names), low=tuple(low.tolist()), high=tuple(high.tolist()),
                       log=tuple(layout.log_mask().tolist()), start=tuple(float(v) for v in start))


# the options of each command that change a run's experiment (a resume must go without them)
CHANGING_OPTIONS = {"search": "--seed, --threads or --population-size", "filter": "--seed or --threads"}


def other_experiment(stored: dict, exp: Experiment, where: Path) -> list[str]:
    """What differs between the ``stored`` experiment of the run in ``where`` and ``exp``, that
    would give other results (``key: then -> now``); when to stop is not compared."""
    with warnings.catch_warnings():  # which copy of the rule file is read does not matter here (below)
        warnings.simplefilter("ignore")
        theirs = run_experiment(stored, where).to_dict()
    ours = exp.to_dict()
    for section, key in [*resumable_keys(), ("rule", "file")]:
        # where the rule file is does not matter (moved, or the run's own copy): its content is
        # compared apart (open_run, rule_source_sha256)
        ours[section].pop(key)
        theirs[section].pop(key)
    return differences(theirs, ours)


def check_resumable(stored: dict, exp: Experiment, where: Path, kind: str = "search") -> None:
    """Refuse to resume the run in ``where`` with an experiment that would give other results
    than the stored one (another seed, rule, network, ...); when to stop may change. ``kind``:
    the command resuming it (search or filter), whose options the message names."""
    if changed := other_experiment(stored, exp, where):
        raise StoreError(f"cannot resume {where} with another experiment (a run is one experiment): "
                         f"{'; '.join(changed)}. Resume without an experiment file (in Python: the run's "
                         f"folder for the experiment) and without "
                         f"{CHANGING_OPTIONS[kind]}, or with them as the run began (the value left of each ->; "
                         f"e.g. the --seed it began with), or start a new run with another --out")


def _split(ranks: int, mode: str) -> str:
    return (f"in network mode on {ranks} ranks (each simulation spread over all of them)" if mode == "network"
            else "with each simulation in one process (serial or population mode)")


def check_same_split(meta: dict, ranks: int, mode: str, where: Path) -> None:
    """Refuse to resume the run in ``where`` (its ``meta``) with its simulations split over another
    number of MPI processes: with MPI inside NEST (network mode) a simulation's random streams
    belong to NEST's virtual processes (ranks x threads), so the resumed run would not go on as
    the one begun. In serial and population mode every simulation runs in one process: any number
    of ranks gives the same run."""
    if "ranks" not in meta or "mode" not in meta:
        return  # recorded before the run's mode was

    def processes(ranks: int, mode: str) -> int:
        return ranks if mode == "network" else 1

    if processes(meta["ranks"], meta["mode"]) != processes(ranks, mode):
        began = _split(meta["ranks"], meta["mode"])
        how = (f"on {meta['ranks']} ranks with the NEST built with MPI" if meta["mode"] == "network"
               else "with a NEST without MPI (the PyPI wheel; any number of ranks)")
        raise StoreError(f"cannot resume {where} {_split(ranks, mode)}: it began {began}, and NEST's random "
                         "streams belong to its virtual processes (ranks x threads), so the results would change. "
                         f"Resume it {how}, or start a new run with another --out")


def check_limit_ahead(store: RunStore, exp: Experiment, out: Path, kind: str) -> None:
    """Refuse a resume whose changed limit the run has already reached: it would stop at once and
    record that as the run's stop reason (an experiment file given again on a resume brought back
    its own max_generations under one raised with --max-generations)."""
    last = store.last_complete_generation()
    if last is None:
        return
    stored = store.experiment()
    done = last + 1
    if kind == "filter":
        limits = [("filter", "rounds", exp.filter.rounds, lambda n: done >= n, f"{done} rounds", f"--rounds above {done}")]
    else:
        # candidates as pycma counts them (the stored rows, each trial and the mean, are 2.5 x more), and as it
        # stops: once their count exceeds maxfevals (countevals - 1 >= maxfevals)
        candidates = store.candidates_evaluated(last)
        # the seconds already spent evaluating (what max_wall_s limits): --max-wall-s 3600 read as "one hour more"
        # stopped at once, recording the limit as the run's stop reason
        wall = exp.search.max_wall_s  # read from the stored strategy (CMA-ES's, prior's) only where it changes
        used = store.load_strategy(last).wall_s if wall not in (None, stored.get("search", {}).get("max_wall_s")) else 0.0
        limits = [("search", "max_generations", exp.search.max_generations, lambda n: done >= n, f"{done} generations",
                   f"--max-generations above {done}"),
                  ("search", "max_evaluations", exp.search.max_evaluations, lambda n: candidates - 1 >= n,
                   f"{candidates} candidates evaluated", f"--max-evaluations of {candidates} or more"),
                  ("search", "max_wall_s", exp.search.max_wall_s, lambda s: used >= s, f"{used:.1f} s spent evaluating "
                   "(the limit is the run's total, not this session's)", f"--max-wall-s above {used:.0f}")]
    from_file = Path(exp.source).name != DB_NAME  # an experiment file given again, not the run's own
    for section, key, limit, reached, has, give in limits:
        before = stored.get(section, {}).get(key)
        if limit is not None and limit != before and reached(limit):
            raise StoreError(f"cannot resume {out} with {section}.{key} = {limit} (the run had {before}): it already "
                             f"has {has}. Give {give} to go on (in Python: exp.{section}.{key})"
                             + (" (a resume given an experiment file takes when to stop from the file)" if from_file else ""))
    if kind == "search":
        check_stop_raised(store.stop() or {}, stored.get("search", {}), exp, out)


# The stop reasons (pycma's names) that are limits of the experiment's, and how to raise each
STOP_LIMITS = {"maxiter": ("max_generations", "--max-generations"), "maxfevals": ("max_evaluations", "--max-evaluations"),
               "timeout": ("max_wall_s", "--max-wall-s"), "ftarget": ("target_loss", "a lower search.target_loss")}


def check_stop_raised(stop: dict, stored: dict, exp: Experiment, out: Path) -> None:
    """Refuse a resume that raises a limit when the run stopped on another one, left as it was: the
    run would stop again at once (a run stopped on its wall time, resumed with more generations,
    did nothing and said nothing). A resume that changes no limit is left alone: it reports the
    run as done, as a batch job resubmitted after the end expects."""
    ours = dataclasses.asdict(exp.search)
    if all(ours[key] == stored.get(key) for key, _ in STOP_LIMITS.values()):
        return
    for reason, (key, how) in STOP_LIMITS.items():
        if reason in stop and ours[key] == stored.get(key):
            raise StoreError(f"cannot resume {out}: it stopped on search.{key} = {stored.get(key)} (pycma's {reason}), "
                             f"which this resume leaves as it was, so it would stop again at once. Give {how} "
                             "to go on (with an experiment file given again: its value there)")


def resumed_limits(store: RunStore, exp: Experiment) -> list[str]:
    """Notes for a resume that changes when the run stops (from an experiment file or an option)."""
    stored, ours = store.experiment(), exp.to_dict()
    return [f"note: resuming with {section}.{key} = {ours[section][key]} (the run had {stored[section][key]})"
            for section, key in resumable_keys()
            if key in stored.get(section, {}) and stored[section][key] != ours[section][key]]


def open_run(exp: Experiment, out: Path, *, resume: bool, ranks: int, mode: str, kind: str = "search") -> RunStore:
    """The run's store: a new one, or (``resume``) the existing one after checking that it holds
    this experiment and a run of this ``kind`` (``search`` or ``filter``)."""
    out = Path(out)
    rule_source = hashlib.sha256("".join(r.source for r in exp.module_rules()).encode()).hexdigest()
    if resume:
        store = RunStore.open(out)
        try:
            check_same_kind(store.meta().get("kind"), kind, out)
            check_resumable(store.experiment(), exp, out, kind)
            if "kind" not in store.meta() and (types := exp.fixed_added_to()):  # a run begun before the change
                raise StoreError(f"cannot resume {out}: it began when rule.by_type.{types[0]}.fixed replaced "
                                 "rule.fixed; it now adds to it, which would change the run's settings midway; "
                                 "start a new run with another --out")
            check_same_split(store.meta(), ranks, mode, out)
            check_limit_ahead(store, exp, out, kind)
            if store.meta().get("rule_source_sha256", rule_source) != rule_source:
                # the run keeps its own copy of one's own rule file: put it back, rather than start again
                kept = out / RULE_COPY_DIR / Path(exp.rule.file).name if exp.rule.file else None
                back = (f"; the run's own copy is {kept}: resume without the experiment file (--out {out} --resume; "
                        "in Python the run's folder for the experiment), which reads that copy, or copy it back "
                        f"over {exp.rule.file}, or start a new run with another --out"
                        if kept is not None and kept.is_file() else "; start a new run with another --out")
                raise StoreError(f"cannot resume {out}: the rule's NESTML source {exp.rule.file or exp.rule.name} "
                                 f"changed since the run began (a run is one rule){back}")
        except BaseException:
            store.close()  # a refused resume lets go of the run at once
            raise
        return store
    check_output_directory(out)
    recorded = exp.to_dict()
    if exp.rule.file is not None:  # set in Python relative to the working directory: recorded as the file it is
        recorded["rule"]["file"] = str(Path(exp.rule.file).resolve())
    store = RunStore.create(out, experiment=recorded, seed=exp.seed,
                            meta={"nestplast": __version__, "kind": kind, "ranks": ranks, "mode": mode, "digest": exp.digest(),
                                  "rule_source_sha256": rule_source, "experiment_file": exp.source,
                                  "versions": software_versions(), "started": time.time()})
    keep_rule_file(exp, out)
    return store


# what a simulation's or a sample's numbers depend on
VERSIONED = ("nest-simulator", "nestml", "cma", "numpy", "nestplast")


def software_versions() -> dict[str, str]:
    """The versions of what a run's numbers depend on, kept in its metadata; nestplast's with a
    digest of its source (:func:`source_digest`)."""
    import importlib.metadata

    from .builder import nest_version  # a NEST built from source is not known to pip
    from .rules import MODELS_DIR

    versions = {name: importlib.metadata.version(name) for name in VERSIONED if name not in ("nest-simulator", "nestplast")}
    source = source_digest((Path(__file__).resolve().parent, MODELS_DIR))
    return {"nest-simulator": nest_version(), **versions, "nestplast": f"{__version__}+{source}"}


@functools.cache
def source_digest(folders: tuple[Path, ...]) -> str:
    """A digest of the files under ``folders`` (their paths and contents; caches left out): an
    editable install (setup.sh's) changed by a `git pull` between two slices of a run keeps its
    version number, and the run was scored by two versions of the code without a word."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def version_changes(meta: dict) -> str | None:
    """A note when the software a run began with (its ``meta``) differs from this process's:
    evaluations after a resume may then differ from the uninterrupted run's. None when the same,
    or for a run that recorded no versions."""
    began, now = meta.get("versions"), software_versions()
    changed = [f"{name} {began[name]} -> {now[name]}" for name in VERSIONED
               if began and name in began and began[name] != now[name]]
    if not changed:
        return None
    return (f"note: this run began with other software ({', '.join(changed)}): what it evaluates from here on "
            "may differ from what the uninterrupted run would have (start a new run with another --out to keep "
            "one version)")


def record_resumed(store: RunStore, exp: Experiment) -> None:
    """A resumed run goes on with ``exp``'s stop settings, and has not stopped: kept in the store, a
    later plain ``--resume`` (after a crash) keeps to them, and a report while it runs (or after a
    kill) gives no old stop reason."""
    stored, ours = store.experiment(), exp.to_dict()
    for section, key in resumable_keys():
        stored.setdefault(section, {})[key] = ours[section][key]
    # software other than the run's last: from which generation on (said once on stderr, and the run read as if
    # it had all run on the first versions)
    meta, now = store.meta(), software_versions()
    if "versions" in meta and now != software_since(meta)[-1][1]:
        last = store.last_complete_generation()
        meta.setdefault("versions_from", []).append({"generation": 0 if last is None else last + 1, "versions": now})
        store.record_resumed(stored, meta)
    else:
        store.record_resumed(stored)


@lent_kernel("this nestplast run")  # a user's own NEST network in the process is warned about, and the kernel restored
def run_loop(exp: Experiment, out: str | Path, problem: Callable[[Experiment, Evaluator], engine.Problem],
             strategy: Callable[[RunStore, Path, Callable[[str], None]], Strategy], headline: Callable[[Transport], str],
             *, kind: str = "search", resume: bool = False, comm: Comm | None = None,
             progress: Callable[[str], None] | None = None) -> Outcome | None:
    """What the search and the filter share: the store (new or resumed; its run's ``kind``), the
    module, an evaluator per rank, the ``strategy`` (made on rank 0 from the store) and the engine's
    loop over ``problem``; ``headline`` is the first progress line. Rank 0 returns the Outcome."""
    # before the run's folder is made: a bool for progress failed at the first line, and the retry
    # met the folder it had left ("already holds a run")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected the run's folder, where it keeps every evaluation (a fit's out=None, a "
                        f"temporary folder, is not for a {kind}, which is resumed from its folder), got "
                        f"{type(out).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a function of one line of text (e.g. print) or None, got "
                        f"{type(progress).__name__}")
    out = Path(out)
    check_comm_given(comm, f"this {kind}")
    validate(exp, search=kind == "search")  # one made or changed in Python has not been through the file's checks
    transport = Transport(comm)
    crowded = crowded_cores_note(comm, exp.search.threads)  # on every rank: it gathers
    say = progress if progress is not None and transport.is_root else (lambda line: None)
    # Anything the user can fix fails on every rank together, before any rank waits for another.
    def open_store() -> RunStore | None:
        return together(comm, lambda: open_run(exp, out, resume=resume, ranks=transport.size, mode=transport.mode,
                                               kind=kind) if transport.is_root else None)

    def make_strategy() -> Strategy | None:
        return together(comm, lambda: strategy(store, out, say) if transport.is_root else None)

    # A resume is refused (another experiment, another command's run, ...) before any compiling; a
    # new run is created only once its module is built and its neurons take their parameters, so
    # that a mistake there leaves no empty run in the way of the corrected one (its folder is
    # checked first, though).
    if not resume:
        together(comm, lambda: (check_output_directory(out), _check_free(out, exp, kind), RunStore.check_no_other_files(out))
                 if transport.is_root else None)
    store = open_store() if resume else None
    try:
        chosen = make_strategy() if resume else None
        # rank 0 compiles first, the others then find it cached: a build that fails failed again on every rank
        # in turn (each took the cache lock after the one before had failed), minutes each
        built = together(comm, lambda: build_module(exp, quiet=False) if transport.is_root else None)
        module = together(comm, lambda: built if transport.is_root else build_module(exp, quiet=True))
        evaluator = Evaluator(exp, module, rank=transport.rank, comm=comm if transport.mode == "network" else None)
        together(comm, evaluator.check_neuron_params)
        together(comm, lambda: evaluator.check_rule_params(search_space(exp).start))
        if not resume:
            store = open_store()
            chosen = make_strategy()
        if transport.is_root:
            # set, and read only by NEST's own spike exchange across ranks (network mode): changed nothing, without a word
            unread = ("note: search.compressed_spikes = true is read only in network mode (NEST built with MPI, one "
                      f"network over the ranks); this run is in {transport.mode} mode: it changes nothing"
                      if exp.search.compressed_spikes and transport.mode != "network" else "")
            noisy = noisy_target_note(exp) if kind == "search" else ""  # a filter scores no target rate
            notes = (crowded, unused_network_keys(exp), replaced_neuron_defaults(exp), noisy, unread)
            say(headline(transport) + "".join(f"\n{note}" for note in notes if note))
            if resume and (note := version_changes(store.meta())):
                say(note)
            for note in resumed_limits(store, exp) if resume else ():
                say(note)
        # a resume goes on with its new settings, recorded only once the engine knows that it can (a
        # refused resume leaves the run as it was)
        return engine.run(problem(exp, evaluator), chosen, store, transport, say,
                          on_start=(lambda: record_resumed(store, exp)) if resume and transport.is_root else None)
    except (KeyboardInterrupt, Exception) as err:
        # rank 0, once the run exists: a Ctrl-C, or an error of the caller's own progress function; not a refusal
        # (a UserError: a resume of another experiment would not "go on")
        if store is not None and not isinstance(err, UserError):
            note_what_is_kept(err, out)
        raise
    finally:
        if store is not None:
            store.close()


def _check_free(out: Path, exp: Experiment, kind: str) -> None:
    """:meth:`RunStore.check_free`, and where the run in ``out`` is one of this ``kind`` but of
    another experiment, say so: the advice to continue it with --resume read as if it were this one's."""
    try:
        RunStore.check_free(out)
    except StoreError as err:
        if stored_kind(out) != kind:  # another command's run (a fit's settings are no experiment): named as such
            raise
        try:
            with RunStore.open(out, read_only=True) as store:
                changed = other_experiment(store.experiment(), exp, out)
        except (UserError, sqlite3.Error, KeyError):  # a run of an older version: the message as it was
            raise err from None
        if changed:
            raise StoreError(f"{err}. Its run is of another experiment than this one ({'; '.join(changed[:3])}"
                             f"{'; ...' if len(changed) > 3 else ''}): --resume would continue that one") from None
        raise


def as_experiment(exp: Experiment | str | os.PathLike) -> Experiment:
    """``exp``, the experiment in the TOML file ``exp`` names (``run_search("my.toml", out)``
    failed in a dataclass function with a TypeError that named nothing), or the experiment the
    run in the folder ``exp`` recorded (``run_search(RUN, RUN, resume=True)`` goes on with it)."""
    from .experiment import load

    if isinstance(exp, (str, os.PathLike)):
        if (Path(exp) / DB_NAME).is_file():
            with RunStore.open(exp, read_only=True) as store:
                kind = store.meta().get("kind")
                if kind not in (None, "search", "filter"):  # a fit records its settings, not an experiment
                    raise StoreError(f"{exp} holds {RUN_KINDS.get(kind, (f'a {kind} run',))[0]}, not a search or a "
                                     "filter run: it has no experiment (a fit's settings are in its fit.json)")
                return run_experiment(store.experiment(), exp)
        return load(exp)
    if not isinstance(exp, Experiment):
        raise TypeError(f"expected an Experiment (nestplast.load_experiment(path), nestplast.default_experiment()) "
                        f"or the path of an experiment file, got {type(exp).__name__}")
    return exp


def all_failed(evaluations: int, failed: int) -> bool:
    """Whether no evaluation of a run gave a result (each raised, timed out or gave NaN), from its
    counts (an :class:`~nestplast.engine.Outcome`'s, or its store's ``counts()``)."""
    return evaluations > 0 and failed == evaluations


def no_rule_passed(out: Path) -> str:
    """What a filter run in ``out`` whose every simulation failed says: its report only "0 accepted rules"."""
    return f"every simulation failed, so no rule passed; {commonest_failure(out)}"


def commonest_failure(out: Path) -> str:
    """The commonest reason the evaluations of the run in ``out`` failed, with its count."""
    with RunStore.open(out, read_only=True) as store:
        reason = failure_breakdown(store.evaluations())["by_reason"][0]
    return f"most often ({reason['status']}, x{reason['count']}): {reason['message']}"


__all__ = ["as_experiment", "build_module", "search_space", "open_run", "check_resumable", "run_loop",
           "software_versions", "all_failed", "no_rule_passed", "commonest_failure"]
