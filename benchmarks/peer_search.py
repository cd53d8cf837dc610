"""A whole search, measured, beside Brian2 C++: nestplast's own search of the default experiment
and the same candidates on the same trials in Brian2 C++ standalone, both stopping early alike.

- nestplast: ``run_search`` of the default experiment (12 generations of 8 candidates and the mean,
  2 trials each: 216 evaluations on 24 trials), one core, timed whole (the module compiled before,
  once per rule, and shown apart).
- Brian2 C++ standalone, the network of ``peer_brian2.py``: a build per trial (its connectivity,
  seed and input rate are compiled in; one build directory, so a trial compiles only what changed),
  then the binary run once per candidate of that trial with the candidate's coefficients as
  run-time arguments. It stops as nestplast's evaluation does: the E rate of each 0.5 s chunk,
  low-passed, leaving the experiment's rate band ends the binary (``peer_brian2.band_stop``). A
  blown-up candidate costs both a fraction of its 5 s.

With ``--large``, the candidates of ``--large-trials`` of those trials (spread over the search) are
run again at 4096 E + 1024 I (the default's in-degrees) in both: nestplast's ``Evaluator`` (the
search's evaluation, early stop included) and Brian2 C++ as above; the sums are scaled to the 24
trials. ``--jobs N`` runs N trials at once (a machine with N free cores; each run is one process on
one core), nestplast's and Brian2's side by side at the large size; nestplast's default search
still runs alone, on an otherwise idle machine, beside Brian2's trials run N at once.

    .venv/bin/python benchmarks/peer_search.py [--brian2-python ../peer-venv/bin/python] [--large]
                                               [--large-trials 4] [--jobs 1]

Prints per side CPU seconds (the process and its children: compilers, the binary), how many
evaluations each stopped early and where they disagree, and Brian2 C++ / nestplast (goal > 1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import stopping
from options import at_least
from peer_brian2 import Size, brian2_version, clocks, experiment_for, peer_params, since  # noqa: E402

PEER = str(Path(__file__).parent / "peer_brian2.py")


@dataclasses.dataclass
class TrialGroup:
    """The candidates of one generation on one of its trials."""

    generation: int
    trial: object  # nestplast.networks.Trial
    thetas: list[tuple[float, ...]]
    stopped: list[float | None]  # where nestplast's evaluation stopped early (None: it ran to its end)


def run_nestplast_search(out: Path):
    """nestplast's search of the default experiment into ``out``: (experiment, (wall, CPU) s, compile (wall, CPU) s)."""
    from nestplast import experiment
    from nestplast.runs import build_module
    from nestplast.search import run_search

    exp = experiment.default()
    start = clocks()
    build_module(exp)  # compiled once per rule and cached: not part of a search
    compiled = since(start)
    start = clocks()
    outcome = run_search(exp, out, progress=None)
    elapsed = since(start)
    print(f"nestplast search: {outcome.evaluations} evaluations, {outcome.blowups} stopped early (blow-ups)")
    return exp, elapsed, compiled


def trial_groups(exp, out: Path) -> list[TrialGroup]:
    """The search's evaluations in ``out`` grouped by (generation, trial), with the search's own trials."""
    from nestplast.networks import draw_trials
    from nestplast.store import RunStore

    with RunStore.open(out, read_only=True) as store:
        rows = store.evaluations()
    groups: dict[tuple[int, int], TrialGroup] = {}
    for e in sorted(rows, key=lambda e: (e.generation, e.trial, e.candidate)):
        key = (e.generation, e.trial)
        if key not in groups:
            trial = draw_trials(exp.trials, np.random.SeedSequence([exp.seed, e.generation]))[e.trial]
            assert trial.seed == e.seed, "the search's trials drawn again differ from the stored ones"
            groups[key] = TrialGroup(e.generation, trial, [], [])
        groups[key].thetas.append(tuple(e.theta))
        groups[key].stopped.append(stopped_at(e))
    return list(groups.values())


def stopped_at(evaluation) -> float | None:
    """Where nestplast's evaluation stopped early (a blow-up), None where it ran to its end."""
    return evaluation.metrics.get("t_blowup_s") if evaluation.status == "blowup" else None


