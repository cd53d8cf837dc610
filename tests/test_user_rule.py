"""A user's own NESTML rule in a search: validated before anything is compiled, compiled through
the same cache, and evaluated exactly like the built-in rule it is equivalent to."""

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import read_store

from nestplast import experiment
from nestplast.builder import build
from nestplast.evaluate import Evaluator
from nestplast.experiment import ExperimentError
from nestplast.networks import Trial
from nestplast.store import RunStore
from nestplast.tasks import Task

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "own_rule"


def small(exp: experiment.Experiment) -> experiment.Experiment:
    exp.network.n_e, exp.network.n_i = 80, 20
    exp.objective.t_train, exp.objective.t_score = 1.0, 1.0
    exp.trials.n = 1
    return experiment.validate(exp)


@pytest.mark.nest
def test_own_rule_evaluates_exactly_as_the_builtin_rule_it_equals():
    """pair_stdp_synapse with (A_plus, A_minus, drift) = (g, -k, a) is the doublet rule with
    gamma = g, kappa = k, alpha = a, beta = 0: the same trial gives the same spikes and weights."""
    own = small(experiment.load(EXAMPLE / "experiment.toml"))
    doublet = small(experiment.default())
    g, k, a = 1.0, 1.0, -0.4
    trial = Trial(0, 12345, input_rate_scale=1.0)
    evaluations = []
    for exp, theta in ((own, (g, -k, a)), (doublet, (20.0, 20.0, a, 0.0, g, k))):
        evaluator = Evaluator(exp, build(exp.searched_rule(), exp.rule.neuron))
        evaluations.append(evaluator(Task(0, 0, trial, theta)))
    mine, reference = evaluations
    assert mine.status == reference.status == "ok", (mine.error, reference.error)
    assert mine.loss == reference.loss
    for key in ("rate_e", "rate_i", "cv_isi", "w_creep", "w_mean_IE"):
        assert mine.metrics[key] == reference.metrics[key], key
    np.testing.assert_array_equal(mine.metrics["trace"]["w_mean_IE"], reference.metrics["trace"]["w_mean_IE"])


