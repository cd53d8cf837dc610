"""``python -m nestplast prune``: noise-driven pruning of a recurrent rate network, compared with
the weight-magnitude and uniform rules (library: :mod:`nestplast.prune`,
:mod:`nestplast.pruning_measures`, :mod:`nestplast.analysis.pruning`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..analysis import check_output_directory, require_matplotlib
from ..analysis.pruning import (
    format_table,
    instability_warnings,
    non_finite_warnings,
    nothing_pruned_warnings,
    sign_warnings,
    sweep_instability_warnings,
    write_outputs,
)
from ..cli import ArgumentParser, output_directory, run_command
from ..errors import UsageError
from ..npz import read_npz
from ..prune import DIAGONALS, PRUNING_RULES, probe_covariance, probe_warmup
from ..pruning_measures import DECAY_TAUS, SLOWEST, check_trajectory_duration, compare_rules, sweep
from ..rate_network import (
    InvalidWeightMatrix,
    RateModel,
    authors_network,
    check_nest_step,
    check_weights,
    clustered_network,
    lyapunov_covariance,
    random_network,
    settling_time,
)

NETWORKS = ("clustered", "authors", "random")
# The generator options that only some networks take (None when not given).
NETWORK_OPTIONS = {"--p-in": ("clustered", "authors"), "--p-out": ("clustered",), "--long-range": ("authors",),
                   "--density": ("random",), "--inhibitory": ("clustered", "random")}
# The options of a generated network, refused with --matrix (--nodes is refused by argparse: its
# default is None, so that any value given counts, 200 too).
GENERATOR_OPTIONS = ("--network", *NETWORK_OPTIONS)
# The documented defaults of options whose argparse default is None, so that a refusal sees only
# what the user gave (--slowest's default is resolved against the network's size, --warmup's
# against its slowest time constant, --decay-duration's against tau).
DEFAULTS = {"network": "clustered", "p_in": 0.6, "probe": 10000.0, "decay_states": 20,
            "sweep": [0.5, 0.2, 0.1, 0.05]}
NODES = 200  # of a generated network, by default


def _fraction_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of fractions: {text!r}") from None
    if not values:  # "" or ",,": a sweep of --keep alone, without a word
        raise argparse.ArgumentTypeError(f"no fraction in {text!r}; give e.g. 0.5,0.2,0.1")
    if not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must lie in (0, 1]: {text!r}")
    return values


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nestplast prune",
                       description="Noise-driven pruning of a recurrent rate network, compared with the "
                                   "weight-magnitude and uniform rules.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--matrix", type=Path, help="weight matrix W: a .npz file with key 'W', or a .npy of W "
                                                    "alone; W[i, j] is the weight from neuron j onto neuron i")
    source.add_argument("--nodes", type=int, default=None, help=f"neurons of a generated network (default {NODES})")
    p.add_argument("--network", choices=NETWORKS, default=None,
                   help="generated network: 'clustered' (clusters in proportion 1000/200/800, U(0.5, 1.5) weights, "
                        "stability margin 0.1), 'authors' (the same clusters built as Moore & Chaudhuri's demo: "
                        "N(1, 1) weights, about 16%% negative, no margin) or 'random' (Erdos-Renyi); default clustered")
    p.add_argument("--p-in", type=float, default=None,
                   help="clustered, authors: connection probability within a cluster (default 0.6)")
    p.add_argument("--p-out", type=float, default=None,
                   help="clustered: long-range connection probability (default 3.2/nodes: 0.0016 at 2000)")
    p.add_argument("--long-range", type=int, default=None,
                   help="authors: long-range links, both directions counted (default 2.5 per neuron: 5000 at 2000)")
    p.add_argument("--density", type=float, default=None, help="random: connection probability (default 0.2)")
    p.add_argument("--inhibitory", type=float, default=None,
                   help="clustered, random: fraction of negative weights (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the network, the pruning and the noise")
    p.add_argument("--keep", type=float, default=0.2, help="fraction of synapses kept (default 0.2)")
    p.add_argument("--diagonal", choices=DIAGONALS, default="row-sum",
                   help="self-coupling after pruning: 'row-sum' (takes back each row's removed magnitude), "
                        "'original' or 'zero' (default row-sum)")
    p.add_argument("--covariance", choices=("lyapunov", "nest"), default="lyapunov",
                   help="covariance for the noise rule: analytic (linear network), or estimated by each "
                        "synapse online from a NEST simulation of --probe ms")
    p.add_argument("--probe", type=float, default=None,
                   help="ms of NEST activity for --covariance nest (default 10000)")
    p.add_argument("--warmup", type=float, default=None,
                   help="ms of NEST activity simulated from rest and discarded before the --probe (--covariance nest; "
                        "default five of the slowest time constants, at most the --probe: a mode slower than the probe "
                        "barely moves within it). A note on stderr says how long it is and why")
    p.add_argument("--rectified", action="store_true",
                   help="rectified-linear neurons (threshold_lin_rate_ipn) in the NEST simulations: the --probe of "
                        "--covariance nest and the trajectories of --duration. The Lyapunov covariance, the "
                        "eigenvalue errors and the decay are the linear network's, so with --covariance lyapunov it "
                        "changes the trajectory column alone; refused where nothing is simulated")
    p.add_argument("--slowest", type=int, default=None,
                   help=f"eigenvalues at the slow end (largest real part) whose mean error is reported, at most "
                        f"the number of neurons (default {SLOWEST}, or all of a smaller network's)")
    p.add_argument("--duration", type=float, default=200.0,
                   help="ms of the noise-driven NEST trajectories (default %(default)s; 0: skip them)")
    p.add_argument("--decay-duration", type=float, default=None,
                   help="ms of the noise-free linear decay from random initial states, also with --rectified "
                        "(default 40 tau = 400; 0: skip it)")
    p.add_argument("--decay-states", type=int, default=None, help="random initial states of the decay (default 20)")
    p.add_argument("--sweep", type=_fraction_list, default=None,
                   help="fractions kept in the sweep written to --out, so only with --out (default 0.5,0.2,0.1,0.05); "
                        "--keep is always among them")
    p.add_argument("--out", type=output_directory, help="directory for pruned matrices (.npz), tables (CSV) and plots (PNG)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    return p


def _given(args, option: str):
    """The value of ``option`` (e.g. '--p-in') if the user gave it, else None."""
    return getattr(args, option[2:].replace("-", "_"))


def _check_arguments(args) -> None:
    """Refuses bad values and options that would be ignored (only those given: the defaults of such
    options are None here), then fills in the documented defaults."""
    fractions = {"--keep": args.keep, "--p-in": args.p_in, "--p-out": args.p_out, "--density": args.density,
                 "--inhibitory": args.inhibitory}
    for name, value in fractions.items():
        if value is not None and (not 0 <= value <= 1 or (name == "--keep" and value == 0)):
            raise UsageError(f"{name} must be a fraction in {'(0, 1]' if name == '--keep' else '[0, 1]'}, got {value}")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    # NaN and inf passed these, then ended in NEST's "The simulation time must be finite" or a measure shown as
    # skipped; a --duration between the recorder's 1 ms samples in NEST's "stop must be a multiple of the resolution"
    for flag, value in (("--duration", args.duration), ("--probe", args.probe), ("--warmup", args.warmup),
                        ("--decay-duration", args.decay_duration)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} must be a finite number of ms, got {value}")
    try:  # the library's rule (compare_rules refuses the same)
        check_trajectory_duration(args.duration, name="--duration", zero_skips=True)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.probe is not None and args.probe < 2:  # before the warm-up is simulated, not after
        raise UsageError(f"--probe must be at least 2 ms (the rates are sampled every ms, and a covariance needs two "
                         f"samples): probe for longer, got {args.probe:g}")
    if args.warmup is not None and args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0 ms, got {args.warmup:g}")
    if args.decay_duration is not None and args.decay_duration < 0:
        raise UsageError(f"--decay-duration must be >= 0 ms, got {args.decay_duration}")
    if args.decay_states is not None and args.decay_states < 1:
        raise UsageError(f"--decay-states must be at least 1, got {args.decay_states}")
    if args.slowest is not None and args.slowest < 1:
        raise UsageError(f"--slowest must be at least 1, got {args.slowest}")
    if args.long_range is not None and args.long_range < 0:
        raise UsageError(f"--long-range must be non-negative, got {args.long_range}")
    if args.matrix is not None:
        for option in GENERATOR_OPTIONS:
            if _given(args, option) is not None:
                raise UsageError(f"{option} applies to a generated network, not --matrix")
    else:
        network = args.network or DEFAULTS["network"]
        for option, networks in NETWORK_OPTIONS.items():
            if _given(args, option) is not None and network not in networks:
                raise UsageError(f"{option} applies to --network {' or '.join(networks)}, not {network}")
        if args.nodes is None:
            args.nodes = NODES
        if args.nodes < 3:
            raise UsageError(f"--nodes must be at least 3, got {args.nodes}")
        if args.slowest is not None and args.slowest > args.nodes:
            raise UsageError(f"--slowest must be at most the number of neurons, {args.nodes} (--nodes), "
                             f"got {args.slowest}")
    for option in ("--probe", "--warmup"):
        if _given(args, option) is not None and args.covariance != "nest":
            raise UsageError(f"{option} applies to --covariance nest, not {args.covariance}")
    if args.rectified and not _simulates(args):
        raise UsageError("--rectified applies to the NEST simulations (--covariance nest, or --duration above 0), not "
                         "--covariance lyapunov with --duration 0: every other measure is the linear network's")
    if args.decay_states is not None and args.decay_duration == 0:
        raise UsageError("--decay-states applies to the decay, not --decay-duration 0 (which skips it)")
    if args.sweep is not None and args.out is None:
        raise UsageError("--sweep applies with --out (the sweep is written there: sweep.csv, sweep.png), "
                         "not without it")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _simulates(args) -> bool:
    """Whether the run simulates in NEST: the probe of --covariance nest, or the trajectories."""
    return args.covariance == "nest" or args.duration > 0


def _load_matrix(path: Path) -> np.ndarray:
    # a weight matrix is one array: numpy.save's .npy is as natural as an .npz with W in it
    arrays = read_npz(path, UsageError, "the matrix as array 'W', e.g. numpy.savez(path, W=matrix)", single="W")
    if "W" not in arrays:
        sparse = " (a scipy.sparse file: save the dense matrix, numpy.savez(path, W=matrix.toarray()))" if {
            "indptr", "format", "shape"} <= set(arrays) else ""
        raise UsageError(f"{path}: no array 'W' (found: {', '.join(arrays) or 'none'}){sparse}")
    return arrays["W"]  # check_weights converts it, refusing complex values instead of dropping their imaginary parts


def _generator_options(args) -> dict:
    """The generated network's own options (by their argparse names), with the values used."""
    n = args.nodes
    if args.network == "random":
        return {"density": 0.2 if args.density is None else args.density, "inhibitory": args.inhibitory or 0.0}
    if args.network == "authors":
        return {"p_in": args.p_in, "long_range": round(2.5 * n) if args.long_range is None else args.long_range}
    return {"p_in": args.p_in, "p_out": 3.2 / n if args.p_out is None else args.p_out,
            "inhibitory": args.inhibitory or 0.0}


