"""More rule inputs and the fSBI MLP rule: the slow traces, the postsynaptic neuron's low-passed
voltage and input currents (V_bar, C_exc, C_inh), MLP rules of any shape from one generator,
and the fSBI preset; in Python against plain numpy, and compiled in NEST against numpy on the
recorded inputs (to 1e-9 relative).
"""

import re

import numpy as np
import pytest
from helpers import DELAY, POST_STATE, RESOLUTION, max_relative_difference, reference_weight_inputs, run_recorded

from nestplast.builder import build
from nestplast.neurons import get_neuron
from nestplast.rules import FSBI_SCALES, MLPSpec, RuleLayout, get_rule


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def plain_fsbi(rule, params: dict, event: str, x: np.ndarray) -> np.ndarray:
    """The fSBI network with matrix products, from the frozen arrays and the named output layer:
    an implementation independent of the rule's. ``x``: (n, 6) raw inputs."""
    (W1, b1), (W2, b2) = rule.update.spec.frozen_layers()[event]
    W3 = np.array([params[f"{event}_W3_{j}"] for j in range(4)])
    h = sigmoid(sigmoid((x / np.array(FSBI_SCALES)) @ W1.T + b1) @ W2.T + b2)
    return h @ W3 + params[f"{event}_b3"]


def random_output_layers(rule, rng: np.random.Generator, eta: float) -> dict:
    theta = rng.uniform(-2.0, 2.0, len(rule.names))
    theta[rule.names.index("eta")] = eta
    return dict(zip(rule.names, theta))


# --------------------------------------------------------------------------- Python

def test_fsbi_rule_parameters():
    rule = get_rule("mlp_fsbi")
    assert rule.names == ["eta", *[f"pre_W3_{j}" for j in range(4)], "pre_b3",
                          *[f"post_W3_{j}" for j in range(4)], "post_b3"]
    assert len(RuleLayout(rule, ("EE", "IE")).names) == 22
    eta = rule.parameters[0]
    assert eta.log and eta.low > 0 and "eta" not in rule.fixed
    assert {k: rule.fixed[k] for k in rule.fixed if k.startswith("scale_")} == {
        "scale_x_pre": 2.0, "scale_x_post": 2.0, "scale_w_abs": 1.0, "scale_V_bar": 15.0, "scale_C_exc": 15.0,
        "scale_C_inh": 15.0}
    assert rule.post_inputs == POST_STATE and rule.extra_inputs == POST_STATE
    for name in rule.names:  # each a @homogeneous parameter of the synapse, so CopyModel sets it
        assert re.search(rf"\n        {name} real = [-0-9.e]+ @homogeneous\n", rule.source)
    assert "{{" not in rule.source and "{%" not in rule.source
    # the defaults: the inert rule
    params = rule.synapse_params(rule.defaults())
    assert np.all(rule.weight_change(params, "pre", 0.5, 0.2, 3.0, V_bar=-60.0, C_exc=20.0, C_inh=5.0) == 0.0)


def test_fsbi_weight_change_is_plain_numpy():
    rule = get_rule("mlp_fsbi")
    rng = np.random.default_rng(4)
    params = rule.synapse_params(random_output_layers(rule, rng, eta=0.3))
    x = np.column_stack([rng.uniform(0, 3, 300), rng.uniform(0, 3, 300), rng.uniform(0, 20, 300),
                         rng.uniform(-80, -50, 300), rng.uniform(0, 200, 300), rng.uniform(0, 100, 300)])
    for event in ("pre", "post"):
        got = rule.weight_change(params, event, x[:, 0], x[:, 1], -x[:, 2],  # the rule reads |w|
                                 V_bar=x[:, 3], C_exc=x[:, 4], C_inh=x[:, 5])
        expected = 0.3 * plain_fsbi(rule, params, event, x)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
        assert np.ptp(got) > 0.01, "premise: the inputs move the output"
    with pytest.raises(ValueError, match="reads the inputs"):
        rule.weight_change(params, "pre", 0.1, 0.1, 1.0)


