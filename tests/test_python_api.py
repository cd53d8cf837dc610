"""nestplast used from Python, as in a notebook: one long-lived process in which the user also has
their own NEST network. A search must not change the user's NEST behind their back."""

import math
import re
import warnings

import pytest

import nestplast
from nestplast.kernel import KernelResetWarning, install
from nestplast.store import RunStore


@pytest.fixture(autouse=True)
def quiet_fresh_kernel_afterwards(nest):
    yield
    nest.ResetKernel()  # the user's settings below stay out of the other test files' kernels
    nest.verbosity = nest.VerbosityLevel.ERROR


def tiny_experiment():
    exp = nestplast.default_experiment()
    exp.network.n_e, exp.network.n_i = 20, 5
    exp.objective.t_train, exp.objective.t_score = 0.5, 0.5
    exp.search.max_generations, exp.search.population_size, exp.trials.n = 1, 2, 1
    return exp


def users_network(nest):
    """A user's own kernel: their settings, verbosity and a small network."""
    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.WARNING
    nest.resolution, nest.local_num_threads, nest.rng_seed = 0.05, 2, 42
    # more of what a user sets (they were reset to NEST's defaults while the warning said "restored")
    nest.SetKernelStatus(USERS_OTHER_SETTINGS)
    neurons = nest.Create("iaf_psc_alpha", 10)
    nest.Connect(nest.Create("noise_generator", params={"mean": 300.0, "std": 50.0}), neurons)
    return neurons


USERS_OTHER_SETTINGS = {"min_delay": 0.5, "max_delay": 5.0, "use_compressed_spikes": False, "keep_source_table": False,
                        "update_time_limit": 100.0, "dict_miss_is_error": False}


def assert_users_settings(nest, verbosity):
    assert (nest.resolution, nest.local_num_threads, nest.rng_seed) == (0.05, 2, 42)
    assert {key: nest.GetKernelStatus(key) for key in USERS_OTHER_SETTINGS} == USERS_OTHER_SETTINGS
    assert nest.verbosity == verbosity


def test_search_warns_and_gives_the_users_kernel_back(nest, doublet_module, tmp_path):
    neurons = users_network(nest)
    verbosity = nest.verbosity
    with pytest.warns(KernelResetWarning, match="11 nodes") as warned:
        outcome = nestplast.run_search(tiny_experiment(), tmp_path / "run")
    assert warned[0].filename == __file__  # the user's line, which their warning filters can name
    assert outcome.generations == 1
    # an empty kernel as the user set it up: the old handles fail instead of reading the search's neurons
    assert nest.network_size == 0
    assert_users_settings(nest, verbosity)
    with pytest.raises(nest.NESTError):
        neurons.get("V_m")
    # the same search in a fresh process (no user network) gives the same result
    again = nestplast.run_search(tiny_experiment(), tmp_path / "again")
    assert again.best_loss == outcome.best_loss


def test_search_restores_the_users_modules(nest, doublet_module, tmp_path):
    nest.ResetKernel()
    install(doublet_module)  # the user's own use of a rule (README: "Build a rule and use it in your own NEST model")
    nestplast.run_search(tiny_experiment(), tmp_path / "run")
    assert doublet_module.path in nest.GetKernelStatus("modules")
    nest.Create(doublet_module.neuron_model, 2)


