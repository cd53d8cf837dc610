"""Inference from recordings: the exact numpy forward model agrees with NEST's clamped replay (and
with NEST's own stdp_synapse) event for event, coincident spikes included."""

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import TAYLOR_TEST_MASK

from nestplast.recording import Recording, RecordingError
from nestplast.replay import replay
from nestplast.rules import get_rule
from nestplast.trajectories import weight_trajectories

DELAY = 1.0
STEP = 0.1


def poisson(rng, rate_hz, duration, min_gap=STEP):
    isi = np.maximum(rng.exponential(1000.0 / rate_hz, int(3 * rate_hz * duration / 1000) + 20), min_gap)
    times = np.round(np.cumsum(isi) / STEP) * STEP
    return times[times < duration - 2 * DELAY]


def recording_with_coincidences(seed=3, n_pre=6, n_post=2, duration=3000.0) -> Recording:
    """Poisson trains on the 0.1 ms grid; every input also fires at t_post + delay for some post
    spikes of each neuron, so that pre and post spikes coincide at the synapse."""
    rng = np.random.default_rng(seed)
    post = [poisson(rng, 20.0, duration, min_gap=1.0) for _ in range(n_post)]
    pre = []
    for i in range(n_pre):
        own = poisson(rng, 15.0, duration)
        coincident = post[i % n_post][i % 3::3] + DELAY
        pre.append(np.unique(np.round(np.concatenate([own, coincident]) / STEP)) * STEP)

    def flatten(trains):
        ids = np.concatenate([np.full(t.size, i) for i, t in enumerate(trains)])
        times = np.concatenate(trains)
        order = np.argsort(times, kind="stable")
        return times[order], ids[order]

    pre_times, pre_ids = flatten(pre)
    post_times, post_ids = flatten(post)
    syn_pre, syn_post = np.meshgrid(np.arange(n_pre), np.arange(n_post), indexing="ij")
    sign = np.where(syn_pre.ravel() >= n_pre - 2, -1, 1)  # the last two inputs inhibitory
    return Recording(pre_times=pre_times, pre_ids=pre_ids, post_times=post_times, post_ids=post_ids,
                     duration=duration, syn_pre=syn_pre.ravel(), syn_post=syn_post.ravel(), syn_sign=sign)


def test_the_recording_has_coincidences():
    rec = recording_with_coincidences()
    seen = 0
    for s in range(rec.n_synapses):
        pre = np.round(rec.pre_spikes(rec.syn_pre[s]) / STEP).astype(int)
        post = np.round((rec.post_spikes(rec.syn_post[s]) + DELAY) / STEP).astype(int)
        seen += np.isin(pre, post).sum()
    assert seen > 50


@pytest.mark.nest
def test_numpy_trajectories_equal_nests_clamped_replay(taylor_module):
    rec = recording_with_coincidences()
    rule = get_rule("taylor", mask=TAYLOR_TEST_MASK)
    rng = np.random.default_rng(0)
    coefficients = dict(zip(rule.names, rng.uniform(-0.3, 0.3, len(rule.names))))
    coefficients["th_pre_000"] = 0.05  # drift keeps the weights moving
    params = rule.synapse_params(coefficients, eta=0.5, tau_pre=15.0, tau_post=30.0, Wmin=0.0, Wmax=60.0)
    synapses = np.arange(rec.n_synapses)
    w0 = rec.syn_sign * rng.uniform(10.0, 30.0, rec.n_synapses)
    samples = np.arange(0.0, rec.duration - DELAY, 50.0)
    nest_w = replay(taylor_module, params, rec, synapses, w0, samples, delay=DELAY)
    numpy_w = weight_trajectories(rule, params, rec, synapses, w0, samples, delay=DELAY)
    assert np.ptp(nest_w, axis=1).min() > 1.0, "every weight moved"
    np.testing.assert_allclose(numpy_w, nest_w, rtol=1e-9, atol=1e-9)
    assert np.all(np.sign(nest_w) == rec.syn_sign[:, None])


@pytest.mark.nest
def test_numpy_trajectories_equal_nests_own_stdp_synapse(taylor_module):
    """NEST's hand-written additive stdp_synapse (an independent implementation): at a post spike
    w += lambda Wmax x_pre, at a pre spike w -= alpha lambda Wmax x_post, w in [0, Wmax]."""
    rec = recording_with_coincidences(seed=4)
    excitatory = np.flatnonzero(rec.syn_sign > 0)
    lam, alpha, tau, w_max = 0.01, 1.1, 20.0, 50.0
    nest_params = {"lambda": lam, "alpha": alpha, "tau_plus": tau, "Wmax": w_max, "mu_plus": 0.0, "mu_minus": 0.0}
    samples = np.arange(0.0, rec.duration - DELAY, 100.0)
    w0 = np.full(excitatory.size, 25.0)
    nest_w = replay(taylor_module, nest_params, rec, excitatory, w0, samples, delay=DELAY,
                    synapse_model="stdp_synapse", neuron_params={"tau_minus": tau})
    rule = get_rule("taylor", mask="pre:010,post:100")
    params = rule.synapse_params({"th_pre_010": -alpha, "th_post_100": 1.0}, eta=lam * w_max, tau_pre=tau,
                                 tau_post=tau, Wmin=0.0, Wmax=w_max)
    numpy_w = weight_trajectories(rule, params, rec, excitatory, w0, samples, delay=DELAY)
    assert np.ptp(nest_w, axis=1).min() > 1.0
    np.testing.assert_allclose(numpy_w, nest_w, rtol=1e-9, atol=1e-9)


def test_trajectories_start_mid_recording_from_the_weight_there():
    """Started at t0 from the weight the full run had there, the trajectory after t0 is the full
    run's: spikes before t0 shape only the traces."""
    rec = recording_with_coincidences()
    rule = get_rule("taylor", mask="pre:000,pre:010,post:100,post:001")
    params = rule.synapse_params({"th_pre_000": 0.02, "th_pre_010": -0.5, "th_post_100": 0.6, "th_post_001": -0.01},
                                 eta=1.0, tau_pre=20.0, tau_post=20.0, Wmin=0.0, Wmax=100.0)
    synapses = np.arange(rec.n_synapses)
    w0 = rec.syn_sign * 20.0
    samples = np.arange(0.0, 2900.0, 100.0)
    full = weight_trajectories(rule, params, rec, synapses, w0, samples, delay=DELAY)
    t0 = 1000.0
    later = samples[samples >= t0]
    resumed = weight_trajectories(rule, params, rec, synapses, full[:, samples == t0][:, 0], later, delay=DELAY,
                                  t_start=t0)
    np.testing.assert_allclose(resumed, full[:, samples >= t0], rtol=1e-12)


def synthetic(rule_mask: str, coefficients: dict, fixed: dict, duration=5000.0, seed=3) -> Recording:
    """Weights generated by the exact forward model itself from a known rule (the NEST-generated
    ground truths are in test_synthetic and the demo; the forward models agree to 1e-9 above)."""
    import dataclasses

    rec = recording_with_coincidences(seed=seed, n_pre=10, n_post=2, duration=duration)
    rule = get_rule("taylor", mask=rule_mask)
    times = np.arange(0.0, duration - 100.0, 50.0)
    w0 = rec.syn_sign * np.random.default_rng(seed).uniform(0.5, 3.0, rec.n_synapses)
    weights = weight_trajectories(rule, rule.synapse_params(coefficients, **fixed), rec, np.arange(rec.n_synapses),
                                  w0, times, delay=DELAY)
    fields = {f.name: getattr(rec, f.name) for f in dataclasses.fields(Recording)}
    return Recording(**{**fields, "weight_synapses": np.arange(rec.n_synapses), "weight_times": times,
                        "weights": weights})


OJA = {"th_post_100": 1.0, "th_post_011": -1.0}
OJA_FIXED = {"eta": 0.5, "tau_pre": 20.0, "tau_post": 20.0, "Wmin": 0.0, "Wmax": 1000.0}


def test_a_two_coefficient_rule_is_recovered_with_intervals_and_goodness_of_fit(tmp_path):
    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED)
    said = []
    fit = infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), OJA_FIXED, max_generations=30,
                    n_bootstrap=5, out=tmp_path / "fit", progress=said.append)
    # after the last generation's line, what runs next is said (an MLP rule's polish took minutes in silence)
    assert said[-2].startswith("polish: ") and "2 coefficients" in said[-2]
    assert said[-1].startswith("bootstrap: 5 refits") and said[-3].startswith("gen ")
    for name, true in OJA.items():
        assert fit.coefficients[name] == pytest.approx(true, abs=0.01)
        low, high = fit.intervals[name]
        assert low - 1e-6 <= true <= high + 1e-6
    assert fit.r2_held_out > 0.999 and fit.deviance_explained_held_out > 99.9 and fit.unidentified == []
    saved = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert saved["nest_params"]["th_post_011"] == pytest.approx(-1.0, abs=0.01) and saved["nest_params"]["eta"] == 0.5
    assert fit.nest_params == saved["nest_params"]  # a property, as a choices fit's field (a method was called)
    from nestplast.rules import get_rule  # the README's recipe makes the fitted rule again from fit.json

    again = get_rule(saved["rule"], mask=saved["mask"], **saved["options"])
    assert saved["options"] == {} and again.names == infer.RuleChoice("taylor", "post:100,post:011").rule().names


def test_a_term_without_its_spikes_is_named_unconstrained_under_an_l1_penalty_too(tmp_path):
    """With --l1 above 0 the check moved each coefficient in the penalised loss, which the penalty
    always changes: post terms of a recording without post spikes came out "-3e-16 [-3.7e-16,
    -3.1e-16]", confidently zero, with no warning. The data's part alone decides."""
    import dataclasses

    from nestplast import infer

    silent = dataclasses.replace(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0),
                                 post_times=np.zeros(0), post_ids=np.zeros(0, dtype=int))
    for l1 in (0.0, 0.01):
        fit = infer.fit(silent, infer.RuleChoice("taylor", "pre:000,post:100"), OJA_FIXED, max_generations=3,
                        n_bootstrap=0, l1=l1, out=tmp_path / f"l1-{l1}")
        assert fit.unidentified == ["th_post_100"], (l1, fit.unidentified)  # the command's warning names them
    # in Python too (only the command warned), with advice it can follow (--fixed refuses a searched
    # coefficient), and no interval: its bootstrap draws all sat at its value, "[2, 2]", which looked exact
    fit = infer.fit(silent, infer.RuleChoice("taylor", "pre:000,post:100"), OJA_FIXED, max_generations=3,
                    n_bootstrap=5, out=tmp_path / "intervals")
    assert [w for w in fit.warnings if w.startswith("the data do not constrain th_post_100: ")] == [
        "the data do not constrain th_post_100: moved over its whole range, each leaves the fit unchanged, so its value "
        "means nothing and it has no interval (record longer or more spikes, or fit a rule without it (taylor: a "
        "--mask without its term))"]
    assert all(map(math.isnan, fit.intervals["th_post_100"])) and not math.isnan(fit.intervals["th_pre_000"][0])
    assert json.loads((tmp_path / "intervals" / "fit.json").read_text())["intervals"]["th_post_100"] is None