def test_frozen_layers_are_the_numbers_in_the_source():
    rule = get_rule("mlp_fsbi", frozen_seed=3)
    layers = rule.update.spec.frozen_layers()
    for event in ("pre", "post"):
        (W1, b1), (W2, b2) = layers[event]
        assert W1.shape == (50, 6) and b1.shape == (50,) and W2.shape == (4, 50) and b2.shape == (4,)
        assert np.all(np.abs(W1) <= 1 / np.sqrt(6)) and np.all(np.abs(W2) <= 1 / np.sqrt(50))
        block = rule.source.split(f"onReceive({event}_spikes):")[1]
        for j in (0, 17, 49):  # the source holds exactly these numbers
            line = re.search(rf"z1_{j} real = (.*)\n", block).group(1)
            numbers = [float(sign.replace(" ", "") + value) for sign, value
                       in re.findall(r"(^|[+-] ?)(\d+\.\d+)", line)]
            assert numbers == [b1[j], *W1[j]]
    assert not np.array_equal(layers["pre"][0][0], layers["post"][0][0])
    same, other = get_rule("mlp_fsbi", frozen_seed=3), get_rule("mlp_fsbi", frozen_seed=4)
    assert same == rule and same.source == rule.source and other.source != rule.source


def test_one_generator_of_mlp_rules():
    inference = get_rule("mlp", hidden=4)
    assert inference == get_rule("mlp", layers=(4,)) and inference.extra_inputs == ()
    assert len(inference.names) == 42 and inference.names[-1] == "post_b2"
    deep = get_rule("mlp", inputs=("x_pre", "x_post_slow", "C_inh"), layers=(3, 2),
                    activations=("tanh", "leaky_relu", "linear"))
    assert deep.names[:2] == ["pre_W1_0_0", "pre_W1_0_1"] and "pre_W2_1_2" in deep.names
    assert deep.names[-3:] == ["post_W3_0", "post_W3_1", "post_b3"]
    assert len(deep.names) == 2 * (3 * 3 + 3 + 2 * 3 + 2 + 2 + 1)
    assert deep.synaptic_traces == ("x_pre", "x_post", "x_post_slow") and deep.fixed["tau_post_slow"] == 100.0
    assert deep.extra_inputs == ("x_post_slow", "C_inh") and deep.post_inputs == ("C_inh",)
    assert "x_pre_slow" not in deep.source and "C_inh_post real <- continuous" in deep.source
    # its forward pass against matrix products
    rng = np.random.default_rng(1)
    params = deep.synapse_params(rng.normal(size=len(deep.names)), eta=0.5)
    x = rng.uniform(0, 2, (3, 50))
    W1 = np.array([[params[f"post_W1_{j}_{i}"] for i in range(3)] for j in range(3)])
    W2 = np.array([[params[f"post_W2_{j}_{i}"] for i in range(3)] for j in range(2)])
    b1 = np.array([params[f"post_b1_{j}"] for j in range(3)])
    b2 = np.array([params[f"post_b2_{j}"] for j in range(2)])
    z = np.tanh(x.T @ W1.T + b1) @ W2.T + b2
    out = np.where(z > 0, z, 0.01 * z) @ [params["post_W3_0"], params["post_W3_1"]] + params["post_b3"]
    got = deep.weight_change(params, "post", x[0], 0.0, 1.0, x_post_slow=x[1], C_inh=x[2])
    np.testing.assert_allclose(got, 0.5 * out, rtol=1e-12)


