"""Noise-driven pruning of recurrent rate networks (Moore & Chaudhuri).

For dx/dt = A x + noise with stationary covariance C, synapse ij (from j to i) is kept with
probability

    p_ij proportional to |W_ij| (C_ii + C_jj - 2 sign(W_ij) C_ij),

the variance of x_i - sign(W_ij) x_j: large for a synapse whose two neurons the rest of the
network does not already tie together. The probabilities are normalised so that the expected
number of kept synapses is the target, clipped at 1 (the normalisation is repeated until the
clipped probabilities still sum to the target), and a kept weight becomes W_ij / p_ij, so that
the pruned matrix equals the original in expectation. Controls: p proportional to |W|
("magnitude") and uniform p ("uniform"). A symmetric matrix is pruned pair by pair and stays
symmetric. The diagonal (self-coupling) is not pruned; it becomes zero, stays as it was, or
("row-sum", the default) takes back each row's removed off-diagonal magnitude so that every
row keeps its diagonal-dominance margin.

Measures compare the dynamics matrices M = W - leak I (in units of 1/tau): relative eigenvalue
error, Rayleigh-quotient error on the original eigenvectors, and the trajectory error of the
pruned against the unpruned network simulated in NEST with the same noise.

Command line: ``python -m nestplast prune --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .rate_network import (InvalidWeightMatrix, RateModel, check_weights, clustered_network,
                           lyapunov_covariance, random_network, simulate)

RULES = ("noise", "magnitude", "uniform")
DIAGONALS = ("row-sum", "original", "zero")


# ------------------------------------------------------------------------------------- rule

def _synapses(W: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the prunable synapses: nonzero and off the diagonal; for a symmetric
    matrix the upper triangle only (one entry per pair)."""
    rows, cols = np.nonzero(W)
    keep = rows < cols if symmetric else rows != cols
    return rows[keep], cols[keep]


def _scores(W: np.ndarray, rows: np.ndarray, cols: np.ndarray, rule: str, covariance) -> np.ndarray:
    w = W[rows, cols]
    if rule == "noise":
        C = np.asarray(covariance, dtype=float)
        d = np.diag(C)
        variance = d[rows] + d[cols] - 2.0 * np.sign(w) * C[rows, cols]  # Var(x_i - sign(w) x_j)
        # A variance is non-negative; clip the rounding error of nearly identical neurons.
        return np.abs(w) * np.maximum(variance, 0.0)
    if rule == "magnitude":
        return np.abs(w)
    if rule == "uniform":
        return np.ones(len(w))
    raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")


def noise_scores(W, covariance) -> np.ndarray:
    """The noise rule's unnormalised keep scores |W_ij| (C_ii + C_jj - 2 sign(W_ij) C_ij) for each
    off-diagonal synapse (zero elsewhere)."""
    W = np.asarray(W, dtype=float)
    rows, cols = _synapses(W, symmetric=False)
    scores = np.zeros_like(W)
    scores[rows, cols] = _scores(W, rows, cols, "noise", covariance)
    return scores


def keep_probabilities(scores, n_keep: float) -> np.ndarray:
    """Probabilities proportional to ``scores`` (non-negative), clipped at 1, that sum to
    ``n_keep``: after each clipping the rest are normalised again, until none exceeds 1. When
    fewer than ``n_keep`` scores are positive, every one of them is kept with probability 1."""
    scores = np.asarray(scores, dtype=float)
    if (scores < 0).any():
        raise ValueError("scores must be non-negative")
    positive = scores > 0
    if n_keep >= positive.sum():
        return positive.astype(float)
    clipped = np.zeros(scores.shape, dtype=bool)
    while True:
        free = positive & ~clipped
        p = np.where(clipped, 1.0, scores * (n_keep - clipped.sum()) / scores[free].sum())
        over = p > 1.0
        if not over[~clipped].any():
            return p
        clipped |= over


