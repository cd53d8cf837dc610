"""Inference from behaviour: the behaviour file format, the three-factor rule in NEST against
its analytic updates, the two-choice task, and a 2-coefficient rule recovered from the choices of
simulated animals."""

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from nestplast import behaviour, infer_choices
from nestplast.behaviour import BehaviourError
from nestplast.choice_task import ChoiceTask, log_likelihood, reward_signal
from nestplast.rules import get_rule

MASK = "pre:010,forget"
TRUE = {"th_pre_010": 1.0, "forget": 0.1, "eta": 5.0}


def valid_arrays(n_animals=2, n_trials=6):
    rng = np.random.default_rng(0)
    return {"animal": np.repeat(np.arange(n_animals), n_trials), "trial": np.tile(np.arange(n_trials), n_animals),
            "block": np.tile(np.repeat([0, 1], n_trials // 2), n_animals),
            "offered": np.tile([0, 1], (n_animals * n_trials, 1)),
            "choice": rng.integers(0, 2, n_animals * n_trials), "reward": rng.integers(0, 2, n_animals * n_trials),
            "p_reward": np.array([[0.2, 0.8], [0.9, 0.1]])}


def test_behaviour_files_round_trip(tmp_path):
    values = valid_arrays()
    data = behaviour.validate(values)
    behaviour.save(data, tmp_path / "b.npz")
    again = behaviour.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(again.choices, values["choice"].reshape(2, 6))
    np.testing.assert_array_equal(again.blocks, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(again.p_reward, values["p_reward"])
    # written where it is asked to be, as recording.save writes (numpy added .npz, and load found no file)
    behaviour.save(data, tmp_path / "no_suffix")
    np.testing.assert_array_equal(behaviour.load(tmp_path / "no_suffix").choices, again.choices)
    with pytest.raises(behaviour.BehaviourError, match="missing/x.npz: cannot write the choices"):
        behaviour.save(data, tmp_path / "missing" / "x.npz")


def test_a_file_of_the_other_task_says_which_task_it_is_for(tmp_path):
    """A recording given with --task choices said "duration: unknown field; did you mean 'description'?",
    choices given as a recording "animal: unknown field"."""
    from nestplast.recording import Recording, RecordingError, load, save

    behaviour.save(behaviour.validate(valid_arrays()), tmp_path / "choices.npz")
    with pytest.raises(RecordingError, match="holds animals' choices .* fit them with --task choices"):
        load(tmp_path / "choices.npz")
    save(Recording(pre_times=[1.0], pre_ids=[0], post_times=[2.0], post_ids=[0], duration=10.0, syn_pre=[0],
                   syn_post=[0], syn_sign=[1]), tmp_path / "spikes.npz")
    with pytest.raises(behaviour.BehaviourError, match="holds a recording of spikes .* without --task choices"):
        behaviour.load(tmp_path / "spikes.npz")


@pytest.mark.parametrize("field, change, message", [
    ("choice", None, "choice: missing"),
    ("choice", lambda v: v.astype(float) + np.r_[np.nan, np.zeros(len(v) - 1)], "choice: NaN or infinite at row 0"),
    ("choice", lambda v: np.r_[2, v[1:]], "choice: expected 0 or 1, got 2 at row 0"),
    ("reward", lambda v: v[:-1], "reward: 11 rows, but animal has 12"),
    ("offered", lambda v: np.r_[[[0, 0]], v[1:]], "offered: expected the odours 0 and 1"),
    ("animal", lambda v: v[::-1].copy(), "animal: animals must be numbered"),
    ("trial", lambda v: np.r_[v[1:], v[:1]], "trial: expected 0 .. 5"),
    ("block", lambda v: np.r_[v[:6], 1 - v[6:]], "block: every animal must see the same blocks"),
    ("offered", lambda v: v[:, 0], "offered: expected shape (n, 2)"),
    ("p_reward", lambda v: v[:1], "p_reward: expected shape (blocks, 2)"),
    ("choice", lambda v: v.astype(float) + 0.5, "choice: expected whole numbers"),
    # as labs code them: each named (rewards -1/1 were called a missed trial)
    ("choice", lambda v: v + 1, "(odours coded 1 and 2? subtract 1)"),
    ("reward", lambda v: 2 * v - 1, "(unrewarded coded -1? code it 0)"),
    ("reward", lambda v: np.r_[-1, v[1:]], "(a missed trial?"),
    ("block", lambda v: v + 1, "p_reward: expected shape (blocks, 2) with a row for each of the 3 blocks, got (2, 2) "
                               "(blocks numbered from 1? number them 0, 1, ...: block - 1)"),
])
def test_malformed_behaviour_is_rejected_naming_the_field(tmp_path, field, change, message):
    values = valid_arrays()
    if change is None:
        values.pop(field)
    else:
        values[field] = change(values[field])
    np.savez(tmp_path / "bad.npz", **values)
    with pytest.raises(BehaviourError, match=re.escape(message)) as err:
        behaviour.load(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(err.value)


def test_a_block_without_trials_is_refused_without_p_reward_too(tmp_path):
    """Blocks numbered from 1 with no p_reward ran with an empty block 0, without a word (with
    p_reward its row count caught them)."""
    values = valid_arrays()
    values.pop("p_reward")
    values["block"] = values["block"] + 1
    np.savez(tmp_path / "from1.npz", **values)
    with pytest.raises(BehaviourError, match=re.escape("block: block 0 has no trial: number the blocks 0, 1, 2, ... as "
                                                       "they come (numbered from 1? block - 1)")):
        behaviour.load(tmp_path / "from1.npz")
    values["block"] = np.where(values["block"] == 2, 3, values["block"]) - 1  # blocks 0 and 2
    np.savez(tmp_path / "gap.npz", **values)
    with pytest.raises(BehaviourError, match=re.escape("block: block 1 has no trial: number the blocks 0, 1, 2, ... as "
                                                       "they come")) as refused:
        behaviour.load(tmp_path / "gap.npz")
    assert "numbered from 1" not in str(refused.value)
    # made in Python: fitted, then saved to a file load() refused
    data = behaviour.validate(valid_arrays())
    with pytest.raises(BehaviourError, match=re.escape("Behaviour: blocks: block 0 has no trial: number the blocks 0, "
                                                       "1, 2, ... as they come (numbered from 1? blocks - 1)")):
        behaviour.Behaviour(data.choices, data.rewards, data.blocks + 1)


def test_reward_signal_and_likelihood_by_hand():
    rewards = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(reward_signal(rewards, 0, 10), [1.0, 0.0])  # nothing expected yet
    np.testing.assert_allclose(reward_signal(rewards, 3, 2), [1 - 0.5, 1 - 0.0])  # the mean of the last two
    p = np.array([[0.9, 0.2]])
    assert log_likelihood(p, np.array([[0, 1]]))[0] == pytest.approx(np.log(0.9) + np.log(0.8))


def test_comparison_is_a_paired_difference_over_held_out_animals():
    def result(per_animal):
        return infer_choices.ChoiceFitResult("reward", MASK, [], {}, {}, {}, [], [0, 1, 2], -1.0, -1.0,
                                             ll_held_out_per_animal=per_animal)
    c = infer_choices.compare(result([-0.9, -0.8, -0.85]), result([-1.0, -0.9, -0.9]))
    assert c["bits_per_trial"] == pytest.approx(np.mean([0.1, 0.1, 0.05]))
    assert c["low"] >= 0.05 - 1e-12 and c["high"] <= 0.1 + 1e-12 and c["animals"] == 3
    # 3 animals: the "95 % interval" was their range, [min, max] of the differences, with no word
    assert (c["low"], c["high"]) == pytest.approx((0.05, 0.1))
    assert "is about the range of their differences" in c["warning"] and "hold out more animals" in c["warning"]
    many = infer_choices.compare(result(list(np.linspace(-0.9, -0.8, 8))), result([-1.0] * 8))
    assert "warning" not in many and 0.1 < many["low"] < many["high"] < 0.2


def test_a_comparison_on_one_held_out_animal_has_no_interval_and_says_why():
    """4 animals, every 4th held out: the paired bootstrap over one animal printed a zero-width
    "95 % interval" [+0.0548, +0.0548] that read as certain; now the point value, no interval
    (None in comparison.json), and a warning naming what gives one."""
    from nestplast.commands.infer import comparison_text

    def result(per_animal):
        return infer_choices.ChoiceFitResult("reward", MASK, [], {}, {}, {}, [0, 1, 2], [3], -1.0, -1.0,
                                             ll_held_out_per_animal=per_animal)
    c = infer_choices.compare(result([-0.9]), result([-0.95]))
    assert c["bits_per_trial"] == pytest.approx(0.05) and c["animals"] == 1
    assert c["low"] is None and c["high"] is None
    assert "at least 2 held-out animals" in c["warning"] and "--hold-out 2" in c["warning"]
    text = comparison_text({"rule": "reward pre:010,forget", "compared_with": "reward pre:010", **json.loads(json.dumps(c))})
    assert "on 1 held-out animals: +0.0500 bits per trial, no interval" in text and "[" not in text
    assert "warning: no interval" in text
    # with 2 or more held-out animals the interval is there (with 2 or 3, the warning that it is their range)
    two = infer_choices.compare(result([-0.9, -0.8]), result([-0.95, -0.9]))
    assert two["low"] < two["high"] and "about the range" in two["warning"]


@pytest.fixture(scope="module")
def reward_module():
    from nestplast.builder import build

    return build(get_rule("reward", MASK), "iaf_psc_exp")


@pytest.mark.nest
def test_the_reward_rule_in_nest_equals_its_update_and_forgetting(nest, reward_module):
    """One synapse, presynaptic spikes at known times: |w| decays as exp(-forget t) between them
    and jumps by eta th R at each (R set between spikes as a common property of the model)."""
    from nestplast.kernel import install

    eta, th, forget, w0 = 1.0, 2.0, 0.5, 10.0
    nest.ResetKernel()
    install(reward_module)
    spikes = [10.0, 1010.0, 1510.0]
    pre = nest.Create("spike_generator", params={"spike_times": spikes})
    parrot = nest.Create("parrot_neuron")
    nest.Connect(pre, parrot)
    post = nest.Create(reward_module.neuron_model)
    nest.CopyModel(reward_module.synapse_model, "rw", {"eta": eta, "th_pre_010": th, "forget": forget, "Wmax": 100.0})
    nest.Connect(parrot, post, syn_spec={"synapse_model": "rw", "weight": w0, "delay": 1.0})
    connection = nest.GetConnections(synapse_model="rw")
    arrivals = np.array(spikes) + 1.0  # the parrot's spikes; NEST updates a synapse at its presynaptic spike time
    expected, t_last = w0, 0.0
    for k, signal in enumerate((0.0, 1.5, -0.5)):
        nest.SetDefaults("rw", {"R": signal})
        nest.Simulate(arrivals[k] + 5.0 - nest.biological_time)  # past the spike's arrival
        expected = expected * np.exp(-forget * (arrivals[k] - t_last) / 1000.0) + eta * th * signal
        t_last = arrivals[k]
        assert connection.get("weight") == pytest.approx(expected, rel=1e-12)


@pytest.mark.nest
def test_forgetting_alone_is_the_rule_without_a_reward_term(nest):
    """The mask "forget" (the null model of --compare forget) became pre:010 and forget: the rule
    compared with itself. Alone, it has the one coefficient, and in NEST a weight only decays,
    as exp(-forget t), whatever the reward signal at its spikes."""
    from nestplast.builder import build
    from nestplast.kernel import install

    rule = get_rule("reward", "forget")
    assert list(rule.names) == ["forget"] and "th_pre_010 real" not in rule.source
    module = build(rule, "iaf_psc_exp")
    forget, w0 = 0.5, 10.0
    nest.ResetKernel()
    install(module)
    spikes = [10.0, 1010.0, 1510.0]
    parrot = nest.Create("parrot_neuron")
    nest.Connect(nest.Create("spike_generator", params={"spike_times": spikes}), parrot)
    post = nest.Create(module.neuron_model)
    nest.CopyModel(module.synapse_model, "fg", {"eta": 1.0, "forget": forget, "Wmax": 100.0})
    nest.Connect(parrot, post, syn_spec={"synapse_model": "fg", "weight": w0, "delay": 1.0})
    connection = nest.GetConnections(synapse_model="fg")
    for arrival, signal in zip(np.array(spikes) + 1.0, (1.0, 1.5, -0.5)):
        nest.SetDefaults("fg", {"R": signal})
        nest.Simulate(arrival + 5.0 - nest.biological_time)
        assert connection.get("weight") == pytest.approx(w0 * np.exp(-forget * arrival / 1000.0), rel=1e-12)


@pytest.mark.nest
def test_the_task_learns_and_replays(reward_module):
    """Animals with the rule learn to prefer the better odour of each block; replaying their
    choices and rewards gives probabilities under which those choices are likelier than chance."""
    from nestplast.choice_task import run_animals

    rule = get_rule("reward", MASK)
    task = ChoiceTask(trials_per_block=40)
    params = rule.synapse_params({"th_pre_010": 1.0, "forget": 0.0}, eta=5.0)
    learnt = run_animals(rule, params, task, seeds=range(6), choice_seed=2)
    first = learnt.choices[:, 10:40].mean()  # block 0 rewards odour 1 (0.8)
    second = learnt.choices[:, 50:80].mean()  # block 1 rewards odour 0 (0.9)
    assert first > 0.6 and second < 0.45, (first, second)
    replayed = run_animals(rule, params, task, seeds=range(6), choices=learnt.choices, rewards=learnt.rewards)
    assert log_likelihood(replayed.p_choose_0, learnt.choices).mean() / task.n_trials > np.log(0.5)
    still = run_animals(rule, rule.synapse_params({"th_pre_010": 0.0, "forget": 0.0}, eta=5.0), task, seeds=range(6),
                        choice_seed=2)
    assert abs(still.choices.mean() - 0.5) < 0.1, "without learning the animals choose at chance"


@pytest.mark.nest
@pytest.mark.slow
def test_a_two_coefficient_rule_is_recovered_from_choices(tmp_path, reward_module):
    task = ChoiceTask(trials_per_block=40)
    data = infer_choices.generate(TRUE, mask=MASK, n_animals=12, task=task, seed=3)
    behaviour.save(data, tmp_path / "choices.npz")
    out = subprocess.run([sys.executable, "-m", "nestplast", "infer", str(tmp_path / "choices.npz"), "--task", "choices",
                          "--fixed", "eta=5", "--max-generations", "10", "--out", str(tmp_path / "run"), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fit = json.loads(out.stdout)["fit"]
    for name in ("th_pre_010", "forget"):
        low, high = fit["intervals"][name]
        assert low <= TRUE[name] <= high, (name, fit["coefficients"], fit["intervals"])
        assert fit["coefficients"][name] > 0, "the sign of each term"
    assert fit["ll_held_out_bits"] > -1.0, "the held-out animals' choices are predicted better than by chance"
    assert (tmp_path / "run" / "choices.png").stat().st_size > 1000


@pytest.mark.nest
def test_an_mlp_rule_with_the_reward_as_an_input_equals_numpy(nest):
    """The MLP rule reading the reward signal R (set between spikes, as the task does): each
    presynaptic spike's change equals the same MLP in numpy on the same inputs."""
    from nestplast.builder import build
    from nestplast.kernel import install

    rule = get_rule("mlp", inputs=("x_pre", "R", "w_abs"), layers=(4,))
    module = build(rule, "iaf_psc_exp")
    theta = np.random.default_rng(3).uniform(-1.0, 1.0, len(rule.names))
    params = rule.synapse_params(theta, eta=0.5, Wmax=100.0)
    nest.ResetKernel()
    install(module)
    spikes, signals = [10.0, 25.0, 60.0, 200.0], [0.7, -0.3, 1.2, 0.0]
    pre = nest.Create("spike_generator", params={"spike_times": spikes})
    parrot = nest.Create("parrot_neuron")
    nest.Connect(pre, parrot)
    post = nest.Create(module.neuron_model)
    nest.CopyModel(module.synapse_model, "mlp_r", params)
    nest.Connect(parrot, post, syn_spec={"synapse_model": "mlp_r", "weight": 20.0, "delay": 1.0})
    recorder = nest.Create("spike_recorder")
    nest.Connect(post, recorder)
    connection = nest.GetConnections(synapse_model="mlp_r")
    w, x, t_last = 20.0, 0.0, 0.0
    for t_spike, signal in zip(np.array(spikes) + 1.0, signals):  # the parrot's spike times
        nest.SetDefaults("mlp_r", {"R": signal})
        nest.Simulate(t_spike + 2.0 - nest.biological_time)
        x *= np.exp(-(t_spike - t_last) / params["tau_pre"])
        w = float(np.clip(w + rule.weight_change(params, "pre", x, 0.0, w, R=signal), 0.0, 100.0))
        x, t_last = x + 1.0, t_spike
        assert connection.get("weight") == pytest.approx(w, rel=1e-9)
    assert recorder.n_events == 0, "no postsynaptic spike, so no post-network update"
    assert abs(w - 20.0) > 0.01, "the rule changed the weight"


def infer_choices_cli(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nestplast", "infer", str(tmp_path / "choices.npz"), "--task", "choices",
                           "--out", str(tmp_path / "run"), *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--rule", "mlp", "--inputs", "x_pre,w_abs"], "--inputs: the choices task needs the reward signal R"),
    (["--rule", "mlp", "--inputs", "x_pre,R,nonsense"], "--rule mlp: MLP rule: inputs must be distinct names"),
    (["--rule", "mlp", "--mask", "pre:010"], "--mask: the mlp rule has no mask"),
    (["--rule", "mlp", "--hidden", "0"], "--hidden: expected an integer >= 1, got 0"),
    (["--rule", "taylor"], "fits the three-factor rule 'reward' or an 'mlp' rule"),
    # settings it cannot honour
    (["--hold-out", "1"], "--hold-out 1 holds out every animal"),  # was an IndexError from the first simulation
    (["--compare", "pre:010"], "--hold-out 4 holds out none of the 2 animals"),  # was a ValueError after both fits
    (["--fixed", "eta=5,R=1"], "--fixed: R is the reward signal the task sets"),  # was ignored without a word
    (["--fixed", "eta=0"], "--fixed: eta = 0: expected a nonzero learning rate"),  # was fitted: nothing learns
    # NEST refused these in the first simulation, after the run was created, and the run could
    # then be neither started again (it existed) nor resumed (the settings differed)
    (["--fixed", "eta=5,tau_post=0"], "--fixed: tau_post = 0: time constants must be finite and > 0 ms"),
    (["--fixed", "eta=5,Wmin=-300"], "--fixed: Wmin = -300: |Wmin| must be at most the weight bound |Wmax| = 200"),
    (["--fixed", "eta=inf"], "--fixed: eta = inf: must be a finite number"),
    # bounds that clipped every animal's start weight at its first spike, without a word
    (["--fixed", "eta=5,Wmax=10"], "--fixed: every animal's weights start at 30 (ChoiceTask.w_start), outside the "
                                   "rule's bounds [Wmin, Wmax] = [0, 10]"),
    # --compare forget compared the rule with itself (forget alone became pre:010 and forget), and
    # so did the rule given again: +0 bits [+0, +0], without a word
    (["--compare", "pre:010,forget", "--hold-out", "2"], "--compare pre:010,forget: the same rule as the one fitted"),
    (["--mask", "pre:010,forgetting"], "bad Taylor mask term 'forgetting'"),
    # a traceback after the headline
    (["--l1", "-1"], "--l1: expected a penalty weight >= 0, got -1"),
    (["--l1", "nan"], "--l1: expected a penalty weight >= 0, got nan"),
])
def test_the_choices_command_refuses_a_rule_or_settings_it_cannot_fit(tmp_path, args, message):
    behaviour.save(behaviour.validate(valid_arrays()), tmp_path / "choices.npz")
    out = infer_choices_cli(tmp_path, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.nest
def test_an_mlp_rule_is_fitted_to_choices_from_the_command_line(tmp_path, reward_module):
    """``--rule mlp`` with the reward among its inputs: the MLP's coefficients, intervals, the
    held-out likelihood and the plot, compared with the reward rule without forgetting."""
    data = infer_choices.generate(TRUE, mask=MASK, n_animals=4, task=ChoiceTask(trials_per_block=10), seed=5)
    behaviour.save(data, tmp_path / "choices.npz")
    out = infer_choices_cli(tmp_path, "--rule", "mlp", "--inputs", "x_pre,R,w_abs", "--hidden", "4", "--fixed", "eta=5",
                            "--compare", "pre:010", "--hold-out", "2", "--max-generations", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    rule = get_rule("mlp", inputs=("x_pre", "R", "w_abs"), layers=(4,))
    assert result["fit"]["rule"] == "mlp" and result["fit"]["names"] == list(rule.names)
    assert result["compare"]["names"] == ["th_pre_010"]
    assert np.isfinite(result["fit"]["ll_held_out_bits"]) and result["comparison"]["animals"] == 2
    # the compared rule was labelled "without" although the MLP has fewer terms in no sense
    labels = {k: result["comparison"][k] for k in ("rule", "compared_with")}
    assert labels["rule"].startswith("mlp ") and labels["compared_with"] == "reward pre:010", labels
    assert (tmp_path / "run" / "choices.png").stat().st_size > 1000
    # the report prints what the command did: the warnings, the rounded log-likelihoods, the comparison
    report = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path / "run")], capture_output=True,
                            text=True)
    assert report.returncode == 0, report.stderr
    assert all(f"warning: {w}" in report.stdout for w in result["fit"]["warnings"] + result["compare"]["warnings"])
    assert "rule mlp x_pre,R,w_abs, 4 hidden: " in report.stdout and "rule reward pre:010: " in report.stdout
    assert f"{result['fit']['ll_held_out_bits']:.4f} bits held out" in report.stdout
    assert f"on 2 held-out animals: {result['comparison']['bits_per_trial']:+.4f} bits per trial" in report.stdout
    assert "choices.png" in report.stdout
    # --json as the command printed it (only the first fit's fit.json came out); its plots are the command's
    again = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path / "run"), "--json"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    again = json.loads(again.stdout)
    assert set(again) == {"fit", "compare", "comparison"} and again["comparison"] == result["comparison"]
    assert again["compare"]["coefficients"] == result["compare"]["coefficients"]
    # a comparison.json of nestplast 0.3.0, its labels "with" and "without", still reads
    kept = tmp_path / "run" / "comparison.json"
    old = json.loads(kept.read_text())
    kept.write_text(json.dumps({"with": old.pop("rule"), "without": old.pop("compared_with"), **old}))
    older = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path / "run")], capture_output=True,
                           text=True)
    assert older.returncode == 0 and older.stdout == report.stdout, older.stderr
    moved = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path / "run"), "--plots-to",
                            str(tmp_path / "plots")], capture_output=True, text=True)
    assert moved.returncode == 2 and "drawn by the infer command" in moved.stderr and not (tmp_path / "plots").exists()
    # the README's recipe for one's own network: fit.json named the rule "mlp" alone, which built the
    # default MLP (102 coefficients, no R), and nest.CopyModel refused nest_params
    import nest

    from nestplast import build, install

    fit = json.loads((tmp_path / "run" / "fit.json").read_text())
    module = build(get_rule(fit["rule"], mask=fit["mask"], **fit.get("options", {})))
    assert module.synapse_model == build(rule).synapse_model and module.path == build(rule).path
    nest.ResetKernel()
    install(module)
    nest.CopyModel(module.synapse_model, "fitted_rule", fit["nest_params"])
    held = nest.GetDefaults("fitted_rule")
    assert {k: held[k] for k in fit["nest_params"]} == pytest.approx(fit["nest_params"])


