"""Experiment files are validated before anything runs, with the file, the key and what was expected."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nestplast import experiment
from nestplast.experiment import ExperimentError
from nestplast.runs import search_space

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_shipped_experiments_are_valid():
    names = experiment.available()
    assert {"default", "spikes_reference"} <= set(names)
    for name in names:
        exp = experiment.load(name)
        assert exp.layout().size > 0


def test_default_layout_is_the_doublet_rule_on_ie():
    exp = experiment.default()
    assert exp.layout().names == ["IE.tau_pre", "IE.tau_post", "IE.alpha", "IE.beta", "IE.gamma", "IE.kappa"]
    space = search_space(exp)
    z = space.to_search([20, 50, 0, 0, 1, 1])
    np.testing.assert_allclose(z, [*np.log10([20, 50]), 0, 0, 1, 1])
    np.testing.assert_allclose(space.from_search(z), [20, 50, 0, 0, 1, 1])


@pytest.mark.parametrize("text, fragments", [
    ("[rule]\nname = 'nosuch'\n", ["rule.name", "nosuch", "doublet", "taylor"]),
    ("[rule]\nnmae = 'doublet'\n", ["nmae", "expected one of", "name"]),
    ("[network]\nn_e = 'many'\n", ["network.n_e", "integer", "many"]),
    ("[network]\np = 1.5\n", ["network.p", "probability", "1.5"]),
    ("[rule]\nplastic = ['XY']\n", ["rule.plastic", "EE", "XY"]),
    ("[rule]\nsearch = ['alpha', 'zeta']\n", ["rule.search", "zeta", "kappa"]),
    ("[rule]\nfixed = { etta = 1.0 }\n", ["rule.fixed", "etta", "eta"]),
    ("[rule]\nfixed = { alpha = 1.0 }\n", ["rule.fixed", "alpha", "leave it out of rule.search", "rule.start"]),
    # rule.by_type.IE inherits rule.fixed: the message names where the key was written
    ("[rule]\nname = 'taylor'\nmask = 'pre:000'\nfixed = { tau_pre = 10.0 }\n"
     "by_type = { IE = { name = 'doublet', mask = 'pre:000' } }\n", ["rule.by_type.IE.mask"]),
    ("[rule]\nname = 'taylor'\nmask = 'pre:000'\nfixed = { tau_pre = 10.0 }\nby_type = { IE = { name = 'doublet' } }\n",
     ["rule.fixed (inherited by rule.by_type.IE, which may set its own fixed)", "tau_pre"]),
    ("[objective]\nconstraints = { rate_x = [1, 2] }\n", ["objective.constraints.rate_x", "cv_isi"]),
    ("[objective]\nrate_band = [100, 1]\n", ["objective.rate_band", "low < high"]),
    ("[search]\npopulation_size = 1\n", ["search.population_size", ">= 2"]),
    ("[trials]\nweight_scale = [0, 1]\n", ["trials.weight_scale", "0 < low"]),
    ("unknown_table = 3\n", ["unknown top-level key(s) unknown_table", "expected one of"]),
    ("n_e = 100\n[network]\np = 0.2\n", ["unknown top-level key(s) n_e (n_e belongs in [network])"]),
    ("[rule\nname=1", ["not valid TOML"]),
    ("[rule]\nname = 'taylor'\nmask = 'pre:999'\n", ["rule.mask", "pre:999"]),
    # every simulation would fail inside NEST: refused before the run
    ("[network]\nneuron_params = { tau_m = 20.0, tau_mm = 1.0 }\n", ["network.neuron_params.tau_mm", "tau_m, ", "t_ref"]),
    # NEST's name beside NESTML's for one parameter: the unknown key is still the one named
    ("[network]\nneuron_params = { tau_syn_ex = 5.0, tau_syn_exc = 2.0, bogus = 1.0 }\n",
     ["network.neuron_params.bogus"]),
    ("[rule]\nneuron = 'iaf_cond_exp'\n", ["network.neuron_params.tau_m", "default neuron_params are for iaf_psc_exp",
                                           "g_L"]),
    ("[network]\nneuron_params = { tau_V_bar = 50.0 }\n", ["network.neuron_params.tau_V_bar"]),  # no rule reads V_bar
    ("[filter]\nconstraints = {}\n", ["filter.constraints", "at least one metric"]),  # it accepted every rule
    # one module holds one MLP shape: the message spoke of masks and said "got None"
    ("[rule]\nplastic = ['EE', 'EI', 'IE']\nby_type = { EI = { name = 'mlp', mlp = { hidden = 2 } }, "
     "IE = { name = 'mlp', mlp = { hidden = 3 } } }\n",
     ["rule.by_type.IE: expected the same variant of mlp_synapse", "one MLP shape", "got \"another MLP shape, {'hidden': 3}\""]),
    # NEST's and NESTML's name of one parameter: the one written last won, silently
    ("[network]\nneuron_params = { tau_syn_exc = 5.0, tau_syn_ex = 1.0 }\n",
     ["network.neuron_params.tau_syn_ex: expected one name per parameter (tau_syn_exc"]),
    # iaf_psc_exp's pA as iaf_cond_exp's nS: every candidate saturated at 1/t_ref and blew up alike
    ("[rule]\nneuron = 'iaf_cond_exp'\n[network]\nneuron_params = { t_ref = 2.0 }\n",
     ["network.weights, network.w_max, network.input_weight: expected the neuron iaf_cond_exp's own (nS"]),
    # the reward signal only the choice task sets: R stayed 0, every candidate ran alike (a "family" of the whole box)
    ("[rule]\nname = 'reward'\nmask = 'pre:010'\n", ["rule (on IE)", "without the reward signal R", "got 'reward'"]),
    ("[rule]\nplastic = ['EE', 'IE']\nby_type = { IE = { name = 'mlp', mlp = { inputs = ['x_pre', 'R'] } } }\n",
     ["rule.by_type.IE (on IE)", "R stays 0"]),
    ("[search]\nstrategy = 'prior'\nsigma0 = 0.05\n", ["search.sigma0", "no step unless search.strategy = 'cmaes'"]),
    # NEST rounds a delay to whole steps (1.55 ran as 1.6, recorded as 1.55); a step below its tic fails
    ("[network]\ndelay = 1.55\n", ["network.delay", "a multiple of network.resolution (0.1 ms)", "got 1.55"]),
    ("[network]\ndelay = 5000.0\n", ["network.delay", "less than the simulated time", "= 5000 ms)"]),
    ("[network]\nresolution = 0.0005\ndelay = 0.001\n[objective]\nchunk = 0.1\n",
     ["network.resolution", "a multiple of NEST's tic, 0.001 ms"]),
    # start weights clipped to w_max on some trials, or jumping to Wmin: not the trials the file says
    ("[trials]\nweight_scale = [8.0, 10.0]\n", ["trials.weight_scale", "network.weights.IE x 10 = 600 is above "
                                                "network.w_max.IE x trials.w_max_scale's low 1 = 300"]),
    ("[trials]\nw_max_scale = [0.01, 0.02]\n", ["trials.w_max_scale", "x trials.w_max_scale's low 0.01 = 3,"]),
    ("[rule]\nfixed = { Wmin = 100.0 }\n", ["Wmin of IE's rule", "trials.weight_scale's low = 60", "got 100.0"]),
    ("[rule]\nby_type = { IE = { fixed = { Wmin = 61.0 } } }\n", ["Wmin of IE's rule (rule.by_type.IE.fixed)"]),
    # a negative Wmin from E read as a bound below 0: a floor of |Wmin| on |w| in nestplast's rules
    ("[rule]\nplastic = ['EE', 'IE']\nfixed = { Wmin = -0.1 }\n",
     ["Wmin of EE's rule (rule.fixed): expected at least 0 on an excitatory connection", "a floor of 0.1 on |w|"]),
    # the drive's own keys: overwritten by input_rate, or a hidden second drive beside the generator
    ("[network]\nneuron_params = { tau_m = 20.0, drive_rate = 8000.0 }\n",
     ["network.neuron_params.drive_rate", "not of its drive (network.input_rate"]),
    ("[network]\ndrive = 'poisson_generator'\nneuron_params = { drive_weight = 25.0 }\n",
     ["network.neuron_params.drive_weight"]),
    ("[objective]\nchunk = 0.00025\n", ["objective.chunk", "seconds that are whole steps of network.resolution"]),
    # only the resolution changed: the seconds and the ms are both named, and the resolution as a cause
    ("[network]\nresolution = 0.15\n[objective]\nchunk = 0.1\n",
     ["objective.chunk: expected seconds that are whole steps of network.resolution = 0.15 ms (or a resolution "
      "that divides 100 ms)"]),
    ("[rule]\nsearch = ['alpha', 'alpha']\n", ["rule.search: expected each parameter once", "got ['alpha', 'alpha']"]),
    # one neuron has no other of its population to draw inputs from: NEST's Connect hung, deaf to Ctrl-C
    ("[network]\nn_i = 1\n", ["network.n_i: expected at least 2 in a recurrent network"]),
    ("[network]\nn_e = 1\n", ["network.n_e: expected at least 2 in a recurrent network"]),
    # seconds meant: a silent network, every candidate scored alike
    ("[network]\nneuron_params = { tau_m = 0.02, t_ref = 2.0, tau_syn_ex = 5.0, tau_syn_in = 10.0 }\n",
     ["network.neuron_params.tau_m: expected a time constant in ms, at least network.resolution (0.1 ms; seconds "
      "meant?), got 0.02"]),
    ('name = ""\n', ["name: expected a folder's name: not empty, no /, got ''"]),
    ('name = "../escaped"\n', ["name: expected a folder's name: not empty, no /, got '../escaped'"]),
    # a key of another section: named, not placed
    ("[objective]\nmax_generations = 3\n", ["objective: unknown key(s) max_generations (max_generations belongs in "
                                             "[search])"]),
    ("[network]\nname = 'x'\n", ["(name belongs in [rule] or at the top, above every [section])"]),
    # the list of what may be fixed named Wmax, which is then refused (network.w_max sets it)
    ("[rule]\nfixed = { etaa = 1.0 }\n", ["rule.fixed: expected fixed parameters of rule 'doublet': Wmin, eta, got"]),
    # no loss is negative: the run went on to max_generations
    ("[search]\ntarget_loss = -1.0\n", ["search.target_loss", "a loss >= 0"]),
    # an MLP's output weights over a hidden layer held at 0: every candidate the same rule, the run went on
    ("[rule]\nname = 'mlp'\nmlp = { hidden = 3 }\nsearch = ['pre_W2_0', 'post_W2_0']\n",
     ["rule.search (on IE): expected parameters that change the rule's update", "an MLP's hidden layer at 0"]),
    ("[rule]\nplastic = ['EE', 'IE']\nfixed = { eta = 1.0 }\n[rule.by_type.IE]\nname = 'mlp'\n"
     "mlp = { hidden = 3 }\nsearch = ['pre_W2_0', 'post_W2_0']\n", ["rule.by_type.IE.search (on IE)"]),
    ("[objective]\nt_score = 1.00005\n", ["objective.t_score", "whole steps of network.resolution = 0.1 ms"]),
    # infinities and NaN pass a plain `> 0`: every evaluation would fail, or the run never stop
    ("[objective]\nt_train = inf\n", ["objective.t_train", "positive number of seconds", "inf"]),
    ("[search]\ntarget_loss = nan\n", ["search.target_loss", "number", "nan"]),
    ("[network]\nw_max = { IE = inf }\n", ["network.w_max", "positive magnitudes"]),
    # valid alone, but every evaluation would fail (KeyError: 'I') or score NaN (no rate bin)
    ("[network]\nkind = 'single_neuron'\n[objective]\npopulation = 'I'\n", ["objective.population", "'E' for"]),
    ("[objective]\nt_score = 0.05\n", ["objective.t_score", "at least 0.1 s with a target_rate"]),
    # no rule could score 0: the constraint penalises the target itself
    ("[objective]\ntarget_rate = 8.0\nconstraints = { rate_e = [20.0, 30.0] }\n",
     ["objective.target_rate: expected a rate inside objective.constraints.rate_e (20 to 30 Hz)", "got 8.0"]),
    # pycma's own options: refused before the run if pycma does not know them, takes them from
    # another key, cannot evaluate them, or would fail on them only in its first tell
    ("[search]\ncma_options = { tolfunn = 1e-3 }\n", ["search.cma_options: tolfunn", "did you mean tolfun?"]),
    ("[search]\ncma_options = { popsize = 20 }\n", ["search.cma_options: popsize", "search.population_size"]),
    ("[search]\ncma_options = { maxiter = 20 }\n", ["search.cma_options: maxiter", "search.max_generations"]),
    ("[search]\ncma_options = { typical_x = [1, 2] }\n", ["search.cma_options: typical_x", "a number, true/false"]),
    ("[search]\ncma_options = { CMA_elitist = 'yes' }\n", ["search.cma_options", "not a safe string"]),
    ("[search]\ncma_options = { CMA_mu = 100 }\n", ["search.cma_options", "could not run its first 3 generations",
                                                    "mu=100"]),
    # injected solutions that a population of 2 leaves unused: pycma failed at generation 1, and on every resume
    ("[search]\npopulation_size = 2\ncma_options = { mean_shift_line_samples = true }\n",
     ["search.cma_options", "could not run its first 3 generations", "unused injected direction"]),
    ("[search]\nstrategy = 'prior'\ncma_options = { tolfun = 1e-3 }\n", ["search.cma_options", "strategy = 'cmaes'"]),
])
def test_bad_files_name_the_key(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ExperimentError) as err:
        experiment.load(path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_target_rate_none_is_written_as_the_options_table_says(tmp_path):
    """TOML has no null: "none" is the options table's word for no target-rate term."""
    exp = experiment.load(write(tmp_path, "[objective]\ntarget_rate = 'none'\n"))
    assert exp.objective.target_rate is None and exp.objective.constraints
    with pytest.raises(ExperimentError, match="a target_rate or some constraints"):
        experiment.load(write(tmp_path, "[objective]\ntarget_rate = 'none'\nconstraints = {}\n"))


