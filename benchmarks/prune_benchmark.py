"""Noise-driven pruning at the paper's demo scale: 2000 neurons in clusters of 1000/200/800,
about 1,010,000 synapses, 20% kept.

The network is the authors' own construction by default (``--network authors``: N(1, 1) weights,
about 16 % negative, no stability margin), or nestplast's clustered generator (``--network
clustered``: U(0.5, 1.5) weights, margin 0.1). Prints, for each rule, the relative eigenvalue
error (mean and max over all eigenvalues, and the mean over the 10 slowest, where the noise rule's
advantage lies), the Rayleigh-quotient error, the trajectory error against the unpruned network
in NEST, the authors' decay trajectory error, and the wall time of each stage. With ``--probe MS``
the noise rule is also run the local way: every synapse estimates its covariances online from MS
ms of NEST activity.

    .venv/bin/python benchmarks/prune_benchmark.py [--network authors] [--scale 1.0] [--keep 0.2]
        [--duration 100] [--probe 300] [--slowest 10]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
import stopping
from options import at_least

from nestplast.kernel import KernelResetWarning, import_nest
from nestplast.prune import PRUNING_RULES, OnlineCovariance, prune
from nestplast.pruning_measures import decay_trajectory_error, measure, relative_trajectory_error, spectrum, sweep
from nestplast.rate_network import (
    RateModel,
    authors_network,
    clustered_network,
    connect_weights,
    lyapunov_covariance,
    simulate,
)

TIMES: dict[str, float] = {}


@contextmanager
def stage(name: str):
    start = time.perf_counter()
    yield
    TIMES[name] = time.perf_counter() - start
    print(f"  {name:<44} {TIMES[name]:8.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--network", choices=("authors", "clustered"), default="authors")
    parser.add_argument("--scale", type=float, default=1.0, help="network size relative to 2000 neurons")
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slowest", type=int, default=10, help="slowest eigenvalues in the slow-end error")
    parser.add_argument("--duration", type=at_least(0, float), default=100.0, help="ms of NEST trajectory per network (0: skip)")
    parser.add_argument("--probe", type=at_least(0, float), default=300.0,
                        help="ms of NEST activity for the online noise rule (0: skip)")
    parser.add_argument("--sweep", default="0.5,0.2,0.1,0.05",
                        help="fractions kept in the spectral sweep ('' to skip)")
    args = parser.parse_args()
    # checked before the slow stages (a bad --sweep ended in a traceback after all of them)
    try:
        keeps = [float(k) for k in args.sweep.split(",") if k]
    except ValueError:
        parser.error(f"--sweep: expected fractions separated by commas, got {args.sweep!r}")
    if not all(0 < k <= 1 for k in [args.keep, *keeps]):
        parser.error(f"--keep and --sweep: expected fractions in (0, 1], got {args.keep:g} and {args.sweep!r}")
    if args.scale <= 0 or args.slowest < 1:
        parser.error(f"--scale: expected more than 0 ({args.scale:g}); --slowest: at least 1 ({args.slowest})")
    # its own NEST stage leaves nodes that a later stage's reset discards, as it should: the warning
    # is for a user's network in a shared kernel
    warnings.filterwarnings("ignore", category=KernelResetWarning)
    model = RateModel()
    sizes = tuple(int(round(s * args.scale)) for s in (1000, 200, 800))

    print(f"stages ({args.network} network, clusters {sizes}, keep {args.keep}, seed {args.seed}):")
    with stage(f"generate {args.network} network"):
        if args.network == "authors":
            W = authors_network(sizes, long_range=round(5000 * args.scale), seed=args.seed)
        else:
            W = clustered_network(sizes, p_out=0.0016 / args.scale, seed=args.seed)
    synapses = np.count_nonzero(W) - np.count_nonzero(np.diag(W))
    with stage("Lyapunov covariance"):
        C = lyapunov_covariance(W, model)
    pruned = {}
    for rule in PRUNING_RULES:
        with stage(f"prune: {rule}"):
            pruned[rule] = prune(W, args.keep, rule, covariance=C, seed=args.seed, model=model)
    with stage("spectrum of the original"):
        reference = spectrum(W, model.leak)
    results = {}
    for rule, p in pruned.items():
        with stage(f"eigenvalue + Rayleigh errors: {rule}"):
            results[rule] = measure(W, p, leak=model.leak, slowest=args.slowest, reference=reference)
        with stage(f"decay trajectory error: {rule}"):
            results[rule]["decay"] = decay_trajectory_error(W, p.weights, model, seed=args.seed).mean

    if keeps:
        with stage(f"sweep: {len(keeps)} fractions x {len(PRUNING_RULES)} rules"):
            rows = sweep(W, keeps, covariance=C, seeds=(args.seed,), model=model, slowest=args.slowest,
                         reference=reference)

    if args.duration > 0:
        nest = import_nest()
        with stage(f"NEST connect {synapses} synapses (one call)"):
            nest.ResetKernel()
            neurons = nest.Create("lin_rate_ipn", len(W))
            connect_weights(neurons, neurons, W, delay=model.delay)
        with stage(f"NEST simulate original, {args.duration:g} ms"):
            unpruned = simulate(W, args.duration, model, seed=args.seed, warmup=0.0).rates
        for rule, p in pruned.items():
            with stage(f"NEST simulate {rule}, {args.duration:g} ms"):
                rates = simulate(p.weights, args.duration, model, seed=args.seed, warmup=0.0).rates
            results[rule]["trajectory"] = relative_trajectory_error(unpruned, rates)

    if args.probe > 0:
        warmup = 100.0  # ten tau: the fast modes that the rule's differences see have settled
        with stage(f"NEST probe activity, {warmup:g} + {args.probe:g} ms"):
            activity = simulate(W, args.probe, model, seed=args.seed + 1, warmup=warmup)
        with stage("online covariance per synapse"):
            online = OnlineCovariance(W)
            online.update(activity.rates)
        with stage("prune: noise (online)"):
            p = prune(W, args.keep, "noise", covariance=online.covariance(), seed=args.seed, model=model)
        results["noise (online)"] = measure(W, p, leak=model.leak, slowest=args.slowest, reference=reference)

    k = args.slowest
    print(f"\n{len(W)} neurons, {synapses} synapses, keep {args.keep} (target {args.keep * synapses:.0f}); "
          f"eigenvalues of W - I span {reference.values.real.min():.4f} .. {reference.values.real.max():.4f}")
    print(f"{'rule':<16} {'kept':>8} {'eig mean':>9} {'eig max':>9} {f'slow {k}':>9} {'rayl mean':>9} "
          f"{'trajectory':>10} {'decay':>9} {'max re':>9}")
    for rule, r in results.items():
        trajectory = f"{r['trajectory']:.4f}" if "trajectory" in r else "-"
        decay = f"{r['decay']:.4f}" if "decay" in r else "-"
        print(f"{rule:<16} {r['kept']:>8} {r['eigenvalue_error']:>9.4f} {r['eigenvalue_error_max']:>9.4f} "
              f"{r['eigenvalue_error_slowest']:>9.4f} {r['rayleigh_error']:>9.4f} {trajectory:>10} {decay:>9} "
              f"{r['largest_real_eigenvalue']:>9.4f}")
    if keeps:
        print(f"\nsweep: relative eigenvalue error, mean over all (mean over the {k} slowest)\n{'kept':>6} "
              + " ".join(f"{r:>17}" for r in PRUNING_RULES))
        for keep in keeps:
            cells = {row["rule"]: row for row in rows if row["keep"] == keep}
            print(f"{keep:>6} " + " ".join(f"{cells[r]['eigenvalue_error']:>8.4f} "
                                           f"({cells[r]['eigenvalue_error_slowest']:.3f})" for r in PRUNING_RULES))
    print(f"total wall time {sum(TIMES.values()):.1f} s")


if __name__ == "__main__":
    sys.exit(stopping.run(main))