@pytest.mark.parametrize("options, message", [
    ({"inputs": ("x_pre", "V_m")}, "inputs must be distinct names"),
    ({"inputs": ("x_pre", "x_pre")}, "inputs must be distinct names"),
    ({"layers": (3,), "activations": ("sigmoid",)}, "activations are one per hidden layer"),
    ({"activations": ("relu", "tanh")}, "activations are one per hidden layer"),
    ({"scales": (1.0, 2.0)}, "scales are one positive number per input"),
    ({"frozen_seed": 1.5}, "frozen_seed must be a whole number"),
    ({"layers": (3, 0), "activations": ("tanh", "tanh", "linear")}, "hidden must be a whole number"),
    ({"colour": "red"}, "takes no option"),
    ({"hiden": 4}, r"its options: \['activations', 'frozen_seed', 'hidden', 'inputs'"),  # hidden was missing
    ({"frozen_seed": -1}, "frozen_seed must be a whole number >= 0"),  # was numpy's message
    ({"inputs": "x_pre"}, "inputs are a list of names"),  # was read letter by letter
    ({"scales": {"x_pre": 1.0}}, "scales are one number per input, in the order of inputs"),  # was a float() error
])
def test_bad_mlp_shapes_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        get_rule("mlp", **options)


def test_other_mlp_arguments_are_refused():
    with pytest.raises(ValueError, match="hidden or layers"):
        get_rule("mlp", hidden=3, layers=(3,))
    with pytest.raises(ValueError, match="takes no option"):
        get_rule("mlp_fsbi", layers=(3,))
    with pytest.raises(ValueError, match="takes no option"):
        get_rule("doublet", frozen_seed=1)
    with pytest.raises(ValueError, match="no frozen layers"):
        MLPSpec().frozen_layers()


def test_stdp_window_with_slow_traces_and_post_inputs():
    rule = get_rule("mlp", inputs=("x_pre", "x_post", "x_pre_slow", "x_post_slow", "V_bar"), layers=(3,),
                    activations=("tanh", "linear"))
    rng = np.random.default_rng(2)
    params = rule.synapse_params(rng.normal(size=len(rule.names)), eta=0.1, tau_pre_slow=80.0, tau_post_slow=120.0)
    dt = np.array([-30.0, 0.0, 30.0])
    window = rule.stdp_window(params, dt, w=1.0, V_bar=-65.0)
    change = lambda event, a, b, c, d, w: rule.weight_change(  # noqa: E731
        params, event, a, b, w, x_pre_slow=c, x_post_slow=d, V_bar=-65.0)
    first = change("pre", 0, 0, 0, 0, 1.0)
    causal = first + change("post", np.exp(-30 / 20), 0, np.exp(-30 / 80), 0, 1.0 + first)
    first = change("post", 0, 0, 0, 0, 1.0)
    acausal = first + change("pre", 0, np.exp(-30 / 20), 0, np.exp(-30 / 120), 1.0 + first)
    np.testing.assert_allclose(window[[0, 2]], [acausal, causal], rtol=1e-12)
    with pytest.raises(ValueError, match="give the postsynaptic inputs"):
        rule.stdp_window(params, dt)


def test_neuron_with_rule_inputs_is_a_small_transform():
    for name, inlines in (("iaf_psc_exp", 0), ("iaf_cond_exp", 2)):  # the conductances are convolutions
        neuron = get_neuron(name)
        plain, extended = neuron.source, neuron.with_rule_inputs().source
        assert neuron.with_rule_inputs().model == neuron.model and get_neuron(name).source == plain
        added = [line for line in extended.splitlines() if line not in plain.splitlines()]
        # state, time constant and propagator of each, the update's comment and three lines
        assert len(added) == 3 * 3 + 4 + inlines and all("nestplast" in line or line.strip().startswith(POST_STATE) for line in added)
        assert set(plain.splitlines()) <= set(extended.splitlines())


# --------------------------------------------------------------------------- compiled, in NEST

@pytest.fixture(scope="module")
def fsbi_module():
    return build(get_rule("mlp_fsbi"), "iaf_psc_exp")