def test_a_fit_its_generation_limit_stopped_far_from_converging_is_warned_of(tmp_path):
    """Stopped after 10 of the default 60 generations, the doublet's tau_pre came out 28.6 [20.5, 28.6]
    (truth 20), each estimate at an end of its interval, without a word; the README's fit, also
    stopped by its limit but converged (its step 2e-7), has nothing to be warned of."""
    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    noisy = data.noisy_weights(0.05, seed=1)  # noise-free, the polish finishes the fit exactly (below)
    early = _quick_fit(noisy, tmp_path / "early", max_generations=2, n_bootstrap=0, population_size=4)
    assert early.stop["maxiter"] == 2 and early.stop["step"] > 1e-3
    assert (f"the search stopped at its generation limit (2) with its step still {early.stop['step']:.2g} of each "
            "range, far from converged") in " ".join(early.warnings), early.warnings
    assert "--resume, resume=True, goes on from here" in " ".join(early.warnings)
    # out=None: the advice to resume met "out=None keeps nothing to resume"
    gone = _quick_fit(noisy, tmp_path, max_generations=2, n_bootstrap=0, population_size=4, out=None)
    assert gone.coefficients == early.coefficients
    assert "out=None kept nothing to resume: give out=FOLDER" in " ".join(gone.warnings) and \
        "goes on from here" not in " ".join(gone.warnings), gone.warnings
    # the truth to the last digit was called "far from converged, may be off": the polish finished it
    exact = _quick_fit(data, tmp_path / "exact", max_generations=2, n_bootstrap=0, population_size=4)
    assert exact.stop["step"] > 1e-3 and exact.deviance_explained_fit > 99.9999
    assert exact.coefficients == pytest.approx(OJA, rel=1e-9)
    assert not any("generation limit" in w for w in exact.warnings), exact.warnings
    converged = _quick_fit(data, tmp_path / "converged", max_generations=60, n_bootstrap=0)
    assert converged.stop.get("step", 0.0) < 1e-3 and not any("generation limit" in w for w in converged.warnings)


def test_a_fit_worse_than_no_rule_on_its_own_segments_is_warned_of():
    """Spikes in seconds (weights in ms) fitted into a rule 113 times worse than no plasticity on its
    own segments, with held-out deviance exactly 0: no warning at all."""
    import dataclasses

    from nestplast.infer import Fit, fit_warnings

    def fit(deviance_fit):
        return Fit("taylor", "post:100", ["th_post_100"], {"th_post_100": 0.6}, {"th_post_100": (0.6, 2.0)}, {},
                   113.8, -2.2, 0.0, deviance_fit)

    said = fit_warnings(fit(-11277.0), n_fitted=8, n_held=2, n_bootstrap=30, what=("segment", "segments"))
    assert said == ["the fitted rule describes even the segments it was fitted to worse than no plasticity at all "
                    "(-11277.0 % deviance explained): the search found no rule for these data (check the units of "
                    "the data, --fixed, --delay and the mask)"]
    assert fit_warnings(fit(35.0), n_fitted=8, n_held=2, n_bootstrap=30, what=("segment", "segments")) == []
    # the closed mode: counts unchanged (0.0 % deviance) and weights worse than no rule's, loss 2.28 against 2
    worse = dataclasses.replace(fit(0.0), loss=2.28)
    assert fit_warnings(worse, n_fitted=8, n_held=2, n_bootstrap=30, what=("block", "blocks"), zero_loss=2.0) == [
        "the fitted rule scores worse than no plasticity at all on the blocks it was fitted to (loss 2.28 against "
        "the all-zero rule's 2): the search found no rule for these data (check the background, --fixed, --delay "
        "and the mask; more --max-generations)"]
    assert fit_warnings(dataclasses.replace(fit(0.0), loss=1.5), n_fitted=8, n_held=2, n_bootstrap=30,
                        what=("block", "blocks"), zero_loss=2.0) == []
    # --bootstrap 1: one draw and the estimate were printed as a "95 % interval" missing the truth
    assert fit_warnings(fit(35.0), n_fitted=8, n_held=2, n_bootstrap=1, what=("segment", "segments")) == [
        "the intervals come from 1 bootstrap draws, too few for their 2.5 and 97.5 percentiles to be a 95 % "
        "interval: give --bootstrap 20 or more (n_bootstrap in Python)"]


def test_the_all_zero_rule_explains_nothing():
    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED)
    rule = get_rule("taylor", mask="post:100,post:011")
    problem = infer.ClampedFit(data, rule, OJA_FIXED, delay=DELAY, fit_segments=infer.segments(data.weight_times.size, 4))
    loss = problem.objective(problem.fit_segments)
    assert loss([0.0, 0.0]) == pytest.approx(1.0)
    assert loss([OJA[name] for name in rule.names]) < 1e-20


def test_coefficients_the_data_do_not_constrain_are_named():
    """Both terms of Oja's rule act at postsynaptic spikes: without any, the data say nothing
    about them (the fit would report values at a bound with zero-width intervals); with them,
    both are constrained."""
    import dataclasses

    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED)
    rule = get_rule("taylor", mask="post:100,post:011")
    bounds = [(p.low, p.high) for p in rule.parameters]
    truth = np.array([OJA[name] for name in rule.names])
    silent = dataclasses.replace(data, post_times=np.array([]), post_ids=np.array([], dtype=int))
    for recording, expected in ((data, []), (silent, [0, 1])):
        problem = infer.ClampedFit(recording, rule, OJA_FIXED, delay=DELAY,
                                   fit_segments=infer.segments(recording.weight_times.size, 4))
        assert infer.unconstrained(problem.objective(problem.fit_segments), truth, bounds) == expected


def test_infer_command_json_and_bad_input(tmp_path):
    from nestplast.recording import save

    path = tmp_path / "data.npz"
    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0), path)
    out = subprocess.run([sys.executable, "-m", "nestplast", "infer", str(path), "--mask", "post:100,post:011",
                          "--fixed", "eta=0.5,tau_pre=20,tau_post=20,Wmax=1000", "--max-generations", "25",
                          "--bootstrap", "3", "--out", str(tmp_path / "run"), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fit = json.loads(out.stdout)
    assert fit["coefficients"]["th_post_100"] == pytest.approx(1.0, abs=0.02)
    assert (tmp_path / "run" / "trajectories.png").stat().st_size > 1000
    # the delay the coefficients hold for: fit.json and the report had none, and a rule fitted at
    # --delay 2 went into one's own network at NEST's default of 1 ms
    assert fit["delay"] == 1.0 and json.loads((tmp_path / "run" / "fit.json").read_text())["delay"] == 1.0
    report = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path / "run")], capture_output=True,
                            text=True)
    assert "fitted at a synaptic delay of 1 ms (fit.json: delay): connect the rule with it" in report.stdout
    bad = subprocess.run([sys.executable, "-m", "nestplast", "infer", str(path), "--mask", "post:100",
                          "--fixed", "etta=1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "etta" in bad.stderr and "Traceback" not in bad.stderr
    from nestplast.commands.infer import parse_fixed
    from nestplast.errors import UsageError

    with pytest.raises(UsageError, match=r"--fixed: Wmax given twice \(1000 and 10\); give it once"):  # the last was kept
        parse_fixed("Wmax=1000,eta=1,Wmax=10")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    bad = subprocess.run([sys.executable, "-m", "nestplast", "infer", str(tmp_path / "junk.npz")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "junk.npz" in bad.stderr and "Traceback" not in bad.stderr


def test_infer_refuses_options_it_would_ignore_and_a_resume_of_nothing(tmp_path, capsys):
    """--compare on a recording's fit made no comparison, --delay on a fit to choices changed nothing,
    without a word; --resume of a folder without a fit began a new one ("(resumed)"), of a file ended
    in a FileExistsError."""
    from nestplast.commands.infer import main
    from nestplast.recording import save

    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0), tmp_path / "data.npz")
    fit = [str(tmp_path / "data.npz"), "--mask", "post:100,post:011", "--fixed", "eta=0.5,tau_pre=20,tau_post=20,Wmax=1000"]
    for options, message in [(["--compare", "post:100"], "--compare: an option of --task choices; this fit would ignore it"),
                             (["--background", "3000,52", "--trials", "2"], "--background, --trials: options of --mode closed"),
                             (["--task", "choices", "--delay", "3"], "--delay: an option of a recording's fit, not of --task choices"),
                             (["--task", "choices", "--hidden", "3"], "--hidden: an option of --task choices --rule mlp"),
                             # at their default values they passed, and were dropped: --hidden 4 fitted 10 units
                             (["--rule", "mlp", "--hidden", "4"], "--hidden: an option of --task choices"),
                             (["--task", "choices", "--delay", "1", "--mode", "clamped"],
                              "--mode, --delay: options of a recording's fit, not of --task choices"),
                             (["--out", str(tmp_path / "none"), "--resume"],
                              f"--resume: {tmp_path / 'none'} holds no fit to continue"),
                             (["--out", str(tmp_path / "data.npz"), "--resume"], "is an existing file"),
                             # as the warning of an unconstrained coefficient advised: refused, saying what to do
                             (["--fixed", "eta=0.5,Wmax=1000,th_post_011=0"],
                              "--fixed: th_post_011 is not a fixed setting of rule 'taylor' (those are: "),
                             (["--fixed", "eta=0.5,Wmax=1000,th_post_011=0"],
                              "th_post_011 is a coefficient the fit searches: to leave one out, fit a rule without it "
                              "(a --mask without its term)")]:
        assert main([*fit, *options]) == 2
        assert message in capsys.readouterr().err, options
    assert not (tmp_path / "none").exists()
    # another command's run: refused before the headline, which said "(resumed)" over it
    from nestplast import experiment
    from nestplast.store import RunStore

    RunStore.create(tmp_path / "search", experiment.default().to_dict(), seed=1, meta={"kind": "search"}).close()
    assert main([*fit, "--out", str(tmp_path / "search"), "--resume"]) == 2
    out, err = capsys.readouterr()
    assert "resumed" not in out and f"cannot resume {tmp_path / 'search'} as an inference: it holds a search" in err
    # a new fit there: "already holds a run; continue it with --resume", which then refused it
    assert main([*fit, "--out", str(tmp_path / "search")]) == 2
    assert (f"{tmp_path / 'search'} already holds a run, a search ({tmp_path / 'search' / 'results.sqlite'}); continue "
            f"it with python -m nestplast.search --out") in capsys.readouterr().err
    # a folder of other files (a prune's output): the fit's files went in among them
    (tmp_path / "pruned").mkdir()
    (tmp_path / "pruned" / "summary.json").write_text("{}")
    assert main([*fit, "--out", str(tmp_path / "pruned")]) == 2
    assert f"{tmp_path / 'pruned'} holds other files (summary.json) and no run" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "pruned").iterdir()) == ["summary.json"]