def test_unknown_fields_are_refused_not_ignored(tmp_path):
    """A misspelt optional field (p_rewards) was ignored, and the model's task silently lost the
    data's reward probabilities; a CSV got numpy's message about pickles."""
    values = valid_arrays()
    values["p_rewards"] = values.pop("p_reward")
    np.savez(tmp_path / "bad.npz", **values)
    with pytest.raises(BehaviourError, match="bad.npz: p_rewards: unknown field; did you mean 'p_reward'"):
        behaviour.load(tmp_path / "bad.npz")
    (tmp_path / "choices.csv").write_text("animal,trial,block,choice,reward\n0,0,0,1,1\n")
    with pytest.raises(BehaviourError, match="choices.csv: .*CSV or text file") as err:
        behaviour.load(tmp_path / "choices.csv")
    assert "pickle" not in str(err.value)


@pytest.mark.nest
def test_a_fit_to_one_animal_says_it_has_no_interval_and_nothing_held_out(tmp_path, reward_module):
    """One animal: the bootstrap over animals has nothing to resample and no animal is held out;
    the command printed '-' and 'nan bits held out' without saying why."""
    data = infer_choices.generate(TRUE, mask=MASK, n_animals=1, task=ChoiceTask(trials_per_block=10), seed=5)
    behaviour.save(data, tmp_path / "choices.npz")
    out = infer_choices_cli(tmp_path, "--fixed", "eta=5", "--max-generations", "2", "--bootstrap", "5", "--no-plots")
    assert out.returncode == 0, out.stderr
    assert "n/a held out" in out.stdout and "nan" not in out.stdout, out.stdout
    assert "plots in" not in out.stdout  # none were made
    # the progress lines' loss is in nats, the summary's log-likelihood in bits: one line says so
    assert ("loss: the choices' cross-entropy per trial in nats (the summary gives it as a log-likelihood in bits, "
            "-loss / ln 2)") in out.stdout.splitlines()
    assert "warning: no intervals" in out.stdout and "warning: no animal held out" in out.stdout
    kept = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert any("no intervals" in w for w in kept["warnings"])