def test_interrupted_search_gives_the_kernel_back_and_resumes(nest, doublet_module, tmp_path):
    users_network(nest)
    verbosity = nest.verbosity

    def interrupt(line: str) -> None:
        if line.startswith("gen"):
            raise KeyboardInterrupt

    exp = tiny_experiment()
    exp.search.max_generations = 2
    with pytest.warns(KernelResetWarning), pytest.raises(KeyboardInterrupt) as stopped:
        nestplast.run_search(exp, tmp_path / "run", progress=interrupt)
    # a notebook shows the traceback alone (the command line prints its own line): it says what is kept
    assert stopped.value.__notes__ == [f"nestplast: the run's complete generations are kept in {tmp_path / 'run'}; "
                                       "the same call with resume=True goes on from the last one"]
    # before any generation was complete (at the headline) it said the same, of generations there were none of
    def at_once(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.warns(KernelResetWarning), pytest.raises(KeyboardInterrupt) as early:
        users_network(nest)
        nestplast.run_search(exp, tmp_path / "early", progress=at_once)
    assert early.value.__notes__ == [f"nestplast: the run is in {tmp_path / 'early'}, no generation complete yet; the "
                                     "same call with resume=True starts it there"]

    # an error of the caller's own progress function: the same note (it had none)
    def broken(line: str) -> None:
        if line.startswith("gen"):
            raise ValueError("my callback's bug")

    with pytest.warns(KernelResetWarning), pytest.raises(ValueError, match="my callback's bug") as bug:
        users_network(nest)
        nestplast.run_search(exp, tmp_path / "bug", progress=broken)
    assert bug.value.__notes__ == [f"nestplast: the run's complete generations are kept in {tmp_path / 'bug'}; the "
                                   "same call with resume=True goes on from the last one"]
    assert nest.network_size == 0
    assert_users_settings(nest, verbosity)
    # nothing left locked or open: the same process resumes the run
    assert nestplast.run_search(exp, tmp_path / "run", resume=True).generations == 2


def test_refused_search_leaves_the_users_network(nest, doublet_module, tmp_path):
    users_network(nest)
    with pytest.warns(KernelResetWarning):
        nestplast.run_search(tiny_experiment(), tmp_path / "run")
    neurons = users_network(nest)
    with pytest.raises(nestplast.UserError, match=r"already holds a run, a search .*--resume \(in Python: resume=True\)") \
            as same:
        nestplast.run_search(tiny_experiment(), tmp_path / "run")  # refused before any simulation
    assert len(neurons.get("V_m")) == 10  # nothing was reset
    assert "another experiment" not in str(same.value)
    # another experiment of the same name into that folder: the advice to --resume read as if it were this one's
    other = tiny_experiment()
    other.network.n_e = 30
    with pytest.raises(nestplast.UserError, match=r"already holds a run, a search .*\. Its run is of another experiment "
                                                  r"than this one \(network.n_e: \d+ -> 30\): --resume would continue "
                                                  r"that one$"):
        nestplast.run_search(other, tmp_path / "run")


def test_install_keeps_the_users_verbosity(nest, doublet_module):
    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.WARNING
    install(doublet_module)
    assert nest.verbosity == nest.VerbosityLevel.WARNING


def test_dir_lists_what_nestplast_offers():
    names = dir(nestplast)
    for name in nestplast.__all__:
        assert name in names
        assert getattr(nestplast, name) is not None


def test_generating_and_fitting_data_give_the_users_kernel_back(nest):
    """Synthetic data warn and restore as a search does; a fit to a recording (numpy) leaves the kernel alone."""
    from nestplast import infer
    from nestplast.synthetic import GROUND_TRUTHS, generate

    truth = GROUND_TRUTHS["oja"]
    users_network(nest)
    verbosity = nest.verbosity
    with pytest.warns(KernelResetWarning, match=r"nestplast.synthetic.generate .*\(11 nodes\)"):
        data = generate(truth, n_pre=5, duration_ms=500.0)
    assert nest.network_size == 0
    assert_users_settings(nest, verbosity)
    # the clamped fit replays the recording in numpy: the user's network stays, and nothing is said
    neurons = users_network(nest)
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": 200.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelResetWarning)
        infer.fit(data, infer.RuleChoice(truth.rule.name, truth.mask), fixed, max_generations=1, n_bootstrap=0)
    assert nest.network_size == 11 and len(neurons.get("V_m")) == 10
    assert_users_settings(nest, verbosity)


def test_a_kernel_with_its_own_tics_comes_back_too(nest, doublet_module, tmp_path):
    """NEST takes tics_per_ms only together with the resolution: restored one by one, it failed."""
    nest.ResetKernel()
    nest.SetKernelStatus({"tics_per_ms": 10000, "resolution": 0.05})
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelResetWarning)  # nothing to warn of: no nodes, and restored
        nestplast.run_search(tiny_experiment(), tmp_path / "run")
    assert (nest.GetKernelStatus("tics_per_ms"), nest.resolution) == (10000.0, 0.05)


