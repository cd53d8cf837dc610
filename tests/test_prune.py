"""Noise-driven pruning: the rule's normalisation and sampling, reproducibility, bad matrices,
the local online form against the offline one, the measures, the noise rule against the
controls on a clustered network, and the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

from nestplast.prune import (RULES, OnlineCovariance, eigenvalue_error, keep_probabilities, noise_scores, prune,
                             rayleigh_error, spectrum, sweep, trajectory_error)
from nestplast.rate_network import (InvalidWeightMatrix, RateModel, clustered_network, lyapunov_covariance,
                                    random_network, simulate)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clustered():
    return clustered_network((50, 10, 40), 0.6, 0.03, seed=4, inhibitory=0.2)


def offdiagonal(W):
    return W[~np.eye(len(W), dtype=bool)]


# ------------------------------------------------------------------------------------ rule

def test_noise_scores_follow_the_formula(clustered):
    C = lyapunov_covariance(clustered)
    scores = noise_scores(clustered, C)
    n = len(C)
    for i, j in [(0, 1), (3, 57), (12, 30), (70, 71), (5, 5)]:
        w = clustered[i, j]
        expected = 0.0 if i == j else abs(w) * (C[i, i] + C[j, j] - 2 * np.sign(w) * C[i, j])
        assert scores[i, j] == pytest.approx(expected, rel=1e-12, abs=0)
    assert (scores >= 0).all() and (scores[clustered == 0] == 0).all()
    assert np.count_nonzero(scores) == np.count_nonzero(offdiagonal(clustered)) and n == 100


def test_keep_probabilities_hit_the_target_after_clipping():
    rng = np.random.default_rng(1)
    scores = rng.pareto(1.2, 5000)  # heavy tail: many would exceed 1 after one normalisation
    scores[:100] = 0.0
    n_keep = 1500.0
    p = keep_probabilities(scores, n_keep)
    assert p.sum() == pytest.approx(n_keep, rel=1e-12)
    assert p.max() == 1.0 and p.min() == 0.0 and (p[:100] == 0).all()
    clipped = p == 1.0
    assert 10 < clipped.sum() < 1500
    assert (scores[clipped] >= scores[~clipped].max()).all()  # the largest scores are the clipped ones
    # A second way: the scale c solving sum(min(1, c s)) = n_keep by root finding.
    c = scipy.optimize.brentq(lambda c: np.minimum(1.0, c * scores).sum() - n_keep, 0, 1e6, xtol=1e-14)
    assert np.allclose(p, np.minimum(1.0, c * scores), rtol=1e-9, atol=1e-12)


def test_keep_probabilities_with_too_few_candidates():
    assert np.array_equal(keep_probabilities([0.0, 2.0, 1.0], 5), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        keep_probabilities([1.0, -1.0], 1)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_expected_kept_count_equals_target(rule, symmetric):
    W = clustered_network((40, 8, 32), 0.6, 0.03, seed=2, symmetric=symmetric, inhibitory=0.2)
    synapses = np.count_nonzero(offdiagonal(W))
    for keep in (0.05, 0.2, 0.5):
        result = prune(W, keep, rule, seed=0)
        assert result.synapses == synapses
        assert result.expected == pytest.approx(keep * synapses, rel=1e-9)
        assert result.probabilities.sum() == pytest.approx(keep * synapses, rel=1e-9)
        assert result.probabilities.max() <= 1.0
        # The draw: kept within 4.5 standard deviations of the target (pairs count twice).
        p = result.probabilities[np.triu_indices(len(W), 1)] if symmetric else offdiagonal(result.probabilities)
        sd = (2 if symmetric else 1) * np.sqrt((p * (1 - p)).sum())
        assert abs(result.kept - keep * synapses) < 4.5 * sd + 2
        assert result.kept == np.count_nonzero(offdiagonal(result.weights))
        assert np.array_equal(result.weights, result.weights.T) == symmetric


def test_kept_weights_are_rescaled_so_the_mean_is_the_original():
    W = random_network(12, 0.6, seed=3, symmetric=False, inhibitory=0.3)
    draws = np.array([prune(W, 0.3, "noise", seed=s, diagonal="original").weights for s in range(3000)])
    mean = draws.mean(axis=0)
    # Each entry is W/p with probability p: mean W, variance W^2 (1 - p) / p.
    result = prune(W, 0.3, "noise", seed=0)
    p = np.where(result.probabilities > 0, result.probabilities, 1.0)
    se = np.abs(W) * np.sqrt((1 - p) / p / len(draws))
    off = W != 0
    np.fill_diagonal(off, False)
    assert (np.abs(mean - W)[off] < 4.5 * se[off] + 1e-12).all()
    kept = draws != 0
    assert np.allclose(draws[kept], np.broadcast_to(W / p, draws.shape)[kept])


def test_pruning_is_reproducible_with_a_seed(clustered):
    a = prune(clustered, 0.2, "noise", seed=42)
    b = prune(clustered, 0.2, "noise", seed=42)
    c = prune(clustered, 0.2, "noise", seed=43)
    d = prune(clustered, 0.2, "noise", seed=np.random.default_rng(42))
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.weights, d.weights)
    assert not np.array_equal(a.weights, c.weights)


def test_diagonal_options(clustered):
    W = clustered
    row_sum = prune(W, 0.2, "noise", seed=1, diagonal="row-sum").weights
    original = prune(W, 0.2, "noise", seed=1, diagonal="original").weights
    zero = prune(W, 0.2, "noise", seed=1, diagonal="zero").weights
    assert np.array_equal(offdiagonal(row_sum), offdiagonal(original))
    assert np.array_equal(offdiagonal(zero), offdiagonal(original))
    assert np.array_equal(np.diag(original), np.diag(W)) and not np.diag(zero).any()

    def margin(M):  # diagonal-dominance margin of each row
        return -np.diag(M) - (np.abs(M).sum(axis=1) - np.abs(np.diag(M)))

    eye = np.eye(len(W))
    assert np.allclose(margin(row_sum - eye), margin(W - eye), atol=1e-12)
    # For this all-margin-0.1 network the row-sum diagonal keeps W - I = -(L' + 0.1 I) stable.
    assert np.linalg.eigvalsh(row_sum - eye).max() < 0


@pytest.mark.parametrize("W, reason", [
    (np.ones((2, 3)), "not square"),
    (np.array([[0.0, np.nan], [0.1, 0.0]]), "not finite"),
    (np.array([[0.0, np.inf], [0.1, 0.0]]), "not finite"),
    (np.array([[0.2, 0.9], [0.9, 0.2]]), "unstable"),
])
@pytest.mark.parametrize("rule", RULES)
def test_prune_rejects_bad_matrices(W, reason, rule):
    with pytest.raises(InvalidWeightMatrix, match=reason.split()[-1]) as err:
        prune(W, 0.5, rule)
    assert err.value.reason == reason


def test_prune_rejects_bad_arguments(clustered):
    for kwargs in ({"keep": 0.0}, {"keep": 1.5}, {"rule": "largest"}, {"diagonal": "trace"},
                   {"covariance": np.eye(3)}):
        with pytest.raises(ValueError):
            prune(clustered, **{"keep": 0.2, **kwargs})


# ------------------------------------------------------------------------------ online form

def test_online_covariance_equals_the_batch_estimates():
    rng = np.random.default_rng(5)
    W = random_network(8, 0.5, seed=5, symmetric=False)
    X = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8)) + 3.0
    online = OnlineCovariance(W)
    for chunk in np.array_split(X, 7):
        online.update(chunk)
    batch = np.cov(X, rowvar=False, bias=True)
    estimate = online.covariance()
    synapse = (W != 0) & ~np.eye(8, dtype=bool)
    assert np.allclose(estimate[synapse], batch[synapse], rtol=1e-10, atol=1e-12)
    assert np.allclose(np.diag(estimate), np.diag(batch), rtol=1e-10)
    assert online.samples == 500

    # Exponential averages in chunks equal the sample-by-sample recursion m <- a m + x.
    timescale = 40.0
    online = OnlineCovariance(W, timescale=timescale)
    for chunk in np.array_split(X, 3):
        online.update(chunk)
    a = np.exp(-1 / timescale)
    norm, mean, cross = 0.0, np.zeros(8), np.zeros((8, 8))
    for x in X:
        norm, mean, cross = a * norm + 1, a * mean + x, a * cross + np.outer(x, x)
    expected = cross / norm - np.outer(mean, mean) / norm ** 2
    assert np.allclose(online.covariance()[synapse], expected[synapse], rtol=1e-10)


def test_online_rule_converges_to_the_offline_rule():
    """Each synapse's running estimates from 20 s of NEST activity give keep probabilities that
    approach those from the Lyapunov covariance as the samples grow (error ~ 1/sqrt(samples))."""
    W = clustered_network((15, 3, 12), 0.6, 0.1, seed=2, margin=0.5)
    offline = prune(W, 0.3, "noise", seed=0).probabilities
    activity = simulate(W, 20000.0, seed=5)
    online = OnlineCovariance(W)
    errors = []
    for chunk in np.array_split(activity.rates, 20):
        online.update(chunk)
        p = prune(W, 0.3, "noise", covariance=online.covariance(), seed=0).probabilities
        errors.append(np.abs(p - offline).sum() / offline.sum())
    assert errors[-1] < errors[0] / 2.5   # 20 times the samples: sqrt(20) = 4.5 expected
    assert errors[-1] < 0.04
    assert errors[-1] < np.mean(errors[:5])


# -------------------------------------------------------------------------------- measures

@pytest.mark.parametrize("symmetric", [True, False])
def test_eigenvalue_and_rayleigh_errors_of_a_known_shift(symmetric):
    W = random_network(30, 0.3, seed=6, symmetric=symmetric, inhibitory=0.3)
    values = spectrum(W).values
    if not symmetric:
        assert np.abs(values.imag).max() > 0.01  # a complex spectrum to pair
    delta = 0.05
    expected = delta / np.abs(values)
    for measure in (eigenvalue_error, rayleigh_error):
        assert max(measure(W, W)) < 1e-12
        err = measure(W, W + delta * np.eye(30))  # every eigenvalue moves by delta
        assert err.mean == pytest.approx(expected.mean(), rel=1e-6)
        assert err.max == pytest.approx(expected.max(), rel=1e-6)


def test_eigenvalues_of_a_nonsymmetric_matrix_are_paired_optimally():
    # Eigenvalues -1, -2, -3 +- 1i (a block matrix): the pruned one moves only -2 to -2.2.
    block = np.array([[-3.0, 1.0], [-1.0, -3.0]])
    M = np.zeros((4, 4))
    M[:2, :2] = block
    M[2, 2], M[3, 3] = -1.0, -2.0
    M2 = M.copy()
    M2[3, 3] = -2.2
    leak = 1.0
    err = eigenvalue_error(M + leak * np.eye(4), M2 + leak * np.eye(4), leak)
    assert err.max == pytest.approx(0.1)
    assert err.mean == pytest.approx(0.1 / 4)


def test_trajectory_error_is_zero_for_the_same_matrix(clustered):
    model = RateModel()
    assert trajectory_error(clustered, clustered, 50.0, model, seed=2) == 0.0
    pruned = prune(clustered, 0.2, "noise", seed=2).weights
    assert 0 < trajectory_error(clustered, pruned, 50.0, model, seed=2) < 2


def test_rectified_network_trajectories():
    model = RateModel(rectified=True, mu=0.5)
    W = clustered_network((20, 4, 16), 0.6, 0.05, seed=1, inhibitory=0.3)
    rates = simulate(W, 50.0, model, seed=1).rates
    assert np.isfinite(rates).all() and rates.std() > 0
    pruned = prune(W, 0.5, "noise", seed=1).weights
    assert 0 < trajectory_error(W, pruned, 50.0, model, seed=1) < 2


def test_noise_rule_beats_the_controls_on_a_clustered_network():
    """Dense clusters of 100/20/80 neurons (p = 0.6) with sparse long-range links (p = 0.01),
    averaged over four networks and draws: the noise rule's mean relative eigenvalue error is
    below both controls' at the same fraction kept."""
    for keep in (0.5, 0.3):
        errors = {rule: [] for rule in RULES}
        for seed in range(4):
            W = clustered_network((100, 20, 80), 0.6, 0.01, seed=seed)
            for row in sweep(W, [keep], seeds=(100 + seed,)):
                errors[row["rule"]].append(row["eigenvalue_error"])
        mean = {rule: np.mean(e) for rule, e in errors.items()}
        assert mean["noise"] < mean["magnitude"] and mean["noise"] < mean["uniform"], (keep, mean)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_noise_rule_keeps_the_only_bridge_between_two_clusters(sign):
    """Two clusters of 30 joined by a single link, excitatory or inhibitory, of ordinary weight:
    the link carries the slow mode between the clusters. Its noise score, the variance of
    x_i - sign(w) x_j, is about the largest of all synapses, so it is kept with high probability;
    the controls keep it like any other synapse. (Without the covariance term C_ij, or with the
    wrong sign, its score would be ordinary.)"""
    W = clustered_network((30, 30), 0.6, 0.0, seed=0, margin=0.01)
    w = sign * 0.05
    W[0, 30] = W[30, 0] = w
    W[0, 0] -= abs(w)  # keep both rows balanced
    W[30, 30] -= abs(w)
    scores = noise_scores(W, lyapunov_covariance(W))
    assert (scores[scores > 0] <= scores[0, 30]).mean() > 0.99
    assert prune(W, 0.3, "noise").probabilities[0, 30] > 0.75
    for rule in ("magnitude", "uniform"):
        assert prune(W, 0.3, rule).probabilities[0, 30] <= 0.3


