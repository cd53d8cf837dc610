"""Compiled rules against independent references: NEST's hand-written synapses seeing exactly the
same spikes, a second implementation of the Taylor rule in numpy, and Oja's analytic fixed point.

Where the arithmetic is the same up to rounding (the same updates in another order of floating
point operations), weights must agree to 1e-9 relative throughout the run. The runs make pre
spikes coincide with post spikes (t_pre - delay == t_post) on purpose: the compiled rules follow
NEST's convention there (the pre spike reads only post spikes strictly before it).
"""

import numpy as np
import pytest
from helpers import DELAY, MULTIPLICATIVE_MASK, TAYLOR_TEST_MASK, coincidences, max_relative_difference, reference_weight, run_paired

from nestplast.builder import build
from nestplast.kernel import install
from nestplast.rules import get_rule, parse_mask

COINCIDE = 4  # each parrot also coincides with every 4th post spike

ETA, ALPHA_VS, TAU = 0.01, 0.4, 20.0  # Vogels-Sprekeler: target rate alpha / (2 tau) = 10 Hz


def vogels_sprekeler(sign):
    return ("vogels_sprekeler_synapse", {"eta": ETA, "alpha": ALPHA_VS, "tau": TAU, "Wmax": 10.0 * sign})


def doublet(module, theta, **fixed):
    return (module.synapse_model, get_rule("doublet").synapse_params(theta, **fixed))


def taylor(module, coefficients, **fixed):
    return (module.synapse_model, get_rule("taylor", mask=TAYLOR_TEST_MASK).synapse_params(coefficients, **fixed))


def assert_agree_inside_bounds(result, wmax, reference="ref", rule="rule"):
    ref, new = result.weights[reference], result.weights[rule]
    assert coincidences(result) >= 0.2 * len(result.post_times), "premise: many pre spikes coincide with post spikes"
    # Clipping at a bound happens in one step here and in two in some built-ins: stay inside.
    assert np.all((np.abs(ref) > 0) & (np.abs(ref) < abs(wmax)))
    assert np.all(np.sign(ref) == np.sign(wmax))
    assert np.ptp(ref) > 0.1, "the weights must really change for the comparison to mean anything"
    assert max_relative_difference(ref, new) < 1e-9


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["excitatory", "inhibitory"])
def test_doublet_matches_vogels_sprekeler(nest, doublet_module, sign):
    theta = [TAU, TAU, -ALPHA_VS, 0.0, 1.0, 1.0]  # alpha = -2 rho0 tau, beta = 0, gamma = kappa = 1
    result = run_paired(nest, doublet_module, {
        "ref": vogels_sprekeler(sign),
        "rule": doublet(doublet_module, theta, eta=ETA, Wmax=10.0 * sign, Wmin=0.0),
    }, weight=2.0 * sign, coincide=COINCIDE)
    assert_agree_inside_bounds(result, 10.0 * sign)
    # The neuron fires at about 20 Hz, above the 10 Hz target: iSTDP strengthens the synapses,
    # and for an inhibitory synapse that means more negative weights.
    post_rate = len(result.post_times) / 4.0
    assert post_rate > 15.0
    assert np.all(np.abs(result.weights["rule"][-1]) > 2.05)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["excitatory", "inhibitory"])
def test_taylor_matches_vogels_sprekeler(nest, taylor_module, sign):
    coefficients = {"th_pre_000": -ALPHA_VS, "th_pre_010": 1.0, "th_post_100": 1.0}
    result = run_paired(nest, taylor_module, {
        "ref": vogels_sprekeler(sign),
        "rule": taylor(taylor_module, coefficients, eta=ETA, tau_pre=TAU, tau_post=TAU, Wmax=10.0 * sign),
    }, weight=2.0 * sign, coincide=COINCIDE)
    assert_agree_inside_bounds(result, 10.0 * sign)


LAMBDA, ALPHA_STDP, WMAX_STDP = 0.002, 1.1, 10.0