def band_of(exp) -> dict:
    from nestplast.objectives import RateBand

    o = exp.objective
    band = RateBand(low=o.rate_band[0], high=o.rate_band[1])
    return {"low": band.low, "high": band.high, "tau_s": band.tau_s, "start": band.value_hz, "chunk_s": o.chunk}


def brian2_group(python: str, exp, size: Size, group: TrialGroup, directory: str) -> dict:
    """Brian2 C++: the group's trial built, then each of its candidates run (peer_brian2.brian2_trial)."""
    params = peer_params()
    params["input_rate"] *= group.trial.input_rate_scale
    names = [name.split(".", 1)[1] for name in exp.layout().names]  # the rule's: tau_pre, alpha, ...
    job = {"params": params, "size": dataclasses.asdict(size),
           "trial": {"seed": group.trial.seed, "stop": band_of(exp), "directory": directory,
                     "candidates": [dict(zip(names, theta)) for theta in group.thetas]}}
    proc = subprocess.run([python, PEER, "--worker", "trial", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"Brian2 trial failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def nestplast_group(exp, group: TrialGroup) -> dict:
    """nestplast's evaluation of the group's candidates on its trial (at ``exp``'s size): times and stops."""
    from nestplast.evaluate import Evaluator
    from nestplast.runs import build_module
    from nestplast.tasks import Task

    evaluator = Evaluator(exp, build_module(exp))
    runs = []
    for k, theta in enumerate(group.thetas):
        start = clocks()
        evaluation = evaluator(Task(group.generation, k, group.trial, theta))
        runs.append({"time": since(start), "stopped_at": stopped_at(evaluation)})
    return {"runs": runs}


def agreement(ours: list[float | None], theirs: list[float | None]) -> str:
    """How the two sides' early stops compare, evaluation by evaluation."""
    both = sum(a is not None and b is not None for a, b in zip(ours, theirs))
    same_chunk = sum(a is not None and b is not None and abs(a - b) < 1e-6 for a, b in zip(ours, theirs))
    only_ours = sum(a is not None and b is None for a, b in zip(ours, theirs))
    only_theirs = sum(a is None and b is not None for a, b in zip(ours, theirs))
    return (f"stopped early by both {both} (at the same chunk {same_chunk}), by nestplast alone {only_ours}, "
            f"by Brian2 alone {only_theirs}")


def default_size(python: str, work: Path, jobs: int) -> tuple[object, list[TrialGroup]]:
    exp, (wall, cpu), (cwall, ccpu) = run_nestplast_search(work / "search")
    groups = trial_groups(exp, work / "search")
    print(f"  nestplast: the whole search {cpu:.1f} s CPU ({wall:.1f} s wall); its module compiled once per rule "
          f"({ccpu:.1f} s CPU; 0 when cached)", flush=True)
    size = Size(exp.network.n_e, exp.network.n_i, exp.objective.t_train + exp.objective.t_score)
    results = run_groups(python, exp, size, groups, work, jobs, nestplast_side=False)
    runs, rebuild, first = brian2_cpu(results)
    builds = (len(groups) - 1) * rebuild  # the search's first trial is the first build
    theirs = [run["stopped_at"] for r in results for run in r["brian2"]["runs"]]
    ours = [s for g in groups for s in g.stopped]
    print(f"  Brian2 C++: {runs + builds:.1f} s CPU: its runs {runs:.1f} s, {len(groups) - 1} builds for another "
          f"trial {builds:.1f} s ({rebuild:.1f} s each; its first build apart: {first:.1f} s); {agreement(ours, theirs)}")
    print(f"  whole default search, Brian2 C++ / nestplast = {(runs + builds) / cpu:.2f} (CPU; goal > 1); "
          f"its runs alone / nestplast = {runs / cpu:.2f}", flush=True)
    return exp, groups


def run_groups(python: str, exp, size: Size, groups: list[TrialGroup], work: Path, jobs: int,
               nestplast_side: bool) -> list[dict]:
    """Each group in Brian2 (and in nestplast if ``nestplast_side``); ``jobs`` groups at once, each
    job with its own Brian2 build directory."""
    directories: queue.Queue[Path] = queue.Queue()
    for k in range(jobs):
        directories.put(work / f"brian2_{k}")

    def one(group: TrialGroup) -> dict:
        directory = directories.get()  # one build directory per job: a trial compiles what changed since its last
        try:
            fresh = not directory.exists()
            result = {"brian2": brian2_group(python, exp, size, group, str(directory))}
            result["brian2"]["first_build"] = fresh
        finally:
            directories.put(directory)
        if nestplast_side:
            result["nestplast"] = run_in_child(exp, group)
        return result

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, groups))