# ---------------------------------------------------------------------------- command line

def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nestplast", "prune", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_cli_json_prints_one_object(tmp_path):
    out = run_cli("--nodes", 60, "--seed", 3, "--keep", 0.3, "--duration", 30, "--json", "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)  # the whole of stdout is one JSON object
    assert summary["kept_fraction"] == 0.3
    assert set(summary["rules"]) == {"noise", "magnitude", "uniform"}
    for rule in summary["rules"].values():
        assert 0 < rule["eigenvalue_error"] <= rule["eigenvalue_error_max"]
        assert 0 < rule["trajectory_error"] < 2
        assert 0 <= rule["rayleigh_error"] and 0.2 < rule["kept_fraction"] < 0.4
    for name in ("pruned_noise.npz", "pruned_magnitude.npz", "pruned_uniform.npz", "sweep.csv",
                 "spectra.png", "sweep.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    # The saved matrix is the pruned one the summary measured.
    W = np.load(tmp_path / "original.npz")["W"]
    pruned = np.load(tmp_path / "pruned_noise.npz")["W"]
    assert eigenvalue_error(W, pruned).mean == pytest.approx(summary["rules"]["noise"]["eigenvalue_error"])
    table = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(table) == 1 + 3 * 5  # keeps 0.5, 0.3, 0.2, 0.1, 0.05 by three rules

    # Same seed, same result; a saved matrix gives the same as the generated one.
    again = run_cli("--matrix", tmp_path / "original.npz", "--seed", 3, "--keep", 0.3, "--duration", 30, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rules"] == summary["rules"]


def test_cli_online_covariance_from_nest_on_a_rectified_network():
    out = run_cli("--nodes", 40, "--covariance", "nest", "--probe", 2000, "--rectified", "--inhibitory", 0.2,
                  "--keep", 0.5, "--duration", 20, "--json")
    assert out.returncode == 0, out.stderr
    rules = json.loads(out.stdout)["rules"]
    assert all(0 < r["eigenvalue_error"] < 1 and 0 < r["trajectory_error"] < 2 for r in rules.values())


@pytest.mark.parametrize("matrix, message", [
    (np.ones((3, 4)), "square"),
    (np.array([[0.0, np.nan], [0.0, 0.0]]), "NaN"),
    (np.array([[0.5, 0.8], [0.8, 0.5]]), "unstable"),
    (None, "no array 'W'"),
])
def test_cli_rejects_bad_matrices(tmp_path, matrix, message):
    path = tmp_path / "m.npz"
    if matrix is None:
        np.savez(path, weights=np.eye(2))
    else:
        np.savez(path, W=matrix)
    out = run_cli("--matrix", path, "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--keep", "1.5"], "--keep"),
    (["--matrix", "/nonexistent/w.npz"], "cannot read"),
    (["--nodes", "abc"], "invalid int"),
    (["--sweep", "0.5,2"], "fractions"),
    (["--seed", "-1"], "--seed"),
    (["--p-out", "1.2"], "--p-out"),
])
def test_cli_rejects_bad_arguments(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
