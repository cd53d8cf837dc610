"""Rule descriptions: parameters, layouts, masks and the STDP window, against hand computation."""

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nestplast.rules import RuleLayout, UnknownParameterError, UnknownRuleError, get_rule, parse_mask, vogels_sprekeler
from nestplast.user_rules import rule_from_file


def test_doublet_window_is_the_analytic_pair_rule():
    rule = get_rule("doublet")
    params = rule.synapse_params([15.0, 30.0, -0.1, 0.2, 1.5, -0.5], eta=2.0)
    dt = np.array([-40.0, -5.0, 5.0, 40.0])
    causal = 2.0 * (-0.1 + 0.2 + 1.5 * np.exp(-dt / 15.0))  # the post spike reads x_pre
    acausal = 2.0 * (-0.1 + 0.2 - 0.5 * np.exp(dt / 30.0))  # the pre spike reads x_post
    np.testing.assert_allclose(rule.stdp_window(params, dt), np.where(dt > 0, causal, acausal))
    # coincident at the synapse (NEST's convention): neither spike reads the other's trace
    np.testing.assert_allclose(rule.stdp_window(params, np.array([0.0])), [2.0 * (-0.1 + 0.2)])


def test_taylor_window_with_weight_terms():
    rule = get_rule("taylor", mask="pre:001,post:101")
    params = rule.synapse_params([-0.5, 2.0], eta=0.1, tau_pre=20.0)
    # pre first at w = 4: dw1 = 0.1 * -0.5 * 4; then post reads x_pre = exp(-10/20) at w = 4 + dw1
    w1 = 4.0 + 0.1 * -0.5 * 4.0
    expected = 0.1 * -0.5 * 4.0 + 0.1 * 2.0 * np.exp(-0.5) * w1
    np.testing.assert_allclose(rule.stdp_window(params, np.array([10.0]), w=4.0), [expected])


def test_masks():
    assert parse_mask("pre:010, post:100") == {"pre": ("010",), "post": ("100",)}
    assert len(parse_mask(None)["pre"]) == 27
    for bad in ("pre:3", "middle:000", ""):
        with pytest.raises(ValueError):
            parse_mask(bad)
    for typo in ("pre:000,,post:100", "pre:000,"):  # a term lost between commas is not silently dropped
        with pytest.raises(ValueError, match="empty term"):
            parse_mask(typo)
    source = get_rule("taylor", mask="pre:010").source
    assert "th_pre_010 * x_post" in source and not re.search(r"th_(pre|post)_(?!010)\d{3}", source)  # unmasked: absent


def test_a_vector_of_coefficients_follows_the_mask():
    """The README's Oja rule, mask post:100,post:011 with coefficients +1, -1: given as a vector, the
    coefficients were applied in sorted term order (th_post_011 = +1: the sign-flipped rule)."""
    oja = get_rule("taylor", mask="post:100,post:011")
    assert oja.names == ["th_post_100", "th_post_011"]
    params = oja.synapse_params([1.0, -1.0])
    assert (params["th_post_100"], params["th_post_011"]) == (1.0, -1.0)
    assert params == oja.synapse_params({"th_post_100": 1.0, "th_post_011": -1.0})
    # by hand: at a post spike dw = eta (x_pre - x_post |w|), Oja's; the flipped rule gave +0.7
    x_pre, x_post, w = np.array([0.3]), np.array([0.5]), np.array([2.0])
    np.testing.assert_allclose(oja.weight_change(params, "post", x_pre, x_post, w), 1.0 * (0.3 - 0.5 * 2.0))
    assert get_rule("taylor", mask="post:100,pre:010,pre:000").names == ["th_post_100", "th_pre_010", "th_pre_000"]
    # one set of terms, one module: the NESTML source does not depend on the order
    assert oja.source == get_rule("taylor", mask="post:011,post:100").source
    assert get_rule("reward", mask="forget,pre:010").names == ["forget", "th_pre_010"]
    assert get_rule("reward", mask="pre:010,forget").names == ["th_pre_010", "forget"]
    assert get_rule("reward", mask="pre:100,pre:010").source == get_rule("reward", mask="pre:010,pre:100").source