@pytest.mark.nest
@pytest.mark.slow
def test_a_rule_generated_in_nest_is_recovered_at_zero_noise(tmp_path):
    """The acceptance of the synthetic demo on a short recording: every coefficient within 5 % of
    the largest true one, inside its interval, with the right sign."""
    from nestplast.recovery import Degradation, recover

    fit, rows = recover("additive_stdp", Degradation(), duration_ms=5000.0, n_bootstrap=3, max_generations=40,
                        out=tmp_path / "fit")
    assert len(rows) == 2
    for row in rows:
        assert row["within_5pct"] and row["covered"] and row["sign_right"], row
    assert fit.r2_held_out > 0.999
    # without a bootstrap there is no interval to cover the truth: "[nan, nan] no" called a perfect
    # recovery failed
    from nestplast.commands.infer_demo import table

    bare = [{**row, "low": math.nan, "high": math.nan, "covered": None} for row in rows]
    assert [line.split()[-2:] for line in table(bare).splitlines()[1:-1]] == [["yes", f"{fit.r2_held_out:.3f}"]] * 2
    assert all(f"{'-':>24}  yes" in line for line in table(bare).splitlines()[1:-1])
    assert table(bare).splitlines()[-1].startswith("ok: fitted within 5 % of the largest true coefficient")  # said
    # Oja's 1.0 fitted as 1.0000000149 [1.0000000007, 1.0000000159] was "no": missed by the fit's precision alone
    from nestplast.recovery import covers

    assert covers((1.0000000007, 1.0000000159), 1.0, 1.0) and not covers((1.01, 1.02), 1.0, 1.0)
    _, none = recover("additive_stdp", Degradation(), duration_ms=5000.0, n_bootstrap=0, max_generations=40,
                      out=tmp_path / "bare")
    assert [r["covered"] for r in none] == [None, None]


def test_infer_demo_refuses_bad_arguments(tmp_path):
    from nestplast.store import RunStore

    RunStore.create(tmp_path / "run", experiment={"rule": "taylor"}, seed=1, meta={"kind": "filter"}).close()
    for args, message in ((["nosuch"], "unknown ground truth"), (["oja", "--fraction", "0"], "--fraction"),
                          # a run's folder: the demo's fit/ and recovery.csv went in among its files
                          (["oja", "--out", str(tmp_path / "run")], "holds a nestplast run (results.sqlite)"),
                          (["oja", "--noise", "-1"], "--noise"), (["oja", "--bootstrap", "-1"], "--bootstrap"),
                          (["oja", "--noise", "nan"], "--noise: expected a finite number >= 0, got nan"),
                          (["oja", "--out", ""], "--out: an empty path; give a directory"),
                          (["oja", "--jitter", "inf"], "--jitter: expected a finite number >= 0, got inf"),
                          (["oja", "--duration", "-5"], "shorter than two weight sampling intervals"),
                          (["oja", "--duration", "2000", "--length", "0.05"], "give at least 4000 ms"),
                          (["oja", "--duration", "2000.05"], "multiple of the resolution")):
        out = subprocess.run([sys.executable, "-m", "nestplast", "infer-demo", *args], capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.nest
def test_replay_of_a_recording_generated_in_nest_gives_back_its_weights():
    """NEST against NEST: the clamped replay of a recording that NEST generated (80 synapses,
    NEST free to order its connections as it likes) reproduces the recorded weights."""
    from nestplast.builder import build
    from nestplast.synthetic import GROUND_TRUTHS, generate

    truth = GROUND_TRUTHS["vogels_sprekeler"]
    rec = generate(truth, duration_ms=3000.0, seed=5)
    params = {**truth.params, "Wmax": 200.0}
    weights = replay(build(truth.rule), params, rec, rec.weight_synapses, rec.weights[:, 0], rec.weight_times,
                     delay=DELAY)
    assert np.ptp(rec.weights, axis=1).min() > 0.1
    np.testing.assert_allclose(weights, rec.weights, rtol=1e-9)
    numpy_w = weight_trajectories(truth.rule, params, rec, rec.weight_synapses, rec.weights[:, 0], rec.weight_times,
                                  delay=DELAY)
    np.testing.assert_allclose(numpy_w, rec.weights, rtol=1e-9)


@pytest.mark.mpi
def test_infer_on_two_ranks_records_what_one_rank_records(tmp_path):
    import sqlite3
    from pathlib import Path

    from nestplast.recording import save

    path = tmp_path / "data.npz"
    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0), path)
    mpiexec = Path(sys.executable).parent / "mpiexec"
    rows = {}
    for ranks in (1, 2):
        command = [sys.executable, "-m", "nestplast", "infer", str(path), "--mask", "post:100,post:011", "--fixed",
                   "eta=0.5,tau_pre=20,tau_post=20,Wmax=1000", "--max-generations", "5", "--bootstrap", "0",
                   "--no-plots", "--json", "--out", str(tmp_path / f"run{ranks}")]
        out = subprocess.run([str(mpiexec), "-n", str(ranks), *command], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        with sqlite3.connect(tmp_path / f"run{ranks}" / "results.sqlite") as db:
            rows[ranks] = db.execute("SELECT generation, candidate, trial, theta, loss FROM evaluations "
                                     "ORDER BY generation, candidate, trial").fetchall()
            used = {r[0] for r in db.execute("SELECT DISTINCT rank FROM evaluations")}
        assert used == set(range(ranks))
    assert rows[1] == rows[2]
    # refusals on rank 0 end every rank with one message (the other rank waited for tasks until killed):
    # the run directory holds a run already; a resume with another mask
    other_mask = [("post:100" if a == "post:100,post:011" else a) for a in command] + ["--resume"]
    # and a mistake every rank finds before the run (each rank printed it, then MPI_Abort)
    bad_mask = [("post:1000" if a == "post:100,post:011" else a) for a in command]
    for refused in (command, other_mask, bad_mask):
        out = subprocess.run([str(mpiexec), "-n", "2", *refused], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.count("error:") == 1, out.stderr
    # --help ends every rank as it does one process (it was an MPI_Abort with a SystemExit traceback), printed once
    out = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-m", "nestplast", "infer", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.count("usage:") == 1, "rank 0 alone prints the help (each rank did)"


def test_report_reads_an_inference_run(tmp_path):
    from nestplast import infer
    from nestplast.commands.infer import summary_text

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0)
    result = infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), OJA_FIXED, max_generations=5,
                       n_segments=2, hold_out=2, n_bootstrap=2, out=tmp_path / "fit")  # one fitted segment: a warning
    out = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path / "fit")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    # what the fit printed, read back from fit.json: its warnings included (the report showed none of
    # them, so an unconstrained coefficient looked like a result), no raw floats nor "None %"
    assert "inference" in out.stdout and summary_text(result) in out.stdout
    assert result.warnings and all(f"warning: {w}" in out.stdout for w in result.warnings)
    assert "; plots in" not in out.stdout and "None" not in out.stdout  # the Python API drew no plot
    # and says where they would come from (a report of a search draws them; this one drew none, silently)
    assert "no plots in" in out.stdout and "(the infer command draws them" in out.stdout
    assert "infer-demo and the report of an inference draw none)" in out.stdout  # a demo fit's report sent users to it


def _closed_loop_data(truth, nest_seed: int, duration=3000.0, n_pre=20, seed=2, sample_every_ms=100.0):
    from nestplast.synthetic import DEFAULT_DRIVE_RATE, DEFAULT_DRIVE_WEIGHT, simulate

    rng = np.random.default_rng(seed)
    trains = [np.unique(rng.integers(11, int(duration / 0.1), int(10.0 * duration / 1000))) for _ in range(n_pre)]
    syn_pre, syn_post = np.divmod(np.arange(2 * n_pre), 2)
    rec = simulate(truth.rule, truth.params, trains=trains, syn_pre=syn_pre, syn_post=syn_post,
                   syn_sign=np.ones(2 * n_pre, dtype=int), w_start=rng.uniform(20.0, 40.0, 2 * n_pre), n_post=2,
                   w_max=200.0, drive_rate=DEFAULT_DRIVE_RATE, drive_weight=DEFAULT_DRIVE_WEIGHT["iaf_psc_exp"],
                   duration_ms=duration, sample_every_ms=sample_every_ms, nest_seed=nest_seed)
    return rec, DEFAULT_DRIVE_RATE, DEFAULT_DRIVE_WEIGHT["iaf_psc_exp"]


@pytest.mark.nest
def test_closed_loop_reruns_the_network_that_made_the_data():
    """Only the presynaptic spikes replayed: with the true rule and the same background seed the
    closed loop gives back the recorded postsynaptic spikes and weights; the all-zero rule does not."""
    from nestplast.closed_loop import Background, ClosedLoopFit, Trial
    from nestplast.synthetic import GROUND_TRUTHS

    truth = GROUND_TRUTHS["additive_stdp"]
    rec, rate, weight = _closed_loop_data(truth, nest_seed=1234)
    problem = ClosedLoopFit(rec, truth.rule, {k: v for k, v in truth.params.items() if k not in truth.rule.names}
                            | {"Wmax": 200.0}, Background(rate, weight))
    again = problem.run(truth.params, Trial(0, 1234))
    np.testing.assert_array_equal(again.post_times, rec.post_times)
    np.testing.assert_allclose(again.weights, rec.weights, rtol=1e-12)
    assert problem.errors(truth.params, Trial(0, 1234)) == (0.0, 0.0)
    deviance_zero, sse_zero = problem.zero()
    assert deviance_zero > 0 and sse_zero > 0


