"""The shared helpers of nestplast.analysis (CSV, figures, output directories) and the pruning
warnings' wording."""

import csv

import pytest

from nestplast import experiment
from nestplast.analysis import OutputPathError, check_output_directory, saved_figure, write_csv
from nestplast.analysis.pruning import instability_warnings
from nestplast.errors import UserError


def test_write_csv_takes_every_column_in_order(tmp_path):
    path = tmp_path / "t.csv"
    write_csv([{"a": 1, "b": 0.5}, {"a": 2, "c": None}], path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["a", "b", "c"], ["1", "0.5", ""], ["2", "", ""]]


def test_check_output_directory_creates_nothing(tmp_path):
    nested = tmp_path / "a" / "b"
    assert check_output_directory(nested) == nested and not (tmp_path / "a").exists()
    assert check_output_directory(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputPathError, match="existing file") as err:
        check_output_directory(tmp_path / "f")
    assert isinstance(err.value, UserError)


def test_saved_figure_writes_a_png(tmp_path):
    with saved_figure(tmp_path / "p.png", ncols=2) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_instability_warnings_name_the_stable_diagonals():
    def rule(largest, options):
        return {"stable": False, "largest_real_eigenvalue": largest, "stable_diagonals": options}

    summary = {"diagonal": "original", "rules": {
        "noise": {"stable": True, "largest_real_eigenvalue": -0.1, "stable_diagonals": None},
        "magnitude": rule(0.02, ["row-sum"]), "uniform": rule(-1e-16, ["row-sum", "zero"]), "x": rule(0.5, [])}}
    magnitude, uniform, x = instability_warnings(summary)
    assert magnitude.startswith("the network pruned by the magnitude rule is unstable") and "0.02 >= 0" in magnitude
    assert "the diagonal option row-sum keeps this draw stable (--diagonal row-sum)" in magnitude
    assert "zero up to rounding" in uniform and "options row-sum and zero keep" in uniform
    assert "no diagonal option keeps this draw stable" in x


def test_a_trials_weight_drift_runs_from_its_start_weight():
    """A rule that drives the weights to their bound within the first check: the drift is from the
    weight the synapses started at (60 -> 300: +400 %), not from the first check's sample (which is
    already at the bound), and the saturated fraction is shown."""
    from nestplast.analysis.search import text, trial_summary
    from nestplast.tasks import Evaluation

    metrics = {"w_start_IE": 60.0, "w_mean_IE": 300.0, "w_blow": 1.0, "rate_e": 5.0, "rate_i": 9.0, "cv_isi": 0.9,
               "trace": {"t_s": [0.5, 1.0], "rate": [5.0, 5.0], "w_mean_IE": [300.0, 300.0]}}
    trial = trial_summary(Evaluation(0, 0, 0, [1.0], 7, metrics=metrics, loss=2.0))
    assert trial["weight_drift"] == {"IE": pytest.approx(4.0)} and trial["w_blow"] == 1.0
    # a run recorded before w_start_<type> existed: from the first check, as then
    old = {k: v for k, v in metrics.items() if k != "w_start_IE"}
    assert trial_summary(Evaluation(0, 0, 0, [1.0], 7, metrics=old, loss=2.0))["weight_drift"] == {"IE": 0.0}
    summary = {"generations": 1, "evaluations": 1, "blowups": 0, "failed": 0, "stop": None, "best_loss": 2.0,
               "best": {"generation": 0, "candidate": 0}, "best_params": {"IE.alpha": 1.0}, "best_trials": [trial],
               "failures": {"blowups": 0, "by_reason": []}, "loss_meaning": "(as summarise says)"}
    assert "drift IE +400.0%, at a bound, 0 or w_max (w_blow) 1" in text(summary, "run")


def test_the_report_says_what_this_runs_loss_is_made_of(tmp_path):
    """The report explained every run's loss as "(rate - target)^2 ... + L1 on the coefficients", also
    for a run scored on constraints alone without L1, and put the blow-up scores' floor at 160 (it is
    160 (1 + 1/e) = 219)."""
    from nestplast import experiment
    from nestplast.analysis.search import summarise, text
    from nestplast.store import RunStore

    exp = experiment.parse({"objective": {"target_rate": None, "l1": 0.01, "constraints": {"rate_e": [1.0, 20.0]},
                                          "rate_band": [0.5, 80.0]}})
    RunStore.create(tmp_path / "run", experiment=exp.to_dict(), seed=1).close()
    meaning = next(line for line in text(summarise(tmp_path / "run"), "run").splitlines()
                   if line.startswith("what the loss means: "))
    assert "target" not in meaning and "(r - " not in meaning
    assert ("distance outside each interval: rate_e [1, 20]) + 0.01 x the sum of |coefficients|, time constants left "
            "out (L1)") in meaning
    assert "band [0.5, 80] Hz" in meaning and "between 219 (at the end) and 320 (at once)" in meaning
    assert meaning.endswith("0 is a rule that meets every constraint.")
    default = summarise_of(tmp_path / "default", experiment.default())
    assert "(r - 10 Hz)^2 / (r + 2) averaged over the scoring window (r: the E rate)" in default
    assert "L1" not in default and default.endswith("holds the target and meets every constraint.")