def test_missing_file_lists_shipped():
    with pytest.raises(ExperimentError, match="default"):
        experiment.load("/nonexistent/exp.toml")


def test_search_cli_reports_bad_file_without_traceback(tmp_path):
    path = write(tmp_path, "[network]\nkind = 'lattice'\n")
    out = subprocess.run([sys.executable, "-m", "nestplast.search", str(path), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "network.kind" in out.stderr and "recurrent" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()  # nothing ran


def test_default_toml_is_the_options_tables_defaults():
    shipped = experiment.load("default")
    assert shipped == experiment.validate(experiment.Experiment(source=shipped.source))
    assert experiment.default().to_dict() == shipped.to_dict() and shipped.network.drive == "internal"  # resolved


def test_readme_lists_every_option_as_the_table_says():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```toml\n# nestplast experiment options") + len("```toml\n")
    assert readme[start:readme.index("```", start)].rstrip() == experiment.show_defaults().rstrip(), \
        "README's options block is out of date: paste `python -m nestplast.search --show-defaults`"


def test_show_defaults_is_valid_toml_of_the_defaults():
    import tomllib

    data = tomllib.loads(experiment.show_defaults())
    assert experiment.parse(data) == experiment.validate(experiment.Experiment(source="<dict>"))
    # with an experiment named, its values (it printed the defaults before): the same experiment read back
    out = subprocess.run([sys.executable, "-m", "nestplast.search", "spikes_reference", "--seed", "7", "--show-defaults"],
                         capture_output=True, text=True, check=True).stdout
    assert "key = value in " in out.splitlines()[0] and "spikes_reference.toml" in out.splitlines()[0]
    shown = experiment.parse(tomllib.loads(out))
    wanted = experiment.load("spikes_reference")
    wanted.seed = 7
    assert (shown.to_dict(), shown.network.n_e) == (wanted.to_dict(), 8000)


def test_a_key_set_to_none_survives_the_table(tmp_path):
    """target_rate = "none" came out of --show-defaults commented out, so a file made from the table
    brought the 10 Hz target back without a word; unquoted, none was only "not valid TOML"."""
    import tomllib

    file = tmp_path / "no_target.toml"
    file.write_text('[objective]\ntarget_rate = "none"\nconstraints = { rate_e = [5.0, 15.0] }\n')
    exp = experiment.load(file)
    table = experiment.show_defaults(exp)
    assert 'target_rate = "none"  #' in table
    assert experiment.parse(tomllib.loads(table)).objective.target_rate is None
    file.write_text('[objective]\ntarget_rate = none\nconstraints = { rate_e = [5.0, 15.0] }\n')
    with pytest.raises(experiment.ExperimentError, match='none is written in quotes: key = "none"'):
        experiment.load(file)


@pytest.mark.parametrize("text, fragments", [
    ("[rule]\nfixed = { Wmax = 50.0 }\n", ["rule.fixed.Wmax", "network.w_max"]),
    ("[rule]\nfixed = { eta = 0.0 }\n", ["rule.fixed.eta", "nonzero"]),
    ("[rule]\nfixed = { eta = inf }\n", ["rule.fixed.eta: expected a finite number, got inf"]),
    ("[rule]\nplastic = ['IE', 'EE']\nby_type = { EE = { fixed = { Wmin = -inf } } }\n",
     ["rule.by_type.EE.fixed.Wmin: expected a finite number, got -inf"]),
    ("[network]\nneuron_params = { tau_m = inf }\n", ["network.neuron_params.tau_m: expected a finite number"]),
    ("seed = -1\n", ["seed", "2**32"]),
    ("[search]\nstrategy = 'bayes'\n", ["search.strategy", "'cmaes' or 'prior'"]),
    ("[search]\nstrategy = 'prior'\n[rule]\nstart = { alpha = 0.5 }\n",
     ["rule.start (on IE): expected no start for a searched parameter unless search.strategy = 'cmaes'", "['alpha']"]),
    ("[rule]\nparameters = { a = { low = 0, high = 1 } }\n", ["rule.parameters", "rule.file"]),
])
def test_inert_or_ignored_keys_are_refused(tmp_path, text, fragments):
    with pytest.raises(ExperimentError) as err:
        experiment.load(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


# ---- an experiment changed in Python (a notebook) is held to the file's checks

def test_a_misspelt_option_set_in_python_is_refused():
    exp = experiment.default()
    with pytest.raises(AttributeError, match="did you mean 'max_generations'"):
        exp.search.max_generation = 5  # would otherwise be ignored: the run keeps 12 generations
    with pytest.raises(AttributeError, match="no option 'seeds'"):
        exp.seeds = 3


@pytest.mark.parametrize("section, key, value, expected", [
    ("network", "n_e", 20.5, "network.n_e: expected an integer"),
    ("search", "population_size", 2.5, "search.population_size: expected an integer"),
    ("trials", "n", True, "trials.n: expected an integer"),
    (None, "seed", 3.5, "seed: expected an integer"),  # before: a run folder left behind, then a TypeError
    ("objective", "target_rate", "10", "objective.target_rate: expected a number"),
    ("network", "neuron_params", {"tau_m": "x"}, "network.neuron_params.tau_m: expected a number"),
    (None, "network", {"n_e": 20}, "network: expected a NetworkSpec"),
])
def test_values_set_in_python_are_type_checked(section, key, value, expected):
    exp = experiment.default()
    setattr(getattr(exp, section) if section else exp, key, value)
    with pytest.raises(ExperimentError, match=expected):
        experiment.validate(exp)


def test_numpy_values_and_tuples_set_in_python_become_the_files_types():
    import json

    exp = experiment.default()
    exp.seed, exp.network.resolution, exp.rule.plastic = np.int64(3), np.float32(0.125), ("IE",)
    exp.objective.t_train, exp.objective.t_score, exp.objective.chunk = 0.5, 0.5, 0.25
    experiment.validate(exp)
    assert type(exp.seed) is int and type(exp.network.resolution) is float and exp.rule.plastic == ["IE"]
    json.dumps(exp.to_dict())  # what a run records (numpy's int64 is not JSON)


def test_a_recorded_run_is_read_under_the_checks_of_its_time(tmp_path):
    """The checks that refuse a run whose every evaluation would fail apply to a run about to start,
    not to reading one recorded before they existed: its report must still show what happened."""
    recorded = experiment.default().to_dict()
    recorded["objective"]["t_score"] = 0.05
    with pytest.raises(ExperimentError, match="objective.t_score"):
        experiment.parse(recorded)
    assert experiment.run_experiment(recorded, tmp_path).objective.t_score == 0.05


@pytest.mark.parametrize("objective, fragments", [
    # a target typed in kHz (0.01 for 10 Hz) lies below the default band's 0.1 Hz
    ("target_rate = 0.01\n", ["objective.target_rate", "inside objective.rate_band", "0.1 to 100 Hz", "0.01"]),
    ("target_rate = 10.0\nrate_band = [20.0, 100.0]\n", ["objective.target_rate", "20 to 100 Hz"]),
    ("rate_band = [5.0, 5.0]\n", ["objective.rate_band", "low < high", "[5.0, 5.0]"]),
])
def test_a_band_that_excludes_the_target_is_refused(tmp_path, objective, fragments):
    """A rule that holds the target rate must not count as a blow-up (before: accepted, and every
    candidate near the target was cut short and scored 219-320; an empty band failed every evaluation)."""
    with pytest.raises(ExperimentError) as err:
        experiment.load(write(tmp_path, "[objective]\n" + objective))
    for fragment in fragments:
        assert fragment in str(err.value)
    assert experiment.load(write(tmp_path, "[objective]\ntarget_rate = 40.0\nrate_band = [20.0, 100.0]\n"))


def test_weights_given_for_some_connection_types_only_are_refused(tmp_path):
    """``weights = { IE = 80.0 }`` to change one type: the others were gone, not their defaults, and
    every evaluation failed with KeyError: 'EE' (scored 320, the run stopped as flat)."""
    with pytest.raises(ExperimentError, match=r"network.weights: expected a weight for every connection type of "
                                              r"the recurrent network \(EE, EI, IE, II; missing EE, EI, II\)"):
        experiment.load(write(tmp_path, "[network]\nweights = { IE = 80.0 }\n"))
    # a single neuron has EE and IE afferents only
    single = experiment.load(write(tmp_path, "[network]\nkind = 'single_neuron'\nweights = { EE = 30.0, IE = 60.0 }\n"))
    assert single.network.weights == {"EE": 30.0, "IE": 60.0}


def test_a_neuron_params_table_without_the_defaults_is_noted(doublet_module, nest):
    """`neuron_params = { tau_m = 20.0 }` (tau_m's default) ran with the NESTML neuron's tau_syn of
    2 ms, not the defaults' 5 and 10, without a word: the headline now says so."""
    from nestplast.kernel import install
    from nestplast.networks import neuron_params

    partial = experiment.parse({"network": {"neuron_params": {"tau_m": 20.0}}}, "<test>")
    assert experiment.replaced_neuron_defaults(partial) == (
        "note: network.neuron_params replaces its default table: without t_ref 2, tau_syn_ex 5, tau_syn_in 10 (the "
        "defaults), the neuron iaf_psc_exp runs with its own NESTML values of them; give them in the table to keep them")
    # what the note says, read from NEST: the neuron as built has other synaptic time constants than the defaults
    nest.ResetKernel()
    install(doublet_module)
    built = nest.Create(doublet_module.neuron_model, params=neuron_params(partial.network, doublet_module))
    assert built.tau_m == 20.0 and (built.tau_syn_exc, built.tau_syn_inh) != (5.0, 10.0)
    # all of them given, by NEST's names or NESTML's: nothing to say; nor for a neuron the defaults are not for
    full = {"tau_m": 10.0, "refr_T": 2.0, "tau_syn_exc": 5.0, "tau_syn_in": 10.0}
    assert experiment.replaced_neuron_defaults(experiment.parse({"network": {"neuron_params": full}}, "<test>")) == ""
    assert experiment.replaced_neuron_defaults(experiment.default()) == ""
    cond = experiment.load(ROOT / "nestplast" / "experiments" / "families_paper.toml")
    assert cond.rule.neuron == "iaf_cond_exp" and experiment.replaced_neuron_defaults(cond) == ""


def test_keys_of_the_other_kind_of_network_are_named():
    """A single neuron reads neither n_e nor input_rate, a recurrent network not n_e_inputs: set,
    they were ignored without a word (the search and filter headlines now carry this note)."""
    single = experiment.parse({"network": {"kind": "single_neuron", "n_e": 40, "p": 0.1}}, "<test>")
    assert experiment.unused_network_keys(single) == (
        "note: network.n_e, network.p are not read by a network.kind = 'single_neuron' run (its own: n_e_inputs, "
        "n_i_inputs, input_rate_e, input_rate_i)")
    recurrent = experiment.parse({"network": {"n_e": 40, "input_rate_e": 3.0}}, "<test>")
    assert experiment.unused_network_keys(recurrent).startswith(
        "note: network.input_rate_e is not read by a network.kind = 'recurrent' run (its own: n_e, n_i, p,")
    assert experiment.unused_network_keys(experiment.default()) == ""
    # its drive too (its afferents are parrots of their own generators), where set to another than the neuron's own
    drive = experiment.parse({"network": {"kind": "single_neuron", "drive": "poisson_generator"}}, "<test>")
    assert experiment.unused_network_keys(drive).startswith("note: network.drive is not read by a network.kind = "
                                                            "'single_neuron' run")
    assert experiment.unused_network_keys(experiment.parse({"network": {"kind": "single_neuron"}}, "<test>")) == ""


def test_filter_keys_a_search_does_not_read_are_named():
    """filter.nuisance_input_rate set in a search's experiment changed nothing, without a word (the
    search's headline carries this note)."""
    exp = experiment.parse({"filter": {"rounds": 3, "nuisance_input_rate": [100.0, 200.0]}}, "<test>")
    assert experiment.unread_filter_keys(exp) == ("note: filter.rounds, filter.nuisance_input_rate are read by "
                                                  "nestplast filter only, not by a search")
    assert experiment.unread_filter_keys(experiment.default()) == ""


def test_a_single_neuron_takes_any_drive_setting():
    """Its afferents are parrots of their own generators, so network.drive does not apply: "internal"
    with iaf_cond_exp (which has no internal drive) was refused for a single neuron too."""
    from helpers import COND_NETWORK

    cond = {"rule": {"neuron": "iaf_cond_exp", "plastic": ["EE"]},
            "network": {**COND_NETWORK, "kind": "single_neuron", "drive": "internal"}}
    assert experiment.parse(cond, "<test>").network.drive == "internal"


@pytest.mark.parametrize("text, fragments", [
    ("[objective]\nconstraints = { w_mean_EE = [0.0, 50.0] }\n",
     ["objective.constraints.w_mean_EE", "EE does not learn", "the plastic types' are w_mean_IE"]),
    ("[network]\nkind = 'single_neuron'\n[objective]\nconstraints = { rate_i = [1.0, 50.0] }\n",
     ["objective.constraints.rate_i", "not an I population"]),
    ("[network]\nkind = 'single_neuron'\n[objective]\nconstraints = { spatial_fano = [0.5, 2.5] }\n",
     ["objective.constraints.spatial_fano", "never measures spatial_fano"]),
])
def test_a_constraint_on_a_metric_the_run_does_not_measure_is_refused(tmp_path, text, fragments):
    """The mean weight of a static connection type, or the I rate of a single neuron, is not measured:
    accepted, every evaluation failed with KeyError "constrained metric ... is missing" (scored 320)."""
    with pytest.raises(ExperimentError) as err:
        experiment.load(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in str(err.value)
    assert experiment.load(write(tmp_path, "[objective]\nconstraints = { w_mean_IE = [1.0, 50.0], rate_i = [1.0, 50.0] }\n"))


def test_an_mlp_rules_shape_is_set_in_the_experiment_file():
    """Before, an MLP's shape could be set from Python only (get_rule): an experiment searched the
    default 10 hidden units."""
    from nestplast.rules import get_rule

    shape = {"hidden": 3, "inputs": ["x_pre", "x_post"]}
    exp = experiment.parse({"rule": {"name": "mlp", "mlp": shape}}, "<test>")
    expected = get_rule("mlp", hidden=3, inputs=("x_pre", "x_post"))
    assert exp.base_rule().source == expected.source and exp.layout().names == [f"IE.{n}" for n in expected.names]
    assert len(exp.layout().names) == 2 * (3 * 2 + 3 + 3 + 1)  # pre and post: W1, b1, W2, b2
    fsbi = experiment.parse({"rule": {"name": "mlp_fsbi", "mlp": {"frozen_seed": 4}}}, "<test>")
    assert fsbi.base_rule().source == get_rule("mlp_fsbi", frozen_seed=4).source != get_rule("mlp_fsbi").source
    # per type, and not carried over to another rule
    mixed = experiment.parse({"rule": {"name": "mlp", "mlp": shape, "plastic": ["EE", "IE"],
                                       "by_type": {"EE": {"name": "doublet"}, "IE": {"mlp": {"hidden": 2}}}}}, "<test>")
    assert mixed.base_rule("EE").name == "doublet"
    assert mixed.base_rule("IE").source == get_rule("mlp", hidden=2).source


def test_another_rule_for_a_type_has_its_own_search_and_start():
    """A type given another rule inherited rule.start and rule.search, whose names are the other
    rule's: "rule.start (inherited by rule.by_type.IE, ...): expected parameters of rule 'mlp'"
    until the type was given start = {} by hand. Another rule's parameters have other names."""
    exp = experiment.parse({"rule": {"name": "taylor", "mask": "post:100,post:011", "plastic": ["EE", "IE"],
                                     "search": ["th_post_100"], "start": {"th_post_100": 0.5, "th_post_011": -0.5},
                                     "by_type": {"IE": {"name": "mlp", "mlp": {"hidden": 2}}}}}, "<test>")
    assert exp.rule_spec("EE").start == {"th_post_100": 0.5, "th_post_011": -0.5}
    assert exp.rule_spec("EE").search == ["th_post_100"]
    assert exp.rule_spec("IE").start == {} and exp.rule_spec("IE").search is None
    assert len(exp.searched_rule("IE").names) == len(exp.base_rule("IE").names)


@pytest.mark.parametrize("rule, message", [
    ({"name": "mlp", "mlp": {"hiden": 3}}, r"rule\.mlp: rule 'mlp' takes no option\(s\) \['hiden'\].*'hidden'"),
    ({"name": "mlp", "mlp": {"inputs": "x_pre"}}, r"rule\.mlp: MLP rule: inputs are a list of names"),
    ({"name": "mlp", "mlp": {"inputs": 3}}, r"rule\.mlp: MLP rule: inputs are a list of names.*got 3"),  # not iterable
    ({"name": "mlp", "mlp": {"inputs": 3}}, r"rule\.mlp: "),
    ({"name": "mlp_fsbi", "mlp": {"hidden": 3}}, r"rule\.mlp: rule 'mlp_fsbi' takes no hidden layer size"),
    ({"name": "doublet", "mlp": {"hidden": 3}}, r"rule\.mlp: expected no table: only the rules mlp and mlp_fsbi have a shape"),
    ({"name": "doublet", "plastic": ["IE"], "by_type": {"IE": {"name": "mlp", "mlp": {"hidden": 0}}}},
     r"rule\.by_type\.IE\.mlp: "),
])
def test_a_wrong_mlp_shape_is_named(rule, message):
    with pytest.raises(ExperimentError, match=message):
        experiment.parse({"rule": rule}, "<test>")


def test_an_experiment_file_is_read_as_utf8_with_or_without_a_bom(tmp_path, monkeypatch):
    """TOML is UTF-8. A file saved with a byte-order mark (Windows editors) was "not valid TOML:
    Invalid statement (at line 1, column 1)", and one with a non-ASCII comment depended on the locale."""
    import locale

    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff# \u03c4 in ms\n[network]\nn_e = 40\n".encode("utf-8"))
    monkeypatch.setattr(locale, "getpreferredencoding", lambda *a: "ascii")
    monkeypatch.setattr(locale, "getencoding", lambda: "ascii", raising=False)
    assert experiment.load(path).network.n_e == 40


def test_a_folder_or_a_binary_file_given_as_the_experiment_is_named(tmp_path):
    """A run's results.sqlite given as the experiment ended in a UnicodeDecodeError traceback; a run's
    folder was "no such experiment file", though it exists."""
    from nestplast.store import RunStore

    RunStore.create(tmp_path / "run", experiment={}, seed=1).close()
    with pytest.raises(ExperimentError, match=r"results.sqlite: not an experiment file \(not text"):
        experiment.load(tmp_path / "run" / "results.sqlite")
    with pytest.raises(ExperimentError, match=r"run: a folder, not an experiment file \(a run's folder: go on with it "
                                              r"with --out FOLDER --resume\)"):
        experiment.load(tmp_path / "run")


def test_the_filter_shows_its_keys_as_the_search_does(capsys):
    """`nestplast filter --show-defaults` was "unrecognized arguments": a filter's user had to ask the search."""
    import tomllib

    from nestplast.commands.filter import main

    assert main(["--show-defaults"]) == 0
    assert capsys.readouterr().out.strip() == experiment.show_defaults().strip()
    assert main(["families_short", "--rounds", "2", "--show-defaults"]) == 0
    shown = experiment.parse(tomllib.loads(capsys.readouterr().out))
    wanted = experiment.load("families_short")
    wanted.filter.rounds = 2
    assert shown.to_dict() == wanted.to_dict()
    assert main(["runs/x", "--recheck", "2", "--show-defaults"]) == 2
    assert "not with --apply or --recheck" in capsys.readouterr().err


def test_an_earlier_runs_experiment_is_read_though_a_new_run_would_be_refused():
    """The checks added for new runs (a delay NEST rounds, start weights it clips, ...) must not
    refuse reading a run begun before them: its report and its folder would be lost to the user."""
    data = {"network": {"delay": 1.55}, "trials": {"weight_scale": [8.0, 10.0]}}
    with pytest.raises(experiment.ExperimentError, match="network.delay"):
        experiment.parse(data, "new.toml")
    assert experiment.parse(data, "old/results.sqlite", to_run=False).network.delay == 1.55


def test_numpy_numbers_in_cma_options_are_taken_as_python_numbers():
    """cma_options from Python code: np.int64 was refused as "not a number" while np.float64 passed,
    and a numpy number kept would not go into the run's JSON record."""
    exp = experiment.default()
    exp.search.cma_options = {"tolfun": np.float32(1e-3), "tolstagnation": np.int64(50)}
    experiment.validate(exp)
    assert exp.search.cma_options == {"tolfun": pytest.approx(1e-3), "tolstagnation": 50}
    assert all(type(v) in (int, float) for v in exp.search.cma_options.values())
    json.dumps(exp.to_dict())
    exp.digest()


def test_a_numpy_float32_resolution_runs_on_nests_tic():
    """np.float32(0.1) is 0.10000000149: it passed the tic check, and NEST refused it in every
    evaluation ("Resolution must be a multiple of the tic length"), a whole run failed."""
    exp = experiment.default()
    exp.network.resolution = np.float32(0.1)
    experiment.validate(exp)
    assert exp.network.resolution == 0.1 and type(exp.network.resolution) is float


def test_a_target_rate_counted_in_few_spikes_is_noted():
    """A single neuron scored over 1 s at 10 Hz fires about 10 spikes: counting noise moves the
    target-rate term's minimum above the target, which the search then finds, without a word."""
    from nestplast.objectives import noise_shift

    single = experiment.parse({"network": {"kind": "single_neuron"}, "objective": {"t_score": 1.0}}, "<test>")
    assert experiment.noisy_target_note(single) == (
        "note: at objective.target_rate = 10 Hz the scored population (1 neuron) fires about 10 spikes in the 1 s "
        f"scoring window: counting noise puts the target-rate term's minimum about {noise_shift(10.0, 10):.2g} Hz "
        f"above the target; objective.t_score = 4 s would bring it within {noise_shift(10.0, 40):.2g} Hz")
    longer = experiment.parse({"network": {"kind": "single_neuron"}, "objective": {"t_score": 4.0}}, "<test>")
    assert experiment.noisy_target_note(longer) == ""
    assert experiment.noisy_target_note(experiment.parse({}, "<test>")) == ""  # 200 E neurons: 2000 spikes
    untargeted = experiment.parse({"network": {"kind": "single_neuron"}, "objective": {
        "target_rate": "none", "constraints": {"rate_e": [1.0, 50.0]}}}, "<test>")
    assert experiment.noisy_target_note(untargeted) == ""