@pytest.mark.nest
def test_closed_loop_compares_the_weights_at_the_recorded_times():
    """weight_times as the README records them after nest.Simulate (0, then each T - min_delay: 99,
    199, ..., 999): the closed loop sampled at the first spacing throughout, paired the recorded 199
    with its 297, and failed past the last sample (an IndexError that ended the fit)."""
    import dataclasses

    from nestplast.closed_loop import Background, ClosedLoopFit, Trial
    from nestplast.synthetic import GROUND_TRUTHS

    truth = GROUND_TRUTHS["additive_stdp"]
    every_ms, rate, weight = _closed_loop_data(truth, nest_seed=1234, duration=1000.0, sample_every_ms=1.0)
    times = np.r_[0.0, 100.0 * np.arange(1, 11) - 1.0]
    rec = dataclasses.replace(every_ms, weight_times=times, weights=every_ms.weights[:, times.astype(int)])
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": 200.0}
    problem = ClosedLoopFit(rec, truth.rule, fixed, Background(rate, weight))
    assert problem.errors(truth.params, Trial(0, 1234)) == (0.0, 0.0)  # the data's own weights, sample by sample
    # a sample not taken (NaN) is left out: the same, where it made the error NaN
    gappy = rec.weights.copy()
    gappy[3, 4] = np.nan
    problem = ClosedLoopFit(dataclasses.replace(rec, weights=gappy), truth.rule, fixed, Background(rate, weight))
    assert problem.errors(truth.params, Trial(0, 1234)) == (0.0, 0.0)
    # start weights the rule would clip: NEST now refuses one below |Wmin| at Connect, in every simulation
    unrecorded = rec.with_weights_subset(np.arange(1, len(rec.weight_synapses)))
    with pytest.raises(RecordingError, match=r"--w-unrecorded 2 \(w_unrecorded=\): .* inside the rule's "
                                             r"\[\|Wmin\|, \|Wmax\|\] = \[5, 200\]"):
        ClosedLoopFit(unrecorded, truth.rule, fixed | {"Wmin": 5.0}, Background(rate, weight), w_unrecorded=2.0)
    with pytest.raises(RecordingError, match=r"weights: recorded \|weights\| range over .* outside the rule's"):
        ClosedLoopFit(rec, truth.rule, fixed | {"Wmin": 25.0}, Background(rate, weight))
    # a time the simulation cannot read (not a multiple of the delay, or within the last delay) is refused
    for bad in (np.r_[0.0, 99.5], np.r_[0.0, 999.5]):
        late = dataclasses.replace(every_ms, weight_times=bad, weights=every_ms.weights[:, :2])
        with pytest.raises(RecordingError, match=rf"weight_times: .* multiples of the delay \(1 ms, --delay\) up to "
                                                 rf"duration - delay \(999 ms\).*; {bad[1]:g} ms is not one"):
            ClosedLoopFit(late, truth.rule, fixed, Background(rate, weight))
    # post neurons numbered from 3: neurons 0 .. 2 would be simulated and scored against no spike
    shifted = dataclasses.replace(rec, post_ids=rec.post_ids + 3, syn_post=rec.syn_post + 3, n_post=rec.n_post + 3)
    with pytest.raises(RecordingError, match=r"post neurons 0 .. 2 have neither a synapse nor a spike: .* number the "
                                             r"recorded neurons 0 .. n-1"):
        ClosedLoopFit(shifted, truth.rule, fixed, Background(rate, weight))


@pytest.mark.nest
@pytest.mark.slow
def test_closed_loop_fit_recovers_the_rule(tmp_path):
    from nestplast import infer
    from nestplast.closed_loop import Background, ClosedLoopFit
    from nestplast.synthetic import GROUND_TRUTHS

    truth = GROUND_TRUTHS["additive_stdp"]
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": 200.0}
    seed = 1
    # the data's background is the realisation the fit will use for its trial 0 (so the truth fits exactly)
    rec, rate, weight = _closed_loop_data(truth, nest_seed=1)
    trial_seed = ClosedLoopFit(rec, truth.rule, fixed, Background(rate, weight), seed=seed).trials[0].seed
    rec, rate, weight = _closed_loop_data(truth, nest_seed=trial_seed)
    fit = infer.fit(rec, infer.RuleChoice("taylor", truth.mask), fixed, mode="closed",
                    background=Background(rate, weight), seed=seed, max_generations=25, population_size=8,
                    out=tmp_path / "closed")
    for name in truth.rule.names:
        assert fit.coefficients[name] == pytest.approx(truth.params[name], abs=0.05 * 1.1), fit.coefficients
        low, high = fit.intervals[name]
        assert low <= truth.params[name] <= high, (name, fit.intervals)
        assert high - low < 0.5, "an interval that says something"
    assert fit.deviance_explained_fit > 90.0
    assert fit.r2_held_out > 0.99 and fit.r2_activity_held_out > 0.9, fit
    assert len(fit.bootstrap) == 30


def test_restarts_run_again_with_a_doubled_population_and_keep_the_best(tmp_path):
    import sqlite3

    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0)
    choice = infer.RuleChoice("taylor", "post:100,post:011")
    one = infer.fit(data, choice, OJA_FIXED, max_generations=3, n_bootstrap=0, out=tmp_path / "one")
    said = []
    two = infer.fit(data, choice, OJA_FIXED, max_generations=3, n_bootstrap=0, restarts=1, out=tmp_path / "two",
                    progress=said.append)
    # its generations count from 0 again: a line says which run they are (they read as the first run's)
    restart = [k for k, line in enumerate(said) if line.startswith("restart 1 of 1: ")]
    assert said[restart[0]] == f"restart 1 of 1: CMA-ES again, seed 2, population 16, in {tmp_path / 'two' / 'restart-1'}"
    assert len(restart) == 1 and said[restart[0] + 1].startswith("gen   0")
    with sqlite3.connect(tmp_path / "two" / "restart-1" / "results.sqlite") as db:
        candidates = db.execute("SELECT COUNT(DISTINCT candidate) FROM evaluations WHERE generation = 0").fetchone()[0]
    assert candidates == 16, "the restart doubles the population (8 -> 16)"
    with sqlite3.connect(tmp_path / "one" / "results.sqlite") as db:  # each fit's evaluation recorded 0 s
        assert db.execute("SELECT MIN(wall_time_s) FROM evaluations").fetchone()[0] > 0
        # and the fit recorded no software versions, which the README's store table promises
        meta = json.loads(db.execute("SELECT meta FROM run").fetchone()[0])
    from nestplast.runs import software_versions

    assert meta["versions"] == software_versions() and meta["kind"] == "infer"
    assert two.loss <= one.loss


def test_a_bootstrap_on_quadratic_surfaces_gives_the_weighted_refits():
    """Segment errors (theta - m_s)^2: every draw's minimiser is the draw's weighted mean of the
    m_s, computed a second way here; the surface fitted to noisy points finds it too."""
    from nestplast.surface import ResponseSurface, bootstrap_minima

    rng = np.random.default_rng(3)
    m = rng.normal(0.5, 0.2, 8)
    thetas = rng.uniform(-1.0, 2.0, (40, 1))
    errors = np.stack([(thetas - m) ** 2, np.zeros((40, 8))], axis=-1)  # candidates x segments x (deviance, sse)
    surface = ResponseSurface.fit(thetas, errors, best=[m.mean()])

    def loss(errs, counts, theta):
        return float(np.asarray(counts) @ errs[:, 0])

    fitted = np.ones(8, dtype=bool)
    draws = bootstrap_minima(surface, loss, n_draws=20, n_segments=8, fitted=fitted, seed=5)
    again = np.random.default_rng([5, 7])
    for draw in draws:
        counts = np.bincount(again.choice(8, size=8), minlength=8)
        assert draw[0] == pytest.approx(counts @ m / counts.sum(), abs=1e-6)
    with pytest.raises(ValueError, match="needs more than 3 points"):
        ResponseSurface.fit(thetas[:3], errors[:3], best=[0.0])


def test_surface_intervals_say_where_they_are_cut_short_or_missing():
    """The candidates' span bounds the surface: a minimum beyond it gave an interval of zero width at
    the estimate ("1.56 [1.56, 1.56]"), and too few candidates gave "-", each without a word."""
    from nestplast.surface import surface_intervals

    rng = np.random.default_rng(3)
    m = rng.normal(0.5, 0.2, 8)

    def loss(errs, counts, theta):
        return float(np.asarray(counts) @ errs[:, 0])

    def intervals(thetas):
        errors = np.stack([(thetas - m) ** 2, np.zeros((len(thetas), 8))], axis=-1)
        best = thetas[np.argmin([loss(e, np.ones(8), t) for e, t in zip(errors, thetas)])]
        return surface_intervals(["a"], [(-2.0, 2.0)], best, thetas, errors, loss, n_draws=50,
                                 fitted=np.ones(8, dtype=bool), seed=1)

    found, draws, notes = intervals(rng.uniform(-1.0, 2.0, (40, 1)))  # the minimum well inside: no note
    assert found["a"][0] < m.mean() < found["a"][1] and len(draws) == 50 and notes == []
    found, _, notes = intervals(rng.uniform(-1.0, 0.0, (40, 1)))  # sampled short of the minimum (about 0.5)
    assert found["a"][1] == pytest.approx(0.0, abs=0.03) and notes and "intervals of a end where the simulated " \
        "candidates near the best end" in notes[0]
    found, draws, notes = intervals(rng.uniform(-1.0, 2.0, (3, 1)))
    assert np.isnan(found["a"][0]) and draws == [] and "needs more than 3 simulated candidates, the fit has 3" in notes[0]


def test_surface_intervals_of_coefficients_the_data_do_not_constrain_say_so():
    """Choices never rewarded (R = 0: the reward term does nothing) gave "0.603 [0.603, 0.603]", an
    interval of zero width, without a word. A loss flat in every coefficient has no intervals, and
    one flat along a coefficient gives that coefficient's zero-width interval a note."""
    from nestplast.surface import surface_intervals

    rng = np.random.default_rng(5)
    m = rng.normal(0.5, 0.2, 8)
    thetas = rng.uniform(-1.0, 2.0, (40, 2))

    def loss(errs, counts, theta):
        return float(np.asarray(counts) @ errs[:, 0])

    def intervals(errors):
        best = thetas[np.argmin([loss(e, np.ones(8), t) for e, t in zip(errors, thetas)])]
        return surface_intervals(["a", "b"], [(-2.0, 2.0)] * 2, best, thetas, errors, loss, n_draws=50,
                                 fitted=np.ones(8, dtype=bool), seed=1)

    found, draws, notes = intervals(np.ones((40, 8, 1)))
    assert all(np.isnan(found[n][0]) for n in "ab") and draws == [] and notes == [
        "no intervals: all 40 simulated candidates fit the data equally well, so the data do not constrain the "
        "coefficients and their values mean nothing (e.g. choices never rewarded, so that the reward signal R is 0, "
        "or no spikes that the rule's terms need)"]
    found, draws, notes = intervals(((thetas[:, :1] - m) ** 2)[..., None])  # b changes nothing
    assert found["a"][0] < found["a"][1] and found["b"][0] == found["b"][1], found
    assert notes == ["the intervals of b have zero width: every bootstrap draw stopped at the estimate, where the "
                     "fitted surface is flat along them (the data may not constrain them)"]


@pytest.mark.nest
def test_closed_loop_held_out_segments_score_what_the_fit_left_out():
    """The true rule with the data's background: every held-out measure is perfect; the
    segment errors add up to the whole recording's deviance computed directly."""
    from nestplast.closed_loop import Background, ClosedLoopFit, Trial, poisson_deviance
    from nestplast.synthetic import GROUND_TRUTHS

    truth = GROUND_TRUTHS["additive_stdp"]
    rec, rate, weight = _closed_loop_data(truth, nest_seed=1234)
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": 200.0}
    problem = ClosedLoopFit(rec, truth.rule, fixed, Background(rate, weight), n_segments=5, hold_out=5)
    problem.trials = [Trial(0, 1234)]
    assert problem.held.tolist() == [False, False, False, False, True]
    counts, weights = problem.outputs(problem.params(np.zeros(2)), problem.trials[0])
    errors = problem.segment_errors([counts], [weights])
    assert errors[:, 0].sum() == pytest.approx(poisson_deviance(problem.observed, counts), rel=1e-12)
    assert errors[:, 1].sum() == pytest.approx(float(np.sum((weights - rec.weights) ** 2)), rel=1e-12)
    counts, weights = problem.outputs(truth.params, problem.trials[0])
    measures = problem.held_out([counts], [weights])
    assert measures["deviance_explained_held_out"] == 100.0 and measures["r2_activity_held_out"] == 1.0
    assert measures["r2_weights_held_out"] == 1.0