@pytest.mark.nest
@pytest.mark.slow
def test_search_of_own_rule_from_the_example_experiment(tmp_path):
    exp_file = tmp_path / "experiment.toml"
    text = (EXAMPLE / "experiment.toml").read_text().replace("max_generations = 8", "max_generations = 2")
    exp_file.write_text(text + "\n[network]\nn_e = 80\nn_i = 20\n[objective]\nt_train = 1.0\nt_score = 1.0\n"
                               "[trials]\nn = 1\n")
    shutil.copy(EXAMPLE / "pair_stdp_synapse.nestml", tmp_path)
    out = subprocess.run([sys.executable, "-m", "nestplast.search", str(exp_file), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr
    with RunStore.open(tmp_path / "run", read_only=True) as store:
        assert store.counts()["generations"] == 2
        assert set(store.evaluations()[0].params) == {"IE.A_plus", "IE.A_minus", "IE.drift"}
    # the rule file changed under a stored run: resuming it with the file would mix two rules
    (tmp_path / "pair_stdp_synapse.nestml").write_text(
        (tmp_path / "pair_stdp_synapse.nestml").read_text().replace("lr real = 1.0", "lr real = 2.0"))
    resumed = subprocess.run([sys.executable, "-m", "nestplast.search", str(exp_file), "--out", str(tmp_path / "run"),
                              "--resume", "--max-generations", "3"], capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 2 and "pair_stdp_synapse.nestml changed" in resumed.stderr
    # the run's own copy is the way on, not a new run
    kept = tmp_path / "run" / "rule" / "pair_stdp_synapse.nestml"
    assert f"the run's own copy is {kept}: resume without the experiment file" in resumed.stderr, resumed.stderr
    # the report reads the rule the run ran, not the edited file (it failed on a parameter renamed since)
    (tmp_path / "pair_stdp_synapse.nestml").write_text(
        (tmp_path / "pair_stdp_synapse.nestml").read_text().replace("A_plus", "A_up"))
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--json"],
                            capture_output=True, text=True, cwd=ROOT)
    assert report.returncode == 0, report.stderr
    assert set(json.loads(report.stdout)["best_params"]) == {"IE.A_plus", "IE.A_minus", "IE.drift"}
    assert report.stderr.count(f"was edited since the run in {tmp_path / 'run'} began: the run's own copy, {kept}") == 1
    # the rule file gone (moved, or the run copied elsewhere): the run's own copy serves report and resume
    (tmp_path / "pair_stdp_synapse.nestml").unlink()
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--json"],
                            capture_output=True, text=True, cwd=ROOT)
    assert report.returncode == 0, report.stderr
    assert set(json.loads(report.stdout)["best_params"]) == {"IE.A_plus", "IE.A_minus", "IE.drift"}
    # README promises the best rule as an STDP window; a compiled-only rule has none, and the report says why
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--plots-to",
                             str(tmp_path / "plots")], capture_output=True, text=True, cwd=ROOT)
    assert report.returncode == 0 and (tmp_path / "plots" / "loss.png").is_file(), report.stderr
    assert not (tmp_path / "plots" / "stdp_window.png").exists()
    assert ("no stdp_window.png: the rule's update is compiled from NESTML only" in report.stdout) == (
        json.loads(subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--json"],
                                  capture_output=True, text=True, cwd=ROOT).stdout)["best"] is not None), report.stdout
    resumed = subprocess.run([sys.executable, "-m", "nestplast.search", "--out", str(tmp_path / "run"), "--resume",
                              "--max-generations", "3"], capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr
    assert read_store(tmp_path / "run", RunStore.counts, read_only=True)["generations"] == 3


def test_a_run_of_a_rule_file_set_in_python_by_a_relative_path_is_its_own_experiment(tmp_path, monkeypatch):
    """exp.rule.file = "my_rule.nestml" (relative to the working directory) was recorded as written;
    read back relative to the run's folder it was not found there, and nest_settings(RUN, ...) and
    run_search(RUN, RUN, resume=True) failed, telling the user to edit a file they never wrote."""
    import nestplast

    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE / "pair_stdp_synapse.nestml", tmp_path / "my_rule.nestml")
    exp = nestplast.default_experiment()
    exp.rule.file = "my_rule.nestml"
    exp.rule.parameters = {k: {"low": -2.0, "high": 2.0, "default": 0.0} for k in ("A_plus", "A_minus", "drift")}
    exp.network.n_e, exp.network.n_i = 20, 5
    exp.objective.t_train, exp.objective.t_score, exp.objective.chunk = 0.2, 0.2, 0.2
    exp.search.population_size, exp.search.max_generations, exp.trials.n = 2, 1, 1
    run = tmp_path / "runs" / "own"
    outcome = nestplast.run_search(exp, run)
    theta = [0.1, 0.2, 0.0]
    assert nestplast.nest_settings(run, theta) == nestplast.nest_settings(exp, theta)
    monkeypatch.chdir(tmp_path / "runs")  # elsewhere, as a notebook in another folder
    again = nestplast.run_search(run, run, resume=True)
    assert again.generations == outcome.generations == 1
    from nestplast.store import StoreError

    RunStore.create(tmp_path / "fit", experiment={"rule": "taylor"}, seed=1, meta={"kind": "infer"}).close()
    with pytest.raises(StoreError, match=r"fit holds an inference, not a search or a filter run: it has no "
                                         r"experiment \(a fit's settings are in its fit.json\)"):
        nestplast.nest_settings(tmp_path / "fit", theta)


