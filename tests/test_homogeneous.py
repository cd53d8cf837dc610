"""@homogeneous rule parameters live in the synapse model's common properties: one copy per
synapse model (``nest.CopyModel`` / ``SetDefaults``, read with ``GetDefaults``), none in the
synapse objects, and a clear NEST error when set on a single connection. Parameters without
@homogeneous stay per connection.
"""

import numpy as np
import pytest
from helpers import run_paired

from nestplast.builder import build
from nestplast.kernel import install
from nestplast.rules import Rule, get_rule

W0, WMAX = 2.0, 10.0


def doublet(module, theta, **fixed):
    return (module.synapse_model, get_rule("doublet").synapse_params(theta, **fixed))


def one_connection(nest, module, model_params=None, weight=W0):
    """A fresh kernel with one connection of a copy ``cand`` of the rule: (connection, pre, post)."""
    nest.ResetKernel()
    install(module)
    nest.CopyModel(module.synapse_model, "cand", model_params or {})
    pre, post = nest.Create("parrot_neuron"), nest.Create(module.neuron_model)
    nest.Connect(pre, post, syn_spec={"synapse_model": "cand", "weight": weight})
    return nest.GetConnections(synapse_model="cand"), pre, post


def test_copies_with_different_parameters_learn_differently(nest, doublet_module):
    """Three copies of one compiled rule in one kernel, seeing the same spikes: a pre-only term
    alpha gives w = W0 + eta * alpha * (number of pre spikes), with each copy's own eta."""
    theta = [20.0, 20.0, 0.1, 0.0, 0.0, 0.0]  # tau_pre, tau_post, alpha, beta, gamma, kappa
    etas = {"eta_0": 0.0, "eta_1": 0.01, "eta_2": 0.02}
    result = run_paired(nest, doublet_module, {label: doublet(doublet_module, theta, eta=eta, Wmax=WMAX)
                                               for label, eta in etas.items()},
                        weight=W0, t_stop=2000.0, chunks=4, pre_stop=1800.0)
    n_pre = np.array([len(t) for t in result.pre_times], dtype=float)
    assert n_pre.min() > 10
    for label, eta in etas.items():
        np.testing.assert_allclose(result.weights[label][-1], W0 + eta * 0.1 * n_pre, rtol=1e-12, atol=1e-12)
    for label, eta in etas.items():  # each copy keeps its own values, the base model its defaults
        assert nest.GetDefaults(label)["eta"] == eta
        assert nest.GetDefaults(label)["alpha"] == 0.1
    assert nest.GetDefaults(doublet_module.synapse_model)["eta"] == get_rule("doublet").fixed["eta"]


def test_time_constants_are_per_copy(nest, doublet_module):
    """tau_post of each copy decides how much a pre spike sees of the postsynaptic trace."""
    labels = {"tau_10": 10.0, "tau_40": 40.0}
    result = run_paired(nest, doublet_module, {
        label: doublet(doublet_module, [20.0, tau, 0.0, 0.0, 0.0, 1.0], eta=0.01, Wmax=WMAX)
        for label, tau in labels.items()}, weight=W0, t_stop=2000.0, chunks=4)
    change = {label: result.weights[label][-1] - W0 for label in labels}
    assert np.all(change["tau_10"] > 0)
    assert np.all(change["tau_40"] > 1.5 * change["tau_10"])  # a longer trace: more of it at each pre spike
    assert nest.GetDefaults("tau_10")["tau_post"] == 10.0 and nest.GetDefaults("tau_40")["tau_post"] == 40.0


def test_get_defaults_shows_the_common_parameters(nest, doublet_module):
    rule = get_rule("doublet")
    params = rule.synapse_params([15.0, 25.0, -0.4, 0.3, 1.0, 2.0], eta=0.5, Wmin=0.5, Wmax=-10.0)
    one_connection(nest, doublet_module, {**params, "weight": -1.0}, weight=-1.0)  # Wmax < 0: inhibitory
    defaults = nest.GetDefaults("cand")
    assert {k: defaults[k] for k in params} == params
    nest.SetDefaults("cand", {"eta": 0.25, "tau_pre": 30.0})
    assert nest.GetDefaults("cand")["eta"] == 0.25 and nest.GetDefaults("cand")["tau_pre"] == 30.0
    assert nest.GetDefaults(doublet_module.synapse_model)["tau_pre"] == 20.0  # the base model keeps its own


