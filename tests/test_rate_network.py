"""Rate networks in NEST: generators, the Lyapunov covariance, NEST's update, the covariance of
simulated activity against the Lyapunov solution, seeded noise, and the one-call connect."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from nestplast import rate_network
from nestplast.errors import UserError
from nestplast.kernel import import_nest
from nestplast.rate_network import (
    InvalidWeightMatrix,
    RateModel,
    authors_network,
    check_weights,
    clustered_network,
    connect_weights,
    dynamics_matrix,
    lyapunov_covariance,
    random_network,
    settling_time,
    simulate,
    spectral_abscissa,
)

# ------------------------------------------------------------------------------- generators

def test_clustered_network_like_the_paper_demo():
    W = clustered_network()  # 1000/200/800
    offdiag = np.count_nonzero(W) - np.count_nonzero(np.diag(W))
    # The paper's demo network has 1,010,600 synapses.
    assert abs(offdiag - 1_010_600) < 0.005 * 1_010_600
    assert np.array_equal(W, W.T)
    # Long-range links are sparse: under 1% of the synapses leave their cluster.
    labels = np.repeat([0, 1, 2], [1000, 200, 800])
    rows, cols = np.nonzero(W)
    between = np.count_nonzero(labels[rows] != labels[cols])
    assert 0 < between < 0.01 * offdiag


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("inhibitory", [0.0, 0.3])
def test_generated_networks_are_stable_with_the_margin(symmetric, inhibitory):
    for W in (clustered_network((30, 6, 24), 0.5, 0.05, seed=3, inhibitory=inhibitory, symmetric=symmetric,
                                margin=0.2),
              random_network(60, 0.2, seed=3, inhibitory=inhibitory, symmetric=symmetric, margin=0.2)):
        assert W.shape == (60, 60)
        assert np.array_equal(W, W.T) == symmetric
        assert spectral_abscissa(W - np.eye(60)) <= -0.2 + 1e-9
        # Mean summed input magnitude (off the diagonal) is strength * leak = 1.
        offdiag = np.abs(W).sum(axis=1) - np.abs(np.diag(W))
        assert offdiag.mean() == pytest.approx(1.0)
        assert (W[~np.eye(60, dtype=bool)] < 0).any() == (inhibitory > 0)


def test_generators_are_seeded():
    for generate in (clustered_network, lambda sizes, seed: authors_network(sizes, long_range=100, seed=seed)):
        assert np.array_equal(generate((20, 4, 16), seed=7), generate((20, 4, 16), seed=7))
        assert not np.array_equal(generate((20, 4, 16), seed=7), generate((20, 4, 16), seed=8))


def test_authors_network_construction():
    """Small scale, every step of the construction: exact link counts per cluster, a symmetric
    coupling whose largest eigenvalue is 1/1.1, and a dynamics matrix whose diagonal is minus
    each row's summed off-diagonal magnitude (diagonal dominance with no margin)."""
    sizes, leak = (50, 10, 40), 1.3
    W = authors_network(sizes, 0.6, 250, seed=3, leak=leak)
    assert np.array_equal(W, W.T)
    M = W - leak * np.eye(100)
    off = M - np.diag(np.diag(M))
    assert np.allclose(np.diag(M), -np.abs(off).sum(axis=1), rtol=1e-12, atol=0)
    assert np.linalg.eigvalsh(off)[-1] == pytest.approx(1 / 1.1, rel=1e-12)
    labels = np.repeat([0, 1, 2], sizes)
    same = labels[:, None] == labels[None, :]
    within = np.count_nonzero(np.triu(off * same, 1))
    between = np.count_nonzero(np.triu(off * ~same, 1))
    # int(0.6 pairs) links per cluster; of the 125 long-range pairs, those inside a cluster either add
    # to a link or make a new one.
    base = sum(int(0.6 * s * (s - 1) / 2) for s in sizes)
    assert base <= within <= base + 125 - between
    assert 0 < between <= 125
    # Stable: the negative of a signed Laplacian is negative semi-definite, and its negative weights
    # make it definite.
    assert spectral_abscissa(M) < 0


