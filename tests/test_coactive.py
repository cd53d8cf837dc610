"""Co-active rules: one recurrent network with a different rule on each plastic connection type
(a doublet rule on EE, an MLP rule on IE), one NESTML neuron carrying both synapses. Each type's
weights must follow its own rule: with the other type's rule silenced (all its coefficients 0),
the co-active run equals the single-type run of the same rule, weight for weight."""

from pathlib import Path

import numpy as np
import pytest

from nestplast import experiment
from nestplast.builder import build
from nestplast.evaluate import Evaluator
from nestplast.experiment import ExperimentError
from nestplast.networks import Trial

EE_DOUBLET = [20.0, 20.0, 0.0, -0.4, 1.0, 1.0]  # tau_pre, tau_post, alpha, beta, gamma, kappa
EE_SILENT = [20.0, 20.0, 0.0, 0.0, 0.0, 0.0]


def network(plastic, by_type=None) -> experiment.Experiment:
    return experiment.parse({
        "rule": {"name": "doublet", "plastic": plastic, "fixed": {"eta": 0.5}, "by_type": by_type or {}},
        "network": {"n_e": 60, "n_i": 15, "p": 0.2},
        "objective": {"target_rate": 10.0, "t_train": 1.0, "t_score": 0.5, "rate_band": [0.0, 1000.0]}},
        "<test>")


def final_weights(exp, module, theta, seed=3):
    evaluator = Evaluator(exp, module)
    net = evaluator.build(theta, Trial(0, seed))
    start = evaluator.weights(net)
    evaluator.simulate(net)
    return start, evaluator.weights(net)


@pytest.fixture(scope="module")
def coactive():
    exp = network(["EE", "IE"], {"IE": {"name": "mlp"}})
    return exp, build(exp.module_rules(), exp.rule.neuron)


def mlp_theta(exp, scale):
    rng = np.random.default_rng(1)
    return scale * rng.uniform(-1.0, 1.0, len(exp.searched_rule("IE").names))


@pytest.mark.nest
def test_each_connection_type_follows_its_own_rule(coactive):
    exp, module = coactive
    assert exp.layout().size == 6 + len(exp.searched_rule("IE").names)
    assert "_and_" in module.neuron_model and set(module.synapse_models) == {"doublet", "mlp"}
    ie = mlp_theta(exp, 0.5)

    # the IE rule silenced: EE learns exactly as in the run where only EE is plastic
    start, both = final_weights(exp, module, [*EE_DOUBLET, *np.zeros_like(ie)])
    _, alone = final_weights(network(["EE"]), build(network(["EE"]).module_rules(), "iaf_psc_exp"), EE_DOUBLET)
    np.testing.assert_allclose(both["EE"], alone["EE"], rtol=1e-12)
    assert np.abs(both["EE"] - start["EE"]).max() > 1.0, "EE learnt"
    np.testing.assert_array_equal(both["IE"], start["IE"])

    # the EE rule silenced: IE learns exactly as in the run where only IE (the MLP) is plastic
    only_ie = network(["IE"], {"IE": {"name": "mlp"}})
    start, both = final_weights(exp, module, [*EE_SILENT, *ie])
    _, alone = final_weights(only_ie, build(only_ie.module_rules(), "iaf_psc_exp"), ie)
    np.testing.assert_allclose(both["IE"], alone["IE"], rtol=1e-12)
    assert np.abs(both["IE"] - start["IE"]).max() > 1.0, "IE learnt"
    np.testing.assert_array_equal(both["EE"], start["EE"])

    # both at once: both types move, and each differs from its single-type run (they share the activity)
    start, both = final_weights(exp, module, [*EE_DOUBLET, *ie])
    assert all(np.abs(both[ct] - start[ct]).max() > 1.0 for ct in ("EE", "IE"))