@dataclass
class Pruned:
    """A pruned weight matrix and how it was drawn."""

    weights: np.ndarray        # pruned W, same shape as the original
    probabilities: np.ndarray  # keep probability of each off-diagonal synapse (0 elsewhere)
    rule: str
    synapses: int              # off-diagonal synapses in the original
    target: float              # synapses asked for: keep * synapses
    expected: float            # expected number kept, sum of the probabilities
    kept: int                  # off-diagonal synapses actually kept

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.synapses if self.synapses else 1.0


def prune(W, keep: float = 0.2, rule: str = "noise", *, covariance=None, diagonal: str = "row-sum",
          seed: int | np.random.Generator | None = None, model: RateModel = RateModel()) -> Pruned:
    """Prune weight matrix ``W`` to a fraction ``keep`` of its off-diagonal synapses (expected).

    ``rule`` is "noise" (needs the stationary covariance: ``covariance``, e.g. estimated from
    activity with :class:`OnlineCovariance`, or by default the Lyapunov solution of the linear
    network ``model``), "magnitude" or "uniform". ``diagonal`` is "row-sum", "original" or
    "zero". ``seed`` (an int or a numpy Generator) makes the draw reproducible. Raises
    :class:`~nestplast.rate_network.InvalidWeightMatrix` for a matrix that is not square, not
    finite or unstable.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    if diagonal not in DIAGONALS:
        raise ValueError(f"unknown diagonal option {diagonal!r}; choose from {', '.join(DIAGONALS)}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    W = check_weights(W, model.leak)
    if rule == "noise" and covariance is None:
        covariance = lyapunov_covariance(W, model)
    if covariance is not None and np.shape(covariance) != W.shape:
        raise ValueError(f"covariance shape {np.shape(covariance)} does not match the weights {W.shape}")

    symmetric = np.array_equal(W, W.T)
    rows, cols = _synapses(W, symmetric)
    per_entry = 2 if symmetric else 1  # a symmetric pair is two synapses
    synapses = per_entry * len(rows)
    p = keep_probabilities(_scores(W, rows, cols, rule, covariance), keep * synapses / per_entry)
    rng = np.random.default_rng(seed)
    kept = rng.random(len(p)) < p

    pruned = np.zeros_like(W)
    probabilities = np.zeros_like(W)
    pruned[rows[kept], cols[kept]] = W[rows[kept], cols[kept]] / p[kept]
    probabilities[rows, cols] = p
    if symmetric:
        pruned += pruned.T
        probabilities += probabilities.T

    if diagonal != "zero":
        np.fill_diagonal(pruned, np.diag(W))
    if diagonal == "row-sum":
        removed = _offdiagonal_magnitude(W) - _offdiagonal_magnitude(pruned)
        pruned[np.diag_indices_from(pruned)] += removed
    return Pruned(weights=pruned, probabilities=probabilities, rule=rule, synapses=synapses,
                  target=keep * synapses, expected=per_entry * float(p.sum()),
                  kept=per_entry * int(kept.sum()))


def _offdiagonal_magnitude(W: np.ndarray) -> np.ndarray:
    return np.abs(W).sum(axis=1) - np.abs(np.diag(W))


class OnlineCovariance:
    """The local, online form of the noise rule's statistics.

    Each synapse ij keeps running averages of its two neurons' rates, of their squares and of
    their product, from which it has its own C_ii, C_jj and C_ij; nothing else about the
    network. Feed recorded activity in chunks with :meth:`update`. Averages are cumulative
    (``timescale=None``) or exponential with ``timescale`` samples. Only the normalisation to
    the target number of kept synapses in :func:`prune` is global.
    """

    def __init__(self, W, timescale: float | None = None):
        W = np.asarray(W, dtype=float)
        self.rows, self.cols = _synapses(W, symmetric=False)
        self.timescale = timescale
        self.samples = 0
        self._norm = 0.0
        # Per-neuron averages are what each synapse of that neuron would compute alike; they are
        # stored once per neuron instead of once per synapse.
        self._mean = np.zeros(len(W))
        self._square = np.zeros(len(W))
        self._cross = np.zeros(len(self.rows))

    def update(self, rates: np.ndarray) -> None:
        """Take in a chunk of samples (rows: time, columns: neurons)."""
        rates = np.asarray(rates, dtype=float)
        T = len(rates)
        if self.timescale is None:
            decay, w = 1.0, np.ones(T)
        else:
            a = np.exp(-1.0 / self.timescale)
            decay, w = a ** T, a ** np.arange(T - 1, -1, -1)
        weighted = rates * w[:, None]
        self._norm = decay * self._norm + w.sum()
        self._mean = decay * self._mean + weighted.sum(axis=0)
        self._square = decay * self._square + (weighted * rates).sum(axis=0)
        # Entry (i, j) of this product is synapse ij's own sum of x_i x_j over the chunk; one
        # matrix product computes all of them at once.
        self._cross = decay * self._cross + (weighted.T @ rates)[self.rows, self.cols]
        self.samples += T

    def covariance(self) -> np.ndarray:
        """Current estimates as a matrix: variances on the diagonal, C_ij at each synapse, zero
        where there is no synapse (never used by the rule)."""
        if self._norm == 0:
            raise ValueError("no activity seen yet: call update() first")
        mean = self._mean / self._norm
        C = np.zeros((len(mean), len(mean)))
        C[self.rows, self.cols] = self._cross / self._norm - mean[self.rows] * mean[self.cols]
        C[np.diag_indices_from(C)] = self._square / self._norm - mean ** 2
        return C


# --------------------------------------------------------------------------------- measures

class Error(NamedTuple):
    mean: float
    max: float


class Spectrum(NamedTuple):
    """Eigenvalues and eigenvectors (columns) of a dynamics matrix; real and sorted if symmetric."""

    values: np.ndarray
    vectors: np.ndarray
    symmetric: bool


def spectrum(W, leak: float = 1.0) -> Spectrum:
    """Eigen-decomposition of the dynamics matrix M = W - leak I."""
    M = np.asarray(W, dtype=float) - leak * np.eye(len(W))
    if np.array_equal(M, M.T):
        values, vectors = np.linalg.eigh(M)
        return Spectrum(values, vectors, True)
    values, vectors = np.linalg.eig(M)
    return Spectrum(values, vectors, False)


def _paired_relative_error(reference: np.ndarray, values: np.ndarray, both_sorted: bool) -> np.ndarray:
    if both_sorted:
        return np.abs(values - reference) / np.abs(reference)
    # Complex spectra: the pairing that minimises the total relative error.
    cost = np.abs(values[:, None] - reference[None, :]) / np.abs(reference)[None, :]
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


def eigenvalue_error(W, W_pruned, leak: float = 1.0, *, reference: Spectrum | None = None) -> Error:
    """Relative eigenvalue error of the dynamics matrices, mean and max over eigenvalues of
    |lambda'_k - lambda_k| / |lambda_k|; eigenvalues are paired by sorting when both matrices
    are symmetric and by an optimal assignment otherwise. ``reference``: the original's
    :func:`spectrum`, if computed already."""
    reference = reference or spectrum(W, leak)
    pruned = spectrum(W_pruned, leak)
    errors = _paired_relative_error(reference.values, pruned.values, reference.symmetric and pruned.symmetric)
    return Error(float(errors.mean()), float(errors.max()))


def rayleigh_error(W, W_pruned, leak: float = 1.0, *, reference: Spectrum | None = None) -> Error:
    """Relative error of the Rayleigh quotients v_k* M' v_k / v_k* v_k of the pruned dynamics
    matrix M' on the original eigenvectors v_k against the original eigenvalues."""
    reference = reference or spectrum(W, leak)
    V = reference.vectors
    M = np.asarray(W_pruned, dtype=float) - leak * np.eye(len(V))
    quotients = np.einsum("ik,ik->k", V.conj(), M @ V) / np.einsum("ik,ik->k", V.conj(), V)
    errors = np.abs(quotients - reference.values) / np.abs(reference.values)
    return Error(float(errors.mean()), float(errors.max()))