def test_authors_network_like_their_demo():
    """The paper's demo scale: 2000 neurons, about 1,010,600 synapses (the authors' count), about
    16 % negative weights (N(1, 1) below zero: Phi(-1) = 0.159), eigenvalues of the dynamics
    spanning about -1.227 .. -0.032 as in the authors' notebook (their draw; ours differ by chance)."""
    W = authors_network()
    M = W - np.eye(2000)
    off = M[~np.eye(2000, dtype=bool)]
    synapses = np.count_nonzero(off)
    assert abs(synapses - 1_010_600) < 0.001 * 1_010_600
    assert (off[off != 0] < 0).mean() == pytest.approx(scipy.stats.norm.cdf(-1), abs=0.003)
    values = np.linalg.eigvalsh(M)
    assert -1.26 < values[0] < -1.19
    assert -0.036 < values[-1] < -0.028
    # No extra stability margin: each row's diagonal exactly cancels its off-diagonal magnitude.
    assert np.abs(np.diag(M) + np.abs(M).sum(axis=1) - np.abs(np.diag(M))).max() < 1e-12


# ---------------------------------------------------------------------------------- checks

@pytest.mark.parametrize("W, reason, words", [
    (np.zeros((3, 4)), "not square", "square"),
    (np.zeros(5), "not square", "square"),
    (np.zeros((0, 0)), "not square", "weight matrix is empty (shape (0, 0))"),  # "must be square": it was
    (np.array([[-1.0, np.nan], [0.0, -1.0]]), "not finite", "NaN"),
    (np.array([[-1.0, 0.0], [np.inf, -1.0]]), "not finite", "infinite"),
    (np.array([[0.5, 0.8], [0.8, 0.5]]), "unstable", "unstable"),      # eigenvalue 1.3 - 1 > 0
    (np.array([[1.0, 0.0], [0.0, 0.0]]), "unstable", "unstable"),      # eigenvalue exactly 0
    (np.array([[1.1, 2.0], [-2.0, 1.1]]), "unstable", "unstable"),     # complex pair, real part 1.1 - 1 > 0
])
def test_bad_weight_matrices_are_rejected(W, reason, words):
    with pytest.raises(InvalidWeightMatrix) as err:
        check_weights(W)
    assert isinstance(err.value, ValueError) and isinstance(err.value, UserError)
    assert err.value.reason == reason
    assert words in str(err.value)


def test_stable_matrix_passes_and_lyapunov_rejects_unstable():
    W = np.array([[0.5, 0.3], [0.3, 0.5]])  # eigenvalues 0.8, 0.2: W - I stable
    assert check_weights(W).dtype == float
    with pytest.raises(InvalidWeightMatrix, match="unstable"):
        lyapunov_covariance(np.array([[0.5, 0.8], [0.8, 0.5]]))


# ------------------------------------------------------------------------------ covariance

def test_lyapunov_covariance_solves_the_equation():
    model = RateModel(tau=7.0, leak=1.3, sigma=0.6)
    for W in (random_network(40, 0.3, seed=1, symmetric=False, inhibitory=0.3),
              random_network(40, 0.3, seed=1, symmetric=True)):
        C = lyapunov_covariance(W, model)
        A = dynamics_matrix(W, model)
        D = model.sigma ** 2 / model.tau * np.eye(40)
        assert np.abs(A @ C + C @ A.T + D).max() < 1e-10 * np.abs(D).max()
        # The symmetric shortcut and scipy's general solver agree.
        assert np.allclose(C, scipy.linalg.solve_continuous_lyapunov(A, -D), rtol=1e-9, atol=0)


def _update_reference(W, mu, steps, model, phi):
    """NEST's update written out (rate_neuron_ipn, no noise): exponential Euler for the leak, the
    coupling read with the connection's delay of d steps,
    X[k+1] = P1 X[k] + P2 (mu + phi(W X[k-d]))."""
    h, d = model.resolution, round(model.delay / model.resolution)
    P1 = np.exp(-model.leak * h / model.tau)
    P2 = -np.expm1(-model.leak * h / model.tau) / model.leak
    X = np.zeros((steps + 1 + d, len(W)))  # d rows of rest before t = 0
    for k in range(d, steps + d):
        X[k + 1] = P1 * X[k] + P2 * (mu + phi(W @ X[k - d]))
    return X[d + 1:]


@pytest.mark.parametrize("rectified", [False, True])
def test_nest_update_matches_the_equations(rectified):
    """Without noise, NEST's rates follow tau dX/dt = -leak X + mu + phi(W X(t - delay)) exactly
    as the discretised equations say; this pins down what W, leak, mu and the delay mean."""
    model = RateModel(tau=5.0, leak=1.5, sigma=0.0, delay=0.2, rectified=rectified, theta=0.1)
    W = np.array([[0.0, 0.8, -0.5], [-1.2, 0.3, 0.0], [0.7, 0.9, 0.0]])
    mu = np.array([1.0, 0.5, -0.4])
    phi = (lambda h: np.maximum(h - model.theta, 0.0)) if rectified else (lambda h: h)
    activity = simulate(W, 30.0, model, interval=model.resolution, warmup=0.0, mu=mu)
    expected = _update_reference(W, mu, len(activity.times), model, phi)
    assert np.allclose(activity.times, model.resolution * np.arange(1, len(activity.times) + 1))
    assert np.abs(activity.rates - expected).max() < 1e-12
    if rectified:  # the threshold is active: some inputs are clipped
        assert (W @ activity.rates.T < model.theta).any()