def test_a_label_for_ones_own_rule_file_runs(tmp_path):
    """rule.name is "a label for your own rule" with rule.file: every run ended in KeyError, since the
    cached module (keyed by what compiles) held the model under the name of its first build."""
    import nestplast
    from nestplast.builder import build

    exp = experiment.load(write(tmp_path, None, "A_plus = { low = -2.0, high = 2.0, default = 0.0 }",
                                'name = "my_label"\n'))
    build(experiment.load(write(tmp_path, None, "A_plus = { low = -2.0, high = 2.0 }")).searched_rule())  # as built before
    exp.network.n_e, exp.network.n_i = 20, 5
    exp.objective.t_train, exp.objective.t_score, exp.objective.chunk = 0.2, 0.2, 0.2
    exp.search.population_size, exp.search.max_generations, exp.trials.n = 2, 1, 1
    assert nestplast.run_search(exp, tmp_path / "run").evaluations == 3  # 2 candidates and the mean
    assert list(build(exp.module_rules()).synapse_models) == ["my_label"]


def seconds(source: str) -> str:
    """The example rule with tau_plus declared in seconds (NEST holds times in ms)."""
    return source.replace("tau_plus ms = 20 ms @homogeneous", "tau_plus s = 0.02 s @homogeneous")


def write(tmp_path, rule_text: str | None, parameters: str, extra: str = "") -> Path:
    source = (EXAMPLE / "pair_stdp_synapse.nestml").read_text()
    (tmp_path / "rule.nestml").write_text(source if rule_text is None else rule_text(source))
    path = tmp_path / "exp.toml"
    path.write_text(f'[rule]\nfile = "rule.nestml"\n{extra}[rule.parameters]\n{parameters}\n')
    return path