@pytest.mark.nest
def test_the_command_compares_on_one_held_out_animal_without_a_zero_width_interval(tmp_path, reward_module):
    """The tester's case, as small as it runs: 4 animals, every 4th held out (the default), --compare."""
    data = infer_choices.generate(TRUE, mask=MASK, n_animals=4, task=ChoiceTask(trials_per_block=5), seed=5)
    behaviour.save(data, tmp_path / "choices.npz")
    out = infer_choices_cli(tmp_path, "--fixed", "eta=5", "--compare", "pre:010", "--population-size", "2",
                            "--max-generations", "1", "--bootstrap", "0", "--no-plots")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("infer: ") and f"choices in {tmp_path / 'choices.npz'}; results in {tmp_path / 'run'}\n" \
        in out.stdout, "a first line says what runs and where its results go"
    assert "on 1 held-out animals: " in out.stdout and "bits per trial, no interval" in out.stdout, out.stdout
    assert "warning: no interval: " in out.stdout and "--hold-out 2" in out.stdout
    kept = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert kept["low"] is None and kept["high"] is None and kept["animals"] == 1 and "--hold-out 2" in kept["warning"]


def test_behaviour_made_in_python_is_checked_like_a_file():
    """Choices coded 1/2 in a Behaviour made in Python were fitted without a word (every choice but
    0 read as odour 1); a file's p_reward with a row too many, or of strings, gave a traceback from
    the first simulation, after the run folder was made, or from numpy."""
    data = behaviour.validate(valid_arrays())
    with pytest.raises(BehaviourError, match=r"choices: expected 0 or 1, got 2 \(animal 0, trial 0\)"):
        behaviour.Behaviour(data.choices + 1, data.rewards, data.blocks)
    with pytest.raises(BehaviourError, match="rewards: NaN or infinite \\(a missed trial"):
        behaviour.Behaviour(data.choices, np.where(data.rewards == 1, np.nan, 0.0), data.blocks)
    with pytest.raises(BehaviourError, match="animals x trials"):
        behaviour.Behaviour(data.choices.ravel(), data.rewards.ravel(), data.blocks)
    with pytest.raises(BehaviourError, match=r"p_reward: .*a row for each of the 2 blocks, got \(3, 2\)"):
        behaviour.Behaviour(data.choices, data.rewards, data.blocks, p_reward=[[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    for bad, message in (({"p_reward": [[2.0, 0.0], [0.5, 0.5]]}, r"p_reward: expected probabilities in \[0, 1\]"),
                         ({"p_reward": [["a", "b"], ["c", "d"]]}, "p_reward: expected numbers"),
                         ({"blocks": np.repeat([0.0, 0.5], 3)}, "blocks: expected whole numbers")):  # not cut to 0
        with pytest.raises(BehaviourError, match=message):
            behaviour.Behaviour(**{"choices": data.choices, "rewards": data.rewards, "blocks": data.blocks, **bad})
    as_lists = behaviour.Behaviour(data.choices.tolist(), data.rewards.tolist(), data.blocks.tolist(), p_reward=data.p_reward)
    assert infer_choices.task_for(as_lists) == infer_choices.task_for(data)  # blocks as a list: arrays all the same
    for p_reward, message in (([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]], r"a row for each of the 2 blocks, got \(3, 2\)"),
                              ([["a", "b"], ["c", "d"]], "expected numbers")):
        with pytest.raises(BehaviourError, match=f"x.npz: p_reward: .*{message}"):
            behaviour.validate({**valid_arrays(), "p_reward": np.array(p_reward)}, "x.npz")
    # missed trials masked: np.asarray dropped the mask, and each was fitted as the value under it
    missed = np.zeros(data.choices.shape, dtype=bool)
    missed[0, 2] = True
    with pytest.raises(BehaviourError, match=r"a masked array: the model takes no masked trials \(a missed trial"):
        behaviour.Behaviour(np.ma.masked_array(data.choices, mask=missed), data.rewards, data.blocks)
    # -1, as many tools code a missed trial, and strings: the message says how they must be coded
    with pytest.raises(BehaviourError, match=r"choices: expected 0 or 1, got -1 \(animal 0, trial 0\) \(a missed"):
        behaviour.Behaviour(np.where(missed | True, -1, 0), data.rewards, data.blocks)
    with pytest.raises(BehaviourError, match=r"x.npz: choice: expected 0 or 1, got -1 at row 0 \(a missed trial"):
        behaviour.validate({**valid_arrays(), "choice": np.full(12, -1)}, "x.npz")
    with pytest.raises(BehaviourError, match=r"choice: expected integers coded 0 and 1 \(the odours"):
        behaviour.validate({**valid_arrays(), "choice": np.array(list("ab" * 6))}, "x.npz")


@pytest.mark.parametrize("hold_out", [2.5, -1, True])
def test_a_hold_out_that_is_no_count_of_animals_is_refused(hold_out):
    """hold_out=2.5 held out animal 4 alone, -1 none (and the warning spoke of --hold-out 0)."""
    with pytest.raises(ValueError, match=r"hold_out: expected 0 \(no animal held out\) or an integer N >= 2"):
        infer_choices.split_animals(6, hold_out)
    assert infer_choices.split_animals(6, 2) == ([0, 2, 4], [1, 3, 5]) and infer_choices.split_animals(6, 0)[1] == []
    with pytest.raises(ValueError, match=r"n_animals: expected an integer >= 1, got 0"):  # an IndexError
        infer_choices.generate(TRUE, n_animals=0)


def test_a_fit_at_chance_in_every_trial_is_flagged():
    """A silent output neuron gives p = 0.5 in every trial: -1 bits, coefficients the choices do
    not constrain, and no warning said so."""
    def result(bits):
        return infer_choices.ChoiceFitResult("reward", MASK, [], {}, {}, {}, [0, 1, 2], [3], bits, -1.0 + 1e-15,
                                             ll_held_out_per_animal=[-1.0])
    assert any("gives every choice the probability 0.5" in w
               for w in infer_choices.choice_warnings(result(-0.9999999999999994), []))
    assert not any("gives every choice the probability 0.5" in w for w in infer_choices.choice_warnings(result(-0.98), []))
    # worse than chance on the very animals fitted: only the held-out ones were checked
    assert any("even the fitted animals' choices worse than chance (-1.013" in w
               for w in infer_choices.choice_warnings(result(-1.0131), []))
    assert not any("fitted animals" in w for w in infer_choices.choice_warnings(result(-0.98), []))
    # held-out animals exactly at chance, up to rounding (-1.0000000000000002): not "worse than chance"
    at_chance = infer_choices.ChoiceFitResult("reward", MASK, [], {}, {}, {}, [0, 1, 2], [3], -0.98,
                                              -1.0000000000000002, ll_held_out_per_animal=[-1.0])
    assert not any("worse than chance" in w for w in infer_choices.choice_warnings(at_chance, []))
    # ... but said: the held-out score of a model that never chose said "does not generalise" without a word
    assert [w for w in infer_choices.choice_warnings(at_chance, []) if "held-out" in w] == [
        "the fitted model gives every held-out choice the probability 0.5 (-1 bits per trial): its output neuron fired "
        "equally (or not at all) for both odours in the held-out animals' simulation, so the held-out score says "
        "nothing of how well the rule generalises"]
    assert not any("held-out choice the probability" in w
                   for w in infer_choices.choice_warnings(dataclasses.replace(at_chance, ll_held_out_bits=-0.97), []))
    below = dataclasses.replace(at_chance, ll_held_out_bits=-1.02)
    assert any("held-out animals' choices worse than chance" in w for w in infer_choices.choice_warnings(below, []))
    # -1.0001 was printed "worse than chance (-1.000 bits per trial against -1)", which read as a contradiction
    near = dataclasses.replace(at_chance, ll_fit_bits=-1.0001, ll_held_out_bits=-0.9999)
    said = infer_choices.choice_warnings(near, [])
    assert not any("worse than chance" in w for w in said)
    assert any("fitted animals' choices no better than chance (-1.0001 bits per trial" in w for w in said)
    assert any("held-out animals' choices no better than chance (-0.9999 bits per trial" in w for w in said)


@pytest.mark.nest
def test_a_fixed_wmax_is_the_bound_the_model_animals_get(tmp_path, reward_module):
    """--fixed Wmax was overridden by the task's w_max (200) without a word: fits with any Wmax were
    the same, and fit.json's nest_params said Wmax 100 (the rule's default) for a fit made with 200."""
    data = infer_choices.generate(TRUE, mask=MASK, n_animals=2, task=ChoiceTask(trials_per_block=5), seed=5)
    fits = [infer_choices.fit(data, MASK, {"eta": 5.0, **wmax}, hold_out=0, population_size=2, max_generations=1,
                              n_bootstrap=0, out=tmp_path / f"run{k}") for k, wmax in enumerate(({}, {"Wmax": 35.0}))]
    assert fits[0].nest_params["Wmax"] == 200.0 and fits[1].nest_params["Wmax"] == 35.0
    assert fits[0].ll_fit_bits != fits[1].ll_fit_bits, "the bound changed nothing in the simulation"
    # the file's path, as fit_rule takes a recording's: task_for failed with an AttributeError
    behaviour.save(data, tmp_path / "choices.npz")
    from_file = infer_choices.fit(tmp_path / "choices.npz", MASK, {"eta": 5.0}, hold_out=0, population_size=2,
                                  max_generations=1, n_bootstrap=0, out=tmp_path / "from-file")
    assert from_file.coefficients == fits[0].coefficients and from_file.ll_fit_bits == fits[0].ll_fit_bits
    with pytest.raises(TypeError, match="data: expected a Behaviour or a behaviour file's path, got dict"):
        infer_choices.fit({"choice": [0, 1]}, MASK, {"eta": 5.0})


def test_blocks_the_task_model_cannot_run_are_named_with_their_lengths():
    """Blocks out of order passed load and were then refused as "the data's blocks must be equal runs
    of trials, block 0 first", neither the field nor the runs named (nor the rule in README)."""
    values = valid_arrays()
    values.update(block=np.tile([0, 0, 1, 1, 0, 2], 2), p_reward=np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]]))
    data = behaviour.validate(values)
    with pytest.raises(ValueError, match=r"block: the task model runs blocks of trials numbered 0, 1, 2, ... in order, "
                                         r"each once; the data's blocks \[0, 1, 0, 2\] come in runs of \[2, 2, 1, 1\] "
                                         r"trials. A design that returns to a block \(A-B-A reversals\) numbers each "
                                         r"run as a block of its own"):
        infer_choices.task_for(data)
    with pytest.raises(ValueError, match="trials_per_block: 2 counts for 3 blocks"):
        ChoiceTask(trials_per_block=(3, 5))