def summarise_of(path, exp) -> str:
    from nestplast.analysis.search import summarise
    from nestplast.store import RunStore

    RunStore.create(path, experiment=exp.to_dict(), seed=1).close()
    return summarise(path)["loss_meaning"]


def test_a_best_rule_that_is_the_distributions_mean_is_named_so():
    """Candidate -1 is the mean CMA-ES evaluates for the record (README: the results database); the
    report gave it as "candidate -1", a number no candidate has."""
    from nestplast.analysis.search import text

    summary = {"generations": 1, "evaluations": 2, "blowups": 0, "failed": 0, "stop": {"maxiter": 1}, "best_loss": 0.5,
               "best": {"generation": 0, "candidate": -1}, "best_params": {"IE.alpha": 1.0}, "best_trials": [],
               "failures": {"blowups": 0, "by_reason": []}, "loss_meaning": "(as summarise says)"}
    assert "best loss: 0.5 (generation 0, candidate -1 (the distribution mean))" in text(summary, "run")
    summary["best"]["candidate"] = 3
    assert "best loss: 0.5 (generation 0, candidate 3)" in text(summary, "run")


def test_weights_are_labelled_in_their_neurons_unit():
    """Plots label weights in pA for a current-based neuron and nS for a conductance-based one."""
    from nestplast.analysis import weight_unit

    assert weight_unit(experiment.default()) == "pA"
    from helpers import COND_NETWORK

    conductances = experiment.parse({"rule": {"neuron": "iaf_cond_exp"}, "network": COND_NETWORK}, "<test>")
    assert weight_unit(conductances) == "nS"


def test_the_readme_query_of_the_results_database_ranks_candidates_by_their_loss(tmp_path, capsys):
    """README "The results database": the example ranks candidates. It averaged only the trials with
    status 'ok', so a candidate that blew up on one trial (scored 219-320) ranked by its other trial
    alone, above better candidates: each row's loss must be the candidate's, over all its trials."""
    import re
    import sqlite3
    from pathlib import Path

    import numpy as np

    from nestplast import run_search

    # a narrow band and a wide spread of the drive: some candidates blow up on one trial only
    exp = experiment.parse({"seed": 1, "network": {"n_e": 40, "n_i": 10},
                            "trials": {"n": 2, "input_rate_scale": [0.6, 1.4]},
                            "objective": {"t_train": 0.3, "t_score": 0.2, "chunk": 0.1, "rate_band": [5.0, 40.0]},
                            "search": {"population_size": 4, "max_generations": 2}}, "<test>")
    run_search(exp, tmp_path / "run")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### The results database"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1).replace("runs/my", str(tmp_path / "run"))
    capsys.readouterr()
    exec(code, {})
    rows = [line.split(" ", 3)[:3] for line in capsys.readouterr().out.splitlines()]
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        losses = {}
        for generation, candidate, loss, status in db.execute(
                "SELECT generation, candidate, loss, status FROM evaluations"):
            losses.setdefault((generation, candidate), []).append((loss, status))
    mixed = [key for key, trials in losses.items() if len({s for _, s in trials}) > 1]
    assert mixed, "the run was meant to hold a candidate with a blow-up on one trial only"
    means = {key: np.mean([value for value, _ in trials]) for key, trials in losses.items()}
    for generation, candidate, loss in rows:
        assert float(loss) == pytest.approx(means[int(generation), int(candidate)])
    assert [float(loss) for _, _, loss in rows] == pytest.approx(sorted(means.values())[:5])


def test_a_search_report_refuses_to_draw_into_another_runs_folder(tmp_path, capsys):
    """`report RUN --plots-to OTHER_RUN` overwrote the other run's own plots."""
    from nestplast import experiment
    from nestplast.commands.report import main
    from nestplast.store import RunStore

    for name in ("run", "other"):
        RunStore.create(tmp_path / name, experiment=experiment.default().to_dict(), seed=1).close()
    assert main([str(tmp_path / "run"), "--plots-to", str(tmp_path / "other")]) == 2
    assert "--plots-to" in capsys.readouterr().err and [p.name for p in (tmp_path / "other").iterdir()
                                                         if p.suffix == ".png"] == []
    assert main([str(tmp_path / "run"), "--plots-to", str(tmp_path / "plots"), "--no-plots"]) == 0