def test_parameters_and_errors():
    rule = get_rule("doublet")
    assert rule.names == ["tau_pre", "tau_post", "alpha", "beta", "gamma", "kappa"]
    params = rule.synapse_params({"alpha": 0.5}, Wmax=-10.0)
    assert params["alpha"] == 0.5 and params["tau_pre"] == 20.0 and params["Wmax"] == -10.0
    with pytest.raises(UnknownParameterError, match="zeta"):
        rule.synapse_params({"zeta": 1.0})
    with pytest.raises(UnknownParameterError, match="etta"):
        rule.synapse_params(rule.defaults(), etta=1.0)
    with pytest.raises(ValueError, match="6 parameters"):
        rule.synapse_params([1.0, 2.0])
    with pytest.raises(UnknownRuleError, match="doublet, taylor"):
        get_rule("triplet")


def test_a_searched_parameter_given_as_a_setting_says_where_it_goes():
    """Tuning Vogels-Sprekeler's tau_pre for one's own model: the rule has tau_pre, so the message
    must not say it has none; it says to give it in theta."""
    with pytest.raises(UnknownParameterError, match=r"tau_pre searched, so set by theta.*\{\*\*theta, 'tau_pre': value\}"):
        get_rule("doublet").synapse_params(vogels_sprekeler(10.0), eta=1.0, tau_pre=30.0)
    # a rule from one's own file declares its searched parameters too: theta set them over the setting, silently
    own = rule_from_file(Path(__file__).parent.parent / "examples" / "own_rule" / "pair_stdp_synapse.nestml",
                         {"A_plus": {"low": -2.0, "high": 2.0}})
    with pytest.raises(UnknownParameterError, match="A_plus searched, so set by theta"):
        own.synapse_params([0.5], A_plus=1.0)



def test_a_setting_given_in_the_mapping_says_to_give_it_by_keyword():
    """A user rule built for one's own model searches nothing: its own parameters in the mapping
    were "no parameter(s) ['A_plus', ...]; searched: [], fixed: []", though the rule has them."""
    own = rule_from_file(Path(__file__).parent.parent / "examples" / "own_rule" / "pair_stdp_synapse.nestml")
    with pytest.raises(UnknownParameterError, match=r"A_plus, drift not searched, so set as keyword arguments, e.g. "
                                                    r"synapse_params\(\{...\}, A_plus=value\)"):
        own.synapse_params({"A_plus": 1.6, "drift": 0.37})
    assert own.synapse_params({}, A_plus=1.6, drift=0.37) == {"A_plus": 1.6, "drift": 0.37}

def test_layout_over_connection_types():
    layout = RuleLayout(get_rule("doublet"), ("EE", "IE"))
    theta = np.arange(12.0) + 10.0
    assert layout.size == 12 and layout.names[6] == "IE.tau_pre"
    np.testing.assert_array_equal(layout.split(theta)["IE"], theta[6:])
    low, high = layout.bounds()
    assert low[0] == 10.0 and high[5] == 2.0 and list(layout.log_mask()[:3]) == [True, True, False]
    assert layout.as_dict(theta)["IE.tau_pre"] == 16.0
    with pytest.raises(ValueError, match="6 values for the 12 parameters"):
        layout.as_dict(theta[:6])  # another experiment's result: refused, not labelled with the first 6 names


def test_vogels_sprekeler_coefficients():
    """alpha = -2 rho0 tau (Vogels et al. 2011): -0.4 for 10 Hz and 20 ms, -0.2 for 5 Hz; in the
    doublet's parameter order, so the values form a parameter vector."""
    assert vogels_sprekeler(10.0) == {"tau_pre": 20.0, "tau_post": 20.0, "alpha": -0.4, "beta": 0.0,
                                      "gamma": 1.0, "kappa": 1.0}
    assert vogels_sprekeler(5.0)["alpha"] == -0.2
    assert list(vogels_sprekeler(10.0)) == get_rule("doublet").names