@pytest.mark.parametrize("rule_text, parameters, extra, fragments", [
    (None, "A_plux = { low = 0.0, high = 1.0 }", "", ["A_plux", "not in the parameters block", "A_plus"]),
    (None, "A_plus = { low = 1.0, high = 0.0 }", "", ["rule.parameters.A_plus", "low < high"]),
    (None, "A_plus = { low = 0.0 }", "", ["rule.parameters.A_plus", "low and high"]),
    (None, "", "", ["rule.parameters", "at least one"]),
    (None, "A_plus = { low = 0.0, high = 1.0 }", 'weight = "weight"\n', ["weight variable 'weight'", "state"]),
    (None, "A_plus = { low = 0.0, high = 1.0 }", "fixed = { tau_plux = 3.0 }\n", ["rule.fixed", "tau_plux"]),
    # the rule was named 'doublet' (the experiment's default name) though the file's is searched
    (None, "A_plus = { low = 0.0, high = 1.0 }", 'search = ["A_minus"]\n',
     ["rule.search: expected parameters of rule 'pair_stdp_synapse': A_plus"]),
    (lambda s: s.replace("Wmax real", "W_max real").replace("Wmax", "W_max"), "A_plus = { low = 0.0, high = 1.0 }",
     "", ["needs a parameter Wmax"]),
    (lambda s: s.replace("model pair_stdp_synapse:", ""), "A_plus = { low = 0.0, high = 1.0 }", "",
     ["rule.nestml", "model NAME"]),
    # a typo in the declaration: the message said only that A_plus is not declared
    (lambda s: s.replace("A_plus real = 0.0", "A_plus real 0.0"), "A_plus = { low = 0.0, high = 1.0 }", "",
     ["A_plus not in the parameters block", "('A_plus real 0.0 @homogeneous') is no declaration"]),
    # a state variable searched: the hint pointed at an ODE line elsewhere in the file as a broken declaration
    (None, "pre_trace = { low = 0.0, high = 1.0 }", "", ["pre_trace not in the parameters block",
                                                          "pre_trace is a state variable (line"]),
    # the network's CopyModel sets Wmax from network.w_max: a searched Wmax would change nothing
    (None, "Wmax = { low = 10.0, high = 300.0 }", "", ["rule.parameters.Wmax", "network.w_max"]),
    # NESTML converts the file's 0.02 s to 20 (ms) in NEST, but a value nestplast sets arrives as it is
    (seconds, "tau_plus = { low = 0.005, high = 0.1, log = true }", "",
     ["rule.parameters.tau_plus", "declares tau_plus in s", "1 s = 1000"]),
    (seconds, "A_plus = { low = 0.0, high = 1.0 }", "fixed = { tau_plus = 0.02 }\n",
     ["rule.fixed.tau_plus", "declares tau_plus in s"]),
    # a negative time constant ran (the built-in rules refuse it in NESTML): searched, or fixed
    (None, "tau_plus = { low = -100.0, high = -10.0, default = -20.0 }", "",
     ["rule.parameters.tau_plus: a time constant", "expected low > 0"]),
    (None, "A_plus = { low = 0.0, high = 1.0 }", "fixed = { tau_plus = -5.0 }\n",
     ["rule.fixed.tau_plus: expected a time constant in ms, at least network.resolution", "got -5.0"]),
    # in seconds in a file in ms: traces gone within a step, and every rule alike, without a word
    (None, "A_plus = { low = 0.0, high = 1.0 }", "fixed = { tau_plus = 0.02 }\n",
     ["rule.fixed.tau_plus: expected a time constant in ms, at least network.resolution (0.1 ms; seconds meant?)",
      "got 0.02"]),
    (None, "tau_plus = { low = 0.005, high = 0.1, log = true }", "",
     ["rule.parameters.tau_plus (its low bound): expected a time constant in ms, at least network.resolution",
      "got 0.005"]),
    # NEST refused every candidate on IE (Wmax < 0 there): "The constraint 'Wmax >= 0' is violated!"
    (lambda s: s.replace("Wmax real = 100.0 @homogeneous", "Wmax real = 100.0 [[Wmax >= 0]] @homogeneous"),
     "A_plus = { low = 0.0, high = 1.0 }", "", ["rule.nestml:", "[[Wmax >= 0]]", "IE"]),
    # ... and "Weight and Wmax must have same sign: weight 1 with Wmax -300" (a Wmax per connection)
    (lambda s: s.replace("Wmax real = 100.0 @homogeneous", "Wmax real = 100.0"),
     "A_plus = { low = 0.0, high = 1.0 }", "", ["rule.nestml:", "IE", "w = 1.0", "mark Wmax @homogeneous"]),
    # every weight jumped to Wmin at its first update, and the run blamed a learning rate of 0
    (None, "A_plus = { low = 0.0, high = 1.0 }", "fixed = { Wmin = 500.0 }\n",
     ["Wmin of IE's rule (rule.fixed): expected at most the smallest start weight", "got 500.0"]),
])
def test_bad_own_rules_are_named_before_compiling(tmp_path, rule_text, parameters, extra, fragments):
    path = write(tmp_path, rule_text, parameters, extra)
    with pytest.raises(ExperimentError) as err:
        experiment.load(path)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_missing_rule_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[rule]\nfile = "nowhere.nestml"\n[rule.parameters]\nA = { low = 0.0, high = 1.0 }\n')
    with pytest.raises(ExperimentError, match="cannot read .*nowhere.nestml"):
        experiment.load(path)


@pytest.mark.nest
def test_a_rule_that_does_not_compile_names_its_file_and_line(tmp_path):
    from nestplast.builder import BuildError

    path = write(tmp_path, lambda s: s.replace("lr * A_plus * pre_trace", "lr * A_plus * no_such_trace"),
                 "A_plus = { low = 0.0, high = 1.0 }")
    exp = experiment.load(path)
    with pytest.raises(BuildError) as err:
        build(exp.searched_rule(), exp.rule.neuron)
    line = next(i for i, text in enumerate((tmp_path / "rule.nestml").read_text().splitlines(), 1)
                if "no_such_trace" in text and not text.lstrip().startswith("#"))
    assert f"rule.nestml:{line}" in str(err.value) and "no_such_trace" in str(err.value), str(err.value)