def run_in_child(exp, group: TrialGroup) -> dict:
    """nestplast_group in a process of its own (one core each when several run at once)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"n_e": exp.network.n_e, "n_i": exp.network.n_i, "generation": group.generation,
                   "trial": dataclasses.asdict(group.trial), "thetas": group.thetas}, f)
    proc = subprocess.run([sys.executable, __file__, "--nestplast-worker", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise SystemExit(f"nestplast evaluations failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def brian2_cpu(results: list[dict]) -> tuple[float, float, float]:
    """Brian2 C++'s CPU seconds: its runs, one build for another trial (the mean of those measured),
    and its first build (a fresh build directory compiles everything once, as nestplast compiles
    its module once: both apart)."""
    runs = sum(run["time"][1] for r in results for run in r["brian2"]["runs"])
    first = [r["brian2"]["build"][1] for r in results if r["brian2"]["first_build"]]
    again = [r["brian2"]["build"][1] for r in results if not r["brian2"]["first_build"]]
    return runs, float(np.mean(again)), float(np.mean(first)) if first else 0.0


def large_size(python: str, exp, groups: list[TrialGroup], work: Path, n_trials: int, jobs: int) -> None:
    size = Size(4096, 1024, exp.objective.t_train + exp.objective.t_score)
    picked = [groups[round(k)] for k in np.linspace(0, len(groups) - 1, n_trials)]
    print(f"\n{size.label}: the candidates of {n_trials} of the {len(groups)} trials, again "
          f"({sum(len(g.thetas) for g in picked)} evaluations)", flush=True)
    results = run_groups(python, experiment_for(size), size, picked, work, jobs, nestplast_side=True)
    ours = sum(run["time"][1] for r in results for run in r["nestplast"]["runs"])
    runs, rebuild, _ = brian2_cpu(results)  # every build here is one for another trial (the directories have built)
    scale = len(groups) / n_trials
    theirs = runs * scale + (len(groups) - 1) * rebuild
    stops = agreement([run["stopped_at"] for r in results for run in r["nestplast"]["runs"]],
                      [run["stopped_at"] for r in results for run in r["brian2"]["runs"]])
    print(f"  nestplast {ours:.1f} s CPU; Brian2 C++ runs {runs:.1f} s CPU, a build for another trial {rebuild:.1f} s; "
          f"{stops}")
    print(f"  a whole search at this size (runs x {scale:g}, {len(groups) - 1} builds): nestplast {ours * scale:.0f} s, "
          f"Brian2 C++ {theirs:.0f} s; Brian2 C++ / nestplast = {theirs / (ours * scale):.2f} (CPU; goal > 1); "
          f"its runs alone / nestplast = {runs / ours:.2f}", flush=True)


def nestplast_worker(path: str) -> None:
    from nestplast.networks import Trial

    job = json.loads(Path(path).read_text())
    exp = experiment_for(Size(job["n_e"], job["n_i"], 5.0))
    group = TrialGroup(job["generation"], Trial(**job["trial"]), [tuple(t) for t in job["thetas"]], [])
    print(json.dumps(nestplast_group(exp, group)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brian2-python", default=sys.executable, help="a Python with Brian2 (see peer_brian2.py)")
    parser.add_argument("--large", action="store_true", help="then the candidates of some trials at 4096 E + 1024 I")
    parser.add_argument("--large-trials", type=at_least(1), default=4, help="how many of the 24 trials, spread over the search")
    parser.add_argument("--jobs", type=at_least(1), default=1, help="trials run at once (one core each)")
    parser.add_argument("--nestplast-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nestplast_worker:
        nestplast_worker(args.nestplast_worker)
        return 0
    brian2_version(args.brian2_python)  # before the search: it ran minutes, then failed in Brian2
    print(f"a whole search of the default experiment, nestplast and Brian2 C++ standalone, one core per run "
          f"(load {os.getloadavg()[0]:.2f})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        exp, groups = default_size(args.brian2_python, Path(tmp), args.jobs)
        if args.large:
            large_size(args.brian2_python, exp, groups, Path(tmp), args.large_trials, args.jobs)
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