@pytest.mark.nest
@pytest.mark.slow
def test_infer_command_closed_mode_prints_held_out_measures_and_draws_the_plots(tmp_path):
    from nestplast.recording import save
    from nestplast.synthetic import GROUND_TRUTHS

    truth = GROUND_TRUTHS["additive_stdp"]
    rec, rate, weight = _closed_loop_data(truth, nest_seed=7, duration=2000.0)
    save(rec, tmp_path / "data.npz")
    out = subprocess.run([sys.executable, "-m", "nestplast", "infer", str(tmp_path / "data.npz"), "--mode", "closed",
                          "--background", f"{rate},{weight}", "--mask", truth.mask, "--fixed",
                          "eta=0.75,tau_pre=20,tau_post=20,Wmax=200", "--max-generations", "3",
                          "--population-size", "6", "--bootstrap", "5", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"infer: taylor ({truth.mask}) fitted to {tmp_path / 'data.npz'}, closed mode; "
                                 f"results in {tmp_path / 'run'}\n"), out.stdout  # the fit's first line: minutes before the next
    assert "held-out R^2 of the binned counts" in out.stdout and "quadratic surfaces" in out.stdout
    for name in ("activity.png", "weights.png", "coefficients.png", "stdp_window.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000, name
    fit = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert all(v is not None and v[0] <= fit["coefficients"][k] <= v[1] for k, v in fit["intervals"].items())


# ---- traps a user with their own data falls into


def _quick_fit(data, tmp_path, fixed=OJA_FIXED, **options):
    from nestplast import infer

    settings = {"max_generations": 10, "n_bootstrap": 3, "out": tmp_path / "fit", **options}
    return infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), fixed, **settings)


def test_recorded_weights_beyond_wmax_are_refused_not_clipped(tmp_path):
    """Weights above the rule's Wmax (its default 100 when --fixed leaves it out) would be clipped
    at the first update and the fit would come out wrong without a word."""
    import dataclasses

    from nestplast.recording import RecordingError

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    big = dataclasses.replace(data, weights=data.weights * 100.0)  # up to ~400, beyond the default Wmax 100
    without_wmax = {k: v for k, v in OJA_FIXED.items() if k != "Wmax"}
    with pytest.raises(RecordingError, match=r"outside the rule's \[\|Wmin\|, \|Wmax\|\] = \[0, 100\].*Wmax=1000"):
        _quick_fit(big, tmp_path, fixed=without_wmax)
    assert not (tmp_path / "fit").exists()  # refused before anything ran
    # weights below Wmin: the advice named Wmax, which would not help
    with pytest.raises(RecordingError, match=r"= \[50, 1000\], into which it clips every weight; set Wmin to hold "
                                             r"the recorded weights, e.g. --fixed Wmin=0 \(in Python fixed=\{\.\.\., "
                                             r"'Wmin': 0\}\)"):
        _quick_fit(data, tmp_path, fixed={**OJA_FIXED, "Wmin": 50.0})


def test_a_single_fitted_segment_gives_no_interval_and_says_why(tmp_path):
    """Two sample times make one segment: every bootstrap draw is the same segment, so the
    interval had zero width whatever the noise; now there is none, and a warning says why."""
    import dataclasses

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    two = dataclasses.replace(data, weight_times=data.weight_times[[0, -1]], weights=data.weights[:, [0, -1]])
    fit = _quick_fit(two, tmp_path)
    assert all(math.isnan(low) and math.isnan(high) for low, high in fit.intervals.values())
    assert any("no meaningful intervals" in w for w in fit.warnings)
    saved = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert saved["intervals"] == {"th_post_011": None, "th_post_100": None} and saved["warnings"] == fit.warnings


def test_intervals_from_few_segments_are_warned_of(tmp_path):
    """Two fitted segments resampled give 3 distinct draws: "95 %" intervals ten times narrower than
    ten segments give missed the true coefficients of a noisy recording, with no word of it."""
    import dataclasses

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    fit = _quick_fit(data, tmp_path, n_segments=2, hold_out=0)
    assert [w for w in fit.warnings if "not 95 % intervals" in w] == [
        "the intervals are not 95 % intervals: a bootstrap over only 2 segments has at most 3 distinct draws, and its "
        "intervals come out far too narrow (they may miss the true coefficients); give more segments (--segments) "
        "or more sample times"]
    fit = _quick_fit(data, tmp_path / "five", n_segments=5, hold_out=0)
    assert not [w for w in fit.warnings if "bootstrap over only" in w or "meaningful intervals" in w], fit.warnings
    # a single segment keeps its own warning, without this one
    two = dataclasses.replace(data, weight_times=data.weight_times[[0, -1]], weights=data.weights[:, [0, -1]])
    assert not [w for w in _quick_fit(two, tmp_path / "one").warnings if "bootstrap over only" in w]


def test_a_negative_r2_under_measurement_noise_is_explained(tmp_path):
    """With 5 % weight noise the true rule is recovered within 5 %, and explains most of the
    held-out deviance, yet held-out R^2 is below 0 (each segment starts from noisy weights, and
    R^2 compares with a segment's own mean): a user took a correct fit for a failed one."""
    import dataclasses

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    noise = np.random.default_rng(1).normal(0.0, 0.05 * np.ptp(data.weights), data.weights.shape)
    noisy = dataclasses.replace(data, weights=np.abs(data.weights + noise) * data.syn_sign[:, None])  # signs kept
    fit = _quick_fit(noisy, tmp_path)
    assert all(abs(fit.coefficients[k] - v) < 0.1 for k, v in OJA.items()), fit.coefficients
    assert fit.r2_held_out < 0 < fit.deviance_explained_held_out
    assert [w for w in fit.warnings if w.startswith("held-out R^2")] == [
        f"held-out R^2 {fit.r2_held_out:.2f} is below 0 while the rule explains {fit.deviance_explained_held_out:.1f} % "
        "of the held-out deviance: R^2 measures the weights against each synapse's mean over a segment, and a segment "
        "starts from its recorded first weights, so weight changes small against the measurement noise give R^2 < 0 "
        "even for the rule that made the data; judge the fit by the deviance explained (0 % = no plasticity) and the "
        "intervals"]
    assert not [w for w in _quick_fit(data, tmp_path / "clean").warnings if w.startswith("held-out R^2")]
    # the same measures from a rule that explains little of the data it was fitted to (noise-free
    # additive STDP fitted with Oja's terms: 23 %): not put down to noise, nor the fit to be trusted
    from nestplast.infer import EXPLAINED_MOSTLY, fit_warnings

    assert fit.deviance_explained_fit >= EXPLAINED_MOSTLY  # premise: the true rule explains most
    wrong = dataclasses.replace(fit, deviance_explained_fit=23.0, unidentified=[], at_bound=[])
    said = [w for w in fit_warnings(wrong, n_fitted=8, n_held=2, n_bootstrap=0, what=("segment", "segments"))
            if w.startswith("held-out R^2")]
    assert len(said) == 1 and "judge the fit by the deviance explained" not in said[0]
    assert said[0].endswith("but the rule explains only 23.0 % of the fitted segments' deviance too, which a rule "
                            "that does not describe the data gives as well as noise does: try other terms (the mask) "
                            "before trusting the coefficients and their intervals")


def test_coefficients_stopped_at_a_search_bound_are_named(tmp_path):
    """With eta ten times too small the true coefficients (+-10) lie beyond the search range
    [-2, 2]: the fit stops at the bounds with intervals cut there, which must not pass for a
    confident answer."""
    from nestplast.commands.infer import summary_text

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    fit = _quick_fit(data, tmp_path, fixed={**OJA_FIXED, "eta": 0.05})
    assert sorted(fit.at_bound) == ["th_post_011", "th_post_100"]
    assert "stopped at the end of the search range" in summary_text(fit)
    assert _quick_fit(data, tmp_path / "right").at_bound == []


def test_weights_that_never_change_give_no_measures_instead_of_minus_infinity(tmp_path):
    import dataclasses

    from nestplast import infer
    from nestplast.recording import RecordingError

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    # weights that stop changing: the held-out segments (every 5th of 10) have nothing to explain
    late = infer.segments(data.weight_times.size, 10)[4].first
    weights = data.weights.copy()
    weights[:, late:] = weights[:, late:late + 1]
    fit = _quick_fit(dataclasses.replace(data, weights=weights), tmp_path)
    assert math.isnan(fit.deviance_explained_held_out) and math.isnan(fit.r2_held_out)
    assert not math.isnan(fit.deviance_explained_fit)  # the fitted segments before it change
    assert any("nothing to explain" in w for w in fit.warnings)
    # none ever changes: refused at once (the polish ran to its evaluation limit for minutes, then warned)
    flat = dataclasses.replace(data, weights=np.repeat(data.weights[:, :1], data.weight_times.size, axis=1))
    with pytest.raises(RecordingError, match=r"all 20 recorded weights keep their first value .* no weight change"):
        _quick_fit(flat, tmp_path / "flat")


def test_holding_out_every_segment_is_refused(tmp_path):
    from nestplast.recording import RecordingError

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    with pytest.raises(RecordingError, match="holds out every one of the 10 segments"):
        _quick_fit(data, tmp_path, hold_out=1)
    from nestplast.closed_loop import Background  # the closed mode's loss summed over no block: 0 for every rule

    with pytest.raises(RecordingError, match="holds out every one of the 10 blocks"):
        _quick_fit(data, tmp_path, hold_out=1, mode="closed", background=Background(5000.0, 10.0), n_segments=10)


