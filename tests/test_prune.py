"""Noise-driven pruning, the rule: normalisation and sampling, reproducibility, bad matrices and
arguments, the diagonal options, and the local online form against the offline one.
(Measures and the rules compared: test_pruning_measures.py; command line: test_prune_cli.py.)"""

import re

import numpy as np
import pytest
import scipy.optimize

from nestplast.errors import UserError
from nestplast.prune import (
    PRUNING_RULES,
    InvalidPruningArgument,
    OnlineCovariance,
    keep_probabilities,
    noise_scores,
    probe_covariance,
    probe_warmup,
    prune,
)
from nestplast.rate_network import InvalidWeightMatrix, clustered_network, lyapunov_covariance, random_network, simulate


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
    with pytest.raises(ValueError, match="scores must be non-negative"):
        keep_probabilities([1.0, -1.0], 1)


@pytest.mark.parametrize("rule", PRUNING_RULES)
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
@pytest.mark.parametrize("rule", PRUNING_RULES)
def test_prune_rejects_bad_matrices(W, reason, rule):
    with pytest.raises(InvalidWeightMatrix, match=reason.split()[-1]) as err:
        prune(W, 0.5, rule)
    assert err.value.reason == reason


def test_prune_rejects_bad_arguments(clustered):
    for kwargs in ({"keep": 0.0}, {"keep": 1.5}, {"rule": "largest"}, {"diagonal": "trace"},
                   {"covariance": np.eye(3)}):
        with pytest.raises(InvalidPruningArgument) as err:
            prune(clustered, **{"keep": 0.2, **kwargs})
        assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


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


def test_probe_covariance_is_the_online_estimate_of_the_nest_activity():
    W = clustered_network((6, 2, 4), 0.6, 0.1, seed=1, margin=0.5)
    online = OnlineCovariance(W)
    online.update(simulate(W, 500.0, seed=9).rates)
    assert np.array_equal(probe_covariance(W, 500.0, seed=9), online.covariance())


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


@pytest.mark.parametrize("make", [
    np.zeros_like,                             # e.g. from a single sample of activity
    lambda W: np.full_like(W, np.nan),         # e.g. from activity with NaN rates
], ids=["zero", "nan"])
def test_a_covariance_that_cannot_rank_the_synapses_is_refused(clustered, make):
    """Not a pruned network with no synapse kept, without a word."""
    with pytest.raises(InvalidPruningArgument, match="covariance"):
        prune(clustered, 0.2, "noise", covariance=make(clustered), seed=0)
    online = OnlineCovariance(clustered)
    online.update(np.ones((1, len(clustered))))
    with pytest.raises(InvalidPruningArgument, match="zero noise score"):
        prune(clustered, 0.2, "noise", covariance=online.covariance(), seed=0)


def test_online_covariance_names_rates_of_the_wrong_shape():
    W = random_network(30, 0.3, seed=0)
    online = OnlineCovariance(W)
    rates = np.random.default_rng(0).random((100, 30))
    with pytest.raises(InvalidPruningArgument, match=r"transposed"):
        online.update(rates.T)  # neurons in rows, as some recordings come
    with pytest.raises(InvalidPruningArgument, match=r"\(samples, 30 neurons\)"):
        online.update(rates[:, :20])
    for timescale in (0, -5.0):  # 0 divided by zero, a negative one weighted the oldest samples most
        with pytest.raises(InvalidPruningArgument, match="timescale"):
            OnlineCovariance(W, timescale=timescale)


def test_probe_covariance_too_short_for_two_samples_says_so():
    with pytest.raises(InvalidPruningArgument, match="probe for longer") as err:
        probe_covariance(random_network(10, 0.3, seed=0), 0.5)
    assert isinstance(err.value, UserError)