ALL_INPUTS = dict(inputs=("x_pre", "x_post", "w_abs", "x_pre_slow", "x_post_slow", "V_bar", "C_exc", "C_inh"),
                  layers=(3,), activations=("tanh", "linear"))


@pytest.fixture(scope="module")
def all_inputs_module():
    """Every input, unscaled, every weight searched: the generic path, and the slow traces."""
    return build(get_rule("mlp", **ALL_INPUTS), "iaf_psc_exp")


def test_low_passed_inputs_in_nest(nest, fsbi_module):
    """The neuron's V_bar, C_exc, C_inh: each step X = s + (X - s) exp(-h / tau) from the signal
    s = V_m, I_syn_exc, I_syn_inh at the step's start (recorded the step before), to 1e-12; and
    close to the continuous low-pass of a known input (a constant current from t = 0)."""
    result = run_recorded(nest, fsbi_module, {}, 1.0, t_stop=300.0)
    state = result.state
    for name, signal, tau in (("V_bar", "V_m", 100.0), ("C_exc", "I_syn_exc", 10.0), ("C_inh", "I_syn_inh", 100.0)):
        s, x = state[signal][:-1], state[name][:-1]
        expected = s + (x - s) * np.exp(-RESOLUTION / tau)
        assert max_relative_difference(expected, state[name][1:]) < 1e-12
        assert np.ptp(state[name]) > 0.1, f"premise: {name} varies"

    # a constant current I from t = 0 into the resting neuron: V_m = E_L + R I (1 - exp(-t/tau_m)),
    # V_bar its low-pass with tau_b: E_L + R I (1 - (tau_b e^(-t/tau_b) - tau_m e^(-t/tau_m)) / (tau_b - tau_m))
    nest.ResetKernel()
    from nestplast.kernel import install

    install(fsbi_module)
    nest.resolution = RESOLUTION
    neuron = nest.Create(fsbi_module.neuron_model, {"I_e": 200.0, "V_th": 1000.0})
    meter = nest.Create("multimeter", {"interval": RESOLUTION, "record_from": ["V_bar", "V_m"]})
    nest.Connect(meter, neuron)
    nest.Simulate(500.0)
    t, v_bar = meter.events["times"], meter.events["V_bar"]
    tau_m, tau_b, R = neuron.tau_m, 100.0, neuron.tau_m / neuron.C_m
    analytic = -70.0 + R * 200.0 * (1 - (tau_b * np.exp(-t / tau_b) - tau_m * np.exp(-t / tau_m)) / (tau_b - tau_m))
    # the signal held over each step from its start: V_bar lags by about one step
    assert np.max(np.abs(v_bar - analytic)) < 2 * RESOLUTION * R * 200.0 / tau_b
    assert np.max(np.abs(v_bar - analytic)) > 0 and v_bar[-1] - v_bar[0] > 5.0