@pytest.mark.parametrize("rule, window", [("mlp_fsbi", False), ("doublet", True)])
def test_the_report_draws_a_window_only_for_rules_a_spike_pair_determines(tmp_path, rule, window):
    """mlp_fsbi's change depends on the neuron's V_bar, C_exc, C_inh: drawing its window raised,
    and `report` (even --json) ended in a traceback after the search had run."""
    from nestplast import experiment
    from nestplast.analysis.search import summarise, write_plots
    from nestplast.store import RunStore
    from nestplast.tasks import Evaluation

    exp = experiment.parse({"rule": {"name": rule}})
    size = len(exp.layout().names)
    store = RunStore.create(tmp_path / "run", experiment=exp.to_dict(), seed=1)
    for k in range(2):
        for trial in range(2):
            store.record_evaluation(Evaluation(generation=0, candidate=k, trial=trial, theta=[0.1] * size, seed=1,
                                               metrics={"rate_e": 10.0}, loss=1.0 + k, status="ok"))
    store.record_generation(0, b"state", {"best_loss": 1.0, "median_loss": 1.5})
    store.close()
    (tmp_path / "run" / "stdp_window.png").write_bytes(b"another run's")  # a reused --plots-to
    written = write_plots(tmp_path / "run", summarise(tmp_path / "run"))
    assert (tmp_path / "run" / "stdp_window.png" in written) == window and all(p.is_file() for p in written)
    assert (tmp_path / "run" / "stdp_window.png").is_file() == window  # not another run's beside this one's


def test_an_evaluation_limit_says_what_it_counts():
    """"done (maxfevals = 7): 2 generations, 20 evaluations": the limit counts candidates (pycma's),
    the summary every trial of each and the mean's, and nothing said that they differ."""
    from nestplast.analysis.search import describe_stop

    assert describe_stop({"maxfevals": 7}) == ("maxfevals = 7 (counting candidates, as pycma does; the evaluations "
                                                "count every trial of each, and the mean's)")
    assert "counting" not in describe_stop({"maxiter": 3})


def test_a_flat_generation_of_one_and_the_same_rule_is_not_blamed_on_the_rule():
    """search.sigma0 = 1e-12 stopped on tolx and tolflatfitness, explained as "e.g. a learning rate of 0"."""
    from nestplast.analysis.search import describe_stop

    collapsed = describe_stop({"tolx": 1e-11, "tolfun": 1e-11, "tolflatfitness": 0})
    assert "almost one and the same rule" in collapsed and "search.sigma0" in collapsed
    assert "learning rate" not in collapsed
    assert "learning rate of 0" in describe_stop({"tolflatfitness": 0})
    # rules that differ, scored alike by a tiny network (the same spikes): named too; and the report,
    # which prints it, was told to "see the report"
    flat = describe_stop({"tolflatfitness": 0})
    assert "too small or scored too briefly for rules that differ to score differently" in flat
    # a generation all silenced (rate 0, weights at w_max: each loss exactly 60, status ok, none blown up) fits none
    # of the causes it listed
    assert "all ended alike, e.g. the network silenced with its weights at w_max" in flat
    assert "see the report" not in flat


def test_the_stdp_window_of_a_rule_that_scales_with_the_weight_is_drawn_from_the_start_weight():
    """A Taylor rule of |w| terms was drawn from |w| = 0: flat at 0 while every weight ran to Wmax."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from nestplast import experiment
    from nestplast.analysis.search import stdp_window

    exp = experiment.parse({"rule": {"name": "taylor", "mask": "pre:001,post:101"}}, "<test>")
    fig, ax = plt.subplots()
    stdp_window(ax, exp, [0.5, 0.5])
    (line,) = ax.get_lines()[:1]
    rule = exp.layout().rule_of("IE")
    expected = rule.stdp_window(rule.synapse_params([0.5, 0.5], **exp.fixed("IE")), line.get_xdata(), w=60.0)
    np.testing.assert_allclose(line.get_ydata(), expected)
    assert np.abs(expected).max() > 0 and "from |w| = 60 pA" in line.get_label()
    plt.close(fig)


def test_the_sweep_plot_takes_its_degradations_from_the_sweep(tmp_path):
    """plot_sweep re-declared the sweep's degradations, undegraded values and tolerance: one panel per
    degradation of recovery.SWEEP, drawn from rows as the sweep writes them."""
    import dataclasses

    from nestplast.analysis.inference import plot_sweep
    from nestplast.recovery import SWEEP, Degradation

    rows = [{**dataclasses.asdict(Degradation()), key: value, "coefficient": "a", "true": 1.0, "fitted": 1.0 + 0.01 * k}
            for key, values in SWEEP.items() for k, value in enumerate(values)]
    plot_sweep(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
