"""A rule acts on |w| and gives the weight the sign of Wmax, so a weight of the other sign would be
delivered once with its own sign and then flip (-50 with Wmax = +100 read +50 after the first
spike). It is refused wherever a weight is given, as NEST's vogels_sprekeler_synapse refuses it;
a weight of 0 goes with either sign."""

import pytest

from nestplast.builder import build
from nestplast.kernel import install
from nestplast.rules import Rule, get_rule

SAME_SIGN = "Weight and Wmax must have same sign"


def fresh_kernel(nest, module):
    """A reset kernel with the module: (pre, post) to connect."""
    nest.ResetKernel()
    install(module)
    return nest.Create("parrot_neuron"), nest.Create(module.neuron_model)


def test_connect_refuses_a_weight_against_wmax(nest, doublet_module):
    pre, post = fresh_kernel(nest, doublet_module)
    base = doublet_module.synapse_model  # Wmax = +100 by default
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight -50 with Wmax 100\..*negative Wmax"):
        nest.Connect(pre, post, syn_spec={"synapse_model": base, "weight": -50.0})
    assert len(nest.GetConnections(synapse_model=base)) == 0
    nest.CopyModel(base, "inhibitory", {"Wmax": -100.0})
    # the advice for the case at hand (a positive weight on an inhibitory copy was told about negative weights);
    # NEST gives no model name at Connect
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight 50 with Wmax -100\. Synapse model "
                       rf"'{base}' \(or a copy of it\) keeps the sign of Wmax.*Give a synapse with positive "
                       r"\(excitatory\) weights a positive Wmax, or give this one weights <= 0"):
        nest.Connect(pre, post, syn_spec={"synapse_model": "inhibitory", "weight": 50.0})
    nest.Connect(pre, post, syn_spec={"synapse_model": "inhibitory", "weight": -50.0})
    for model in (base, "inhibitory"):
        nest.Connect(pre, post, syn_spec={"synapse_model": model, "weight": 0.0})
        nest.Connect(pre, post, syn_spec={"synapse_model": model})  # the default weight is 0
    assert sorted(nest.GetConnections(synapse_model="inhibitory").weight) == [-50.0, 0.0, 0.0]
    assert nest.GetConnections(synapse_model=base).weight == [0.0, 0.0]


def test_copy_model_and_set_defaults_refuse_a_weight_against_wmax(nest, doublet_module):
    fresh_kernel(nest, doublet_module)
    base = doublet_module.synapse_model
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight -50 with Wmax 100\."):
        nest.CopyModel(base, "wrong", {"weight": -50.0})
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight 5 with Wmax -10\."):
        nest.CopyModel(base, "wrong_too", {"weight": 5.0, "Wmax": -10.0})
    nest.CopyModel(base, "inhibitory", {"Wmax": -10.0, "eta": 0.01})  # the default weight 0 goes with either
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight 5 with Wmax -10\."):
        nest.SetDefaults("inhibitory", {"weight": 5.0})
    nest.SetDefaults("inhibitory", {"weight": -5.0})
    for name in ("weight", "w"):  # the rule's own name for the weight too; a refused call changes nothing
        with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight -1 with Wmax 10\."):
            nest.SetDefaults("inhibitory", {"Wmax": 10.0, name: -1.0, "eta": 0.5})
        defaults = nest.GetDefaults("inhibitory")
        assert (defaults["Wmax"], defaults["weight"], defaults["eta"]) == (-10.0, -5.0, 0.01)
    nest.SetDefaults("inhibitory", {"Wmax": 10.0, "weight": 1.0})  # both at once: fine
    assert nest.GetDefaults("inhibitory")["Wmax"] == 10.0


def test_wmax_alone_is_checked_against_the_default_weight_at_connect(nest, doublet_module):
    """A copy of a rule whose default weight is positive can be made inhibitory by its Wmax alone
    (nestplast's networks give the weights at Connect); a connection that would take the default
    weight is refused then."""
    pre, post = fresh_kernel(nest, doublet_module)
    nest.CopyModel(doublet_module.synapse_model, "excitatory", {"weight": 1.0})
    nest.CopyModel("excitatory", "inhibitory", {"Wmax": -10.0})
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight 1 with Wmax -10\."):
        nest.Connect(pre, post, syn_spec={"synapse_model": "inhibitory"})
    nest.Connect(pre, post, syn_spec={"synapse_model": "inhibitory", "weight": -1.0})
    assert nest.GetConnections(synapse_model="inhibitory").weight == -1.0


def test_set_on_a_connection_refuses_a_weight_against_wmax(nest, doublet_module):
    pre, post = fresh_kernel(nest, doublet_module)
    nest.CopyModel(doublet_module.synapse_model, "inhibitory", {"Wmax": -10.0})
    nest.Connect(pre, post, syn_spec={"synapse_model": "inhibitory", "weight": -2.0})
    conn = nest.GetConnections(synapse_model="inhibitory")
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight 3 with Wmax -10\. Synapse model "
                       "'inhibitory' keeps"):  # the copy named, where NEST says it
        conn.set(weight=3.0)
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight 3 with Wmax -10\."):
        conn.set({"w": 3.0})  # the rule's own name for the weight
    assert conn.weight == -2.0
    conn.set(weight=0.0)
    conn.set(weight=-4.0)
    assert conn.weight == -4.0