def test_set_defaults_reaches_existing_connections(nest, doublet_module):
    """One copy of the parameters per model: changing it changes what every connection does."""
    conn, pre, _ = one_connection(nest, doublet_module, get_rule("doublet").synapse_params(
        [20.0, 20.0, 1.0, 0.0, 0.0, 0.0], eta=0.1, Wmax=WMAX))
    generator = nest.Create("spike_generator", {"spike_times": [10.0, 20.0, 30.0, 40.0]})
    nest.Connect(generator, pre)
    nest.Simulate(25.0)  # two pre spikes delivered: w = 2.0 + 2 * 0.1
    assert conn.weight == pytest.approx(W0 + 0.2, abs=1e-12)
    nest.SetDefaults("cand", {"eta": 0.0})
    nest.Simulate(25.0)  # two more, now without learning
    assert conn.weight == pytest.approx(W0 + 0.2, abs=1e-12)


def test_homogeneous_parameter_cannot_be_set_on_one_connection(nest, doublet_module):
    conn, pre, post = one_connection(nest, doublet_module, {"eta": 0.5})
    for name in ("eta", "tau_pre", "Wmax"):
        with pytest.raises(Exception, match=rf"'{name}' is a homogeneous .*SetDefaults\(\) or nest.CopyModel\(\)"):
            conn.set({name: 1.0})
    assert nest.GetDefaults("cand")["eta"] == 0.5  # nothing changed
    # what belongs to the connection stays settable there
    conn.set(weight=3.0, x_pre=0.5, x_post=0.25)
    assert conn.get(["weight", "x_pre", "x_post"]) == {"weight": 3.0, "x_pre": 0.5, "x_post": 0.25}
    # and Connect refuses them too (NEST's own check for common properties)
    with pytest.raises(Exception, match="can only be set via SetDefaults"):
        nest.Connect(pre, post, syn_spec={"synapse_model": "cand", "eta": 1.0})


def test_rule_synapse_is_no_bigger_than_the_builtin(nest, doublet_module, taylor_module):
    """Per synapse only the weight, the two traces and the last spike time (plus NEST's target and
    delay): the nine (doublet) or 5 + up to 54 (Taylor) parameters are in the common properties."""
    sizes = {}
    for module in (doublet_module, taylor_module):
        conn, _, _ = one_connection(nest, module)
        sizes[module.synapse_model] = conn.get("sizeof")
    nest.ResetKernel()
    pre, post = nest.Create("parrot_neuron"), nest.Create("iaf_psc_exp")
    nest.Connect(pre, post, syn_spec={"synapse_model": "vogels_sprekeler_synapse"})
    builtin = nest.GetConnections(synapse_model="vogels_sprekeler_synapse").get("sizeof")
    assert sizes[doublet_module.synapse_model] <= builtin
    assert sizes[taylor_module.synapse_model] == sizes[doublet_module.synapse_model]


# --------------------------------------------------------------------------- per-connection parameters

MIXED_SOURCE = (get_rule("doublet").source
                .replace("model doublet_synapse:", "model doublet_mixed_synapse:")
                .replace("alpha real = 0.0 @homogeneous", "alpha real = 0.0  # per connection"))


@pytest.fixture(scope="module")
def mixed_module():
    """The doublet rule with alpha per connection (not @homogeneous), the rest homogeneous."""
    base = get_rule("doublet")
    assert "alpha real = 0.0  # per connection" in MIXED_SOURCE
    rule = Rule(name="doublet_mixed", synapse="doublet_mixed_synapse", source=MIXED_SOURCE,
                parameters=base.parameters, fixed=base.fixed, terms=base.terms)
    return build(rule, "iaf_psc_exp")


def test_non_homogeneous_parameter_stays_per_connection(nest, mixed_module):
    nest.ResetKernel()
    install(mixed_module)
    nest.CopyModel(mixed_module.synapse_model, "cand", {"eta": 0.01, "Wmax": WMAX, "alpha": 0.05})
    assert nest.GetDefaults("cand")["alpha"] == 0.05  # the default connection's value
    generator = nest.Create("spike_generator", {"spike_times": [10.0, 20.0, 30.0]})
    pre = nest.Create("parrot_neuron")
    post = nest.Create(mixed_module.neuron_model, 3)
    nest.Connect(generator, pre)
    nest.Connect(pre, post, syn_spec={"synapse_model": "cand", "weight": W0, "alpha": 0.1})  # set at Connect
    conns = nest.GetConnections(synapse_model="cand")
    conns[1].set(alpha=0.2)  # and on one connection
    conns[2].set(alpha=0.0)
    assert conns.get("alpha") == pytest.approx([0.1, 0.2, 0.0])
    nest.Simulate(40.0)
    np.testing.assert_allclose(conns.get("weight"), W0 + 0.01 * np.array([0.1, 0.2, 0.0]) * 3, rtol=0, atol=1e-12)
    with pytest.raises(Exception, match="'eta' is a homogeneous"):
        conns[0].set(eta=1.0)
    assert conns[0].get("sizeof") == 64  # 56 bytes of the doublet synapse plus alpha
