"""Noise-driven linear and rectified-linear rate networks in NEST.

The network is NEST's ``lin_rate_ipn`` (or ``threshold_lin_rate_ipn``) neurons coupled by
``rate_connection_delayed`` connections. NEST integrates, for each neuron i,

    tau dX_i/dt = -leak X_i + mu_i + phi(sum_j W_ij X_j) + sqrt(tau) sigma xi_i(t)

with phi the identity (linear) or h -> max(h - theta, 0) (rectified-linear), ``leak`` NEST's
``lambda`` and xi_i unit white noise. For the linear network that is dx/dt = A x + noise with

    A = (W - leak I) / tau,    noise covariance D = sigma^2 / tau I,

and the stationary covariance C solves A C + C A^T + D = 0 (:func:`lyapunov_covariance`).

Convention: ``W[i, j]`` is the weight of the connection from neuron j to neuron i; the diagonal
holds self-connections. Times are in ms.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse
from numpy.typing import ArrayLike

from .errors import UserError
from .kernel import import_nest, lent_kernel, nest_seed, reset_kernel, user_stacklevel

if TYPE_CHECKING:
    from nest import NodeCollection

__all__ = [
    "InvalidWeightMatrix", "RateModel", "Activity", "check_weights", "dynamics_matrix",
    "spectral_abscissa", "settling_time", "random_network", "clustered_network", "authors_network", "lyapunov_covariance",
    "connect_weights", "simulate", "run_in_pieces", "STABLE_BELOW",
]

# Stable: every eigenvalue of W - leak I has real part below this. An eigenvalue within rounding
# error of zero is a mode that never decays (e.g. a graph Laplacian's constant mode, or a neuron
# that pruning cut off in a network without a stability margin), so it counts as unstable.
STABLE_BELOW = -1e-10

# Wall-clock seconds that one piece of a NEST simulation aims at: Python runs its signal handlers
# (SIGTERM, Ctrl-C) only between the pieces, so this is about how long a stop can take.
PIECE_SECONDS = 0.25


class InvalidWeightMatrix(UserError, ValueError):
    """A weight matrix that cannot be a noise-driven stationary rate network.

    ``reason`` is ``"not real"``, ``"not square"``, ``"not finite"``, ``"unstable"`` or ``"unstable in
    NEST"`` (:func:`check_nest_step`). A user error (the
    command lines print it in one line) and, as bad input to a function, a ``ValueError``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RateModel:
    """Parameters of the NEST rate network (NEST's names in brackets).

    ``resolution`` and ``delay`` are in ms; ``delay`` must be a multiple of ``resolution``.
    A delay of one step is the smallest NEST allows; it shifts the coupling by that step, an
    error of order delay/tau on the covariance (0.01 at the defaults).
    """

    tau: float = 10.0            # time constant [tau], ms
    leak: float = 1.0            # leak [lambda]
    sigma: float = 1.0           # input noise [sigma]
    mu: float = 0.0              # constant input [mu]
    resolution: float = 0.1      # simulation step, ms
    delay: float = 0.1           # rate connection delay, ms
    rectified: bool = False      # threshold_lin_rate_ipn instead of lin_rate_ipn
    theta: float = 0.0           # rectification threshold [theta] (rectified only)

    @property
    def neuron_model(self) -> str:
        return "threshold_lin_rate_ipn" if self.rectified else "lin_rate_ipn"


@dataclass
class Activity:
    """Recorded rates: ``rates[k, i]`` is neuron i's rate at ``times[k]`` (ms)."""

    times: np.ndarray
    rates: np.ndarray


# ----------------------------------------------------------------------------------- checks

# Asymmetry up to this fraction of the largest |W_ij| is rounding: H = X D X^T / N, symmetric in
# exact arithmetic, differed from its transpose by 1e-17 and was pruned as a directed network.
SYMMETRY_TOLERANCE = 1e-12