def _discretised_covariance(W, model):
    """Exact stationary covariance of NEST's discrete update with noise (state augmented with the
    delayed rates), to separate the discretisation and delay bias from the sampling error."""
    n, d, h = len(W), round(model.delay / model.resolution), model.resolution
    P1 = np.exp(-model.leak * h / model.tau)
    P2 = -np.expm1(-model.leak * h / model.tau) / model.leak
    noise = -np.expm1(-2 * model.leak * h / model.tau) / (2 * model.leak) * model.sigma ** 2
    F = np.zeros(((d + 1) * n, (d + 1) * n))
    F[:n, :n] = P1 * np.eye(n)
    F[:n, d * n:] += P2 * W
    F[n:, :-n] = np.eye(d * n)
    Q = np.zeros_like(F)
    Q[:n, :n] = noise * np.eye(n)
    return scipy.linalg.solve_discrete_lyapunov(F, Q)[:n, :n]


def _covariance_standard_error(W, model, samples, interval):
    """Standard error of each sample covariance entry from ``samples`` samples ``interval`` ms
    apart (Bartlett's formula for a Gaussian process):
    Var(C^_ij) = 1/n sum_k [C_ii(k) C_jj(k) + C_ij(k) C_ji(k)], C(k) = exp(A k interval) C."""
    C = lyapunov_covariance(W, model)
    A = dynamics_matrix(W, model)
    step = scipy.linalg.expm(A * interval)
    lags = int(np.ceil(10 / -spectral_abscissa(A) / interval))  # ten slowest time constants
    Ck, total = C.copy(), np.outer(np.diag(C), np.diag(C)) + C * C.T
    for _ in range(lags):
        Ck = step @ Ck
        total += 2 * (np.outer(np.diag(Ck), np.diag(Ck)) + Ck * Ck.T)
    return np.sqrt(total / samples)


def test_covariance_of_nest_activity_matches_lyapunov():
    """30 neurons, 20 s of activity sampled each ms after a warm-up of five slowest time
    constants. Tolerance: 4.5 standard errors of each entry (Bartlett's formula for this sample
    size and the network's own autocorrelations) plus the exact bias of the discretised, delayed
    update (computed exactly, and below one standard error)."""
    model = RateModel()  # tau 10 ms, step 0.1 ms, delay 0.1 ms
    W = clustered_network((15, 5, 10), 0.6, 0.05, seed=1, margin=0.5, inhibitory=0.2)
    C = lyapunov_covariance(W, model)
    activity = simulate(W, 20000.0, model, seed=3, interval=1.0)
    assert activity.rates.shape == (20000, 30)
    se = _covariance_standard_error(W, model, len(activity.rates), 1.0)
    bias = np.abs(_discretised_covariance(W, model) - C)
    assert (bias < se).all()

    z = (np.cov(activity.rates, rowvar=False) - C) / se
    assert np.abs(z).max() < 4.5 + (bias / se).max()
    # The errors are the size the sample size predicts, not smaller nor larger.
    assert 0.7 < np.sqrt(np.mean(z ** 2)) < 1.3
    # And, for scale: the whole matrix within 15 %.
    assert np.linalg.norm(np.cov(activity.rates, rowvar=False) - C) < 0.15 * np.linalg.norm(C)


# ----------------------------------------------------------------------------- seeded noise

def test_same_seed_gives_the_same_noise_whatever_the_weights():
    W = random_network(12, 0.4, seed=2, symmetric=False, margin=0.3)
    other = W.copy()
    other[:6] *= 0.5  # neurons 0-5 get other input weights
    other[6:] = 0.0   # neurons 6-11 get no input at all, in both networks below
    uncoupled = W.copy()
    uncoupled[6:] = 0.0
    a = simulate(uncoupled, 50.0, seed=11, warmup=0.0).rates
    b = simulate(other, 50.0, seed=11, warmup=0.0).rates
    c = simulate(uncoupled, 50.0, seed=12, warmup=0.0).rates
    assert np.array_equal(a, simulate(uncoupled, 50.0, seed=11, warmup=0.0).rates)
    # Driven by their own noise alone, neurons 6-11 move identically in both networks.
    assert np.array_equal(a[:, 6:], b[:, 6:])
    assert not np.array_equal(a[:, :6], b[:, :6])
    assert not np.allclose(a[:, 6:], c[:, 6:])