def relative_trajectory_error(reference: np.ndarray, rates: np.ndarray) -> float:
    """||X' - X|| / ||X|| over all samples and neurons."""
    return float(np.linalg.norm(rates - reference) / np.linalg.norm(reference))


def trajectory_error(W, W_pruned, duration: float = 200.0, model: RateModel = RateModel(), *,
                     seed: int = 0, interval: float = 1.0) -> float:
    """Relative trajectory error of the pruned against the unpruned network, both simulated in
    NEST from rest for ``duration`` ms with the same noise (same seed)."""
    reference = simulate(W, duration, model, seed=seed, interval=interval, warmup=0.0).rates
    rates = simulate(W_pruned, duration, model, seed=seed, interval=interval, warmup=0.0).rates
    return relative_trajectory_error(reference, rates)


def measure(W, pruned: Pruned, *, leak: float = 1.0, reference: Spectrum | None = None) -> dict:
    """The spectral measures of one pruned matrix, as a flat dict."""
    reference = reference or spectrum(W, leak)
    eig = eigenvalue_error(W, pruned.weights, leak, reference=reference)
    ray = rayleigh_error(W, pruned.weights, leak, reference=reference)
    return {"eigenvalue_error": eig.mean, "eigenvalue_error_max": eig.max,
            "rayleigh_error": ray.mean, "rayleigh_error_max": ray.max,
            "kept": pruned.kept, "kept_fraction": pruned.kept_fraction}