def test_the_probe_warms_up_no_longer_than_it_probes():
    """Five of the slowest time constants were 5e6 ms of NEST time for a slowest eigenvalue of
    -1e-5; a mode that slow barely moves within the probe, so the warm-up is at most the probe."""
    coupling = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])
    slow = coupling + np.diag(1.0 - 1e-5 - coupling.sum(axis=1))  # W - I: minus a Laplacian, shifted by -1e-5
    assert probe_warmup(slow, 100.0) == 100.0
    assert probe_warmup(clustered_network((6, 2, 2), seed=1), 1e4) == pytest.approx(500.0)  # tau / margin 0.1, five
    C = probe_covariance(slow, 100.0, seed=1)  # 200 ms of NEST time, not 5e6
    assert C.shape == (3, 3) and (np.diag(C) > 0).all()


def test_a_matrix_symmetric_up_to_rounding_is_pruned_as_symmetric():
    """H = X D X^T / N differed from its transpose by 1e-17 and was pruned as a directed network: the
    result was not symmetric (0.026 apart), and its spectrum was compared as a non-symmetric one."""
    from nestplast.pruning_measures import eigenvalues

    rng = np.random.default_rng(3)
    X, D = rng.normal(0.0, 1.0, (60, 5)), np.diag(rng.random(5))
    H = 0.5 * X @ D @ X.T / 60
    np.fill_diagonal(H, -3.0)
    assert not np.array_equal(H, H.T) and np.abs(H - H.T).max() < 1e-15
    pruned = prune(H, keep=0.3, seed=0).weights
    np.testing.assert_array_equal(pruned, pruned.T)
    assert eigenvalues(H)[1] and eigenvalues(pruned)[1]
    H[0, 1] += 1e-6  # more than rounding: a directed network
    assert not eigenvalues(H)[1]


def test_a_sparse_matrix_is_named_as_such():
    import scipy.sparse

    with pytest.raises(InvalidWeightMatrix, match=r"a scipy.sparse matrix: give the dense one, W.toarray\(\)"):
        prune(scipy.sparse.csr_matrix(np.eye(3) * -1.0))


def test_the_public_helpers_refuse_what_prune_refuses():
    """keep = "0.5" failed on numpy's '<' between a float and a str; keep_probabilities(scores, -1)
    gave negative "probabilities"; noise_scores with a smaller covariance raised numpy's IndexError;
    negative variances were refused with advice to record more activity. compare_rules(slowest=100)
    on 3 nodes recorded 100 where the mean was over 3."""
    from nestplast.pruning_measures import compare_rules

    W = np.array([[0.0, 0.2, 0.1], [0.3, 0.0, 0.1], [0.1, 0.2, 0.0]])
    with pytest.raises(InvalidPruningArgument, match=re.escape("keep must be a fraction in (0, 1], got '0.5'")):
        prune(W, keep="0.5")
    with pytest.raises(ValueError, match="n_keep must be a number of synapses >= 0, got -1"):
        keep_probabilities([1.0, 2.0, 3.0], -1)
    with pytest.raises(InvalidPruningArgument, match=re.escape("covariance shape (2, 2) does not match the weights (3, 3)")):
        noise_scores(W, np.eye(2))
    with pytest.raises(InvalidPruningArgument, match=re.escape("covariance has 3 negative variance(s) on its diagonal "
                                                               "(the first at [0, 0]): not a covariance")):
        prune(W, covariance=-np.eye(3))
    assert prune(W, rule="magnitude", covariance=-np.eye(3)).kept >= 0  # a rule that does not read it takes it
    assert compare_rules(W, keep=0.5, slowest=100, duration=0, decay_duration=0).summary()["slowest"] == 3


def test_an_online_covariance_or_an_activity_given_whole_is_named():
    """prune(W, covariance=online) said "covariance shape () does not match the weights (3, 3)", and
    online.update(activity) raised float()'s TypeError."""
    from nestplast.rate_network import simulate

    W = random_network(6, density=0.5, seed=1)
    online = OnlineCovariance(W)
    activity = simulate(W, 20.0, seed=1)
    with pytest.raises(InvalidPruningArgument, match=r"rates: an Activity .*give its samples, activity.rates"):
        online.update(activity)
    online.update(activity.rates)
    with pytest.raises(InvalidPruningArgument, match=r"covariance is an OnlineCovariance: .* its .covariance\(\)"):
        prune(W, 0.5, "noise", covariance=online)
    assert prune(W, 0.5, "noise", covariance=online.covariance()).weights.shape == W.shape

