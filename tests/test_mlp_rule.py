"""The MLP rule: its Python description against a plain numpy network written here, its
parameters and their naming, and the compiled NEST synapse against that description replayed
over the same spikes with NEST's event conventions (to 1e-9 relative).
"""

import numpy as np
import pytest
from helpers import coincidences, max_relative_difference, reference_weight, run_paired

from nestplast.builder import build
from nestplast.kernel import install
from nestplast.rules import MLPWeights, Rule, UnknownRuleError, get_rule, mlp_networks, mlp_theta

COINCIDE = 4  # each parrot also coincides with every 4th post spike


def plain_mlp(block: np.ndarray, hidden: int, x_pre, x_post, w_abs) -> np.ndarray:
    """One network from its block of theta (W1 row by row, b1, W2, b2), with matrix products:
    an implementation independent of the rule's."""
    W1 = block[:3 * hidden].reshape(hidden, 3)
    b1, W2, b2 = block[3 * hidden:4 * hidden], block[4 * hidden:5 * hidden], block[5 * hidden]
    z = np.stack([x_pre, x_post, w_abs], axis=-1) @ W1.T + b1
    return np.tanh(np.where(z > 0, z, 0.01 * z) @ W2 + b2)


def test_weight_change_is_the_plain_numpy_mlp():
    hidden, eta = 7, 0.3
    rule = get_rule("mlp", hidden=hidden)
    rng = np.random.default_rng(5)
    theta = rng.normal(0.0, 1.0, len(rule.parameters))
    params = rule.synapse_params(theta, eta=eta)
    x_pre, x_post = rng.uniform(0.0, 3.0, (2, 200))
    w = rng.uniform(-5.0, 5.0, 200)  # the rule reads |w|
    blocks = {"pre": theta[:5 * hidden + 1], "post": theta[5 * hidden + 1:]}
    for event, block in blocks.items():
        expected = eta * plain_mlp(block, hidden, x_pre, x_post, np.abs(w))
        np.testing.assert_allclose(rule.weight_change(params, event, x_pre, x_post, w), expected, rtol=1e-12)
        z = np.stack([x_pre, x_post, np.abs(w)], axis=-1) @ block[:3 * hidden].reshape(hidden, 3).T
        assert (z > 0).any() and (z < 0).any(), "premise: both sides of the leaky ReLU are used"
    # the naming: pre_W1_{j}_{i} is input i (x_pre, x_post, |w|) to hidden unit j
    assert params["pre_W1_3_2"] == theta[3 * 3 + 2] and params["post_b1_1"] == theta[5 * hidden + 1 + 3 * hidden + 1]
    assert params["post_b2"] == theta[-1] and params["pre_W2_6"] == theta[4 * hidden + 6]


def test_weight_change_broadcasts_and_defaults_are_inert():
    rule = get_rule("mlp")
    params = rule.synapse_params(rule.defaults())
    assert rule.weight_change(params, "post", np.ones((2, 3)), 0.5, 1.0).shape == (2, 3)
    np.testing.assert_array_equal(rule.weight_change(params, "pre", [0.0, 1.0], [2.0, 0.1], [3.0, -4.0]), [0.0, 0.0])


def test_structured_weights_round_trip():
    hidden = 4
    rng = np.random.default_rng(2)
    pre = MLPWeights(rng.normal(size=(hidden, 3)), rng.normal(size=hidden), rng.normal(size=hidden), 0.5)
    post = MLPWeights(rng.normal(size=(hidden, 3)), rng.normal(size=hidden), rng.normal(size=hidden), -0.25)
    theta = mlp_theta(pre, post)
    rule = get_rule("mlp", hidden=hidden)
    assert theta.shape == (len(rule.parameters),) == (42,)
    params = rule.synapse_params(theta)
    assert params["pre_W1_2_1"] == pre.W1[2, 1] and params["post_b2"] == -0.25 and params["post_W2_3"] == post.W2[3]
    for networks in (mlp_networks(theta), mlp_networks(params), mlp_networks(theta, hidden=hidden)):
        for back, original in ((networks["pre"], pre), (networks["post"], post)):
            np.testing.assert_array_equal(back.vector(), original.vector())
            assert back.W1.shape == (hidden, 3) and back.b2 == original.b2
    x = rng.uniform(0.0, 2.0, (3, 10))
    np.testing.assert_allclose(pre(*x), plain_mlp(theta[:5 * hidden + 1], hidden, *x), rtol=1e-12)
    with pytest.raises(ValueError, match="42 parameters"):
        mlp_networks(theta[:-1], hidden=hidden)
    with pytest.raises(ValueError, match="W2 has shape"):
        MLPWeights(np.zeros((hidden, 3)), np.zeros(hidden), np.zeros(hidden + 1), 0.0)
    with pytest.raises(ValueError, match="differ in size"):
        mlp_theta(pre, MLPWeights(np.zeros((2, 3)), np.zeros(2), np.zeros(2), 0.0))