def test_a_syntax_error_names_the_rule_file(tmp_path):
    """NESTML reports a syntax error without its file ("GLOBAL"): the message names the user's."""
    from nestplast.builder import BuildError

    path = write(tmp_path, lambda s: s.replace("onReceive(pre_spikes):", "onReceive(pre_spikes)", 1),
                 "A_plus = { low = 0.0, high = 1.0 }")
    exp = experiment.load(path)
    with pytest.raises(BuildError) as err:
        build(exp.searched_rule(), exp.rule.neuron)
    assert f"{tmp_path / 'rule.nestml'}:" in str(err.value) and "GLOBAL" not in str(err.value), str(err.value)


@pytest.mark.parametrize("rule_text, fragments", [
    # NESTML compiled it as a second neuron: nest.Connect then found no synapse model of the name
    (lambda s: s.replace("model pair_stdp_synapse:", "model pair_stdp:"), ["'pair_stdp'", "ends in 'synapse'"]),
    # NESTML failed with a bare AssertionError ("Synapses only support one spiking input port")
    (lambda s: s.replace("post_spikes", "post_spike"), ["post_spikes <- spike"]),
    # compiled, learnt, and delivered nothing to the postsynaptic neuron
    (lambda s: s.replace("        emit_spike(w)\n", ""), ["never calls emit_spike"]),
])
def test_rules_nestml_would_compile_into_something_else_are_refused(tmp_path, rule_text, fragments):
    from nestplast.user_rules import UserRuleError

    path = write(tmp_path, rule_text, "A_plus = { low = 0.0, high = 1.0 }")
    with pytest.raises(ExperimentError) as err:
        experiment.load(path)
    assert all(f in str(err.value) for f in ["rule.nestml", *fragments]), str(err.value)
    with pytest.raises(UserRuleError) as err:  # and when built for one's own model
        build(tmp_path / "rule.nestml")
    assert all(f in str(err.value) for f in fragments), str(err.value)


def several_names_and_recordable(source: str) -> str:
    """The example rule with two NESTML forms of declaration: several names on one line, and a
    recordable state variable."""
    changed = (source.replace("        tau_plus ms = 20 ms @homogeneous\n        tau_minus ms = 20 ms @homogeneous\n",
                              "        tau_plus, tau_minus ms = 20 ms @homogeneous\n")
               .replace("        post_trace real = 0.0", "        recordable post_trace real = 0.0"))
    assert changed.count("tau_plus, tau_minus") == 1 and changed.count("recordable post_trace") == 1
    return changed


def test_every_form_of_declaration_is_read(tmp_path):
    """``tau_plus, tau_minus ms = ...`` declares both (it was refused: "tau_minus not in the parameters
    block"), and ``recordable post_trace`` is the trace post_trace (it was taken for a variable called
    recordable, so NESTML moved post_trace into the neuron, see the test below)."""
    path = write(tmp_path, several_names_and_recordable, "tau_minus = { low = 5.0, high = 50.0, default = 20.0 }")
    rule = experiment.load(path).searched_rule()
    assert rule.names == ["tau_minus"]
    assert {"tau_plus", "tau_minus", "Wmax"} <= set(rule.source_parameters)
    assert set(rule.synaptic_traces) == {"pre_trace", "post_trace"}


@pytest.mark.nest
def test_a_recordable_trace_stays_in_the_synapse(tmp_path, nest):
    """With the trace in the neuron, a CopyModel's tau_minus would not reach the trace it decays."""
    from nestplast.kernel import install

    path = write(tmp_path, lambda s: s.replace("        post_trace real", "        recordable post_trace real"),
                 "A_plus = { low = 0.0, high = 1.0 }")
    module = build(experiment.load(path).searched_rule())
    nest.ResetKernel()
    install(module)
    assert "post_trace" in nest.GetDefaults(module.synapse_model)
    assert "post_trace__for_pair_stdp_synapse" not in nest.GetDefaults(module.neuron_model)  # NESTML's name of a moved one