def test_search_names_the_model_settings_it_could_not_restore(nest, doublet_module, tmp_path):
    """The search's resets discard the user's nest.CopyModel copies and nest.SetDefaults, which
    cannot be restored: a model used again afterwards ran NEST's defaults (here the inert rule,
    all coefficients 0) without a word, as no warning came without nodes in the kernel."""
    nest.ResetKernel()
    install(doublet_module)
    rule = nestplast.get_rule("doublet")
    nest.SetDefaults(doublet_module.synapse_model, rule.synapse_params(nestplast.vogels_sprekeler(10.0), Wmax=-300.0))
    nest.SetDefaults("iaf_psc_alpha", {"tau_m": 15.0})
    nest.Create("iaf_psc_alpha")  # a count in its defaults, not a setting
    # the warning said "the model defaults you set" and left the user to remember which
    with pytest.warns(KernelResetWarning) as warned:
        nestplast.run_search(tiny_experiment(), tmp_path / "run")
    assert len(warned) == 2 and {w.filename for w in warned} == {__file__}  # the node's warning, then this
    assert "the network in it (1 node) is discarded" in str(warned[0].message)  # was "(1 nodes)"
    assert re.search(rf"discarded the model defaults you set \(nest.SetDefaults\) of iaf_psc_alpha \(tau_m\), "
                     rf"{doublet_module.synapse_model} \(Wmax, alpha, gamma, kappa\)\. ", str(warned[1].message))
    assert nest.GetDefaults(doublet_module.synapse_model, "alpha") == 0.0  # indeed lost
    # with nodes, a copy is named at the end, after the warning about the nodes at the start
    users_network(nest)
    nest.CopyModel("iaf_psc_alpha", "my_neuron")
    with pytest.warns(KernelResetWarning) as warned:
        nestplast.run_search(tiny_experiment(), tmp_path / "copy")
    assert len(warned) == 2 and "copies (nest.CopyModel) my_neuron" in str(warned[1].message)
    # a kernel with nodes and its own settings, but models as NEST made them: only the warning at the start
    users_network(nest)
    with pytest.warns(KernelResetWarning) as warned:
        nestplast.run_search(tiny_experiment(), tmp_path / "again")
    assert len(warned) == 1 and "nodes" in str(warned[0].message)


def test_a_search_takes_an_experiment_file_s_path(nest, doublet_module, tmp_path):
    """run_search("my.toml", out) failed with a TypeError from inside dataclasses that named nothing."""
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\n[network]\nn_e = 20\nn_i = 5\n[objective]\nt_train = 0.5\nt_score = 0.5\n'
                    "[search]\nmax_generations = 1\npopulation_size = 2\n[trials]\nn = 1\n")
    outcome = nestplast.run_search(path, tmp_path / "run")
    assert outcome.generations == 1 and outcome.evaluations == 3  # two candidates and the mean, one trial each
    with pytest.raises(TypeError, match="expected an Experiment .* or the path of an experiment file, got dict"):
        nestplast.run_search({"network": {"n_e": 20}}, tmp_path / "other")