def test_resume_refuses_other_settings_or_other_data(tmp_path):
    """--resume with another mask crashed in CMA-ES's saved state; with other data it continued the
    old search silently, mixing two data sets in one run."""
    import dataclasses

    from nestplast import infer
    from nestplast.store import StoreError

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    _quick_fit(data, tmp_path, max_generations=3, n_bootstrap=0)
    with pytest.raises(StoreError, match="mask: 'post:100,post:011' then, 'post:100' now"):
        infer.fit(data, infer.RuleChoice("taylor", "post:100"), OJA_FIXED, max_generations=4, n_bootstrap=0,
                  out=tmp_path / "fit", resume=True)
    other = dataclasses.replace(data, weights=data.weights * 1.01)
    with pytest.raises(StoreError, match="the data differ"):
        _quick_fit(other, tmp_path, max_generations=4, n_bootstrap=0, resume=True)
    said = []
    assert _quick_fit(data, tmp_path, max_generations=4, n_bootstrap=0, resume=True, progress=said.append) is not None
    assert said[0] == f"resuming {tmp_path / 'fit'} after generation 2", said  # the command's headline no longer says it
    # a resume ran the polish again from scratch, taken for lost work
    assert [line for line in said if line.startswith("polish: ")][0].endswith(
        "; the polish and the bootstrap are not stored, so a resume runs them again")
    # the same arrays with another description (free text) are the same data: refused as "the data differ"
    renamed = dataclasses.replace(data, description="same data, renamed")
    assert _quick_fit(renamed, tmp_path, max_generations=4, n_bootstrap=0, resume=True) is not None
    # a run of nestplast 0.3.0 recorded the fingerprint with the description alone: still compared
    from nestplast.store import RunStore

    with RunStore.open(tmp_path / "fit") as store:
        older = {k: v for k, v in store.experiment().items() if k != "arrays_sha256"}
        store.record_resumed(older)
    with pytest.raises(StoreError, match="the data differ"):
        _quick_fit(renamed, tmp_path, max_generations=4, n_bootstrap=0, resume=True)
    assert _quick_fit(data, tmp_path, max_generations=4, n_bootstrap=0, resume=True) is not None
    # more generations asked for on resuming are run (the saved optimiser kept its budget of 3, and the
    # resume did nothing without a word)
    with RunStore.open(tmp_path / "fit", read_only=True) as store:
        assert store.last_complete_generation() == 3
    # the same terms in another order are the same rule, but theta's entries follow the mask: CMA-ES's
    # state and every recorded theta would be read as the other coefficients
    with pytest.raises(StoreError, match="in the order th_post_100, th_post_011, this resume's would be th_post_011, "
                                         "th_post_100.*give the mask's terms in the run's order"):
        infer.fit(data, infer.RuleChoice("taylor", "post:011,post:100"), OJA_FIXED, max_generations=5,
                  n_bootstrap=0, out=tmp_path / "fit", resume=True)
    with RunStore.open(tmp_path / "fit", read_only=True) as store:
        assert store.last_complete_generation() == 3  # untouched
    # fewer generations than it has: it went on to the polish and recorded its stop as maxiter = 2 (the search refuses it)
    with pytest.raises(StoreError, match=r"cannot resume .* with max_generations = 2 \(--max-generations\): it already "
                                         r"has 4 generations; give 4 or more"):
        infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), OJA_FIXED, max_generations=2, n_bootstrap=0,
                  out=tmp_path / "fit", resume=True)
    # the fixed settings as the rule's defaults fill them: tau_pre = tau_post = 20 given, then left out
    assert OJA_FIXED["tau_pre"] == OJA_FIXED["tau_post"] == get_rule("taylor").fixed["tau_pre"] == 20.0
    same = {k: v for k, v in OJA_FIXED.items() if k not in ("tau_pre", "tau_post")}
    assert infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), same, max_generations=4, n_bootstrap=0,
                     out=tmp_path / "fit", resume=True) is not None


def test_a_fit_cut_short_in_python_says_what_is_kept_and_how_to_go_on(tmp_path):
    """A Ctrl-C in a notebook gave a bare traceback: nothing said that the generations were kept,
    nor that out=None had kept nothing."""
    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)

    def interrupt(line: str) -> None:
        if line.startswith("gen"):
            raise KeyboardInterrupt

    for out, note in ((tmp_path / "fit", f"kept in {tmp_path / 'fit'}; the same call with resume=True goes on"),
                      (None, "out=None ran in a temporary folder, now removed; give out=FOLDER")):
        with pytest.raises(KeyboardInterrupt) as stopped:
            _quick_fit(data, tmp_path, max_generations=3, n_bootstrap=0, out=out, progress=interrupt)
        assert len(stopped.value.__notes__) == 1 and note in stopped.value.__notes__[0], stopped.value.__notes__
    assert _quick_fit(data, tmp_path, max_generations=3, n_bootstrap=0, resume=True) is not None


def test_weights_that_change_after_the_spikes_end_are_warned_of(tmp_path):
    """Spikes recorded for half the time of the weights: the fit came out 26 % off, converged, and
    said nothing; no rule can change a weight without a presynaptic spike."""
    import dataclasses

    from nestplast.recording import data_warnings

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    pre, post = data.pre_times < 1500.0, data.post_times < 1500.0
    cut = dataclasses.replace(data, pre_times=data.pre_times[pre], pre_ids=data.pre_ids[pre],
                              post_times=data.post_times[post], post_ids=data.post_ids[post])
    last = float(cut.pre_times[-1])
    assert [w for w in data_warnings(cut) if "no presynaptic spike" in w] == [
        f"no presynaptic spike after {last:g} ms, yet the weights, sampled until {data.weight_times[-1]:g} ms, still "
        "change after it (NEST changes a weight only when a presynaptic spike arrives): were the spikes recorded for "
        f"less time than the weights? No rule explains those changes; fit the part with spikes "
        f"(recording.segment(0, {last + 10:g}))"]
    assert not any("no presynaptic spike" in w for w in data_warnings(cut.segment(0.0, last + 10.0)))
    for whole in (data, data.noisy_weights(0.05, seed=1)):  # measurement noise in a recording with spikes throughout
        assert not any("no presynaptic spike" in w for w in data_warnings(whole))
    fit = _quick_fit(cut, tmp_path, max_generations=2, n_bootstrap=0)  # a fit says it first
    assert fit.warnings[0].startswith(f"no presynaptic spike after {last:g} ms"), fit.warnings


def test_a_mask_term_given_twice_is_refused():
    """post:100,post:100 (a typo for post:100,post:011) fitted one coefficient without a word."""
    with pytest.raises(ValueError, match=r"the Taylor mask 'post:100,post:100' names 'post:100' twice"):
        get_rule("taylor", mask="post:100,post:100")


def test_both_modes_refuse_times_in_seconds(tmp_path):
    """A Recording made in Python (not read by load) in seconds: the clamped mode refused it, the
    closed mode, which fits the spikes themselves, fitted it."""
    import dataclasses

    from nestplast.closed_loop import Background
    from nestplast.recording import RecordingError

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=3000.0)
    seconds = dataclasses.replace(data, pre_times=data.pre_times / 1000, post_times=data.post_times / 1000,
                                  weight_times=data.weight_times / 1000, duration=data.duration / 1000)
    for mode in ({}, {"mode": "closed", "background": Background(5000.0, 10.0)}):
        with pytest.raises(RecordingError, match="must be in ms"):
            _quick_fit(seconds, tmp_path, **mode)


def test_ctrl_c_in_a_fit_says_how_far_it_got_and_how_to_go_on(tmp_path):
    import signal

    from nestplast.recording import save

    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0), tmp_path / "data.npz")
    process = subprocess.Popen([sys.executable, "-m", "nestplast", "infer", str(tmp_path / "data.npz"), "--mask",
                                "post:100,post:011", "--fixed", "eta=0.5,tau_pre=20,tau_post=20,Wmax=1000",
                                "--max-generations", "1000", "--bootstrap", "0", "--out", str(tmp_path / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().startswith("infer: taylor (post:100,post:011) fitted to ")
    assert process.stdout.readline().startswith("gen")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted: after generation" in err, err
    assert "Resume with: the same command with --resume" in err


@pytest.mark.mpi
def test_ctrl_c_after_the_search_of_a_two_rank_fit_ends_it_as_ctrl_c(tmp_path):
    """During the polish or the bootstrap the worker rank, done, waited in MPI_Finalize, past
    Python's handlers: mpiexec's Ctrl-C killed it, and MPICH ended the job with its banner ("BAD
    TERMINATION ...") and exit code 2 instead of the one line and 130."""
    import signal
    from pathlib import Path

    from nestplast.recording import save

    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0), tmp_path / "data.npz")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    process = subprocess.Popen([str(mpiexec), "-n", "2", sys.executable, "-m", "nestplast", "infer",
                                str(tmp_path / "data.npz"), "--mask", "post:100,post:011", "--fixed",
                                "eta=0.5,tau_pre=20,tau_post=20,Wmax=1000", "--max-generations", "2", "--bootstrap",
                                "1000", "--no-plots", "--out", str(tmp_path / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while not (line := process.stdout.readline()).startswith("bootstrap:"):
            assert line, "the fit reached its bootstrap"
        time.sleep(1.0)  # the worker is past its last task and its return
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and "BAD TERMINATION" not in err, err
    assert err.count("interrupted") == 1 and "Resume with: the same command with --resume" in err, err


def test_infer_command_names_a_bad_mask_instead_of_a_traceback(tmp_path, capsys):
    """A mask term of four digits, or a mask for the doublet rule, ended in a ValueError's traceback."""
    from nestplast.commands.infer import main
    from nestplast.recording import save

    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0), tmp_path / "data.npz")
    for args, message in ((["--mask", "post:1000"], "bad Taylor mask term 'post:1000'"),
                          (["--rule", "doublet", "--mask", "post:100"], "rule 'doublet' takes no mask")):
        assert main([str(tmp_path / "data.npz"), *args, "--out", str(tmp_path / "run")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_settings_no_rule_can_run_with_are_refused_before_the_fit(tmp_path):
    """tau_pre = 0 (which the compiled rule refuses) and a delay of 0 were fitted into numbers
    without meaning; eta = NaN was reported as "weights that never change"; a rule the numpy model
    cannot compute (reward, mlp_fsbi) failed with a KeyError or ValueError deep in the model."""
    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0)
    for fixed, options, message in (({**OJA_FIXED, "tau_pre": 0.0}, {}, "tau_pre = 0: time constants"),
                                    ({**OJA_FIXED, "eta": math.nan}, {}, "eta = NaN"),
                                    (OJA_FIXED, {"delay": 0.0}, r"delay: the synaptic \(dendritic\) delay must be > 0 ms")):
        with pytest.raises(infer.FitSettingsError, match=message):
            _quick_fit(data, tmp_path, fixed=fixed, **options)
    with pytest.raises(infer.FitSettingsError, match="rule 'reward' cannot be fitted to a recording"):
        infer.fit(data, infer.RuleChoice("reward"), {"Wmax": 1000.0}, out=tmp_path / "fit")
    # the closed mode's arguments given to a clamped fit: it ran, ignoring them (the command refuses them)
    for closed, names in (({"background": (3000.0, 52.0)}, "background: an argument"),
                          ({"trials": 3, "w_unrecorded": 20.0}, "trials, w_unrecorded: arguments")):
        with pytest.raises(infer.FitSettingsError, match=f"{names} of mode='closed'; this clamped fit would ignore"):
            infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), OJA_FIXED, out=tmp_path / "fit", **closed)
    assert not (tmp_path / "fit").exists()


def test_a_learning_rate_of_zero_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    """--fixed eta=0 was fitted for minutes, then a coefficient was printed as unconstrained with a
    warning that blamed the data ("record longer, more spikes"): with eta = 0 no weight changes,
    so no coefficient can be inferred. The search refuses it in an experiment file; the fit (Python,
    both modes, and the command) now refuses it too, before any simulation."""
    import nestplast
    from nestplast import infer
    from nestplast.commands.infer import main
    from nestplast.recording import save

    def no_search(*args, **kwargs):
        raise AssertionError("the fit ran: eta = 0 reached the search")

    monkeypatch.setattr(infer, "search_with_restarts", no_search)
    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0)
    for mode in ("clamped", "closed"):
        with pytest.raises(infer.FitSettingsError, match="eta = 0: expected a nonzero learning rate"):
            nestplast.fit_rule(data, infer.RuleChoice("taylor", "post:100,post:011"), {**OJA_FIXED, "eta": 0.0},
                               mode=mode, out=tmp_path / "fit")
    assert not (tmp_path / "fit").exists()
    save(data, tmp_path / "data.npz")
    assert main([str(tmp_path / "data.npz"), "--mask", "post:100,post:011", "--fixed",
                 "Wmax=1000,eta=0,tau_pre=20,tau_post=20", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "eta = 0: expected a nonzero learning rate" in err and "--fixed eta=" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_held_out_segments_of_one_sample_say_why_there_is_no_r2(tmp_path):
    """--segments as many as the sample times leaves one scored sample per segment: R^2 (around
    each segment's mean) is undefined, and the summary printed "held-out R^2 nan" without a word."""
    import dataclasses

    from nestplast.commands.infer import summary_text

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0)
    data = dataclasses.replace(data, weight_times=data.weight_times[::2], weights=data.weights[:, ::2])
    fit = _quick_fit(data, tmp_path, n_segments=500, max_generations=3, n_bootstrap=0)
    assert math.isnan(fit.r2_held_out) and not math.isnan(fit.deviance_explained_held_out)
    assert any("no held-out R^2" in w and "give fewer --segments" in w for w in fit.warnings)
    assert "held-out R^2 n/a" in summary_text(fit)


def test_spike_ids_numbered_unlike_synapse_ids_are_named_in_the_warnings(tmp_path):
    """NEST's node ids in pre_ids beside 0-based syn_pre pass the schema (all in range) and make
    every synapse read its neighbour's spikes: the fit came out wrong without a word."""
    import dataclasses

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0)
    shifted = dataclasses.replace(data, pre_ids=data.pre_ids + 1, n_pre=None)
    fit = _quick_fit(shifted, tmp_path, max_generations=2, n_bootstrap=0)
    assert any("pre ids 0 have synapses (syn_pre) but no spike, while pre ids 10 spike" in w for w in fit.warnings)
    assert not any("ids" in w for w in _quick_fit(data, tmp_path / "right", max_generations=2, n_bootstrap=0).warnings)