def additive_stdp():
    return ("stdp_synapse", {"lambda": LAMBDA, "alpha": ALPHA_STDP, "tau_plus": TAU, "Wmax": WMAX_STDP,
                             "mu_plus": 0.0, "mu_minus": 0.0})


def test_doublet_matches_additive_stdp(nest, doublet_module):
    # stdp_synapse adds lambda Wmax x_pre at post spikes and subtracts alpha lambda Wmax x_post at pre spikes
    theta = [TAU, TAU, 0.0, 0.0, 1.0, -ALPHA_STDP]
    result = run_paired(nest, doublet_module, {
        "ref": additive_stdp(),
        "rule": doublet(doublet_module, theta, eta=LAMBDA * WMAX_STDP, Wmax=WMAX_STDP),
    }, weight=3.0, tau_minus=TAU, coincide=COINCIDE)
    assert_agree_inside_bounds(result, WMAX_STDP)


def test_doublet_matches_additive_stdp_in_ones_own_kernel(nest, doublet_module):
    """As a user's own script sets up NEST: two threads, 0.05 ms steps, delays other than the
    step and different per connection; each pre spike coincides with a post spike (t_post =
    t_pre - delay) on purpose, and both synapses sit on the same neuron, each recorded."""
    resolution, delays = 0.05, [0.05, 2.35, 7.7, 20.0]

    def run(pre_times):
        nest.ResetKernel()
        nest.SetKernelStatus({"resolution": resolution, "local_num_threads": 2})
        install(doublet_module)
        post = nest.Create(doublet_module.neuron_model, params={"I_e": 450.0, "tau_minus": TAU})
        recorder = nest.Create("spike_recorder")
        nest.Connect(post, recorder)
        pre = nest.Create("parrot_neuron", len(delays))
        sources = nest.Create("spike_generator", len(delays), [{"spike_times": t} for t in pre_times])
        nest.Connect(sources, pre, "one_to_one", syn_spec={"delay": 1.0})
        weights = {"ref": nest.Create("weight_recorder"), "rule": nest.Create("weight_recorder")}
        # weights of at most 0.01 pA move V_m by microvolts: the post spikes do not depend on them
        lam, wmax = 0.05, 0.01
        nest.CopyModel("stdp_synapse", "ref", {"lambda": lam, "alpha": ALPHA_STDP, "tau_plus": TAU, "Wmax": wmax,
                                               "mu_plus": 0.0, "mu_minus": 0.0})
        theta = [TAU, TAU, 0.0, 0.0, 1.0, -ALPHA_STDP]
        nest.CopyModel(doublet_module.synapse_model, "rule",
                       get_rule("doublet").synapse_params(theta, eta=lam * wmax, Wmax=wmax, Wmin=0.0))
        for label, weight_recorder in weights.items():
            nest.SetDefaults(label, {"weight_recorder": weight_recorder, "weight": 0.5 * wmax})
        for label in weights:
            nest.Connect(pre, post, "all_to_all", syn_spec={"synapse_model": label, "delay": np.array([delays])})
        nest.Simulate(1500.0)
        events = {k: sorted(zip(r.events["times"], r.events["senders"], r.events["weights"])) for k, r in weights.items()}
        return recorder.events["times"], events

    post_times, _ = run([[]] * len(delays))
    rng = np.random.default_rng(0)
    pre_times = [np.unique(np.round(np.r_[post_times[k::3] + d - 1.0, rng.uniform(5.0, 1400.0, 30)] / resolution)
                           * resolution) for k, d in enumerate(delays)]
    same_post, events = run(pre_times)
    np.testing.assert_array_equal(same_post, post_times)
    ref, rule = (np.array(events[k]) for k in ("ref", "rule"))
    assert len(post_times) > 50 and len(ref) == len(rule) > 100
    np.testing.assert_array_equal(ref[:, :2], rule[:, :2])  # the same spikes, in the same order
    assert np.ptp(ref[:, 2]) > 0.002  # the weights really change, between the bounds 0 and 0.01
    assert max_relative_difference(ref[:, 2], rule[:, 2]) < 1e-9