# ---------------------------------------------------------------------------------- connect

def test_connect_weights_creates_the_matrix_in_one_call(monkeypatch):
    nest = import_nest()
    nest.ResetKernel()
    pre = nest.Create("lin_rate_ipn", 6)
    post = nest.Create("lin_rate_ipn", 4)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 6)) * (rng.random((4, 6)) < 0.5)

    calls = []
    connect = nest.Connect
    # A counting wrapper that calls the real nest.Connect (the nest module only lets its __dict__
    # be changed).
    monkeypatch.setitem(nest.__dict__, "Connect", lambda *a, **k: calls.append(a) or connect(*a, **k))
    made = connect_weights(pre, post, W, delay=0.5)
    assert len(calls) == 1 and calls[0][2] == "one_to_one"
    assert made == np.count_nonzero(W)

    conns = nest.GetConnections(pre, post).get(["source", "target", "weight", "delay", "synapse_model"])
    assert len(conns["source"]) == np.count_nonzero(W)
    read = np.zeros_like(W)
    read[np.asarray(conns["target"]) - post[0].global_id, np.asarray(conns["source"]) - pre[0].global_id] = conns["weight"]
    assert np.array_equal(read, W)
    assert set(conns["delay"]) == {0.5}
    assert set(conns["synapse_model"]) == {"rate_connection_delayed"}


def test_connect_weights_takes_a_sparse_matrix_and_refuses_nan():
    """A scipy.sparse matrix (the usual form of a connectivity) failed with numpy's "setting an
    array element with a sequence"; a NaN weight was connected, and every rate became NaN."""
    from scipy import sparse

    nest = import_nest()
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, 6)) * (rng.random((4, 6)) < 0.5)
    read = {}
    for form, matrix in (("dense", W), ("sparse", sparse.csr_matrix(W))):
        nest.ResetKernel()
        pre, post = nest.Create("lin_rate_ipn", 6), nest.Create("lin_rate_ipn", 4)
        assert connect_weights(pre, post, matrix) == np.count_nonzero(W)
        c = nest.GetConnections(pre, post).get(["source", "target", "weight"])
        read[form] = sorted(zip(c["source"], c["target"], c["weight"]))
    assert read["sparse"] == read["dense"]
    stored_zero = sparse.csr_matrix((np.array([0.0, 2.0]), (np.array([0, 1]), np.array([0, 1]))), shape=(4, 6))
    assert connect_weights(pre, post, stored_zero) == 1  # an explicit zero is no connection
    with pytest.raises(ValueError, match="shape"):
        connect_weights(pre, post, sparse.csr_matrix(W.T))
    bad = W.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite entries"):
        connect_weights(pre, post, bad)


def test_connect_weights_checks_the_shape():
    nest = import_nest()
    nest.ResetKernel()
    pre, post = nest.Create("lin_rate_ipn", 3), nest.Create("lin_rate_ipn", 2)
    with pytest.raises(ValueError, match="shape"):
        connect_weights(pre, post, np.ones((3, 2)))
    assert connect_weights(pre, post, np.zeros((2, 3))) == 0


def test_a_mode_zero_up_to_rounding_is_rejected_not_solved():
    """W - I = -L, L a graph Laplacian: its constant mode never decays. Rounding puts that
    eigenvalue a hair below zero; the matrix must still be refused, not given a covariance of
    1e15 (or a Cholesky traceback)."""
    for w in (0.3, 0.7):
        L = np.array([[w, -w, 0.0], [-w, 2 * w, -w], [0.0, -w, w]])
        with pytest.raises(InvalidWeightMatrix, match="unstable") as err:
            lyapunov_covariance(np.eye(3) - L)
        assert err.value.reason == "unstable"


@pytest.mark.parametrize("W, words", [
    (np.array([[-1.0, 0.5j], [0.0, -1.0]]), "complex"),     # the imaginary part is not dropped
    (np.array([["-1", "a"], ["0", "-1"]]), "real numbers"),  # text: not numpy's conversion traceback
])
def test_weight_matrices_that_are_not_real_numbers_are_rejected(W, words):
    with pytest.raises(InvalidWeightMatrix, match=words) as err:
        check_weights(W)
    assert err.value.reason == "not real"
    assert check_weights(np.array([[-1.0, 0.5], [0.0, -1.0]], dtype=complex)).dtype == float  # zero imaginary parts: fine