@pytest.mark.nest
def test_blocks_of_unequal_lengths_are_run_as_they_come(tmp_path, reward_module):
    """A lab's blocks of 100, 70 and 70 trials were refused (the task model ran equal blocks only),
    although a replay needs no more than each trial's block."""
    values = valid_arrays()
    values.update(block=np.tile([0, 0, 1, 1, 1, 2], 2), p_reward=np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]]))
    task = infer_choices.task_for(behaviour.validate(values))
    assert task.block_sizes == (2, 3, 1) and task.n_trials == 6
    assert [task.block_of(t) for t in range(7)] == [0, 0, 1, 1, 1, 2, 3]
    # certain rewards: odour 0 in blocks 0 and 2, odour 1 in block 1, so each reward shows its trial's block
    sizes, certain = (3, 5, 2), ((1.0, 0.0), (0.0, 1.0), (1.0, 0.0))
    data = infer_choices.generate(TRUE, mask=MASK, n_animals=2, task=ChoiceTask(blocks=certain, trials_per_block=sizes),
                                  seed=5)
    rewarded_odour = np.array([0] * 3 + [1] * 5 + [0] * 2)
    assert data.blocks.tolist() == [0] * 3 + [1] * 5 + [2] * 2
    assert np.array_equal(data.rewards, (data.choices == rewarded_odour).astype(int))
    assert infer_choices.task_for(data).block_sizes == sizes
    behaviour.save(data, tmp_path / "choices.npz")
    fit = infer_choices.fit(tmp_path / "choices.npz", MASK, {"eta": 5.0}, hold_out=0, population_size=2,
                            max_generations=1, n_bootstrap=0, out=tmp_path / "fit")
    assert np.isfinite(fit.ll_fit_bits)


