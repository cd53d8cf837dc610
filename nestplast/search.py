"""``python -m nestplast.search [EXPERIMENT] [options]``: CMA-ES search of a rule's parameters.

pycma's ask/tell drives the search on rank 0; tasks (candidate x trial) are evaluated over MPI
ranks (:mod:`nestplast.parallel`); every evaluation is recorded in the run's SQLite database the
moment it arrives, and the optimiser's state after every generation, so that ``--resume``
continues a killed run from its last complete generation without losing or repeating an
evaluation. Reproducible: CMA-ES samples generation g from a seed derived from (run seed, g), and
trial j of generation g from (run seed, g, j), whatever the number of ranks.

    python -m nestplast.search                      # the built-in default experiment
    mpirun -n 64 python -m nestplast.search my.toml --out runs/my
    python -m nestplast.search --out runs/my --resume
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__, experiment
from .evaluate import Evaluator, Result, Task
from .experiment import Experiment, ExperimentError
from .networks import draw_trials
from .objectives import aggregate_trials
from .parallel import choose_mode, map_tasks, serve, stop_workers, world


@dataclass
class Summary:
    generations: int
    evaluations: int
    failed: int
    best_loss: float
    best_params: dict[str, float]
    stop: str


class SeededNormal:
    """pycma's source of normal samples, reseeded every generation. pycma's default binds
    ``np.random.randn``, whose RandomState is copied when the optimiser is pickled: a resumed
    optimiser would not follow ``np.random.seed``. This one travels inside the pickle."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


def _cma(exp: Experiment, seed: int):
    """A CMA-ES over the search space: log10 for time constants, bounds, sigma0 as a fraction of
    each parameter's range."""
    import cma

    layout = exp.layout()
    low, high = (layout.to_search_space(b) for b in layout.bounds())
    start = layout.defaults()
    names = exp.rule.start
    for i, name in enumerate(layout.names):
        param = name.split(".", 1)[1]
        if param in names:
            start[i] = names[param]
    x0 = layout.to_search_space(start)
    options = {"bounds": [low.tolist(), high.tolist()], "CMA_stds": ((high - low) * exp.search.sigma0).tolist(),
               "popsize": exp.search.population_size, "seed": seed, "verbose": -9, "randn": SeededNormal(seed)}
    return cma.CMAEvolutionStrategy(x0.tolist(), 1.0, options)


def _generation_seed(seed: int, generation: int) -> int:
    return int(np.random.SeedSequence([seed, generation]).generate_state(1)[0])


def _progress(g: int, results: list[Result], losses: np.ndarray, es, elapsed: float, n_evals: int,
              max_generations: int, start_generation: int) -> str:
    finite = losses[np.isfinite(losses)]
    failed = sum(r.status != "ok" for r in results)
    rate = n_evals / elapsed if elapsed > 0 else float("nan")
    done = g + 1 - start_generation
    left = (max_generations - g - 1) * elapsed / max(done, 1)
    return (f"gen {g:3d}  best {np.min(finite):9.4f}  median {np.median(finite):9.4f}  sigma {es.sigma:8.3g}  "
            f"{rate:5.2f} eval/s  failures {failed:2d}  ~{left / 60:.1f} min left")