def test_numpy_numbers_and_booleans_become_what_nest_is_meant_to_get():
    """vogels_sprekeler(np.float32(10)) carried float32's -0.4000000059604645 into NEST; an np.int64
    Wmax came back as numpy's; Wmax=True went to NEST as 1.0."""
    import numpy as np

    assert vogels_sprekeler(np.float32(10.0))["alpha"] == -0.4 and type(vogels_sprekeler(np.float32(10.0))["alpha"]) is float
    params = get_rule("doublet").synapse_params(vogels_sprekeler(10.0), Wmax=np.int64(-300), eta=np.float32(0.5))
    assert type(params["Wmax"]) is int and params["Wmax"] == -300 and type(params["eta"]) is float
    with pytest.raises(TypeError, match="Wmax = True: expected a number, not true or false"):
        get_rule("doublet").synapse_params(vogels_sprekeler(10.0), Wmax=True)


def test_an_undefined_setting_is_refused():
    """NEST takes NaN without a word, and the rule's clipping max(|Wmin|, NaN) then sends every
    weight to |Wmin| (a helper's -50 pA weight was -0.0 after 0.5 s, with eta = NaN)."""
    import math

    rule = get_rule("doublet")
    with pytest.raises(ValueError, match="eta = NaN: NEST would take it without a word"):
        rule.synapse_params(vogels_sprekeler(10.0), eta=math.nan)
    with pytest.raises(ValueError, match="alpha = NaN"):
        rule.synapse_params({**vogels_sprekeler(10.0), "alpha": math.nan})
    assert rule.synapse_params(vogels_sprekeler(10.0), Wmax=-math.inf)["Wmax"] == -math.inf  # no bound: allowed


def test_a_negative_wmin_with_a_positive_wmax_is_refused():
    """Wmin = -50 with Wmax = 100 was taken for a signed lower bound (as in NEST's
    stdp_dopamine_synapse); nestplast's rules clip |w| to [|Wmin|, |Wmax|], and a weight of 20 jumped
    to 50 at its first update without a word."""
    rule = get_rule("doublet")
    with pytest.raises(ValueError, match=r"Wmin = -50 with Wmax = 100: .* a floor of 50 on \|w\|, not a bound below 0"):
        rule.synapse_params(vogels_sprekeler(10.0), Wmin=-50.0, Wmax=100.0)
    # the same signs, or a floor on an inhibitory Wmax (as the experiments give it), are magnitudes as documented
    assert rule.synapse_params(vogels_sprekeler(10.0), Wmin=-5.0, Wmax=-300.0)["Wmin"] == -5.0
    assert rule.synapse_params(vogels_sprekeler(10.0), Wmin=5.0, Wmax=-300.0)["Wmin"] == 5.0
    # a rule of one's own with a Wmax keeps the weights at its sign too (the README: bounds a weight may
    # cross 0 within need other names); the compiled synapse refuses it in NEST, which made a search's
    # every evaluation fail where the file's Wmin went through here
    own = rule_from_file(Path(__file__).parent.parent / "examples" / "own_rule" / "pair_stdp_synapse.nestml")
    with pytest.raises(ValueError, match=r"Wmin = -5 with Wmax = 300: .* not a bound below 0; give Wmin >= 0"):
        own.synapse_params({}, Wmin=-5.0, Wmax=300.0)


def test_an_inhibitory_type_keeps_its_negative_wmin():
    """The search signs each type's Wmax after synapse_params: IE's Wmin = -0.1 (with IE's negative
    Wmax) is a magnitude as before, not refused as if Wmax were the rule's positive default."""
    import tomllib

    from nestplast import experiment, nest_settings
    from nestplast.runs import search_space

    exp = experiment.parse(tomllib.loads("[rule]\nplastic = ['IE']\nfixed = { Wmin = -0.1 }\n"))
    settings = nest_settings(exp, search_space(exp).start)
    assert settings["IE"]["Wmin"] == -0.1 and settings["IE"]["Wmax"] == -300.0