def check_against_numpy(nest, module, rule, params_by_label: dict, weight: float, **run) -> dict:
    """Run the candidates on one neuron and compare each final weight with the event-by-event
    reference fed the recorded postsynaptic state; returns the relative differences."""
    result = run_recorded(nest, module, {k: (module.synapse_model, p) for k, p in params_by_label.items()},
                          weight, **run)
    paired = result.paired
    differences = {}
    for label, params in params_by_label.items():
        def update(event, inputs, w_abs, params=params):
            extra = {name: inputs[name] for name in rule.extra_inputs}
            return rule.weight_change(params, event, inputs["x_pre"], inputs["x_post"], w_abs, **extra)

        expected = np.array([reference_weight_inputs(update, params, t, paired.post_times, weight, result.at)
                             for t in paired.pre_times])
        final = paired.weights[label][-1]
        assert np.all(np.abs(final - weight) > 0.05) and np.ptp(final) > 0.01, "premise: the weights moved"
        assert np.all((np.abs(final) > 0.5) & (np.abs(final) < 0.95 * abs(params["Wmax"]))), "premise: no clipping"
        differences[label] = max_relative_difference(expected, final)
        # premise: the postsynaptic inputs matter (held at their means they give other weights)
        means = {name: float(np.mean(result.state[name])) for name in POST_STATE}

        def held_state(_t, means=means):
            return means

        held = np.array([reference_weight_inputs(update, params, t, paired.post_times, weight, held_state)
                         for t in paired.pre_times])
        assert max_relative_difference(held, final) > 1e-6
    assert len(paired.post_times) > 20 and min(len(t) for t in paired.pre_times) > 20
    return differences


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["excitatory", "inhibitory"])
def test_fsbi_rule_in_nest_is_the_numpy_mlp(nest, fsbi_module, sign):
    rule = get_rule("mlp_fsbi")
    rng = np.random.default_rng(7)
    candidates = {label: rule.synapse_params(random_output_layers(rule, rng, eta=0.02), Wmax=20.0 * sign, Wmin=0.1)
                  for label in ("a", "b")}
    differences = check_against_numpy(nest, fsbi_module, rule, candidates, 5.0 * sign)
    assert max(differences.values()) < 1e-9, differences


def test_every_input_in_nest_is_the_numpy_mlp(nest, all_inputs_module):
    rule = get_rule("mlp", **ALL_INPUTS)
    rng = np.random.default_rng(8)
    theta = rng.normal(0.0, 1.0, len(rule.names)) * 0.3
    # the unscaled inputs: |w| ~ 5, V_bar ~ -70 mV, C ~ 10-30 pA; keep each unit's input of order 1
    for i, scale in ((2, 0.2), (5, 1 / 70), (6, 1 / 30), (7, 1 / 30)):
        for event in ("pre", "post"):
            for j in range(3):
                theta[rule.names.index(f"{event}_W1_{j}_{i}")] *= scale
    params = rule.synapse_params(theta, eta=0.05, tau_pre_slow=60.0, tau_post_slow=150.0, Wmax=20.0, Wmin=0.1)
    differences = check_against_numpy(nest, all_inputs_module, rule, {"all": params}, 5.0)
    assert differences["all"] < 1e-9, differences


def test_presynaptic_spike_reads_the_state_when_delivered(nest, fsbi_module):
    """With min_delay longer than a step, NEST delivers a spike at the end of the min_delay
    interval in which it was sent, and the rule reads the neuron's state then (README)."""
    rule = get_rule("mlp_fsbi")
    theta = random_output_layers(rule, np.random.default_rng(9), eta=0.02)
    params = rule.synapse_params({k: 0.0 if k.startswith("post_") else v for k, v in theta.items()}, Wmax=20.0)
    result = run_recorded(nest, fsbi_module, {"a": (fsbi_module.synapse_model, params)}, 5.0, n_pre=3,
                          t_stop=500.0, parrot_delay=1.5)  # min_delay: the plastic synapses' 1 ms
    assert nest.min_delay == DELAY

    def update(event, inputs, w_abs):
        return rule.weight_change(params, event, inputs["x_pre"], inputs["x_post"], w_abs,
                                  **{name: inputs[name] for name in POST_STATE})

    final = result.paired.weights["a"][-1]
    for read_at, agrees in ((lambda t: np.ceil(round(t / DELAY, 9)) * DELAY, True), (lambda t: t, False)):
        expected = []
        for t_pre in result.paired.pre_times:
            pre_steps = set(np.round(t_pre / RESOLUTION).astype(int))

            def state(t, pre_steps=pre_steps, read_at=read_at):  # a post spike's state is read at it
                return result.at(read_at(t) if round(t / RESOLUTION) in pre_steps else t)

            expected.append(reference_weight_inputs(update, params, t_pre, result.paired.post_times, 5.0, state))
        assert (max_relative_difference(np.array(expected), final) < 1e-9) == agrees