@pytest.mark.nest
def test_own_rule_file_builds_for_ones_own_model(tmp_path, nest):
    """``nestplast build my_rule.nestml`` (no experiment, nothing searched) prints an example that runs."""
    shutil.copy(EXAMPLE / "pair_stdp_synapse.nestml", tmp_path / "my_rule.nestml")
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "my_rule.nestml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    example = out.stdout.split("on an excitatory projection:")[1]
    assert "A_plus, A_minus, drift" in example  # the file's parameters, by its names
    nest.ResetKernel()
    scope: dict = {}
    exec(textwrap.dedent(example), scope)
    nest.Connect(nest.Create("spike_generator", params={"spike_times": [10.0]}), scope["pre"])
    meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": 0.1})
    nest.Connect(meter, scope["post"])
    nest.Simulate(30.0)
    assert np.max(meter.events["V_m"]) > -69.9  # ten excitatory spikes of 10 pA arrived
    assert nest.GetConnections(synapse_model="my_rule").weight == [10.0] * 10
    module = build(str(tmp_path / "my_rule.nestml"))  # the same module from Python
    assert f"module:        {module.path}\n" in out.stdout


@pytest.mark.nest
def test_the_example_for_ones_own_rule_names_units_and_a_wmax_that_cannot_be_negative(tmp_path, nest):
    """A rule with tau_plus in seconds: the example listed it without a word, and a user gave NEST the
    file's 0.02 (a trace 1000 x too short); a file whose constraint keeps Wmax >= 0 (NESTML's own
    stdp_synapse) was advised "inhibitory: Wmax < 0", which NESTML then refused."""
    text = seconds((EXAMPLE / "pair_stdp_synapse.nestml").read_text())
    text = text.replace("Wmax real = 100.0 @homogeneous", "Wmax real = 100.0 [[Wmax >= 0]] @homogeneous")
    (tmp_path / "my_rule.nestml").write_text(text)
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "my_rule.nestml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    example = out.stdout.split("on an excitatory projection:")[1]
    assert "# tau_plus is declared in s: NEST holds it in its own unit, 1000 x the number in s (times in ms)" in example
    assert "tau_minus is declared" not in example  # in ms: as NEST holds it
    assert "# Your file's constraint on Wmax forbids Wmax < 0: this rule takes positive weights only." in example
    nest.ResetKernel()
    scope: dict = {}
    exec(textwrap.dedent(example), scope)
    assert nest.GetDefaults("my_rule", "tau_plus") == 20.0  # the file's 0.02 s, as the comment says
    with pytest.raises(nest.NESTError, match="Wmax >= 0"):
        nest.SetDefaults("my_rule", {"Wmax": -100.0})