def test_infer_demo_refuses_an_out_holding_a_fit_without_pointing_to_resume(tmp_path, capsys):
    """The store's refusal said "continue it with --resume", an option the demo does not have."""
    from nestplast.commands.infer_demo import main
    from nestplast.store import RunStore

    RunStore.create(tmp_path / "fit", experiment={}, seed=1).close()
    assert main(["additive_stdp", "--duration", "200", "--bootstrap", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    # nor the way out after a demo cut short by Ctrl-C: the demo has no resume
    assert err == (f"error: {tmp_path} already holds a demo's fit ({tmp_path / 'fit'}); the demo has no --resume: choose "
                   f"another --out, or delete {tmp_path / 'fit'}\n")


def test_a_fit_read_back_from_fit_json_prints_as_the_fit_did(tmp_path):
    """`nestplast report` on a fit's folder printed the coefficients without the warnings (an
    unconstrained coefficient looked like a result) and "None %"; Fit.from_json gives it the fit
    back, to print with the command's own summary_text."""
    import dataclasses

    from nestplast.commands.infer import summary_text
    from nestplast.infer import Fit

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0)
    two = dataclasses.replace(data, weight_times=data.weight_times[[0, -1]], weights=data.weights[:, [0, -1]])
    fit = _quick_fit(two, tmp_path, max_generations=2, n_bootstrap=2)
    again = Fit.from_json(json.loads((tmp_path / "fit" / "fit.json").read_text()))
    assert fit.warnings and summary_text(again) == summary_text(fit)
    assert again.nest_params == fit.nest_params


def test_a_fit_resumed_on_a_search_names_it(tmp_path, capsys):
    """`infer --resume` on a search's folder said "the data and settings differ" and printed the
    search's whole rule table against the fit's rule name."""
    from nestplast.commands.infer import main
    from nestplast.recording import save
    from nestplast.store import RunStore

    save(synthetic("post:100,post:011", OJA, OJA_FIXED, duration=1000.0), tmp_path / "data.npz")
    RunStore.create(tmp_path / "run", experiment={"rule": {"name": "doublet"}}, seed=1, meta={"kind": "search"}).close()
    assert main([str(tmp_path / "data.npz"), "--mask", "post:100,post:011", "--fixed", "Wmax=1000,eta=1,tau_pre=20,tau_post=20",
                 "--out", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"it holds a search; go on with python -m nestplast.search --out {tmp_path / 'run'} --resume" in err, err


def test_infer_demo_refuses_a_negative_seed_and_degradations_the_sweep_would_ignore(capsys, monkeypatch):
    """--seed -1 ended in numpy's traceback; --sweep ignored --noise, --jitter, --fraction and
    --length without a word, and its --out's help promised fits that the sweep does not write.
    Refused before any simulation."""
    from nestplast import recovery
    from nestplast.commands.infer_demo import main, parser

    def ran(*args, **kwargs):
        raise AssertionError("the demo ran")

    monkeypatch.setattr(recovery, "recover", ran)
    monkeypatch.setattr(recovery, "sweep", ran)

    for args, message in ((["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
                          (["--sweep", "--noise", "0.05", "--fraction", "0.5"],
                           "--sweep runs every degradation in turn (noise, jitter, fraction, length, one at a time, "
                           "the others at their best) and takes no --noise, --fraction")):
        assert main(["oja", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert "the sweep keeps none of its fits" in " ".join(parser().format_help().split())


def test_infer_demo_prints_the_fits_warnings_in_its_own_options(tmp_path, capsys):
    """`infer-demo oja --duration 200` printed "fitted 2 [nan, nan] no" without a word: the warnings
    were only in fit/fit.json, and pointed to --segments, which the demo does not have."""
    from nestplast.commands.infer_demo import main, warning_lines
    from nestplast.infer import Fit

    assert main(["oja", "--duration", "200", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning: the data do not constrain th_post_011" in out and "warning: no meaningful intervals" in out, out
    assert "--segments" not in out and "give a longer --duration" in out
    assert len(json.loads((tmp_path / "fit" / "fit.json").read_text())["warnings"]) == out.count("warning: ")
    # advice naming an option only the infer command has says so
    fit = Fit("taylor", "post:100", ["th_post_100"], {"th_post_100": 1.0}, {"th_post_100": (0.5, 1.5)}, {}, 0.1,
              0.9, 90.0, 90.0, warnings=["th_post_100 stopped at the end of the search range; rescale eta with --fixed"])
    assert warning_lines(fit) == [f"warning: {fit.warnings[0]} (--fixed: options of python -m nestplast infer, "
                                  "which fits your own recordings; the demo fits the ground truth's terms with its "
                                  "settings)"]
    # each advice the fit can give is given in the demo's options, however the fit words it
    from nestplast.infer import FEWER_SEGMENTS_ADVICE, more_segments_advice

    fit.warnings = [f"one sample each; {FEWER_SEGMENTS_ADVICE}", f"one segment; {more_segments_advice('segments')}"]
    assert [line.endswith("--duration (more sample times in each segment)") for line in warning_lines(fit)] == [True, False]
    assert all("--segments" not in line for line in warning_lines(fit))


def test_infer_demo_names_its_noise_for_weights_beyond_wmax(tmp_path, capsys):
    """--noise 2 pushes weights beyond the ground truth's Wmax: the refusal advised --fixed
    Wmax=1000, which the demo does not have."""
    from nestplast.commands.infer_demo import main

    assert main(["oja", "--duration", "3000", "--noise", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--noise 2: the noisy weights range over |w| in [0, " in err and "give a smaller --noise" in err, err
    assert "--fixed" not in err and "Traceback" not in err


def test_a_fit_with_nothing_held_out_says_so(tmp_path):
    """infer-demo on a short recording (2 segments, every 5th held out: none) printed "R^2 nan" without a word."""
    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0)
    fit = _quick_fit(data, tmp_path, hold_out=0, max_generations=3, n_bootstrap=0)
    assert math.isnan(fit.r2_held_out)
    assert [w for w in fit.warnings if w.startswith("no segment held out (--hold-out 0, or fewer segments than "
                                                    "--hold-out): no held-out R^2")]


def test_the_demo_sweep_says_where_it_goes_and_keeps_each_fit_as_it_ends(tmp_path, capsys, monkeypatch):
    """`infer-demo oja --sweep` ran 15 minutes without a line, into a temporary folder it never
    named, and a stop kept nothing. (Two of the sweep's degradations here, at a short duration.)"""
    import csv

    from nestplast import recovery
    from nestplast.commands.infer_demo import main

    monkeypatch.setattr(recovery, "SWEEP", {"weight_noise": [0.0], "recorded_fraction": [1.0, 0.5]})
    assert [d.recorded_fraction for d in recovery.sweep_degradations()] == [1.0, 0.5]
    assert main(["oja", "--sweep", "--duration", "400", "--bootstrap", "0", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sweep: 2 fits of oja, one degradation at a time; table in {tmp_path / 'recovery.csv'}, written after each"
    progress = [line for line in lines if line.startswith("sweep: fit")]
    assert progress == ["sweep: fit 1 of 2 done (undegraded)", "sweep: fit 2 of 2 done (recorded_fraction 0.5)"]
    with open(tmp_path / "recovery.csv") as f:
        assert {row["recorded_fraction"] for row in csv.DictReader(f)} == {"1.0", "0.5"}


def test_a_closed_fit_without_intervals_does_not_name_their_method():
    """"intervals: bootstrap over segments on quadratic surfaces ..." stood above "warning: no intervals"."""
    import dataclasses

    from nestplast.commands.infer import summary_text
    from nestplast.infer import Fit

    nan = float("nan")
    closed = dict(r2_activity_held_out=0.4, intervals_from="bootstrap over segments on quadratic surfaces")
    without = Fit("taylor", "post:100", ["th_post_100"], {"th_post_100": 1.0}, {"th_post_100": (nan, nan)}, {}, 0.1,
                  0.9, 90.0, 90.0, **closed, warnings=["no intervals: too few segments"])
    assert "intervals: none (the warnings say why)" in summary_text(without)
    # none asked for (--bootstrap 0), no warning: none pointed to
    assert summary_text(dataclasses.replace(without, warnings=[])).splitlines()[-1].endswith("intervals: none")
    with_them = Fit("taylor", "post:100", ["th_post_100"], {"th_post_100": 1.0}, {"th_post_100": (0.5, 1.5)}, {}, 0.1,
                    0.9, 90.0, 90.0, **closed)
    assert "intervals: bootstrap over segments on quadratic surfaces" in summary_text(with_them)


def test_a_fit_without_out_keeps_no_folder(tmp_path, monkeypatch):
    """out=None: the store lives in a temporary folder removed when the fit returns (each call left one
    in /tmp, and infer-demo --sweep ten); with nothing kept, resume=True is refused."""
    import tempfile

    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    choice = infer.RuleChoice("taylor", "post:100,post:011")
    fit = infer.fit(data, choice, OJA_FIXED, max_generations=2, n_bootstrap=0, restarts=1)
    assert fit is not None and set(fit.coefficients) == {"th_post_100", "th_post_011"}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(infer.FitSettingsError, match="resume=True continues the fit stored in out"):
        infer.fit(data, choice, OJA_FIXED, max_generations=2, resume=True)


def test_numpy_numbers_in_the_settings_reach_fit_json(tmp_path):
    """A Wmax taken from the data's float32 weights, or a numpy delay: the whole fit ran, then writing
    fit.json failed (float32 is not JSON serializable) and the result was lost."""
    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED, duration=2000.0)
    fixed = {**OJA_FIXED, "Wmax": np.float32(OJA_FIXED["Wmax"]), "eta": np.float64(OJA_FIXED["eta"])}
    fit = infer.fit(data, infer.RuleChoice("taylor", "post:100,post:011"), fixed, delay=np.float32(1.0),
                    max_generations=2, n_bootstrap=0, out=tmp_path / "fit")
    written = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert written["fixed"]["Wmax"] == OJA_FIXED["Wmax"] and written["delay"] == 1.0
    assert type(fit.fixed["Wmax"]) is float


@pytest.mark.nest
def test_a_closed_loop_background_may_be_a_rate_and_weight_pair(tmp_path, monkeypatch):
    """background=(3000, 52), as the command's --background 3000,52: a bare AttributeError ('tuple' object has
    no attribute 'rate'); anything else is refused naming Background. The module is built before the
    search, and said to be compiled where the fit reports progress (40-50 s passed without a line)."""
    from nestplast import infer
    from nestplast.synthetic import GROUND_TRUTHS

    truth = GROUND_TRUTHS["additive_stdp"]
    rec, rate, weight = _closed_loop_data(truth, nest_seed=1, duration=1000.0)
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": 200.0}
    choice = infer.RuleChoice("taylor", truth.mask)
    built, said, real = [], [], infer.build
    monkeypatch.setattr(infer, "build", lambda *args, **kw: built.append((list(said), kw)) or real(*args, **kw))
    fit = infer.fit(rec, choice, fixed, mode="closed", background=(rate, weight), max_generations=1,
                    population_size=4, n_segments=2, hold_out=2, n_bootstrap=0, out=tmp_path / "pair",
                    progress=said.append)
    assert fit is not None and set(fit.coefficients) == set(truth.rule.names)
    assert built == [([], {"quiet": False})], "once, before the first generation's line, not quiet"
    from nestplast.commands.infer import summary_text  # no draws asked for, no warning: none said to say why

    # one generation: warned of as far from converged (and of scoring worse than no plasticity, 2.35 against 2),
    # which says nothing of why there are no intervals
    assert [w for w in fit.warnings if "generation limit" not in w and "worse than no plasticity" not in w] == []
    assert any(line.endswith("intervals: none") for line in summary_text(fit).splitlines())
    with pytest.raises(TypeError, match=r"background: expected closed_loop.Background\(rate, weight\) or a \(rate, "
                                        r"weight\) pair, got 'fast'"):
        infer.fit(rec, choice, fixed, mode="closed", background="fast", out=tmp_path / "refused")


def test_a_weight_sample_not_taken_is_left_out_of_the_fit(tmp_path):
    """A NaN weight (a sample not taken) refused the whole file. It now drops that sample, and a
    synapse from a segment whose start it is: the errors are those of the data without them."""
    import dataclasses

    from nestplast import infer

    data = synthetic("post:100,post:011", OJA, OJA_FIXED)
    gappy = data.weights.copy()
    gappy[:, 7] = np.nan  # a sample time at which nothing was sampled
    gappy[3, 0] = np.nan  # synapse 3 not sampled at the start
    gappy[5, 20] = np.nan
    rule = get_rule("taylor", mask="post:100,post:011")
    whole = [infer.Segment(0, 0, data.weight_times.size - 1)]
    with_gaps = infer.ClampedFit(dataclasses.replace(data, weights=gappy), rule, OJA_FIXED, delay=DELAY,
                                 fit_segments=whole)
    # the second way: the sample time and synapse 3 left out of the data; synapse 5's sample cannot be, so it is
    # subtracted from each sum
    kept = np.delete(np.arange(data.weight_times.size), 7)
    rows = np.delete(np.arange(data.n_synapses), 3)
    without = dataclasses.replace(data, weight_times=data.weight_times[kept], weights=data.weights[rows][:, kept],
                                  weight_synapses=data.weight_synapses[rows])
    reference = infer.ClampedFit(without, rule, OJA_FIXED, delay=DELAY,
                                 fit_segments=[infer.Segment(0, 0, kept.size - 1)])
    theta = [0.8, -0.7]
    predicted = reference.predict(theta, reference.fit_segments[0])[4, 19]  # synapse 5, sample time 20
    observed = without.weights[4, 19]
    mean = without.weights[4, 1:].mean()
    others = without.weights[4, 1:][np.arange(kept.size - 1) != 18]
    sse, sse_zero, sst = reference.errors(theta, reference.fit_segments[0])
    expected = (sse - (predicted - observed) ** 2, sse_zero - (without.weights[4, 0] - observed) ** 2,
                sst - np.sum((without.weights[4, 1:] - mean) ** 2) + np.sum((others - others.mean()) ** 2))
    assert with_gaps.errors(theta, whole[0]) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(with_gaps.predict(theta, whole[0])[3]).all()  # no start, no prediction (a plot draws none)
    # a fit recovers the rule from data with 30 % of the samples not taken
    rng = np.random.default_rng(4)
    sparse = data.weights.copy()
    sparse[rng.random(sparse.shape) < 0.3] = np.nan
    fit = _quick_fit(dataclasses.replace(data, weights=sparse), tmp_path)
    for name, true in OJA.items():
        assert fit.coefficients[name] == pytest.approx(true, abs=0.01)
    assert fit.r2_held_out > 0.999


def test_r_squared_leaves_out_weight_samples_not_taken():
    from nestplast.closed_loop import r_squared

    observed = np.array([[1.0, np.nan, 3.0, 4.0], [2.0, 2.5, np.nan, 1.0]])
    predicted = np.array([[1.5, 9.0, 2.5, 4.0], [2.0, 2.0, 7.0, 1.5]])
    seen = ~np.isnan(observed)
    total = sum(np.sum((o[s] - o[s].mean()) ** 2) for o, s in zip(observed, seen))
    assert r_squared(observed, predicted) == pytest.approx(1.0 - np.sum((predicted - observed)[seen] ** 2) / total)
    assert r_squared(observed, np.where(seen, predicted, 1e9)) == r_squared(observed, predicted)
    overflowed = predicted.copy()
    overflowed[0, 0] = np.nan
    assert math.isnan(r_squared(observed, overflowed))  # the model's NaN where a sample was taken stays


def test_the_polish_goes_on_from_where_powell_stopped_and_says_when_it_could_not():
    """One run of Powell from CMA-ES's best point spent all its evaluations along a curved valley and
    stopped short (loss 5e-5 where a fresh start from there reached 2e-29), without a word. The
    polish now goes on from there once, with fresh directions; Rosenbrock's function in 8-D (its
    minimum at 1, 1, ...) is the same case."""
    from scipy.optimize import minimize, rosen

    from nestplast.infer import polish

    bounds, start = [(-5.0, 5.0)] * 8, np.full(8, -1.0)
    once = minimize(rosen, start, method="Powell", bounds=bounds, options={"xtol": 1e-8, "ftol": 1e-14, "maxfev": 3000})
    assert once.status == 1 and once.fun > 1e-3  # stopped at its limit, short of the minimum
    said = []
    x, loss, converged = polish(rosen, start, bounds, xtol=1e-8, ftol=1e-14, maxfev=3000, progress=said.append)
    assert converged and loss < 1e-12 and np.allclose(x, 1.0, atol=1e-5)
    assert said == ["polish: at its limit of 3000 loss evaluations at loss 0.03334: once more from there, "
                    "with fresh directions"]
    assert polish(rosen, start, bounds, xtol=1e-8, ftol=1e-14, maxfev=30)[2] is False


def test_a_long_polish_says_where_it_stands(monkeypatch):
    """An MLP rule's 102 coefficients polished for minutes after CMA-ES's last line, without a word."""
    from scipy.optimize import rosen

    from nestplast import infer

    monkeypatch.setattr(infer, "PROGRESS_EVERY_S", 0.0)  # every evaluation is "long"
    said, losses = [], []
    infer.polish(lambda x: losses.append(rosen(x)) or losses[-1], np.full(8, -1.0), [(-5.0, 5.0)] * 8, xtol=1e-8,
                 ftol=1e-14, maxfev=50, restart=False, progress=said.append)
    assert len(said) == len(losses) == 50
    assert said[-1] == f"polish: 50 of at most 50 loss evaluations, loss {min(losses):.4g}"


def test_a_polish_that_did_not_converge_is_warned_of(tmp_path, monkeypatch):
    from nestplast import infer

    monkeypatch.setattr(infer, "POLISH_EVALUATIONS", 3)  # too few to converge from any start
    fit = _quick_fit(synthetic("post:100,post:011", OJA, OJA_FIXED), tmp_path)
    assert any(w.startswith("the polish stopped twice at its limit of 3 loss evaluations before converging (loss ")
               for w in fit.warnings), fit.warnings


def test_a_long_bootstrap_says_how_far_it_is(tmp_path, monkeypatch):
    """A 300 s recording's refits ran for an hour after "bootstrap: 20 refits" without another line."""
    from nestplast import infer

    monkeypatch.setattr(infer, "PROGRESS_EVERY_S", 0.0)  # every refit counts as long
    said = []
    _quick_fit(synthetic("post:100,post:011", OJA, OJA_FIXED), tmp_path, progress=said.append)
    lines = [line for line in said if line.startswith("bootstrap: ")]
    assert lines[0].startswith("bootstrap: 3 refits") and len(lines) == 3
    assert lines[1].startswith("bootstrap: 1 of 3 refits done, ~") and lines[2].startswith("bootstrap: 2 of 3 refits done")