def test_fit_rule_refuses_a_notebooks_first_tries_and_says_what_to_pass(tmp_path, monkeypatch):
    """A Rule, a rule's name, the wrong type of recording and n_segments="5" failed deep inside the
    fit with AttributeErrors ("'Rule' object has no attribute 'rule'"); a searched coefficient in
    `fixed` was refused with advice about synapse_params, which a fit's user never calls; the
    docstring's RuleChoice was not in nestplast. Each is refused before any folder is made, and a
    recording's path is read for the user."""
    import numpy as np

    from nestplast import infer
    from nestplast.recording import Recording, save

    assert "RuleChoice" in nestplast.__all__ and nestplast.RuleChoice is infer.RuleChoice
    rec = Recording(pre_times=[1.0, 2.5, 7.0], pre_ids=[0, 1, 0], post_times=[3.0], post_ids=[0], duration=10.0,
                    syn_pre=[0, 1], syn_post=[0, 0], syn_sign=[1, -1], weight_synapses=[0, 1], weight_times=[0.0, 5.0],
                    weights=[[1.0, 1.2], [-0.5, -0.4]])
    choice, fixed = nestplast.RuleChoice("taylor", "post:100,post:011"), {"eta": 0.5, "Wmax": 1000.0}
    for args, options, error, message in (
            ((rec, nestplast.get_rule("taylor", mask="post:100,post:011"), fixed), {}, TypeError,
             r"expected a RuleChoice, e\.g\. RuleChoice\('taylor', 'post:100,post:011'\) from nestplast\.infer .*"
             r"got Rule 'taylor'; for this rule: RuleChoice\('taylor', 'post:"),
            ((rec, "taylor", fixed), {}, TypeError, r"got the name 'taylor'; give RuleChoice\('taylor', mask=\.\.\.\)"),
            (({"weights": [[1.0]]}, choice, fixed), {}, TypeError,
             r"recording: expected a Recording \(nestplast\.load_recording\('data\.npz'\).* got dict"),
            ((rec, choice, fixed), {"n_segments": "5"}, TypeError, "n_segments: expected an integer, got str '5'"),
            ((rec, choice, fixed), {"hold_out": -1}, ValueError, "hold_out: expected an integer >= 0, got -1"),
            ((rec, choice, {**fixed, "th_post_100": 1.0}), {}, ValueError,
             r"fixed: th_post_100 is a coefficient that the fit searches \(rule 'taylor': .*\), so not a fixed setting")):
        with pytest.raises(error, match=message) as caught:
            nestplast.fit_rule(*args, out=tmp_path / "fit", **options)
        assert "synapse_params" not in str(caught.value)
    assert not (tmp_path / "fit").exists()
    # a misspelt rule, or a mask of another type, passed RuleChoice and failed only when the fit ran
    from nestplast.rules import UnknownRuleError

    with pytest.raises(UnknownRuleError, match="unknown rule 'tayler'; available rules: doublet"):
        nestplast.RuleChoice("tayler")
    with pytest.raises(TypeError, match=r"RuleChoice: mask: expected terms such as 'post:100,post:011' \(or a list "
                                        r"of them\), got 100"):
        nestplast.RuleChoice("taylor", 100)
    # get_rule takes a list of terms: RuleChoice refused one as not a string
    assert nestplast.RuleChoice("taylor", ["post:100", "post:011"]) == nestplast.RuleChoice("taylor", "post:100,post:011")
    # a recording's path: read as nestplast.load_recording(path) would (the search itself not run here)
    save(rec, tmp_path / "data.npz")
    seen = []

    def no_search(problem, *args, **kwargs):
        seen.append(problem.recording)
        return None, tmp_path  # as on a worker rank: no outcome

    monkeypatch.setattr(infer, "search_with_restarts", no_search)
    assert nestplast.fit_rule(str(tmp_path / "data.npz"), choice, fixed) is None
    assert isinstance(seen[0], Recording) and np.array_equal(seen[0].weights, rec.weights)


def test_the_best_rule_returned_is_the_one_the_command_names(doublet_module, tmp_path, capsys):
    """Every candidate blew up: the command said "no rule found", run_search returned a blown-up
    candidate's penalty (154.1) and parameters as the best rule."""
    exp = tiny_experiment()
    exp.network.input_rate *= 4  # runs away at once
    outcome = nestplast.run_search(exp, tmp_path / "run", progress=print)
    assert outcome.blowups == outcome.evaluations > 0
    assert math.isnan(outcome.best_loss) and outcome.best_theta is None
    assert "no rule found" in capsys.readouterr().out
    calm = nestplast.run_search(tiny_experiment(), tmp_path / "calm")
    with RunStore.open(tmp_path / "calm", read_only=True) as store:
        best = store.best_candidates(1)[0]
    assert (calm.best_loss, calm.best_theta) == (best["loss"], best["theta"])