def run(exp: Experiment, out: Path, *, resume: bool = False, quiet: bool = False, comm=None) -> Summary | None:
    """Run (or resume) a search; rank 0 returns the summary, other ranks None."""
    from .build import build
    from .store import Evaluation, RunStore

    rank = 0 if comm is None else comm.Get_rank()
    mode = choose_mode(comm)
    say = (lambda *a: None) if quiet or rank != 0 else (lambda *a: print(*a, flush=True))

    # Compile once (ranks wait on the build lock) before anything else.
    module = build(exp.searched_rule(), exp.rule.neuron, quiet=quiet or rank != 0)
    evaluator = Evaluator(exp, module, rank=rank, comm=comm if mode == "network" else None)
    if mode == "population" and rank != 0:
        serve(evaluator, comm)
        return None

    store = None
    if rank == 0:
        if resume:
            store = RunStore.open(out)
        else:
            store = RunStore.create(out, experiment=exp.to_dict(), seed=exp.seed,
                                    meta={"nestplast": __version__, "ranks": 1 if comm is None else comm.Get_size(),
                                          "mode": mode, "experiment_file": exp.source, "started": time.time()})
    layout = exp.layout()
    es, start_generation = None, 0
    if rank == 0:
        last = store.last_complete_generation()
        if last is not None:
            es = pickle.loads(store.load_optimizer(last))
            start_generation = last + 1
            say(f"resuming {out} after generation {last}")
        else:
            es = _cma(exp, exp.seed)
        say(f"search: {exp.name} ({exp.source}); {layout.size} parameters ({', '.join(layout.names)}); "
            f"population {exp.search.population_size}; mode {mode}"
            f"{'' if comm is None else f' on {comm.Get_size()} ranks'}; results in {out}")

    if mode == "network":  # every rank runs every simulation: all must start at the same generation
        start_generation = comm.bcast(start_generation, root=0)
    t0 = time.perf_counter()
    n_evals, stop = 0, "max_generations"
    g = start_generation
    while g < exp.search.max_generations:
        tasks, reused, zs = [], {}, None
        if rank == 0:
            es.opts["randn"].reseed(_generation_seed(exp.seed, g))
            zs = es.ask()
            candidates = [(k, z) for k, z in enumerate(zs)]
            if exp.search.evaluate_mean:
                candidates.append((-1, es.mean.copy()))
            trials = draw_trials(exp.trials, np.random.SeedSequence([exp.seed, g]))
            for k, z in candidates:
                theta = layout.from_search_space(z).tolist()
                for trial in trials:
                    done = store.get_evaluation(g, k, trial.index)
                    if done is not None:
                        reused[(k, trial.index)] = done
                    else:
                        tasks.append(Task(g, k, trial, theta))
        if mode == "network":
            tasks = comm.bcast(tasks, root=0)

        def record(result: Result) -> None:
            store.record_evaluation(Evaluation(
                generation=result.generation, candidate=result.candidate, trial=result.trial,
                theta=result.theta, params=layout.as_dict(result.theta), seed=result.seed,
                metrics={**result.metrics, "loss_parts": result.parts}, loss=result.loss, status=result.status,
                error=result.error, wall_time_s=result.wall_time_s, rank=result.rank, created=time.time()))

        results = map_tasks(tasks, evaluator, record, comm=comm, mode=mode)
        n_evals += len(results)
        if rank != 0:
            g += 1
            stop_now = comm.bcast(None, root=0)
            if stop_now:
                break
            continue

        all_results = results + [_as_result(e) for e in reused.values()]
        loss_of = {(r.candidate, r.trial): r.loss for r in all_results}
        # one loss per candidate over its trials; the mean, if evaluated, comes last
        all_losses = np.array([aggregate_trials([loss_of[(k, j)] for j in range(exp.trials.n)])
                               for k, _ in candidates])
        es.tell(zs, all_losses[:len(zs)].tolist())
        summary = {"best_loss": float(np.min(all_losses)), "median_loss": float(np.median(all_losses)),
                   "sigma": float(es.sigma), "n_evaluations": len(all_results),
                   "n_failed": sum(r.status != "ok" for r in all_results),
                   "wall_time_s": float(sum(r.wall_time_s for r in results))}
        store.record_generation(g, pickle.dumps(es), summary)
        say(_progress(g, all_results, all_losses, es, time.perf_counter() - t0, n_evals,
                      exp.search.max_generations, start_generation))

        best = store.best_candidates(1)
        stop = ""
        if exp.search.target_loss is not None and best and best[0]["loss"] <= exp.search.target_loss:
            stop = "target_loss"
        elif exp.search.max_evaluations is not None and store.counts()["evaluations"] >= exp.search.max_evaluations:
            stop = "max_evaluations"
        elif exp.search.max_wall_s is not None and time.perf_counter() - t0 >= exp.search.max_wall_s:
            stop = "max_wall_s"
        g += 1
        if mode == "network":
            comm.bcast(bool(stop), root=0)
        if stop:
            break

    if rank != 0:
        return None
    if mode == "population":
        stop_workers(comm)
    counts = store.counts()
    best = store.best_candidates(1)
    summary = Summary(generations=counts["generations"], evaluations=counts["evaluations"], failed=counts["failed"],
                      best_loss=best[0]["loss"] if best else math.nan,
                      best_params=layout.as_dict(best[0]["theta"]) if best else {}, stop=stop or "max_generations")
    say(f"done ({summary.stop}): {summary.generations} generations, {summary.evaluations} evaluations, "
        f"{summary.failed} failed; best loss {summary.best_loss:.4f}")
    say("best parameters: " + ", ".join(f"{k} = {v:.4g}" for k, v in summary.best_params.items()))
    say(f"report: python -m nestplast.report {out}")
    return summary


def _as_result(evaluation) -> Result:
    return Result(generation=evaluation.generation, candidate=evaluation.candidate, trial=evaluation.trial,
                  seed=evaluation.seed, theta=list(evaluation.theta), loss=evaluation.loss, status=evaluation.status,
                  wall_time_s=evaluation.wall_time_s, rank=evaluation.rank)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nestplast.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", default=None,
                        help=f"experiment TOML file or shipped name ({', '.join(experiment.available())}); "
                             "default: the built-in default")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<experiment name>)")
    parser.add_argument("--seed", type=int, default=None, help="override the experiment's seed")
    parser.add_argument("--max-generations", type=int, default=None)
    parser.add_argument("--population-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="NEST threads per rank")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last generation")
    parser.add_argument("--quiet", action="store_true", help="no progress lines (batch jobs)")
    args = parser.parse_args(argv)

    comm = world()
    rank = 0 if comm is None else comm.Get_rank()
    try:
        if args.resume and args.out is None:
            raise ExperimentError("--resume needs --out RUN_DIR")
        if args.resume and args.experiment is None:
            from .store import RunStore
            exp = experiment.parse(RunStore.open(args.out).experiment(), f"{args.out}/results.sqlite")
        else:
            exp = experiment.load(args.experiment) if args.experiment else experiment.default()
        if args.seed is not None:
            exp.seed = args.seed
        if args.max_generations is not None:
            exp.search.max_generations = args.max_generations
        if args.population_size is not None:
            exp.search.population_size = args.population_size
        if args.threads is not None:
            exp.search.threads = args.threads
        experiment.validate(exp)
        out = args.out or Path("runs") / exp.name
        run(exp, out, resume=args.resume, quiet=args.quiet, comm=comm)
    except ExperimentError as err:
        if rank == 0:
            print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a clear line, not a traceback, for what users can fix
        from .build import BuildError
        from .store import StoreError

        if isinstance(err, (BuildError, StoreError)):
            if rank == 0:
                print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