def test_stdp_window_of_the_mlp():
    hidden, eta, tau_pre, tau_post, w = 3, 0.1, 15.0, 30.0, 2.0
    rule = get_rule("mlp", hidden=hidden)
    theta = np.random.default_rng(3).uniform(-1.0, 1.0, len(rule.parameters))
    params = rule.synapse_params(theta, eta=eta, tau_pre=tau_pre, tau_post=tau_post)
    pre, post = theta[:5 * hidden + 1], theta[5 * hidden + 1:]
    dt = np.array([-40.0, -5.0, 0.0, 5.0, 40.0])
    window = rule.stdp_window(params, dt, w=w)
    for k, d in enumerate(dt):
        if d > 0:  # pre first, then post reads x_pre
            first = eta * plain_mlp(pre, hidden, 0.0, 0.0, w)
            second = eta * plain_mlp(post, hidden, np.exp(-d / tau_pre), 0.0, w + first)
        else:  # post first; at dt = 0 (NEST's convention) the pre spike does not read x_post
            first = eta * plain_mlp(post, hidden, 0.0, 0.0, w)
            second = eta * plain_mlp(pre, hidden, 0.0, np.exp(d / tau_post) if d < 0 else 0.0, w + first)
        np.testing.assert_allclose(window[k], first + second, rtol=1e-12)


def test_parameters_names_and_defaults():
    rule = get_rule("mlp")  # hidden = 10 by default
    names = rule.names
    assert len(names) == 102 and len(set(names)) == 102
    assert names[:4] == ["pre_W1_0_0", "pre_W1_0_1", "pre_W1_0_2", "pre_W1_1_0"]
    assert (names[29], names[30], names[39], names[40], names[49], names[50]) == (
        "pre_W1_9_2", "pre_b1_0", "pre_b1_9", "pre_W2_0", "pre_W2_9", "pre_b2")
    assert names[51:] == [n.replace("pre_", "post_", 1) for n in names[:51]]
    assert all((p.default, p.low, p.high, p.log) == (0.0, -2.0, 2.0, False) for p in rule.parameters)
    assert set(rule.fixed) == {"tau_pre", "tau_post", "eta", "Wmin", "Wmax"}
    assert rule.describes_update and not rule.terms
    for name in names:  # each a @homogeneous NESTML parameter, so nest.CopyModel can set it
        assert f"\n        {name} real = 0.0 @homogeneous\n" in rule.source
    assert "{{" not in rule.source and "{%" not in rule.source
    assert len(get_rule("mlp", hidden=1).names) == 12 and len(get_rule("mlp", hidden=3).names) == 32
    assert get_rule("mlp", hidden=3) == get_rule("mlp", hidden=3)  # rules compare by value


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_hidden_is_refused(bad):
    with pytest.raises(ValueError, match=r"hidden must be a whole number of hidden units, at least 1; got"):
        get_rule("mlp", hidden=bad)


def test_other_arguments_are_refused():
    with pytest.raises(ValueError, match="only 'mlp'"):
        get_rule("taylor", hidden=5)
    with pytest.raises(ValueError, match="takes no mask"):
        get_rule("mlp", mask="pre:000")
    with pytest.raises(UnknownRuleError, match="mlp"):
        get_rule("perceptron")


# --------------------------------------------------------------------------- compiled, in NEST

@pytest.fixture(scope="module")
def mlp_module():
    return build(get_rule("mlp"), "iaf_psc_exp")