def test_nest_imported_by_nestplast_is_quiet_about_omp_num_threads():
    """The job scripts set OMP_NUM_THREADS for numpy and torch: every rank's NEST logged that it
    ignores it (128 lines at the start of a 64-rank job). The variable stays for the others."""
    import os
    import subprocess
    import sys

    code = ("import os\nfrom nestplast.kernel import import_nest\nimport_nest()\nprint(os.environ['OMP_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    assert "OMP_NUM_THREADS is set" not in out.stdout + out.stderr and out.stdout.strip().endswith("2"), out


def test_a_script_launched_on_several_ranks_without_comm_is_refused(tmp_path, monkeypatch):
    """`mpiexec -n 2 python my_search.py` calling run_search(exp, out): one rank ran the whole search
    alone, the other ended in a traceback on the run it held. Each entry point refuses at once, naming
    comm=MPI.COMM_WORLD, before any folder is made."""
    from nestplast import infer
    from nestplast.errors import UserError
    from nestplast.families import recheck

    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    calls = {"this search": lambda: nestplast.run_search(tiny_experiment(), tmp_path / "run"),
             "this re-check": lambda: recheck(tmp_path / "run"),
             "this fit": lambda: infer.search_with_restarts(None, None, None, {}, {}, None, 2, 1, 1, tmp_path / "fit",
                                                            False, None, None)}
    for what, call in calls.items():
        with pytest.raises(UserError, match=rf"{what}: this process is rank 1 of the 2 that mpiexec/srun started, but "
                                            r"no comm was given, .* pass comm=MPI.COMM_WORLD"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_compressed_spikes_out_of_network_mode_is_said_to_change_nothing(nest, doublet_module, tmp_path):
    """search.compressed_spikes = true ran in population or serial mode, where NEST exchanges no
    spikes between ranks, without a word: a user expected the README's 1.4x."""
    exp = tiny_experiment()
    exp.search.compressed_spikes = True
    lines = []
    nestplast.run_search(exp, tmp_path / "run", progress=lines.append)
    assert ("note: search.compressed_spikes = true is read only in network mode (NEST built with MPI, one network "
            "over the ranks); this run is in serial mode: it changes nothing") in lines[0], lines[0]
    lines = []
    nestplast.run_search(tiny_experiment(), tmp_path / "plain", progress=lines.append)
    assert "search.compressed_spikes" not in lines[0]


def test_the_parts_the_docstring_names_are_attributes_of_the_package():
    """nestplast.prune raised "module 'nestplast' has no attribute 'prune'" until imported by name,
    though the package's docstring lists it among its parts (a fresh interpreter: none imported yet)."""
    import subprocess
    import sys

    code = ("import nestplast, sys; assert 'nestplast.prune' not in sys.modules; "
            "print(nestplast.prune.prune.__module__, nestplast.rate_network.RateModel.__name__); "
            "print(hasattr(nestplast, 'no_such_part'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["nestplast.prune", "RateModel", "False"], out.stderr


def test_a_search_refuses_no_folder_and_a_progress_it_cannot_call_before_making_one(tmp_path):
    """run_search(exp, None) (the fits take out=None) ended in a bare TypeError from pathlib; a
    bool for progress failed at the first line, after the run's folder was made, and the retry with
    print met that folder ("already holds a run")."""
    import nestplast

    with pytest.raises(TypeError, match="out: expected the run's folder, where it keeps every evaluation"):
        nestplast.run_search(tiny_experiment(), None)
    with pytest.raises(TypeError, match="progress: expected a function of one line of text"):
        nestplast.run_search(tiny_experiment(), tmp_path / "run", progress=True)
    assert not (tmp_path / "run").exists()