def test_inhibitory_weight_keeps_its_sign_through_learning(nest, doublet_module):
    """The trap that the check closes, done right: with a negative Wmax every spike is delivered
    as inhibition and learning makes it stronger (more negative)."""
    pre, post = fresh_kernel(nest, doublet_module)
    nest.CopyModel(doublet_module.synapse_model, "inhibitory", {"Wmax": -100.0, "eta": 0.1, "alpha": 1.0})
    generator = nest.Create("spike_generator", {"spike_times": [10.0, 20.0, 30.0]})
    nest.Connect(generator, pre)
    nest.Connect(pre, post, syn_spec={"synapse_model": "inhibitory", "weight": -50.0})
    recorder = nest.Create("multimeter", {"record_from": ["V_m"], "interval": 0.1})
    nest.Connect(recorder, post)
    nest.Simulate(40.0)
    assert nest.GetConnections(synapse_model="inhibitory").weight == pytest.approx(-50.3, abs=1e-12)
    v_m, rest = recorder.events["V_m"], post.get("E_L")
    assert v_m.max() <= rest + 1e-12  # never depolarised: every spike arrived as inhibition
    assert v_m.min() < rest - 0.1  # and they did arrive


@pytest.fixture(scope="module")
def per_connection_wmax_module():
    """The doublet rule with Wmax per connection (not @homogeneous), as a user's rule may have it."""
    base = get_rule("doublet")
    source = (base.source.replace("model doublet_synapse:", "model doublet_own_wmax_synapse:")
              .replace("Wmax real = 100.0 [[abs(Wmin) <= abs(Wmax)]] @homogeneous", "Wmax real = 100.0  # per connection"))
    assert "Wmax real = 100.0  # per connection" in source
    rule = Rule(name="doublet_own_wmax", synapse="doublet_own_wmax_synapse", source=source,
                parameters=base.parameters, fixed=base.fixed, terms=base.terms)
    return build(rule, "iaf_psc_exp")


def test_per_connection_wmax_is_checked_with_its_weight(nest, per_connection_wmax_module):
    pre, post = fresh_kernel(nest, per_connection_wmax_module)
    model = per_connection_wmax_module.synapse_model
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight -2 with Wmax 100\."):
        nest.Connect(pre, post, syn_spec={"synapse_model": model, "weight": -2.0})
    nest.Connect(pre, post, syn_spec={"synapse_model": model, "weight": -2.0, "Wmax": -10.0})
    conn = nest.GetConnections(synapse_model=model)
    with pytest.raises(nest.NESTErrors.BadProperty, match=rf"{SAME_SIGN}: weight -2 with Wmax 10\."):
        conn.set(Wmax=10.0)
    conn.set(Wmax=-20.0, weight=-3.0)
    assert conn.get(["weight", "Wmax"]) == {"weight": -3.0, "Wmax": -20.0}


def test_a_weight_below_wmin_is_refused_wherever_it_is_given(nest, doublet_module):
    """The rule clips |w| into [|Wmin|, |Wmax|] at its first update: a weight of -5 under Wmin = -20
    was taken at Connect and read -20 after one presynaptic spike, with every coefficient 0 (an
    experiment file refuses such start weights)."""
    pre, post = fresh_kernel(nest, doublet_module)
    zero = {"alpha": 0.0, "beta": 0.0, "gamma": 0.0, "kappa": 0.0, "eta": 0.01}
    nest.CopyModel(doublet_module.synapse_model, "floored", {**zero, "Wmax": -100.0, "Wmin": -20.0})
    below = r"Weight -5 is below the floor Wmin -20 of synapse model {}: its rule clips \|w\| to \[\|Wmin\|, \|Wmax\|\]"
    with pytest.raises(nest.NESTErrors.BadProperty, match=below.format(
            rf"'{doublet_module.synapse_model}' \(or a copy of it\)")):
        nest.Connect(pre, post, syn_spec={"synapse_model": "floored", "weight": -5.0})
    assert len(nest.GetConnections(synapse_model="floored")) == 0
    with pytest.raises(nest.NESTErrors.BadProperty, match=below.format("'floored'")):
        nest.SetDefaults("floored", {"weight": -5.0})
    nest.Connect(pre, post, syn_spec={"synapse_model": "floored", "weight": -30.0})
    conn = nest.GetConnections(synapse_model="floored")
    with pytest.raises(nest.NESTErrors.BadProperty, match=below.format("'floored'")):
        conn.set(weight=-5.0)
    conn.set(weight=-20.0)  # at the floor: taken, and kept by a rule that changes nothing
    spikes = nest.Create("spike_generator", params={"spike_times": [10.0]})
    nest.Connect(spikes, pre)
    nest.Simulate(50.0)
    assert conn.weight == -20.0


def test_a_trace_set_to_nan_is_refused(nest, doublet_module):
    """x_pre = NaN was taken, and the next postsynaptic spikes made the weight a finite, meaningless
    1.435 from 5 (every invariant let it through)."""
    pre, post = fresh_kernel(nest, doublet_module)
    nest.Connect(pre, post, syn_spec={"synapse_model": doublet_module.synapse_model, "weight": 5.0})
    conn = nest.GetConnections(synapse_model=doublet_module.synapse_model)
    for value in (float("nan"), float("inf")):
        with pytest.raises(nest.NESTErrors.BadProperty, match=rf"x_pre is not a finite number: give synapse model "
                                                               rf"'{doublet_module.synapse_model}' a number"):
            conn.set(x_pre=value)
    conn.set(x_pre=0.5)
    assert conn.get("x_pre") == 0.5