@pytest.mark.parametrize("params", [{"tau_pre": 0.0}, {"tau_post": float("nan")}])
def test_the_mlp_rule_refuses_time_constants_it_cannot_run_with(nest, mlp_module, params):
    """As the doublet, Taylor and reward rules do: a trace with tau 0 or NaN would divide by it."""
    nest.ResetKernel()
    install(mlp_module)
    with pytest.raises(nest.NESTErrors.BadProperty, match=f"{next(iter(params))} > 0 ms"):
        nest.CopyModel(mlp_module.synapse_model, "refused", params)


def replay(rule: Rule, params: dict, pre_times, post_times, w0: float) -> float:
    """The rule event by event through ``rule.weight_change`` (tests/helpers.py's reference)."""
    return reference_weight(lambda event, x_pre, x_post, w: rule.weight_change(params, event, x_pre, x_post, w),
                            params, pre_times, post_times, w0)


def random_networks(rng: np.random.Generator, hidden: int) -> np.ndarray:
    """A random MLP rule whose outputs are of order 0.5, both signs, with every unit in use."""
    def network() -> MLPWeights:
        return MLPWeights(W1=rng.uniform(-1.0, 1.0, (hidden, 3)) * [1.0, 1.0, 0.3],  # |w| is ~3, the traces ~1
                          b1=rng.uniform(-0.5, 0.5, hidden), W2=rng.uniform(-1.0, 1.0, hidden) / np.sqrt(hidden),
                          b2=rng.uniform(-0.2, 0.2))
    return mlp_theta(network(), network())


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["excitatory", "inhibitory"])
def test_nest_matches_weight_change_replayed(nest, mlp_module, sign):
    """Two candidates with their own random networks (CopyModel of one module) see the same
    spikes; each final weight equals the replay to 1e-9, coincident spikes included."""
    rule = get_rule("mlp")
    rng = np.random.default_rng(12)
    fixed = {"eta": 0.02, "tau_pre": 15.0, "tau_post": 30.0, "Wmax": 20.0 * sign, "Wmin": 0.1}
    params = {label: rule.synapse_params(random_networks(rng, 10), **fixed) for label in ("a", "b")}
    result = run_paired(nest, mlp_module, {label: (mlp_module.synapse_model, p) for label, p in params.items()},
                        weight=3.0 * sign, t_stop=3000.0, pre_stop=2800.0, chunks=1, coincide=COINCIDE)
    assert coincidences(result) >= len(result.post_times) / COINCIDE * 8 * 0.9  # (a few after pre_stop)
    for label, p in params.items():
        expected = np.array([replay(rule, p, t, result.post_times, 3.0 * sign) for t in result.pre_times])
        final = result.weights[label][-1]
        # premises: the weights moved, each differently, and stayed clear of the bounds
        assert np.all(np.abs(final - 3.0 * sign) > 0.05) and np.ptp(final) > 0.05
        assert np.all(np.sign(final) == sign) and np.all((np.abs(final) > 0.5) & (np.abs(final) < 19.0))
        assert max_relative_difference(expected, final) < 1e-9
    assert np.all(np.abs(result.weights["a"][-1] - result.weights["b"][-1]) > 1e-3), "each candidate its own rule"


def test_the_numpy_mlp_divides_by_the_synapses_own_scales():
    """NEST divides each input by the synapse parameter scale_<input>, which rule.fixed may set;
    the numpy network divided by the rule's default scales, so its updates (STDP windows, the
    inference's forward model) were of another rule than NEST ran."""
    rule = get_rule("mlp_fsbi")
    theta = np.random.default_rng(0).uniform(-1.0, 1.0, len(rule.names))
    inputs = {"V_bar": np.full(5, -60.0), "C_exc": np.full(5, 20.0), "C_inh": np.full(5, 20.0)}
    x = np.linspace(0.0, 2.0, 5)
    rescaled = rule.weight_change(rule.synapse_params(theta, scale_w_abs=50.0), "post", x, x, np.full(5, 150.0), **inputs)
    same = rule.weight_change(rule.synapse_params(theta), "post", x, x, np.full(5, 3.0), **inputs)
    np.testing.assert_allclose(rescaled, same, rtol=1e-12)