def test_per_type_rules_are_validated():
    with pytest.raises(ExperimentError, match="rule.by_type.EI"):
        network(["EE", "IE"], {"EI": {"name": "mlp"}})  # EI is not plastic
    with pytest.raises(ExperimentError, match="rule.by_type.IE.name"):
        network(["EE", "IE"], {"IE": {"name": "nosuchrule"}})
    with pytest.raises(ExperimentError, match="rule.by_type"):
        network(["EE", "IE"], {"IE": {"nam": "mlp"}})
    with pytest.raises(ExperimentError, match="one module holds one"):
        experiment.parse({"rule": {"name": "taylor", "mask": "pre:000", "plastic": ["EE", "IE"],
                                   "by_type": {"IE": {"mask": "post:100"}}}})
    exp = network(["EE", "IE"], {"IE": {"search": ["alpha", "kappa"], "fixed": {"eta": 2.0}}})
    assert exp.layout().names == [*(f"EE.{n}" for n in exp.searched_rule().names), "IE.alpha", "IE.kappa"]
    assert exp.fixed("IE") == {"eta": 2.0} and exp.fixed("EE") == {"eta": 0.5}
    assert len(exp.module_rules()) == 1, "one synapse model serves both types"


@pytest.mark.nest
def test_a_types_own_fixed_settings_add_to_the_rules(nest):
    """rule.fixed = { eta = 0.5 } and by_type.IE.fixed = { Wmin = 0.1 }: IE learns at eta 0.5 too. The
    type's table replaced the rule's, so IE learnt at the rule's default eta of 1, twice as fast, without
    a word. Another rule on the type takes its own fixed settings only (the rule's may not be its)."""
    exp = network(["EE", "IE"], {"IE": {"fixed": {"Wmin": 0.1}}})
    assert exp.fixed("IE") == {"eta": 0.5, "Wmin": 0.1} and exp.fixed("EE") == {"eta": 0.5}
    module = build(exp.module_rules(), exp.rule.neuron)
    Evaluator(exp, module).build(EE_DOUBLET * 2, Trial(0, 3))
    settings = {ct: nest.GetDefaults(model) for ct in ("EE", "IE")
                for model in nest.synapse_models if model.endswith(f"{ct}_plastic")}
    assert settings["IE"]["eta"] == settings["EE"]["eta"] == 0.5 and settings["IE"]["Wmin"] == 0.1
    assert network(["EE", "IE"], {"IE": {"name": "mlp", "fixed": {"Wmin": 0.1}}}).fixed("IE") == {"Wmin": 0.1}
    # the same for one's own rule; the built-in rule of the default name is another rule than the file
    own = {"file": str(Path(__file__).resolve().parent.parent / "examples" / "own_rule" / "pair_stdp_synapse.nestml"),
           "parameters": {"A_plus": {"low": 0.0, "high": 1.0}}, "plastic": ["EE", "IE"], "fixed": {"tau_plus": 10.0}}
    assert experiment.parse({"rule": {**own, "by_type": {"IE": {"fixed": {"lr": 0.5}}}}}).fixed("IE") == {
        "tau_plus": 10.0, "lr": 0.5}
    assert experiment.parse({"rule": {**own, "by_type": {"IE": {"name": "doublet", "fixed": {"eta": 0.5}}}}}).fixed(
        "IE") == {"eta": 0.5}


def test_a_types_own_start_is_where_its_search_starts():
    """by_type.IE.start was checked against the bounds and then ignored: the search started every
    type at rule.start (alpha 1 where IE said -1). For the same rule it adds to rule.start, as fixed
    does; another rule on the type starts where its own table says."""
    from nestplast.runs import search_space

    exp = network(["EE", "IE"], {"IE": {"start": {"alpha": -1.0, "beta": 0.7}}})
    exp.rule.start = {"alpha": 1.0, "gamma": 0.2}
    start = dict(zip(*[search_space(exp).names, search_space(exp).start]))
    assert (start["EE.alpha"], start["EE.gamma"], start["EE.beta"]) == (1.0, 0.2, 0.0)
    assert (start["IE.alpha"], start["IE.gamma"], start["IE.beta"]) == (-1.0, 0.2, 0.7)
    mlp = network(["EE", "IE"], {"IE": {"name": "mlp", "mlp": {"hidden": 1}, "search": ["pre_b2"],
                                        "start": {"pre_b2": 0.5}}})
    assert dict(zip(search_space(mlp).names, search_space(mlp).start))["IE.pre_b2"] == 0.5