def sweep(W, keeps, rules=RULES, *, seeds=(0,), covariance=None, diagonal: str = "row-sum",
          model: RateModel = RateModel()) -> list[dict]:
    """Spectral measures for each fraction kept and rule, averaged over the pruning ``seeds``.
    One row per (keep, rule)."""
    W = check_weights(W, model.leak)
    if covariance is None and "noise" in rules:
        covariance = lyapunov_covariance(W, model)
    reference = spectrum(W, model.leak)
    rows = []
    for keep in keeps:
        for rule in rules:
            results = [measure(W, prune(W, keep, rule, covariance=covariance, diagonal=diagonal, seed=s,
                                        model=model), leak=model.leak, reference=reference) for s in seeds]
            row = {"keep": keep, "rule": rule}
            row.update({key: float(np.mean([r[key] for r in results])) for key in results[0]})
            rows.append(row)
    return rows


def write_table(rows: list[dict], path) -> None:
    """Write sweep rows as CSV."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_spectra(W, pruned: dict[str, np.ndarray], path, *, leak: float = 1.0, title: str = "",
                 reference: Spectrum | None = None) -> None:
    """PNG of the dynamics matrix spectrum before and after pruning by each rule: sorted
    eigenvalues for symmetric matrices, the complex plane otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = reference or spectrum(W, leak)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if reference.symmetric:
        ax.plot(reference.values, "k-", lw=2, label="original")
        for name, weights in pruned.items():
            ax.plot(np.sort(spectrum(weights, leak).values.real), ".", ms=2, label=name)
        ax.set_xlabel("eigenvalue index (sorted)")
        ax.set_ylabel("eigenvalue of W - leak I (1/tau)")
    else:
        ax.plot(reference.values.real, reference.values.imag, "ko", ms=3, label="original")
        for name, weights in pruned.items():
            values = spectrum(weights, leak).values
            ax.plot(values.real, values.imag, ".", ms=2, label=name)
        ax.set_xlabel("Re eigenvalue (1/tau)")
        ax.set_ylabel("Im eigenvalue (1/tau)")
    ax.set_title(title)
    ax.legend(markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep(rows: list[dict], path) -> None:
    """PNG of the mean relative eigenvalue error against the fraction pruned, one line per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for rule in dict.fromkeys(r["rule"] for r in rows):
        points = sorted((1 - r["keep"], r["eigenvalue_error"]) for r in rows if r["rule"] == rule)
        ax.plot(*zip(*points), "o-", label=rule)
    ax.set_xlabel("fraction of synapses pruned")
    ax.set_ylabel("mean relative eigenvalue error")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------ command line

class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _fraction_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of fractions: {text!r}") from None
    if not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must lie in (0, 1]: {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m nestplast prune",
                description="Noise-driven pruning of a recurrent rate network, compared with the "
                            "weight-magnitude and uniform rules.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--matrix", type=Path, help="weight matrix W (key 'W') in a .npz file")
    source.add_argument("--nodes", type=int, default=200, help="neurons of a generated network (default 200)")
    p.add_argument("--network", choices=("clustered", "random"), default="clustered",
                   help="generated network: clusters in proportion 1000/200/800 with sparse long-range "
                        "links, or Erdos-Renyi (default clustered)")
    p.add_argument("--p-in", type=float, default=0.6, help="connection probability within a cluster")
    p.add_argument("--p-out", type=float, default=None,
                   help="long-range connection probability (default 3.2/nodes: 0.0016 at 2000 as in the paper)")
    p.add_argument("--density", type=float, default=0.2, help="connection probability of the random network")
    p.add_argument("--inhibitory", type=float, default=0.0, help="fraction of negative weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the network, the pruning and the noise")
    p.add_argument("--keep", type=float, default=0.2, help="fraction of synapses kept (default 0.2)")
    p.add_argument("--diagonal", choices=DIAGONALS, default="row-sum")
    p.add_argument("--covariance", choices=("lyapunov", "nest"), default="lyapunov",
                   help="covariance for the noise rule: analytic (linear network), or estimated by each "
                        "synapse online from a NEST simulation of --probe ms")
    p.add_argument("--probe", type=float, default=10000.0, help="ms of NEST activity for --covariance nest")
    p.add_argument("--rectified", action="store_true", help="rectified-linear neurons (threshold_lin_rate_ipn)")
    p.add_argument("--duration", type=float, default=200.0,
                   help="ms simulated for the trajectory error (0: skip the NEST trajectories)")
    p.add_argument("--sweep", type=_fraction_list, default=[0.5, 0.2, 0.1, 0.05],
                   help="fractions kept in the sweep written to --out (default 0.5,0.2,0.1,0.05)")
    p.add_argument("--out", type=Path, help="directory for pruned matrices (.npz), table (CSV) and plots (PNG)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    return p


def _check_arguments(args) -> None:
    fractions = {"--keep": args.keep, "--p-in": args.p_in, "--density": args.density,
                 "--inhibitory": args.inhibitory}
    if args.p_out is not None:
        fractions["--p-out"] = args.p_out
    for name, value in fractions.items():
        if not 0 <= value <= 1 or (name == "--keep" and value == 0):
            raise UsageError(f"{name} must be a fraction in {'(0, 1]' if name == '--keep' else '[0, 1]'}, got {value}")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    if args.duration < 0 or args.probe <= 0:
        raise UsageError(f"--duration must be >= 0 and --probe > 0 ms, got {args.duration} and {args.probe}")


def _load_matrix(path: Path) -> np.ndarray:
    try:
        with np.load(path) as data:
            if "W" not in data:
                raise UsageError(f"{path} has no array 'W' (found: {', '.join(data.files) or 'none'})")
            return np.asarray(data["W"], dtype=float)
    except UsageError:
        raise
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(f"cannot read weight matrix from {path}: {err}") from None


def _network(args) -> np.ndarray:
    if args.matrix is not None:
        return _load_matrix(args.matrix)
    n = args.nodes
    if n < 3:
        raise UsageError(f"--nodes must be at least 3, got {n}")
    if args.network == "random":
        return random_network(n, args.density, args.seed, inhibitory=args.inhibitory)
    sizes = (n // 2, n // 10, n - n // 2 - n // 10)  # 1000/200/800 scaled to n
    p_out = 3.2 / n if args.p_out is None else args.p_out
    return clustered_network(sizes, args.p_in, p_out, args.seed, inhibitory=args.inhibitory)


def _probe_covariance(W: np.ndarray, model: RateModel, duration: float, seed: int) -> np.ndarray:
    """Covariance as each synapse estimates it online from the NEST activity."""
    online = OnlineCovariance(W)
    online.update(simulate(W, duration, model, seed=seed).rates)
    return online.covariance()


def run(args) -> dict:
    """Prune the network of the parsed ``args`` by each rule, measure, write the outputs to
    ``args.out`` (with a sweep over ``args.sweep``) and return the summary."""
    _check_arguments(args)
    model = RateModel(rectified=args.rectified)
    W = check_weights(_network(args), model.leak)
    if args.covariance == "nest":
        covariance = _probe_covariance(W, model, args.probe, args.seed)
    else:
        covariance = lyapunov_covariance(W, model)
    reference = spectrum(W, model.leak)
    pruned = {rule: prune(W, args.keep, rule, covariance=covariance, diagonal=args.diagonal, seed=args.seed,
                          model=model) for rule in RULES}
    results = {rule: measure(W, p, leak=model.leak, reference=reference) for rule, p in pruned.items()}
    if args.duration > 0:
        unpruned = simulate(W, args.duration, model, seed=args.seed, warmup=0.0).rates
        for rule, p in pruned.items():
            rates = simulate(p.weights, args.duration, model, seed=args.seed, warmup=0.0).rates
            results[rule]["trajectory_error"] = relative_trajectory_error(unpruned, rates)
    else:
        for rule in results:
            results[rule]["trajectory_error"] = None
    summary = {"kept_fraction": args.keep, "nodes": len(W), "synapses": pruned["noise"].synapses,
               "rules": results}
    if args.out is not None:
        rows = sweep(W, sorted(set(args.sweep) | {args.keep}, reverse=True), RULES, seeds=(args.seed,),
                     covariance=covariance, diagonal=args.diagonal, model=model)
        _write_outputs(args.out, W, summary, pruned, rows, reference, model.leak)
    return summary


def _write_outputs(out: Path, W: np.ndarray, summary: dict, pruned: dict[str, Pruned], rows: list[dict],
                   reference: Spectrum, leak: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "original.npz", W=W)
    for rule, p in pruned.items():
        np.savez_compressed(out / f"pruned_{rule}.npz", W=p.weights, probabilities=p.probabilities)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_table(rows, out / "sweep.csv")
    plot_spectra(W, {rule: p.weights for rule, p in pruned.items()}, out / "spectra.png", leak=leak,
                 reference=reference, title=f"{len(W)} neurons, {summary['kept_fraction']:.0%} of synapses kept")
    plot_sweep(rows, out / "sweep.png")


def _format_text(summary: dict) -> str:
    lines = [f"{summary['nodes']} neurons, {summary['synapses']} synapses, keep {summary['kept_fraction']}",
             f"{'rule':<10} {'kept':>9} {'eig err':>9} {'eig max':>9} {'rayleigh':>9} {'trajectory':>10}"]
    for rule, r in summary["rules"].items():
        trajectory = "-" if r["trajectory_error"] is None else f"{r['trajectory_error']:.4f}"
        lines.append(f"{rule:<10} {r['kept']:>9} {r['eigenvalue_error']:>9.4f} {r['eigenvalue_error_max']:>9.4f} "
                     f"{r['rayleigh_error']:>9.4f} {trajectory:>10}")
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    """``python -m nestplast prune``: returns the exit code (2 for bad input)."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as err:
        print(f"nestplast prune: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    try:
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            summary = run(args)
    except (UsageError, InvalidWeightMatrix) as err:
        print(f"nestplast prune: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary) if args.json else _format_text(summary))
    return 0