def test_own_rule_with_its_own_weight_name_builds_for_ones_own_model(tmp_path, nest):
    """A rule whose weight is not called w: the message says how to name it (not the experiment's
    rule.weight, which build() and the command line do not read), and --weight builds it."""
    text = re.sub(r"\bw\b", "g", (EXAMPLE / "pair_stdp_synapse.nestml").read_text())
    (tmp_path / "my_rule.nestml").write_text(text)
    command = [sys.executable, "-m", "nestplast", "build", str(tmp_path / "my_rule.nestml")]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "the weight variable 'w' is not in the state block (state: g," in out.stderr
    assert "--weight NAME" in out.stderr and "weight_variable='NAME'" in out.stderr
    out = subprocess.run([*command, "--weight", "g"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    nest.ResetKernel()
    scope: dict = {}
    exec(textwrap.dedent(out.stdout.split("on an excitatory projection:")[1]), scope)
    connections = nest.GetConnections(synapse_model="my_rule")
    assert connections.weight == [10.0] * 10 and connections.get("g") == [10.0] * 10  # NEST's weight is g
    # the rule has a Wmax, so the templates' sign check applies: the example says so
    assert "nest.Connect refuses a\n    # weight of the other sign" in out.stdout


@pytest.mark.nest
def test_the_example_for_ones_own_inhibitory_rule_runs(tmp_path, nest):
    """A file whose Wmax defaults to a negative value (an inhibitory rule): the printed example
    connected a weight of +10, which NEST refused ("Weight and Wmax must have same sign")."""
    text = (EXAMPLE / "pair_stdp_synapse.nestml").read_text().replace("Wmax real = 100.0", "Wmax real = -100.0")
    (tmp_path / "inh_synapse.nestml").write_text(text.replace("pair_stdp_synapse", "inh_synapse"))
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "inh_synapse.nestml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    example = out.stdout.split("on an inhibitory projection:")[1]
    assert "stands for your inhibitory neurons" in example and "{'Wmax': -100.0}" in example
    nest.ResetKernel()
    scope: dict = {}
    exec(textwrap.dedent(example), scope)
    assert nest.GetConnections(synapse_model="my_rule").weight == [-10.0] * 10


def test_what_nest_takes_as_it_is_is_accepted(tmp_path):
    """The refusals above are for what NEST would refuse or misread, not more: a Wmax per connection
    with a default weight of 0 or on an excitatory type, a constraint on EE, units NEST holds as they are."""
    def per_connection(source: str) -> str:
        return (source.replace("Wmax real = 100.0 @homogeneous", "Wmax real = 100.0 [[Wmax >= 0]]")
                .replace("tau_plus ms = 20 ms", "tau_plus ms = 0.02 s").replace("lr real", "lr 1/ms"))

    def on_inhibitory(old: str, new: str):
        return lambda source: source.replace(old, new)

    for rule_text, extra in ((per_connection, 'plastic = ["EE"]\n'),
                             (lambda s: per_connection(s).replace(" [[Wmax >= 0]]", "").replace(
                                 "w real = 1.0", "w real = 0.0"), ""),
                             # on IE: constraints a negative Wmax meets, a zero default weight with a unit
                             (on_inhibitory("Wmax real = 100.0 @homogeneous", "Wmax real = 100.0 [[Wmax <= 0]] @homogeneous"), ""),
                             (on_inhibitory("Wmax real = 100.0 @homogeneous",
                                            "Wmax real = 100.0 [[abs(Wmax) >= 1]] @homogeneous"), ""),
                             (lambda s: s.replace("Wmax real = 100.0 @homogeneous", "Wmax real = 100.0").replace(
                                 "w real = 1.0", "w pA = 0 pA"), "")):
        path = write(tmp_path, rule_text, "lr = { low = 0.1, high = 2.0 }",
                     extra + "fixed = { tau_plus = 20.0, tau_minus = 20.0 }\n")
        assert experiment.load(path).layout().names == [f"{'EE' if extra else 'IE'}.lr"]


def test_a_rule_file_given_relative_to_the_working_directory(tmp_path, monkeypatch):
    """rule.file is relative to the experiment file: written relative to where one runs, the message
    says so and what to write, instead of only that there is no such file."""
    shutil.copy(EXAMPLE / "pair_stdp_synapse.nestml", tmp_path)
    (tmp_path / "experiments").mkdir()
    path = tmp_path / "experiments" / "exp.toml"
    path.write_text('[rule]\nfile = "pair_stdp_synapse.nestml"\n[rule.parameters]\nA_plus = { low = 0.0, high = 1.0 }\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExperimentError, match="relative to the experiment file.*file = '../pair_stdp_synapse.nestml'"):
        experiment.load("experiments/exp.toml")


def test_a_weight_variable_named_weight_is_refused_before_compiling(tmp_path):
    """Named `weight`, the build ran NESTML for 10 s and ended in a jinja2 traceback from its templates."""
    text = re.sub(r"\bw\b", "weight", (EXAMPLE / "pair_stdp_synapse.nestml").read_text())
    (tmp_path / "my_rule.nestml").write_text(text)
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "my_rule.nestml"), "--weight",
                          "weight"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "a weight variable named 'weight' cannot be compiled" in out.stderr and "rename it" in out.stderr


@pytest.mark.parametrize("name", ["delay", "weight", "receptor_type"])
def test_a_name_nest_keeps_on_every_connection_is_refused_before_compiling(tmp_path, name):
    """A parameter called `delay` compiled, and then every evaluation failed ("can only be set via
    SetDefaults() or CopyModel()"); one called `weight` was refused as if the network's weights had
    the wrong sign."""
    from nestplast.user_rules import UserRuleError, rule_from_file

    text = re.sub(r"\blr\b", name, (EXAMPLE / "pair_stdp_synapse.nestml").read_text())
    (tmp_path / "my_rule.nestml").write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if re.match(rf"\s+{name}\b", row))
    with pytest.raises(UserRuleError, match=rf"my_rule.nestml:{line}: '{name}' is the name of NEST's own {name} of "
                                            r"every connection.*rename it"):
        rule_from_file(tmp_path / "my_rule.nestml", {"A_plus": {"low": 0.0, "high": 1.0}})


def test_the_names_nest_keeps_on_every_connection_are_all_known(nest):
    from nestplast.user_rules import NEST_CONNECTION_KEYS

    nest.ResetKernel()
    pre, post = nest.Create("parrot_neuron", 2)
    nest.Connect(pre, post)
    assert set(nest.GetDefaults("static_synapse")) | set(nest.GetConnections().get()) <= set(NEST_CONNECTION_KEYS)



def test_a_weight_variable_the_spikes_do_not_carry_is_refused(tmp_path):
    """rule.weight = "pre_trace" ran: the trace was recorded (and bounded) as the weight, and w,
    never set, reached the neuron."""
    from nestplast.user_rules import UserRuleError, rule_from_file

    rule_file = EXAMPLE / "pair_stdp_synapse.nestml"
    with pytest.raises(UserRuleError, match=r"the synapse's spikes carry the weight w \(emit_spike\), which is not "
                                            r"the weight variable 'pre_trace'"):
        rule_from_file(rule_file, {"A_plus": {"low": -1.0, "high": 1.0}}, weight_variable="pre_trace")
    # an expression of the weight variable is the weight variable's
    text = rule_file.read_text().replace("emit_spike(w)", "emit_spike(0.5 * (w + w))")
    assert text != rule_file.read_text()
    (tmp_path / "scaled_synapse.nestml").write_text(text)
    assert rule_from_file(tmp_path / "scaled_synapse.nestml", {"A_plus": {"low": -1.0, "high": 1.0}}).weight_variable == "w"


def test_a_file_whose_model_is_named_as_a_builtin_rule_is_refused_as_such(tmp_path):
    """A copy of doublet_synapse.nestml with a parameter added, its model name kept, beside the
    built-in doublet: refused with "the same variant of doublet_synapse ... got 'another mask, None'",
    naming the other type and a mask neither rule has."""
    text = (ROOT / "nestml_models" / "doublet_synapse.nestml").read_text()
    (tmp_path / "doublet_synapse.nestml").write_text(
        text.replace("    parameters:\n", "    parameters:\n        extra real = 1.0 @homogeneous\n", 1))
    (tmp_path / "e.toml").write_text('[rule]\nfile = "doublet_synapse.nestml"\nplastic = ["EE", "IE"]\n'
                                      'by_type = { EE = { name = "doublet" } }\n'
                                      '[rule.parameters]\nalpha = { low = -1.0, high = 1.0 }\n')
    with pytest.raises(ExperimentError, match=rf"rule.by_type.EE: expected one NESTML model per name in a module: "
                                              rf"your file {re.escape(str(tmp_path))}/doublet_synapse.nestml \(IE\) and "
                                              r"the built-in rule 'doublet' \(EE\) both define doublet_synapse; rename "
                                              r"the model in your file"):
        experiment.load(tmp_path / "e.toml")