def test_synapse_params_refuses_what_is_not_a_number_and_vogels_sprekeler_a_negative_rate():
    """eta = "1.0" went through to nest.CopyModel, which refused it as a TypeMismatch of its own
    types; vogels_sprekeler(-10.0) gave alpha = +0.4, a rule without a target."""
    rule = get_rule("doublet")
    with pytest.raises(TypeError, match=r"eta = '1\.0': expected a number"):
        rule.synapse_params(vogels_sprekeler(10.0), eta="1.0", Wmax=-100.0)
    with pytest.raises(TypeError, match=r"alpha = None: expected a number"):
        rule.synapse_params({**vogels_sprekeler(10.0), "alpha": None})
    with pytest.raises(ValueError, match="target rate is in Hz, 0 or more, got -10.0"):
        vogels_sprekeler(-10.0)
    with pytest.raises(ValueError, match="tau is in ms"):
        vogels_sprekeler(10.0, 0.0)
    partial = rule.synapse_params({"alpha": -0.4}, eta=1.0)  # the docstring's promise: left out, the default
    assert partial["alpha"] == -0.4 and partial["kappa"] == dict(zip(rule.names, rule.defaults()))["kappa"]
    with pytest.raises(TypeError, match=r"target_rate_hz = '10': expected a number"):
        vogels_sprekeler("10")
    # a number NEST has no type for (it refused "value of key (eta) is not a known type") goes as a float
    assert rule.synapse_params(vogels_sprekeler(10.0), eta=Fraction(1, 2))["eta"] == 0.5


def test_the_python_update_refuses_what_it_cannot_compute():
    """An event name with a typo and a user's NESTML rule (no Python update) gave weight changes of 0;
    a parameter left out a bare KeyError."""
    rule = get_rule("doublet")
    params = rule.synapse_params(vogels_sprekeler(10.0), eta=1.0)
    assert rule.weight_change(params, "pre", 0.0, 0.5, 1.0) == pytest.approx(-0.4 + 0.5)
    with pytest.raises(ValueError, match="event is 'pre' or 'post', got 'Pre'"):
        rule.weight_change(params, "Pre", 0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="params has no 'eta'; give every parameter by name"):
        rule.weight_change({k: v for k, v in params.items() if k != "eta"}, "pre", 0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="params has no 'tau_pre'"):
        rule.stdp_window({k: v for k, v in params.items() if k != "tau_pre"}, [1.0])
    own = rule_from_file(Path(__file__).parent.parent / "examples" / "own_rule" / "pair_stdp_synapse.nestml")
    for compute in (lambda: own.weight_change({"eta": 1.0}, "pre", 1.0, 1.0, 5.0),
                    lambda: own.stdp_window({"tau_pre": 20.0, "tau_post": 20.0}, [1.0, -1.0])):
        with pytest.raises(ValueError, match="is compiled only: Python does not know its update"):
            compute()


def test_a_rule_whose_searched_parameters_change_nothing_is_told_apart():
    """Moved alone anywhere in their bounds, an MLP's output weights over a hidden layer held at 0
    change no update; the whole MLP, a doublet or a Taylor rule of |w| terms do."""
    from nestplast import experiment

    exp = experiment.parse({"rule": {"name": "mlp", "mlp": {"hidden": 3}}}, "<test>", to_run=False)
    assert not exp.searched_rule("IE").changes_nothing(exp.fixed("IE"))
    exp.rule.search = ["pre_W2_0", "post_W2_0"]
    assert exp.searched_rule("IE").changes_nothing(exp.fixed("IE"))
    for name, mask in (("doublet", None), ("taylor", "pre:001,post:101")):
        assert not get_rule(name, mask=mask).changes_nothing()
