"""Batching gain: is it faster to evaluate several candidates as disjoint sub-networks of one NEST
kernel (one ``nest.CopyModel`` per candidate, ``build_network(..., label=f"c{k}_")`` k times, one
simulation) than one kernel per candidate, the Evaluator's way (ResetKernel + install + build +
simulate per candidate)?

Candidates (default experiment, one trial drawn as the search draws generation 0's):
- ``gen0``: the 8 candidates CMA-ES asks in generation 0 of a search with this seed (most blow up);
- ``near``: 8 candidates near Vogels-Sprekeler iSTDP with a 10 Hz target
  (theta = [20, 20, -0.4, 0, 1, 1]), perturbed by ``--near-sigma`` of each search range;
- ``mixed``: both, interleaved, so every batch holds both kinds (a search in mid course).

The batched evaluation simulates in the Evaluator's chunks with the Evaluator's rate-band check
per sub-network; a sub-network that leaves its band cannot stop alone, so it is silenced
(``Network.silence()``: thresholds to 1e9) and the kernel runs on until every sub-network has
blown up or the run is over. The row ``+drive off`` also sets the sub-network's Poisson drive to
0 Hz on top of ``silence()``. Survivors are measured and scored with the Evaluator's own code.

Printed: wall time per candidate (median over interleaved repeats) and the ratio batched /
unbatched for batch sizes 1, 2, 4, 8; whether each candidate's result (E rate in the scoring
window, status, loss) equals the one-kernel-per-candidate result for the same seed, beside the
change that another trial seed makes; the simulation cost of one sub-network per simulated
second (healthy, blown up, silenced, silenced with its drive off); and a verdict.

    .venv/bin/python benchmarks/batching.py [--sizes 1 2 4 8] [--repeats 3] [--sets mixed gen0 near]

Timings on a shared machine are noisy: the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import stopping
from options import at_least

from nestplast import experiment
from nestplast.evaluate import Evaluator, chunks
from nestplast.networks import Network, Trial, build_network, draw_trials
from nestplast.objectives import FAILURE_LOSS, RateBand
from nestplast.rules import vogels_sprekeler
from nestplast.runs import build_module, search_space
from nestplast.search import new_strategy
from nestplast.tasks import Task

VS_THETA = list(vogels_sprekeler(10.0).values())  # doublet order: tau_pre, tau_post, alpha, beta, gamma, kappa


# --------------------------------------------------------------------------- candidates

def candidates(exp, seed: int, near_sigma: float) -> dict[str, list[list[float]]]:
    exp = dataclasses.replace(exp, seed=seed)
    # generation 0 exactly as the search asks it; the distribution's mean (index -1, evaluated
    # for the record when search.evaluate_mean) is not one of CMA-ES's samples: left out
    gen0 = [list(c.theta) for c in new_strategy(exp).ask() if c.index >= 0]
    space = search_space(exp)
    low, high = space.search_bounds()
    rng = np.random.default_rng([seed, 7])
    z_vs = space.to_search(VS_THETA)
    near = [VS_THETA] + [space.from_search(np.clip(z_vs + near_sigma * (high - low) * rng.standard_normal(z_vs.size),
                                                   low, high)).tolist() for _ in range(len(gen0) - 1)]
    mixed = [t for pair in zip(gen0, near) for t in pair]
    return {"mixed": mixed, "gen0": gen0, "near": near}


# --------------------------------------------------------------------------- the two ways

def unbatched(evaluator: Evaluator, thetas, trial: Trial) -> list[dict]:
    out = []
    for k, theta in enumerate(thetas):
        r = evaluator(Task(0, k, trial, tuple(theta)))
        out.append({"status": r.status, "loss": r.loss, "rate_e": r.metrics.get("rate_e", math.nan),
                    "rate_i": r.metrics.get("rate_i", math.nan), "t_blowup_s": r.metrics.get("t_blowup_s"),
                    "error": r.error})
    return out


def drive_switch(nest, net: Network, spec) -> Callable[[], None]:
    """A function that turns ``net``'s Poisson drive off: its neurons' own (``spec.drive ==
    "internal"``) or its poisson_generator (found here: build_network does not return it)."""
    if spec.drive == "internal":
        neurons = net.populations["E"] + net.populations["I"]
        return lambda: neurons.set(drive_rate=0.0)
    sources = sorted(set(nest.GetConnections(target=net.populations["E"][:1]).sources()))
    models = nest.NodeCollection(sources).get("model")
    models = [models] if isinstance(models, str) else models
    generator = nest.NodeCollection([s for s, m in zip(sources, models) if m == "poisson_generator"])
    return lambda: generator.set(rate=0.0)


def batched(evaluator: Evaluator, thetas, trial: Trial, drive_off: bool = False) -> list[dict]:
    """All ``thetas`` as sub-networks of one kernel, simulated once, each scored as the Evaluator
    scores it (band check per chunk, blow-up loss, metrics of the scoring window)."""
    exp, o = evaluator.exp, evaluator.exp.objective
    nest = evaluator.setup_kernel(trial.seed)
    nets = [build_network(nest, exp.network, evaluator.module, evaluator.synapse_params(theta), trial, label=f"c{k}_")
            for k, theta in enumerate(thetas)]
    drives = [drive_switch(nest, net, exp.network) for net in nets] if drive_off else None
    w_start = [evaluator.start_weights(net) for net in nets]
    n_pop = [len(net.populations[o.population]) for net in nets]
    bands = [RateBand(low=o.rate_band[0], high=o.rate_band[1]) for _ in nets]
    total_s = o.t_train + o.t_score
    blew_up_at: list[float | None] = [None] * len(nets)
    rate_at: list[float] = [math.nan] * len(nets)
    last = [0] * len(nets)
    traces = [{"t_s": [], "rate": [], **{f"w_mean_{ct}": [] for ct in net.plastic}} for net in nets]
    for chunk in chunks(exp):  # as Evaluator.simulate
        nest.Simulate(chunk.ms)
        t_now = chunk.t_end_s
        for i, net in enumerate(nets):
            if blew_up_at[i] is not None:
                continue
            n_events, w_means, _ = evaluator.chunk_state(net)  # as Evaluator.simulate
            rate = (n_events - last[i]) / n_pop[i] / chunk.seconds
            if chunk.training:
                net.clear_spikes(o.population)
                last[i] = 0
            else:
                last[i] = n_events
            traces[i]["t_s"].append(t_now)
            traces[i]["rate"].append(rate)
            for ct in net.plastic:
                traces[i][f"w_mean_{ct}"].append(w_means[ct])
            if not math.isfinite(rate) or bands[i].update(rate, chunk.seconds):
                blew_up_at[i], rate_at[i] = t_now, rate
                net.silence()  # it cannot stop alone: make it cheap
                if drive_off:
                    drives[i]()
        if all(t is not None for t in blew_up_at):
            break
    out = []
    for i, (net, theta) in enumerate(zip(nets, thetas)):
        if blew_up_at[i] is not None:
            loss, _ = evaluator.objective.score({}, np.asarray(theta), blew_up_at_s=blew_up_at[i], total_s=total_s)
            out.append({"status": "blowup", "loss": loss, "rate_e": math.nan, "rate_i": math.nan,
                        "t_blowup_s": blew_up_at[i], "error": None})
            continue
        metrics = evaluator.measure(net, w_start[i])  # the scoring window [t_train, t_train + t_score)
        loss, _ = evaluator.objective.score(metrics, np.asarray(theta), blew_up_at_s=None, total_s=total_s)
        status = "ok" if math.isfinite(loss) else "nan"
        out.append({"status": status, "loss": loss if status == "ok" else FAILURE_LOSS, "rate_e": metrics["rate_e"],
                    "rate_i": metrics.get("rate_i", math.nan), "t_blowup_s": None, "error": None})
    return out


def run_batched(evaluator, thetas, trial, size: int, drive_off: bool = False) -> list[dict]:
    out = []
    for start in range(0, len(thetas), size):
        out += batched(evaluator, thetas[start:start + size], trial, drive_off)
    return out


# --------------------------------------------------------------------------- cost of a sub-network

def subnetwork_cost(evaluator: Evaluator, trial: Trial, healthy, runaway, seconds: float = 2.0) -> dict[str, float]:
    """Wall seconds per simulated second of one network in its own kernel, after 1 s of warm-up:
    a healthy one, a runaway one (not stopped), the runaway silenced, and silenced with its drive
    off; and an empty kernel (fixed cost of Simulate)."""
    exp = evaluator.exp
    out = {}
    setups = []
    for _ in range(5):
        start = time.perf_counter()
        nest = evaluator.setup_kernel(trial.seed)
        build_network(nest, exp.network, evaluator.module, evaluator.synapse_params(healthy), trial, label="c0_")
        setups.append(time.perf_counter() - start)
    out["kernel set-up (reset, install, build)"] = (statistics.median(setups), None)
    for name, theta, action in (("healthy (VS rule)", healthy, None), ("runaway, not stopped", runaway, None),
                                ("runaway, silence()", runaway, "silence"),
                                ("runaway, silence() + drive 0 Hz", runaway, "drive")):
        nest = evaluator.setup_kernel(trial.seed)
        net = build_network(nest, exp.network, evaluator.module, evaluator.synapse_params(theta), trial, label="c0_")
        nest.Simulate(1000.0)
        if action:
            net.silence()
        if action == "drive":
            drive_switch(nest, net, exp.network)()
        net.clear_spikes("E")
        start = time.perf_counter()
        nest.Simulate(1000.0 * seconds)
        elapsed = time.perf_counter() - start
        n = int(net.recorders["E"].n_events)
        out[name] = (elapsed / seconds, n)
    return out


# --------------------------------------------------------------------------- report

def same(a: dict, b: dict) -> bool:
    return a["status"] == b["status"] and (a["rate_e"] == b["rate_e"] or (math.isnan(a["rate_e"]) and math.isnan(b["rate_e"]))) \
        and a["loss"] == b["loss"]


def differences(ref: list[dict], other: list[dict]) -> str:
    exact = sum(same(a, b) for a, b in zip(ref, other))
    status = sum(a["status"] == b["status"] for a, b in zip(ref, other))
    both = [abs(a["rate_e"] - b["rate_e"]) for a, b in zip(ref, other) if a["status"] == b["status"] == "ok"]
    rel = [abs(a["rate_e"] - b["rate_e"]) / a["rate_e"] for a, b in zip(ref, other)
           if a["status"] == b["status"] == "ok" and a["rate_e"] > 0]
    text = f"identical {exact:2d}/{len(ref)}, same status {status:2d}/{len(ref)}"
    if both:
        text += (f", |d rate_e| median {statistics.median(both):.3f} Hz max {max(both):.3f} Hz "
                 f"(median {statistics.median(rel):.1%})")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=at_least(1), nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--sets", nargs="+", default=["mixed", "gen0", "near"], choices=["mixed", "gen0", "near"])
    parser.add_argument("--seed", type=int, default=1, help="search seed: generation 0's candidates and trial")
    parser.add_argument("--near-sigma", type=float, default=0.03, help="perturbation near VS, fraction of each range")
    parser.add_argument("--no-drive-off", action="store_true", help="skip the '+drive off' rows")
    args = parser.parse_args()

    exp = experiment.default()
    module = build_module(exp)
    evaluator = Evaluator(exp, module)
    trial = draw_trials(exp.trials, np.random.SeedSequence([args.seed, 0]))[0]  # the search's generation 0 trial
    other_trial = draw_trials(exp.trials, np.random.SeedSequence([args.seed + 1000, 0]))[0]
    sets = {k: v for k, v in candidates(exp, args.seed, args.near_sigma).items() if k in args.sets}
    largest = max(args.sizes)
    configs = [("unbatched", None, False)] + [(f"batch {b}", b, False) for b in args.sizes]
    if not args.no_drive_off:
        configs.append((f"batch {largest} +drive off", largest, True))

    o = exp.objective
    print(f"batching benchmark: default experiment ({exp.network.n_e} E + {exp.network.n_i} I, "
          f"{o.t_train + o.t_score:g} s per evaluation in {o.chunk:g} s chunks), trial seed {trial.seed}; "
          f"sets {', '.join(f'{k} ({len(v)})' for k, v in sets.items())}; {args.repeats} interleaved repeats; "
          f"{os.cpu_count()} CPUs shared (timings noisy)", flush=True)

    evaluator(Task(0, 0, trial, tuple(VS_THETA)))  # warm-up: NEST import, module install, caches
    times: dict[tuple[str, str], list[float]] = {}
    results: dict[tuple[str, str], list[dict]] = {}
    deterministic = True
    loads = []
    for rep in range(args.repeats):
        for name, thetas in sets.items():
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]
            for label, size, drive_off in order:
                loads.append(os.getloadavg()[0])
                start = time.perf_counter()
                res = unbatched(evaluator, thetas, trial) if size is None else run_batched(evaluator, thetas, trial, size, drive_off)
                elapsed = time.perf_counter() - start
                times.setdefault((name, label), []).append(elapsed / len(thetas))
                if (name, label) in results:
                    deterministic &= all(same(a, b) for a, b in zip(results[(name, label)], res))
                else:
                    results[(name, label)] = res
        print(f"  repeat {rep} done (load {os.getloadavg()[0]:.2f})", flush=True)

    print()
    print(f"{'set':<6} {'config':<22} {'s/candidate':>11} {'batched/unbatched':>17}   statuses")
    for name in sets:
        ref_times = times[(name, "unbatched")]
        for label, size, _ in configs:
            t = times[(name, label)]
            statuses = Counter(r["status"] for r in results[(name, label)])
            ratio = "" if size is None else f"{statistics.median(b / a for a, b in zip(ref_times, t)):.2f}"
            print(f"{name:<6} {label:<22} {statistics.median(t):>11.3f} {ratio:>17}   "
                  f"{', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}")
    print("(median over repeats; ratio = median of the paired per-repeat ratios; < 1: batching is faster)")
    print(f"load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f}")

    print()
    print("same results as one kernel per candidate (same trial seed)?  [status, E rate in the scoring window, loss]")
    for name, thetas in sets.items():
        ref = results[(name, "unbatched")]
        for label, _size, _ in configs[1:]:
            print(f"  {name:<6} {label:<22} {differences(ref, results[(name, label)])}")
        if name == "mixed" or len(sets) == 1:
            reseeded = unbatched(evaluator, thetas, other_trial)
            print(f"  {name:<6} {'unbatched, other seed':<22} {differences(ref, reseeded)}   <- the size of seed noise")
    print(f"  batched and unbatched runs repeat exactly from one repeat to the next: {'yes' if deterministic else 'NO'}")

    print()
    gen0 = candidates(exp, args.seed, args.near_sigma)["gen0"]
    gen0_results = results.get(("gen0", "unbatched")) or unbatched(evaluator, gen0, trial)
    runaway = next((t for t, r in zip(gen0, gen0_results) if r["status"] == "blowup" and (r["t_blowup_s"] or 0) <= 1.0), gen0[0])
    costs = subnetwork_cost(evaluator, trial, VS_THETA, runaway)
    base = costs["healthy (VS rule)"][0]
    print("cost of one sub-network (its own kernel, after 1 s): wall s per simulated s, and vs the healthy network")
    for name, (cost, n) in costs.items():
        if n is None:
            print(f"  {name:<34} {cost:7.3f} s once per kernel (median of 5)")
            continue
        print(f"  {name:<34} {cost:7.3f} s/s  {cost / base:5.2f}x   ({n} E spikes in the 2 s)")

    print()
    verdict(sets, times, configs, costs)
    return 0


def verdict(sets, times, configs, costs) -> None:
    rows = []
    for name in sets:
        ref = times[(name, "unbatched")]
        for label, size, _drive_off in configs[1:]:
            if size > 1:  # a batch of 1 is one kernel per candidate: the reference, not batching
                rows.append((name, label, statistics.median(b / a for a, b in zip(ref, times[(name, label)]))))
    if not rows:
        print("verdict: none (no batch size above 1 was measured)")
        return
    best = min(rows, key=lambda r: r[2])
    mixed = [r for r in rows if r[0] == "mixed" and "drive" not in r[1]]
    worth = best[2] < 0.9 and (not mixed or min(r[2] for r in mixed) < 0.9)
    silenced = costs["runaway, silence()"][0] / costs["healthy (VS rule)"][0]
    print(f"verdict: best ratio {best[2]:.2f} ({best[0]}, {best[1]}); a silenced runaway sub-network still costs "
          f"{silenced:.2f}x a healthy one per simulated second (its Poisson drive keeps running).")
    on = "the mixed set" if mixed else f"the sets run ({', '.join(sets)}; the mixed set was not)"
    if worth:
        print(f"batching IS worth keeping on this evidence (>10 % faster on {on}), "
              "but its results differ from the one-kernel path (see above).")
    else:
        print(f"batching is NOT worth keeping: no batch size is >10 % faster than one kernel per candidate on {on}, "
              "the per-kernel fixed cost it saves is small against a simulation, blown-up candidates "
              "lose their early abort, and a candidate's result depends on its batch mates (shared random streams).")


if __name__ == "__main__":
    sys.exit(stopping.run(main))