def test_ones_own_rules_label_given_for_a_type_says_to_leave_it_out():
    """name = "pair" labels the rule of rule.file; given again in by_type it read as an unknown built-in rule."""
    rule_file = Path(__file__).resolve().parent.parent / "examples" / "own_rule" / "pair_stdp_synapse.nestml"
    data = {"rule": {"file": str(rule_file), "name": "pair", "plastic": ["EE", "IE"],
                     "parameters": {"A_plus": {"low": -1.0, "high": 1.0}},
                     "by_type": {"EE": {"name": "pair", "fixed": {"drift": 0.1}}}}}
    with pytest.raises(experiment.ExperimentError, match="'pair' labels the rule of rule.file: to keep that rule on "
                                                         "EE, leave name out"):
        experiment.parse(data, "<test>")
    del data["rule"]["by_type"]["EE"]["name"]
    assert experiment.parse(data, "<test>").fixed("EE")["drift"] == 0.1


@pytest.mark.nest
def test_the_report_names_each_types_synapse_model_and_its_module(coactive, tmp_path, monkeypatch, nest):
    """A co-active run's module holds one synapse model per rule, and the report's settings per type
    did not say which model each goes with. It names them (from the cache: never compiling), and
    each type's settings are accepted by NEST's copy of the model named."""
    from nestplast import install
    from nestplast.analysis.search import nest_models, summarise, text
    from nestplast.store import RunStore
    from nestplast.tasks import Evaluation

    exp, module = coactive
    found = nest_models(exp)
    params = {"tau_m": 20.0, "refr_T": 2.0, "tau_syn_exc": 5.0, "tau_syn_inh": 10.0}  # NESTML's names
    assert found == {"module": module.name, "path": module.path, "neuron_model": module.neuron_model,
                     "neuron_params": params,
                     "synapse_models": {"EE": module.synapse_models["doublet"], "IE": module.synapse_models["mlp"]}}
    theta = [*EE_DOUBLET, *mlp_theta(exp, 0.5)]
    with RunStore.create(tmp_path / "run", experiment=exp.to_dict(), seed=1) as store:
        for trial in range(exp.trials.n):
            store.record_evaluation(Evaluation(generation=0, candidate=0, trial=trial, theta=theta, params={},
                                               seed=1, metrics={}, loss=1.0, status="ok"))
    summary = summarise(tmp_path / "run")
    words = text(summary, tmp_path / "run")
    assert f"  EE ({module.synapse_models['doublet']}): eta = 0.5" in words
    assert f'their module: nestplast.install("{module.path}")' in words
    # the rule connects only to the paired neuron, whose defaults (tau_m 10) are not the run's (20)
    assert (f"they connect only to its neuron {module.neuron_model}, which ran with tau_m = 20, refr_T = 2, "
            "tau_syn_exc = 5, tau_syn_inh = 10") in words
    nest.ResetKernel()
    install(summary["nest_models"]["path"])
    nest.Create(summary["nest_models"]["neuron_model"], params=summary["nest_models"]["neuron_params"])
    assert set(summary["best_nest_params"]) == {"EE", "IE"}
    for ct, settings in summary["best_nest_params"].items():
        nest.CopyModel(summary["nest_models"]["synapse_models"][ct], f"mine_{ct}", settings)
        held = nest.GetDefaults(f"mine_{ct}")
        assert {k: held[k] for k in settings} == pytest.approx(settings)
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "empty"))  # not compiled here: nothing named
    assert nest_models(exp) is None and summarise(tmp_path / "run")["nest_models"] is None