def test_taylor_matches_additive_stdp(nest, taylor_module):
    coefficients = {"th_pre_010": -ALPHA_STDP, "th_post_100": 1.0}
    result = run_paired(nest, taylor_module, {
        "ref": additive_stdp(),
        "rule": taylor(taylor_module, coefficients, eta=LAMBDA * WMAX_STDP, Wmax=WMAX_STDP),
    }, weight=3.0, tau_minus=TAU, coincide=COINCIDE)
    assert_agree_inside_bounds(result, WMAX_STDP)


@pytest.fixture(scope="module")
def multiplicative_module():
    return build(get_rule("taylor", mask=MULTIPLICATIVE_MASK), "iaf_psc_exp")


def test_taylor_matches_multiplicative_stdp(nest, multiplicative_module):
    """stdp_synapse with mu_plus = mu_minus = 1 works on w / Wmax: at a post spike
    w += lambda Wmax (1 - w / Wmax) x_pre, at a pre spike w -= alpha lambda Wmax (w / Wmax) x_post.
    With eta = lambda Wmax that is th_post_100 = 1, th_post_101 = -1 / Wmax, th_pre_011 = -alpha / Wmax."""
    lam = 0.01
    reference = ("stdp_synapse", {"lambda": lam, "alpha": ALPHA_STDP, "tau_plus": TAU, "Wmax": WMAX_STDP,
                                  "mu_plus": 1.0, "mu_minus": 1.0})
    coefficients = {"th_post_100": 1.0, "th_post_101": -1.0 / WMAX_STDP, "th_pre_011": -ALPHA_STDP / WMAX_STDP}
    rule = get_rule("taylor", mask=MULTIPLICATIVE_MASK).synapse_params(coefficients, eta=lam * WMAX_STDP,
                                                                        tau_pre=TAU, tau_post=TAU, Wmax=WMAX_STDP)
    result = run_paired(nest, multiplicative_module,
                        {"ref": reference, "rule": (multiplicative_module.synapse_model, rule)},
                        weight=3.0, tau_minus=TAU, coincide=COINCIDE)
    assert_agree_inside_bounds(result, WMAX_STDP)


def test_frequent_coincidences_at_high_rates(nest, doublet_module):
    """The post neuron at about 50 Hz and pre spikes at 40 Hz on the 0.1 ms grid, half the post
    spikes met by a coinciding pre spike from each parrot: NEST's convention held at every one
    (counting the coincident post spike in the trace put the rule about 1% away within 4 s)."""
    theta = [TAU, TAU, -ALPHA_VS, 0.0, 1.0, 1.0]
    result = run_paired(nest, doublet_module, {
        "ref": vogels_sprekeler(1.0),
        "rule": doublet(doublet_module, theta, eta=ETA, Wmax=10.0),
    }, weight=2.0, pre_rate=40.0, post_rate=60.0, t_stop=4000.0, chunks=8, coincide=2)
    assert len(result.post_times) / 4.0 > 40.0
    assert coincidences(result) >= 0.5 * len(result.post_times) * 8  # at least every second, from each parrot
    assert_agree_inside_bounds(result, 10.0)


# --------------------------------------------------------------------------- second implementation

def reference_taylor(pre_times, post_times, params, mask, w0):
    """The Taylor rule's sum written out here, independently of nestplast.rules."""
    def update(event, x_pre, x_post, w):
        return params["eta"] * sum(params[f"th_{event}_{abc}"] * x_pre ** int(abc[0]) * x_post ** int(abc[1])
                                   * w ** int(abc[2]) for abc in mask[event])
    return reference_weight(update, params, pre_times, post_times, w0)


