"""Rediscovery: does the search on the default experiment find a rule that does what inhibitory
STDP (Vogels & Sprekeler 2011) does, holding the excitatory rate at its 10 Hz target?

1. Runs ``python -m nestplast.search`` on the default experiment (default settings, or
   ``--max-generations``; under ``mpiexec -n R`` with ``--ranks R``) into ``--out`` or a temporary
   directory, and reads the best candidate from ``python -m nestplast.report RUN_DIR --json``.
2. Prints the found doublet parameters beside Vogels-Sprekeler's for the same target:
   tau_pre = tau_post = 20 ms, alpha = -2 rho0 tau = -0.4 (rho0 = 10 Hz), beta = 0, gamma = kappa = 1.
3. Re-evaluates both rules with ``Evaluator`` on ``--trials`` fresh trials (seeds the search never
   used) and prints the excitatory rate each reaches in the scoring window, whether it is within
   10 % of the target, and the rate at which the rule's mean weight drift vanishes: for Poisson
   pre and post spiking, d<w>/dt = nu_pre alpha + nu_post beta + nu_pre nu_post (kappa tau_post +
   gamma tau_pre) = 0 (taus in s), solved for nu_post with nu_pre the measured inhibitory rate. The
   fixed point is stable for an I->E synapse when the drift grows with nu_post (more
   postsynaptic firing strengthens inhibition).

    .venv/bin/python benchmarks/rediscovery.py [--max-generations N] [--out DIR] [--ranks R] [--trials 3]
    .venv/bin/python benchmarks/rediscovery.py --out DIR --reuse       # skip the search, use DIR's results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import stopping
from options import at_least

from nestplast.rules import vogels_sprekeler

VS_THETA = vogels_sprekeler(10.0)


def zero_drift_rate(p: dict[str, float], nu_pre: float) -> tuple[float, str]:
    """nu_post at which the mean drift vanishes, and whether that fixed point is stable."""
    slope = p["beta"] + nu_pre * (p["kappa"] * p["tau_post"] * 1e-3 + p["gamma"] * p["tau_pre"] * 1e-3)
    if not math.isfinite(nu_pre) or slope == 0:
        return math.nan, "none"
    nu = -nu_pre * p["alpha"] / slope
    if nu < 0:
        return nu, "none (< 0)"
    return nu, "stable" if slope > 0 else "unstable"


def run_search(out: Path, args) -> None:
    cmd = [sys.executable, "-m", "nestplast.search", "--out", str(out)]
    if args.max_generations is not None:
        cmd += ["--max-generations", str(args.max_generations)]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    if args.ranks > 1:
        cmd = [args.mpiexec, "-n", str(args.ranks)] + cmd
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out.parent)
    if proc.returncode != 0:
        raise SystemExit(f"the search failed (exit {proc.returncode})")
    print(f"search took {time.perf_counter() - start:.0f} s", flush=True)


def report(out: Path, plots: bool) -> dict:
    cmd = [sys.executable, "-m", "nestplast.report", str(out), "--json"] + ([] if plots else ["--no-plots"])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"report failed (exit {proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one, removed)")
    parser.add_argument("--reuse", action="store_true", help="do not search: read the results already in --out")
    parser.add_argument("--max-generations", type=int, default=None, help="default: the experiment's (12)")
    parser.add_argument("--seed", type=int, default=None, help="search seed (default: the experiment's)")
    parser.add_argument("--ranks", type=at_least(1), default=1, help="run the search under mpiexec -n RANKS")
    parser.add_argument("--mpiexec", default=str(Path(sys.executable).parent / "mpiexec"))
    parser.add_argument("--trials", type=at_least(1), default=3, help="fresh trials for the re-evaluation")
    parser.add_argument("--eval-seed", type=int, default=20240607, help="seed of the fresh trials")
    args = parser.parse_args()
    if args.reuse and args.out is None:
        parser.error("--reuse needs --out RUN_DIR")
    if args.ranks > 1 and not args.reuse and not shutil.which(args.mpiexec):  # as search_throughput.py says it
        parser.error(f"no mpiexec at {args.mpiexec} (--mpiexec)")

    temporary = args.out is None
    out = Path(tempfile.mkdtemp(prefix="nestplast-rediscovery-")) / "run" if temporary else args.out.resolve()
    try:
        if not args.reuse:
            if out.exists():
                parser.error(f"{out} exists: choose a new --out, or --reuse its results")
            out.parent.mkdir(parents=True, exist_ok=True)
            run_search(out, args)
        summary = report(out, plots=not temporary)
        return evaluate(out, summary, args)
    finally:
        if temporary:
            shutil.rmtree(out.parent, ignore_errors=True)


def evaluate(out: Path, summary: dict, args) -> int:
    from nestplast import experiment
    from nestplast.evaluate import Evaluator
    from nestplast.networks import draw_trials
    from nestplast.runs import build_module
    from nestplast.search import SearchProblem
    from nestplast.store import RunStore
    from nestplast.tasks import Candidate, Task

    store = RunStore.open(out)
    exp = experiment.parse(store.experiment(), f"{out}/results.sqlite")
    layout = exp.layout()
    if exp.rule.name != "doublet" or list(exp.rule.plastic) != ["IE"]:
        raise SystemExit(f"expected the doublet rule on IE (the default experiment), got {exp.rule.name} on {exp.rule.plastic}")
    if not summary["best_params"]:
        print("the search found no successful candidate")
        return 1
    found = {name.split(".", 1)[1]: value for name, value in summary["best_params"].items()}
    target = exp.objective.target_rate

    print()
    print(f"search: {summary['generations']} generations, {summary['evaluations']} evaluations, "
          f"{summary['failed']} failed; best loss {summary['best_loss']:.4f}")
    print()
    print(f"{'parameter':<10} {'found':>10} {'Vogels-Sprekeler':>17}")
    for name in layout.rule.names:
        unit = " ms" if name.startswith("tau") else ""
        print(f"{name:<10} {found[name]:>10.4g} {VS_THETA[name]:>14.4g}{unit:<3}")
    print(f"(VS for rho0 = {target:g} Hz: alpha = -2 rho0 tau = -0.4 with tau = 20 ms; eta = "
          f"{exp.rule.fixed.get('eta', layout.rule.fixed['eta']):g} pA per unit in both)")

    module = build_module(exp)
    evaluator = Evaluator(exp, module)
    trials = draw_trials(dataclasses.replace(exp.trials, n=args.trials), np.random.SeedSequence([args.eval_seed]))
    rules = {"found": found, "VS": VS_THETA}
    rows: dict[str, list] = {name: [] for name in rules}
    print()
    print(f"re-evaluation on {args.trials} fresh trials (seed sequence [{args.eval_seed}], never used by the search):")
    print(f"{'rule':<6} {'trial':>5} {'seed':>11} {'status':>7} {'rate_e Hz':>9} {'rate_i Hz':>9} {'cv_isi':>6} "
          f"{'|w_IE| pA':>9} {'w_blow':>6} {'loss':>8}")
    for trial in trials:
        for name, params in rules.items():
            theta = tuple(params[n] for n in layout.rule.names)
            r = evaluator(Task(0, 0, trial, theta))
            m = r.metrics
            rows[name].append(r)
            print(f"{name:<6} {trial.index:>5} {trial.seed:>11} {r.status:>7} {m.get('rate_e', math.nan):>9.3f} "
                  f"{m.get('rate_i', math.nan):>9.3f} {m.get('cv_isi', math.nan):>6.3f} {m.get('w_mean_IE', math.nan):>9.2f} "
                  f"{m.get('w_blow', math.nan):>6.3f} {r.loss:>8.4f}", flush=True)

    print()
    print(f"{'rule':<6} {'rate_e Hz (mean of trials)':>27} {'within 10% of ' + format(target, 'g') + ' Hz':>20} "
          f"{'rate_i Hz':>9} {'zero-drift nu_post Hz':>22} {'fixed point':>12} {'(at rate_i x 0.5, x 2)':>23}")
    for name, params in rules.items():
        ok = [r for r in rows[name] if r.status == "ok"]
        rate_e = statistics.fmean(r.metrics["rate_e"] for r in ok) if ok else math.nan
        rate_i = statistics.fmean(r.metrics["rate_i"] for r in ok) if ok else math.nan
        each = [abs(r.metrics["rate_e"] - target) <= 0.1 * target for r in ok]
        within = f"{'yes' if ok and all(each) else 'no'} ({sum(each)}/{len(rows[name])} trials)"
        nu, kind = zero_drift_rate(params, rate_i)
        half, double = (zero_drift_rate(params, f * rate_i)[0] for f in (0.5, 2.0))
        print(f"{name:<6} {rate_e:>27.3f} {within:>20} {rate_i:>9.3f} {nu:>22.3f} {kind:>12} "
              f"{f'{half:.2f}, {double:.2f}':>23}")
    print("(zero-drift rate: Poisson estimate from the rule's parameters at the measured inhibitory rate; it ignores "
          "pre/post correlations and the weight bounds. VS's does not depend on the inhibitory rate; a rule with "
          "beta != 0 has a target that moves with it)")

    # The search scored its best candidate on its generation's trials: VS on those same trials.
    best = store.best_candidates(1)[0]
    problem = SearchProblem(exp, evaluator)
    vs = Candidate(-2, tuple(VS_THETA[n] for n in layout.rule.names))
    vs_loss = problem.loss(vs, [evaluator(task) for task in problem.tasks(best["generation"], [vs])])
    print()
    print(f"on the search's own trial(s) of generation {best['generation']} (where the best was scored): "
          f"found loss {best['loss']:.4f}, VS loss {vs_loss:.4f} -> "
          f"{'the search beat VS' if best['loss'] < vs_loss else 'VS scores better than what the search found'}")
    return 0


if __name__ == "__main__":
    sys.exit(stopping.run(main))