def _network(args) -> np.ndarray:
    if args.matrix is not None:
        return _load_matrix(args.matrix)
    n = args.nodes  # at least 3 (_check_arguments)
    options = _generator_options(args)
    if args.network == "random":
        return random_network(n, options["density"], args.seed, inhibitory=options["inhibitory"])
    sizes = (n // 2, n // 10, n - n // 2 - n // 10)  # 1000/200/800 scaled to n
    if args.network == "authors":
        long_range, pairs = options["long_range"], n * (n - 1) // 2
        if long_range // 2 > pairs:
            # the default is named as such: the user never gave a --long-range
            given = (f"--long-range {long_range}" if args.long_range is not None
                     else f"the default --long-range, 2.5 x --nodes = {long_range},")
            raise UsageError(f"{given} is more links than {n} neurons have pairs ({pairs}, each two links): give "
                             f"--long-range {2 * pairs} or less, or more --nodes")
        return authors_network(sizes, options["p_in"], long_range, args.seed)
    return clustered_network(sizes, options["p_in"], options["p_out"], args.seed, inhibitory=options["inhibitory"])


def _remedy(args, W: np.ndarray) -> str:
    """What makes a usable network of the options that made the unusable ``W``."""
    if args.network == "authors":  # the only generator without a stability margin
        if args.p_in == 0:
            return ("--p-in 0 leaves only the long-range links, whose weights are all positive, and a network of "
                    "positive weights built the authors' way (no margin) always has a mode that never decays, "
                    "whatever --nodes or --seed: give --p-in above 0")
        unconnected = int((~(W - np.diag(np.diag(W))).any(axis=1)).sum())
        if unconnected:
            default = "" if args.long_range is not None else f" (default 2.5 x --nodes = {round(2.5 * args.nodes)})"
            return (f"{unconnected} of its neurons have no synapse, and with no margin an unconnected neuron's "
                    f"activity never decays: give a larger --p-in or --long-range{default}")
    return "try more --nodes or another --seed"


def _checked_network(args, model: RateModel) -> np.ndarray:
    """The network, checked; a generated one that fails the check names the options that made it
    (the user cannot fix its matrix, only ask for another)."""
    W = _network(args)
    try:
        W = check_weights(W, model.leak)
        if _simulates(args):  # before minutes of work: a matrix NEST's step cannot integrate grows there
            check_nest_step(W, model)
        return W
    except InvalidWeightMatrix as err:
        if args.matrix is not None and err.reason == "unstable in NEST":  # the command has no resolution, delay or tau
            raise InvalidWeightMatrix(err.reason, f"{err} (in Python, RateModel); or measure without NEST: "
                                                  "--duration 0 and --covariance lyapunov") from None
        if args.matrix is not None:
            raise
        # e.g. the authors' construction (no margin) on a few nodes: a cluster of positive weights
        # alone is a graph Laplacian, whose constant mode never decays
        raise UsageError(f"--network {args.network} --nodes {args.nodes} --seed {args.seed} gives an unusable "
                         f"network ({err}): {_remedy(args, W)}") from None


def _settings(args) -> dict:
    """The options that made the run (by their argparse names), only those that applied and with the
    values used: given back as options, they make the same run."""
    if args.matrix is not None:
        settings = {"matrix": str(args.matrix)}
    else:
        settings = {"network": args.network, "nodes": args.nodes, **_generator_options(args)}
    settings.update(seed=args.seed, keep=args.keep, diagonal=args.diagonal, covariance=args.covariance)
    if args.covariance == "nest":
        settings.update(probe=args.probe, warmup=args.warmup)
    if _simulates(args):
        settings["rectified"] = args.rectified
    settings.update(slowest=args.slowest, duration=args.duration, decay_duration=args.decay_duration)
    if args.decay_duration != 0:
        settings["decay_states"] = args.decay_states
    settings["sweep"] = _sweep(args)
    return settings


def _sweep(args) -> list[float]:
    return sorted(set(args.sweep) | {args.keep}, reverse=True)


# The --probe, in the slowest time constants, below which the covariance it measures is warned of:
# 20 ms of a network whose slowest mode takes 301 ms made the noise rule the worst of the three
PROBE_TIME_CONSTANTS = 10


def _resolve_warmup(args, W: np.ndarray, model: RateModel) -> None:
    """Set --warmup's default (whole ms, as the recording's grid takes it) and say what it is; warn
    of a --probe shorter than :data:`PROBE_TIME_CONSTANTS` of the slowest time constant."""
    settle = settling_time(W, model)  # for the warning and the note below: a 2000-node network's take seconds
    slowest = settle / 5.0
    if args.probe < PROBE_TIME_CONSTANTS * slowest:
        print(f"warning: the {args.probe:g} ms --probe spans {args.probe / slowest:.2g} of the network's slowest time "
              f"constant ({slowest:.4g} ms): the covariance it measures along the slow modes is mostly noise, and the "
              f"noise rule ranks the synapses by it; give a --probe of at least {PROBE_TIME_CONSTANTS * slowest:.4g} ms, "
              f"or --covariance lyapunov", file=sys.stderr, flush=True)
    if args.warmup is not None:
        args.warmup = math.ceil(args.warmup)  # what the simulation runs, so that the summary says so
        return
    args.warmup = math.ceil(round(probe_warmup(W, args.probe, model), 6))  # not 501 ms for 500 + rounding error
    if settle <= args.probe:
        why = f"five of the slowest time constant, {slowest:.4g} ms, so that the start from rest has decayed"
    else:  # a slow network: hours of NEST time, for a mode that the probe barely sees
        why = (f"as long as the --probe: five of the slowest time constant would be {settle:.4g} ms, and a mode "
               "slower than the probe barely moves within it")
    print(f"note: --covariance nest simulates a warm-up of {args.warmup:g} ms ({why}) before the {args.probe:g} ms "
          f"--probe; --warmup sets it", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send everything written to file descriptor 1 (Python and NEST's C++ alike) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _prune(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    _check_arguments(args)
    if args.out is not None:
        check_output_directory(args.out)  # before any work
        require_matplotlib()  # its plots: the work was done, then a ModuleNotFoundError left half the files
    model = RateModel(rectified=args.rectified)
    if args.decay_duration is None:
        args.decay_duration = DECAY_TAUS * model.tau
    with _stdout_to_stderr() if args.json else contextlib.nullcontext():
        W = _checked_network(args, model)
        if args.slowest is None:
            args.slowest = min(SLOWEST, len(W))  # the number averaged, as the summary reports it
        elif args.slowest > len(W):  # given with --matrix (a generated network's size was checked before)
            raise UsageError(f"--slowest must be at most the number of neurons, {len(W)} (in {args.matrix}), "
                             f"got {args.slowest}")
        if args.covariance == "nest":
            _resolve_warmup(args, W, model)
            covariance = probe_covariance(W, args.probe, model, seed=args.seed, warmup=args.warmup)
        else:
            covariance = lyapunov_covariance(W, model)
        comparison = compare_rules(W, keep=args.keep, covariance=covariance, diagonal=args.diagonal, seed=args.seed,
                                   model=model, duration=args.duration, slowest=args.slowest,
                                   decay_duration=args.decay_duration, decay_states=args.decay_states)
        if args.out is not None:
            rows = sweep(W, _sweep(args), PRUNING_RULES, seeds=(args.seed,),
                         covariance=covariance, diagonal=args.diagonal, model=model, slowest=args.slowest,
                         reference=comparison.reference)
            # what made it, so that the folder says how to make it again (seed, network or matrix, covariance, ...)
            write_outputs(args.out, comparison, rows, settings={**_settings(args), "nestplast": __version__})
    summary = comparison.summary()
    print(json.dumps(summary) if args.json else format_table(summary), flush=True)
    warnings = (nothing_pruned_warnings(summary) + instability_warnings(summary)
                + (sweep_instability_warnings(rows, args.keep) if args.out is not None else [])
                + sign_warnings(comparison) + non_finite_warnings(summary))
    for warning in warnings:  # after the table, where seen
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nestplast prune``: returns the exit code (2 for bad input, one line on stderr)."""
    return run_command(_prune, argv, one_process="python -m nestplast prune")


if __name__ == "__main__":
    sys.exit(main())