def test_taylor_matches_second_implementation(nest, taylor_module):
    rule = get_rule("taylor", mask=TAYLOR_TEST_MASK)
    rng = np.random.default_rng(7)
    coefficients = rng.uniform(-1.0, 1.0, size=len(rule.parameters))
    params = rule.synapse_params(coefficients, eta=0.002, tau_pre=15.0, tau_post=30.0, Wmax=-50.0, Wmin=0.1)
    result = run_paired(nest, taylor_module, {"rule": (taylor_module.synapse_model, params)},
                        weight=-2.0, t_stop=3000.0, pre_stop=2800.0, chunks=1, coincide=COINCIDE)
    assert coincidences(result) >= len(result.post_times) / COINCIDE * 8 * 0.9  # (a few after pre_stop)
    mask = parse_mask(TAYLOR_TEST_MASK)
    expected = [reference_taylor(t, result.post_times, params, mask, -2.0) for t in result.pre_times]
    final = result.weights["rule"][-1]
    assert np.ptp(final) > 0.05 and np.all(np.abs(final) < 50.0) and np.all(np.abs(final) > 0.1)
    np.testing.assert_allclose(final, expected, rtol=1e-9)


def trace_before(spikes: np.ndarray, queries: np.ndarray, tau: float) -> np.ndarray:
    """The trace of ``spikes`` (jump 1, decay tau) just before each query time."""
    after_spike = np.empty(len(spikes))
    value, last = 0.0, 0.0
    for k, t in enumerate(spikes):
        value = value * np.exp(-(t - last) / tau) + 1.0
        after_spike[k], last = value, t
    index = np.searchsorted(spikes, queries - 1e-9) - 1  # last spike strictly before
    safe = np.clip(index, 0, None)
    return np.where(index >= 0, after_spike[safe] * np.exp(-(queries - spikes[safe]) / tau), 0.0)


def test_oja_converges_to_predicted_weight(nest, taylor_module):
    """Spiking Oja: at each post spike dw = eta (x_pre - x_post w), so the weight settles at
    w* = E[x_pre] / E[x_post], both traces read just before a post spike. The expectations are
    computed from the recorded spike trains; with Poisson trains they would be nu_pre tau_pre and
    nu_post tau_post."""
    tau_pre, tau_post, t_total = 20.0, 40.0, 400.0
    params = {"th_post_100": 1.0, "th_post_011": -1.0}
    result = run_paired(nest, taylor_module, {
        "rule": taylor(taylor_module, params, eta=0.01, tau_pre=tau_pre, tau_post=tau_post, Wmax=100.0),
    }, weight=0.1, n_pre=20, pre_rate=50.0, post_rate=10.0, t_stop=t_total * 1000, chunks=80, seed=3)
    post = result.post_times
    x_post = trace_before(post, post, tau_post).mean()
    x_pre = np.array([trace_before(pre, post + DELAY, tau_pre).mean() for pre in result.pre_times])
    predicted = x_pre / x_post
    # Poisson statistics give the same to within sampling error (post ISIs are at least 8 ms)
    nu_pre = np.array([len(t) for t in result.pre_times]) / t_total
    np.testing.assert_allclose(x_pre, nu_pre * tau_pre / 1000.0, rtol=0.1)
    settled = result.weights["rule"][30:].mean(axis=0)  # the last 250 s; convergence takes ~25 s
    # eta = 0.01 makes the weight a running average over about 1 / (eta x_post) = 300 post spikes:
    # it fluctuates by a few percent around w*, and since a burst of post spikes both raises x_post
    # and lowers w, the two are correlated and the mean sits O(eta) below w* (measured: -1.8% at
    # eta = 0.01, -0.8% at eta = 0.003, starting at w*).
    np.testing.assert_allclose(settled, predicted, rtol=0.05)
    np.testing.assert_allclose(settled.mean(), predicted.mean(), rtol=0.035)
    assert abs(0.1 - predicted.mean()) > 0.9 * predicted.mean(), "premise: the run starts far from w*"