def is_symmetric(W: np.ndarray) -> bool:
    """Whether the square matrix ``W`` is symmetric up to rounding (:data:`SYMMETRY_TOLERANCE`)."""
    scale = float(np.max(np.abs(W))) if W.size else 0.0
    return bool(np.all(np.abs(W - W.T) <= SYMMETRY_TOLERANCE * scale))


def check_weights(W: ArrayLike, leak: float = 1.0, *, stable: bool = True) -> np.ndarray:
    """Return ``W`` as a float array, or raise :class:`InvalidWeightMatrix` saying what is wrong:
    not real numbers (text, complex), not a square matrix, NaN or infinite entries, or unstable
    dynamics (an eigenvalue of ``W - leak I`` with real part not below :data:`STABLE_BELOW`:
    non-negative, or zero up to rounding; the noise-driven activity has no stationary covariance).
    ``stable=False`` skips the last check."""
    if scipy.sparse.issparse(W):  # numpy saw one object, "got object"
        raise InvalidWeightMatrix("sparse", "weight matrix is a scipy.sparse matrix: give the dense one, W.toarray()")
    W = np.asarray(W)
    # Casting to float would drop imaginary parts with a mere warning, or fail on text with numpy's message.
    if W.dtype.kind not in "biufc" or (W.dtype.kind == "c" and np.any(W.imag)):
        raise InvalidWeightMatrix(
            "not real", f"weight matrix must hold real numbers, got {'complex numbers' if W.dtype.kind == 'c' else W.dtype}")
    W = np.asarray(np.real(W), dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise InvalidWeightMatrix("not square", f"weight matrix must be square (n x n), got shape {W.shape}")
    if W.shape[0] == 0:  # "must be square, got shape (0, 0)": it is
        raise InvalidWeightMatrix("not square", "weight matrix is empty (shape (0, 0)): give one of at least 1 x 1")
    bad = ~np.isfinite(W)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InvalidWeightMatrix(
            "not finite", f"weight matrix holds {bad.sum()} NaN or infinite entries (first at [{i}, {j}] = {W[i, j]})")
    if stable:
        _refuse_unstable(spectral_abscissa(W - leak * np.eye(len(W))), leak)
    return W


def _refuse_unstable(abscissa: float, leak: float) -> None:
    """Raise :class:`InvalidWeightMatrix` where ``abscissa``, the largest real part of the
    eigenvalues of W - leak I, is not below :data:`STABLE_BELOW`."""
    if abscissa >= STABLE_BELOW:
        raise InvalidWeightMatrix(
            "unstable", f"weight matrix is unstable: W - leak*I (leak = {leak}) has an eigenvalue with real part "
            f"{abscissa:.4g}{' >= 0' if abscissa >= 0 else ', zero up to rounding'}, so the noise-driven activity "
            "has no stationary covariance")


# Steps per time constant of the fastest mode below which NEST's step is warned of as too coarse:
# a mode of 1.6 steps (W's diagonal -60) gave covariances 6 x the analytic ones
STEPS_PER_FASTEST_MODE = 10.0


def nest_step_roots(W: np.ndarray, model: RateModel = RateModel()) -> np.ndarray:
    """The largest |z| of NEST's update of each eigenmode of ``W``. NEST's rate neuron steps by
    exponential Euler, x(n+1) = P1 x(n) + P2 mu x(n+1-k) for an eigenvalue mu of W, with
    P1 = exp(-leak h/tau), P2 = (1 - P1)/leak (h/tau for leak 0), and its input k = delay/h + 1
    steps old; a mode with a root |z| >= 1 grows in NEST, whatever the continuous dynamics do."""
    return _step_roots(np.linalg.eigvals(W), model)


def _step_roots(eigenvalues: np.ndarray, model: RateModel) -> np.ndarray:
    h, k = model.resolution, round(model.delay / model.resolution) + 1  # k >= 2: a delay is a step at least
    p1 = np.exp(-model.leak * h / model.tau)
    p2 = (1.0 - p1) / model.leak if model.leak else h / model.tau
    # z^k - P1 z^(k-1) - P2 mu = 0
    return np.array([np.max(np.abs(np.roots([1.0, -p1, *[0.0] * (k - 2), -p2 * mu]))) for mu in eigenvalues])


def check_nest_step(W: np.ndarray, model: RateModel = RateModel(), *,
                    eigenvalues: np.ndarray | None = None) -> str | None:
    """Refuse (:class:`InvalidWeightMatrix`) a ``W`` whose continuous dynamics are stable but whose
    fastest modes NEST's step and delay cannot integrate: they grow in NEST (a diagonal of -120 with
    tau = 10 ms, h = delay = 0.1 ms reached rates of 1e236, reported as an error of 3.8e10 with
    every eigenvalue below 0). Return a warning where the fastest mode spans fewer than
    :data:`STEPS_PER_FASTEST_MODE` steps (NEST's covariance then differs from the analytic one),
    else None. ``eigenvalues``: W's, where the caller has them (a 2000-node network's take seconds)."""
    if eigenvalues is None:
        eigenvalues = np.linalg.eigvals(W)
    if float(np.max(eigenvalues.real)) - model.leak >= STABLE_BELOW:
        return None  # unstable anyway: check_weights says so, or a caller simulates it from rest on purpose
    roots = _step_roots(eigenvalues, model)
    if (largest := float(np.max(roots))) >= 1.0:
        mode = eigenvalues[int(np.argmax(roots))]
        mode = mode.real if abs(mode.imag) < 1e-12 * max(1.0, abs(mode)) else mode
        # a slow, weakly damped oscillation, tipped over by the delayed input, grew by 1 + 5e-7: "1 >= 1" said nothing
        factor = f"{largest:.4g}" if largest >= 1.0005 else f"1 + {largest - 1.0:.2g}"
        raise InvalidWeightMatrix(
            "unstable in NEST", f"weight matrix has a mode NEST's step cannot integrate: stable as a continuous "
            f"network, the mode of W's eigenvalue {mode:.4g} grows in NEST's update by a factor of {factor} per step "
            f"(exponential Euler with the input one delay old, at resolution {model.resolution} ms, delay "
            f"{model.delay} ms, tau {model.tau} ms); scale W down, or give a smaller resolution and delay, or a longer "
            "tau")
    fastest = float(np.max(np.abs(eigenvalues - model.leak)))
    steps = model.tau / (fastest * model.resolution) if fastest > 0 else np.inf
    if steps < STEPS_PER_FASTEST_MODE:
        return (f"the fastest mode of W decays in {steps:.3g} of NEST's steps (fewer than {STEPS_PER_FASTEST_MODE:g}): "
                f"NEST's covariances and trajectories differ from the continuous network's; scale W down, or give "
                f"a smaller resolution and delay, or a longer tau")
    return None


def dynamics_matrix(W: np.ndarray, model: RateModel = RateModel()) -> np.ndarray:
    """A = (W - leak I) / tau, the matrix of dx/dt = A x + noise (1/ms)."""
    return (np.asarray(W, dtype=float) - model.leak * np.eye(len(W))) / model.tau


def spectral_abscissa(M: np.ndarray) -> float:
    """Largest real part of the eigenvalues of ``M``."""
    if np.array_equal(M, M.T):
        return float(np.linalg.eigvalsh(M)[-1])
    return float(np.linalg.eigvals(M).real.max())


def settling_time(W: ArrayLike, model: RateModel = RateModel()) -> float:
    """Five of the slowest time constants of the linear dynamics (ms), by which a start from rest
    has decayed to within e^-5 (0.7 %) of the stationary state. Long for a slow network: 5e6 ms
    when W - leak I has an eigenvalue -1e-5."""
    return _settling_time(spectral_abscissa(dynamics_matrix(W, model)))


def _settling_time(abscissa: float) -> float:
    """:func:`settling_time` from the dynamics matrix's largest real eigenvalue part (1/ms)."""
    return 5.0 / -abscissa


# ------------------------------------------------------------------------------- generators

def _balanced(offdiag: np.ndarray, strength: float, margin: float, leak: float) -> np.ndarray:
    """Scale the off-diagonal weights to a mean summed input magnitude of ``strength * leak`` per
    neuron and set each diagonal so that W - leak I = -(L + margin I), L a signed graph Laplacian
    (each row's diagonal cancels its summed input magnitude). By Gershgorin the dynamics are
    stable with spectral abscissa <= -margin, whatever the graph."""
    W = offdiag.copy()
    np.fill_diagonal(W, 0.0)
    row = np.abs(W).sum(axis=1)
    if row.mean() > 0:
        W *= strength * leak / row.mean()
        row *= strength * leak / row.mean()
    np.fill_diagonal(W, leak - margin - row)
    return W


def _signed_weights(mask: np.ndarray, rng: np.random.Generator, inhibitory: float, symmetric: bool) -> np.ndarray:
    """Weights U(0.5, 1.5) on ``mask``, a fraction ``inhibitory`` of them negative; mirrored from
    the upper triangle when ``symmetric``."""
    n = len(mask)
    w = rng.uniform(0.5, 1.5, (n, n)) * np.where(rng.random((n, n)) < inhibitory, -1.0, 1.0) * mask
    if symmetric:
        upper = np.triu(w, 1)
        return upper + upper.T
    return w


def random_network(n: int, density: float = 0.2, seed: int = 0, *, inhibitory: float = 0.0,
                   symmetric: bool = True, strength: float = 1.0, margin: float = 0.1,
                   leak: float = 1.0) -> np.ndarray:
    """Erdos-Renyi weight matrix: each pair connected with probability ``density``, weights
    U(0.5, 1.5) (a fraction ``inhibitory`` negative), balanced as described in
    :func:`clustered_network`."""
    return clustered_network((n,), density, 0.0, seed, inhibitory=inhibitory, symmetric=symmetric,
                             strength=strength, margin=margin, leak=leak)


def clustered_network(sizes: Sequence[int] = (1000, 200, 800), p_in: float = 0.6, p_out: float = 0.0016, seed: int = 0, *,
                      inhibitory: float = 0.0, symmetric: bool = True, strength: float = 1.0,
                      margin: float = 0.1, leak: float = 1.0) -> np.ndarray:
    """Clustered weight matrix like Moore & Chaudhuri's demo: dense clusters of the given
    ``sizes`` (connection probability ``p_in``) joined by sparse long-range links (``p_out``).
    The defaults give about 1,010,000 synapses on 2000 neurons, as in the paper.

    Weights are U(0.5, 1.5), a fraction ``inhibitory`` negative, scaled to a mean summed input
    magnitude ``strength * leak``; each diagonal (self-coupling) cancels its row's summed
    magnitude so that ``W - leak I = -(L + margin I)``: diagonally dominant, stable, slowest
    time constant tau / margin.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    p = np.where(labels[:, None] == labels[None, :], p_in, p_out)
    mask = rng.random(p.shape) < p
    return _balanced(_signed_weights(mask, rng, inhibitory, symmetric), strength, margin, leak)


def authors_network(sizes: Sequence[int] = (1000, 200, 800), density: float = 0.6, long_range: int = 5000, seed: int = 0, *,
                    leak: float = 1.0) -> np.ndarray:
    """Moore & Chaudhuri's own demo network, built as their code builds it (chaudlab/noise-prune,
    ``make_imb_clustered_graph`` and ``shift_to_make_diagonally_dominant``).

    Each cluster of ``sizes`` links exactly ``int(density * pairs)`` of its neuron pairs, with
    weights N(1, 1) (about 16 % negative); ``long_range`` // 2 pairs drawn from the whole network
    (a few land inside a cluster and add to that weight) get U(0, 1) weights; the matrix is
    symmetric. The weights are divided by 1.1 times the largest eigenvalue of that coupling
    matrix, and each diagonal is set so that the dynamics matrix ``W - leak I`` has minus the
    row's summed off-diagonal magnitude on its diagonal: the negative of a signed graph
    Laplacian, diagonally dominant with no extra margin. At the defaults (2000 neurons, about
    1,010,600 synapses) its eigenvalues span about -1.21 .. -0.032 (the authors': -1.227 ..
    -0.032); the slowest modes come from the sparse long-range links and the negative weights.
    """
    rng = np.random.default_rng(seed)
    n = int(sum(sizes))
    upper = np.zeros((n, n))
    start = 0
    for size in sizes:
        rows, cols = np.triu_indices(size, 1)
        chosen = rng.choice(len(rows), int(density * len(rows)), replace=False)
        upper[start + rows[chosen], start + cols[chosen]] = rng.normal(1.0, 1.0, len(chosen))
        start += size
    rows, cols = np.triu_indices(n, 1)
    chosen = rng.choice(len(rows), long_range // 2, replace=False)  # long_range counts both directions
    upper[rows[chosen], cols[chosen]] += rng.random(len(chosen))
    W = upper + upper.T
    W /= 1.1 * np.linalg.eigvalsh(W)[-1]
    np.fill_diagonal(W, leak - np.abs(W).sum(axis=1))
    return W


# -------------------------------------------------------------------------------- covariance

def lyapunov_covariance(W: ArrayLike, model: RateModel = RateModel()) -> np.ndarray:
    """Stationary covariance of the linear network: the solution C of A C + C A^T + D = 0,
    A = (W - leak I)/tau, D = sigma^2/tau I. Raises :class:`InvalidWeightMatrix` if unstable."""
    W = check_weights(W, model.leak)
    A = dynamics_matrix(W, model)
    d = model.sigma ** 2 / model.tau
    if np.array_equal(A, A.T):
        # Symmetric A commutes with D = d I: C = -d/2 A^-1, a Cholesky solve instead of Bartels-Stewart.
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(-A), 0.5 * d * np.eye(len(A)))
    return scipy.linalg.solve_continuous_lyapunov(A, -d * np.eye(len(A)))


# ------------------------------------------------------------------------------------- NEST

def connect_weights(pre: NodeCollection, post: NodeCollection, W: ArrayLike, *, synapse_model: str = "rate_connection_delayed",
                    delay: float | None = None) -> int:
    """Connect ``pre`` to ``post`` (NEST node collections) with weight matrix ``W``
    (``W[i, j]``: from ``pre[j]`` to ``post[i]``), creating only the nonzero connections in one
    vectorised ``nest.Connect``; ``W`` may be a scipy.sparse matrix. Returns the number of
    connections made."""
    nest = import_nest()
    if scipy.sparse.issparse(W):  # numpy saw one object ("setting an array element with a sequence")
        coo = W.tocoo()
        shape, rows, cols, weights = coo.shape, coo.row, coo.col, np.asarray(coo.data, dtype=float)
    else:
        W = np.asarray(W, dtype=float)
        shape, (rows, cols) = W.shape, np.nonzero(W)
        weights = W[rows, cols]
    if shape != (len(post), len(pre)):
        raise ValueError(f"weight matrix shape {shape} does not match (len(post), len(pre)) = "
                         f"({len(post)}, {len(pre)})")
    if not np.all(np.isfinite(weights)):  # NEST connects a NaN weight, and the network's rates all become NaN
        raise ValueError(f"weight matrix holds {np.sum(~np.isfinite(weights))} NaN or infinite entries")
    kept = weights != 0  # a sparse matrix may store explicit zeros
    rows, cols, weights = rows[kept], cols[kept], weights[kept]
    if len(rows) == 0:
        return 0
    syn_spec = {"synapse_model": synapse_model, "weight": weights}
    if delay is not None:
        syn_spec["delay"] = np.full(len(rows), float(delay))
    sources = np.asarray(pre.tolist(), dtype=np.uint64)[cols]
    targets = np.asarray(post.tolist(), dtype=np.uint64)[rows]
    nest.Connect(sources, targets, "one_to_one", syn_spec=syn_spec)
    return len(rows)


@lent_kernel("nestplast.rate_network.simulate")
def simulate(W: ArrayLike, duration: float, model: RateModel = RateModel(), *, seed: int = 0, interval: float = 1.0,
             warmup: float | None = None, mu: ArrayLike | None = None) -> Activity:
    """Simulate the noise-driven rate network with weights ``W`` in a fresh NEST kernel and
    record every neuron's rate each ``interval`` ms for ``duration`` ms after a ``warmup``
    (default: :func:`settling_time`, five of the slowest time constants of the linear dynamics,
    so that the start from rest has decayed; give a shorter one for a slow network).
    ``mu`` (scalar or one value per neuron) overrides ``model.mu``.

    The same ``seed`` and network size give the same noise, whatever the weights: NEST draws
    the noise per neuron in a fixed order from a stream seeded by :func:`nest_seed`. NEST runs
    in pieces of about :data:`PIECE_SECONDS` (:func:`run_in_pieces`), so SIGTERM and Ctrl-C stop
    a long simulation promptly.
    """
    nest = import_nest()
    W = check_weights(W, model.leak, stable=False)
    eigenvalues = np.linalg.eigvals(W)  # once, for the three checks below: 2000 nodes take seconds
    abscissa = float(eigenvalues.real.max()) - model.leak
    if warmup is None:  # an unstable network can be simulated from rest (warmup given)
        _refuse_unstable(abscissa, model.leak)
    if note := check_nest_step(W, model, eigenvalues=eigenvalues):
        warnings.warn(note, RuntimeWarning, stacklevel=user_stacklevel())  # the user's line, not contextlib's
    n = len(W)
    if warmup is None:
        warmup = _settling_time(abscissa / model.tau)
    # Align the recording to the sampling grid so every neuron has the same samples.
    warmup = np.ceil(warmup / interval) * interval
    reset_kernel()
    nest.resolution = model.resolution
    nest.rng_seed = nest_seed(seed)
    params = {"tau": model.tau, "lambda": model.leak, "sigma": model.sigma, "mu": model.mu}
    if model.rectified:
        params["theta"] = model.theta
    neurons = nest.Create(model.neuron_model, n, params=params)
    if mu is not None:
        neurons.set(mu=np.broadcast_to(np.asarray(mu, dtype=float), (n,)).tolist())
    connect_weights(neurons, neurons, W, delay=model.delay)
    recorder = nest.Create("multimeter", params={"record_from": ["rate"], "interval": interval,
                                                 "start": warmup, "stop": warmup + duration})
    nest.Connect(recorder, neurons)
    run_in_pieces(warmup + duration + interval)  # one interval more: the sample at the stop time
    events = recorder.events
    order = np.lexsort((events["senders"], events["times"]))
    times = events["times"][order]
    rates = events["rate"][order].reshape(-1, n)
    return Activity(times=times[::n], rates=rates)


def run_in_pieces(duration: float) -> None:
    """``nest.Simulate(duration)`` as several ``nest.Run`` calls of about :data:`PIECE_SECONDS` of
    wall-clock time each, with the same result. One long Simulate held off Python's signal handlers
    (SIGTERM from ``kill`` or a batch system, Ctrl-C) until it returned, which could be hours."""
    nest = import_nest()
    resolution = nest.resolution
    steps, done = round(duration / resolution), 0
    piece = 10  # steps of the first piece; the next ones are sized by its wall-clock time
    with nest.RunManager():  # Prepare, the Runs, Cleanup: what Simulate does
        while done < steps:
            piece = min(piece, steps - done)
            start = time.perf_counter()
            nest.Run(piece * resolution)
            done += piece
            elapsed = time.perf_counter() - start
            # grow at most 4-fold: a piece of a few steps is timed badly
            piece = max(1, min(4 * piece, round(piece * PIECE_SECONDS / max(elapsed, 1e-6))))