def test_behaviour_made_in_python_is_checked_as_a_file_is():
    """Animals with different trial counts gave numpy's "inhomogeneous shape"; description=None was
    saved as an object array that load() then refused."""
    from nestplast.behaviour import Behaviour

    with pytest.raises(BehaviourError, match="every animal must have the same number of trials"):
        Behaviour(choices=[[0, 1, 1, 0], [1, 1, 0]], rewards=[[1, 0, 1, 0], [0, 1, 1]], blocks=[0, 0, 1, 1])
    with pytest.raises(BehaviourError, match="description: expected a string, got None"):
        Behaviour(choices=[[0, 1], [1, 1]], rewards=[[1, 0], [0, 1]], blocks=[0, 1], description=None)


def test_a_python_fit_of_a_rule_without_the_reward_signal_is_refused_before_a_run(tmp_path):
    """An MLP without R (or a Taylor rule) ended in NEST's "Unaccessed elements in params: R" in the
    first simulation, and left a run that a rerun refused and a resume crashed in again."""
    data = behaviour.Behaviour(np.zeros((2, 4), int), np.ones((2, 4), int), np.zeros(4, int))
    for rule in (get_rule("mlp", inputs=("x_pre", "w_abs"), hidden=2), get_rule("taylor", "pre:100")):
        with pytest.raises(ValueError, match=rf"rule '{rule.name}' does not read the reward signal R"):
            infer_choices.fit(data, None, {"eta": 5.0}, rule=rule, max_generations=1, out=tmp_path / rule.name)
        assert not (tmp_path / rule.name).exists()