def test_simulate_refuses_nan_weights_even_from_rest():
    with pytest.raises(InvalidWeightMatrix, match="NaN"):
        simulate(np.array([[0.0, np.nan], [0.0, 0.0]]), 10.0, warmup=0.0)


def test_a_simulation_in_pieces_equals_one_simulate(monkeypatch):
    """NEST runs in pieces so that SIGTERM and Ctrl-C stop it promptly: one step a piece gives
    the same rates as one nest.Simulate, warm-up, sampling grid and noise alike."""
    W = random_network(10, 0.5, seed=4, inhibitory=0.3, symmetric=False)
    monkeypatch.setattr(rate_network, "PIECE_SECONDS", 0.0)  # every piece one step
    pieces = simulate(W, 40.0, seed=2, warmup=7.0)
    monkeypatch.setattr(rate_network, "run_in_pieces", lambda duration: import_nest().Simulate(duration))
    whole = simulate(W, 40.0, seed=2, warmup=7.0)
    assert np.array_equal(pieces.times, whole.times) and np.array_equal(pieces.rates, whole.rates)
    assert len(whole.rates) == 40 and whole.rates.std() > 0


def test_settling_time_is_five_slowest_time_constants():
    W = clustered_network((6, 2, 2), seed=1)  # margin 0.1: slowest time constant tau / 0.1 = 100 ms
    assert settling_time(W) == pytest.approx(500.0)
    assert settling_time(W, RateModel(tau=20.0)) == pytest.approx(1000.0)


def test_nest_s_step_is_checked_against_what_nest_does(monkeypatch):
    """A diagonal of -120 (tau 10 ms, step and delay 0.1 ms) is stable as a continuous network, but
    NEST's exponential Euler with a delayed input cannot integrate it: rates reached 1e236 and the
    pruning measures came out 1e10 with every eigenvalue below 0. The predicted boundary (a mode's
    factor per step reaching 1 between eigenvalues -100 and -102) is what NEST does, found a
    second way by simulating either side of it with the check out of the way."""
    import warnings

    def triad(diagonal: float) -> np.ndarray:  # eigenvalues diagonal - 1 (twice) and diagonal + 2
        return np.full((3, 3), 1.0) + (diagonal - 1.0) * np.eye(3)

    below, beyond = triad(-99.0), triad(-101.0)
    assert rate_network.nest_step_roots(below).max() < 1.0 < rate_network.nest_step_roots(beyond).max()
    with monkeypatch.context() as unchecked:
        unchecked.setattr(rate_network, "check_nest_step", lambda W, model, **_: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert np.max(np.abs(rate_network.simulate(below, 200.0, warmup=0.0, seed=1).rates[-20:])) < 10.0
            assert np.max(np.abs(rate_network.simulate(beyond, 200.0, warmup=0.0, seed=1).rates[-20:])) > 1e5
    with pytest.raises(rate_network.InvalidWeightMatrix,
                       match=r"a mode NEST's step cannot integrate: .*the mode of W's eigenvalue -102 grows in NEST's "
                             r"update by a factor of 1.007 per step"):
        rate_network.simulate(beyond, 10.0)
    # stable in NEST, but a mode of under 2 steps: NEST's covariance was 6 x the analytic one, without a word
    with pytest.warns(RuntimeWarning, match=r"the fastest mode of W decays in 1.6\d* of NEST's steps") as said:
        rate_network.simulate(triad(-60.0), 10.0, warmup=0.0)
    assert [w.filename for w in said] == [__file__], "the caller's line, not contextlib.py's"
    assert rate_network.check_nest_step(triad(-5.0)) is None  # 14 steps: no word



def test_simulate_decomposes_w_once(monkeypatch):
    """simulate() checks stability, NEST's step and the warm-up from W's eigenvalues: it took them
    three times (about 2 s each at 2000 nodes). The warm-up is still settling_time's."""
    calls = []
    for name in ("eigvals", "eigvalsh"):
        original = getattr(np.linalg, name)
        monkeypatch.setattr(np.linalg, name, lambda M, _f=original, _n=name: calls.append(_n) or _f(M))
    W = np.array([[0.0, 0.3], [0.3, 0.0]])  # eigenvalues +-0.3: the slowest mode decays at 0.7 / tau
    activity = rate_network.simulate(W, 3.0, seed=2)
    assert calls == ["eigvals"]
    monkeypatch.undo()
    # the first sample one interval (1 ms) after the warm-up
    assert activity.times[0] - 1.0 == np.ceil(settling_time(W)) == np.ceil(5 * 10.0 / 0.7)