@pytest.mark.parametrize("counts, message", [({"max_generations": 0}, "max_generations: expected an integer >= 1, got 0"),
                                             ({"population_size": 1}, "population_size: expected an integer >= 2"),
                                             ({"n_bootstrap": 2.5}, "n_bootstrap: expected an integer, got float")])
def test_a_python_choices_fit_refuses_counts_it_cannot_take(tmp_path, counts, message):
    """max_generations=0 meant no limit to pycma: the fit ran without end (the recording's fit refused it)."""
    data = behaviour.Behaviour(np.zeros((2, 4), int), np.ones((2, 4), int), np.zeros(4, int))
    with pytest.raises((ValueError, TypeError), match=message):
        infer_choices.fit(data, out=tmp_path / "fit", **counts)
    assert not (tmp_path / "fit").exists()


def test_choices_all_of_one_odour_are_named_a_bias():
    """Every animal chose odour 1 in every trial (also where it paid 10 %): fitted as learning, -0.66
    bits held out, well above chance, and no word."""
    one = behaviour.Behaviour(np.ones((3, 4), int), np.array([[1, 0, 1, 0]] * 3), np.zeros(4, int))
    result = infer_choices.ChoiceFitResult("reward", MASK, [], {}, {}, {}, [0, 1], [2], -0.66, -0.64)
    assert [w for w in infer_choices.choice_warnings(result, [], one) if "a bias, not learning" in w] == [
        "every choice of every animal is odour 1: a bias, not learning from rewards; the coefficients describe it, "
        "not a learning rule"]
    mixed = dataclasses.replace(one, choices=np.array([[1, 0, 1, 1]] * 3))
    assert not any("a bias" in w for w in infer_choices.choice_warnings(result, [], mixed))


def test_generate_refuses_what_fit_refuses_and_names_the_mask():
    """generate took eta = 0 and a Wmin above the start weight, which fit refuses; a coefficient of
    another mask was "no fixed parameter(s) ['forget']", the mask unnamed."""
    truth = {"th_pre_010": 1.0, "forget": 0.1, "eta": 5.0}
    with pytest.raises(ValueError, match="eta = 0: expected a nonzero learning rate"):
        infer_choices.generate({**truth, "eta": 0.0}, n_animals=1)
    with pytest.raises(ValueError, match=r"outside the rule's bounds \[Wmin, Wmax\] = \[50, 200\]"):
        infer_choices.generate({**truth, "Wmin": 50.0}, n_animals=1)
    with pytest.raises(ValueError, match=r"params: forget not among the coefficients of the mask 'pre:010' \(th_pre_010\)"):
        infer_choices.generate(truth, mask="pre:010", n_animals=1)
