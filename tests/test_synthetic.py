"""Ground-truth recordings generated in NEST (nestplast.synthetic): the exact timing of the sampled
weights, checked against counts computed by hand from the recorded spikes; the recording's schema,
sizes and reproducibility; the named ground truths.

The timing tests use a rule with one constant term, so that a weight is its start value plus a
constant times a number of spikes: which spikes count pins down NEST's delivery exactly. A plain
numpy model of the whole Taylor rule (traces included) then reproduces generated recordings to
1e-9, also where pre spikes coincide with post spikes. All times are compared in integer steps.
"""

import numpy as np
import pytest
from helpers import TAYLOR_TEST_MASK

from nestplast.recording import load, save, validate
from nestplast.synthetic import GROUND_TRUTHS, GroundTruth, generate, taylor_truth

RESOLUTION = 0.1
CONSTANT_MASK = TAYLOR_TEST_MASK  # its constants th_pre_000 and th_post_000, the other terms 0: the shared module
C = 0.5  # the constant weight change
NO_CLIP = 10_000.0  # w_max far above any weight the constant terms reach


def steps(times_ms) -> np.ndarray:
    return np.round(np.asarray(times_ms) / RESOLUTION).astype(np.int64)


def count_up_to(sorted_steps: np.ndarray, limits: np.ndarray, inclusive: bool = True) -> np.ndarray:
    """How many of ``sorted_steps`` are <= each limit (< with inclusive=False)."""
    return np.searchsorted(sorted_steps, limits, side="right" if inclusive else "left")


def magnitude_model(rec, counts) -> np.ndarray:
    """Weights predicted as start magnitude + C * counts, with each synapse's sign."""
    start = np.abs(rec.weights[:, :1])
    return rec.syn_sign[:, None] * (start + C * counts)


# ---- the exact timing of sampled weights ----


@pytest.mark.nest
@pytest.mark.parametrize("delay", [1.0, 2.0])
def test_weight_at_t_counts_the_pre_spikes_stamped_up_to_t(delay):
    """Constant term at pre spikes: w(t_s) = w(0) + C * #(pre spikes of the synapse with stamp <= t_s)."""
    truth = taylor_truth(CONSTANT_MASK, {"th_pre_000": C}, eta=1.0)
    rec = generate(truth, n_pre=40, n_post=2, pre_rate=20.0, duration_ms=2000.0, sample_every_ms=10.0,
                   w0=(10.0, 30.0), w_max=NO_CLIP, inhibitory_fraction=0.25, delay=delay, seed=3)
    d, sample = steps(delay), steps(rec.weight_times)
    trains = [steps(t) for t in rec.pre_trains()]

    def model(shift: int, inclusive: bool) -> np.ndarray:
        counts = np.array([count_up_to(trains[pre], sample + shift, inclusive) for pre in rec.syn_pre])
        return magnitude_model(rec, counts)

    np.testing.assert_allclose(rec.weights, model(0, inclusive=True), rtol=0, atol=1e-9)
    # the corner cases occur, and the data tell the neighbouring conventions apart
    on_sample = sum(np.isin(t, sample).sum() for t in trains)
    in_next_slice = sum(((t[:, None] > sample) & (t[:, None] <= sample + d)).any(1).sum() for t in trains)
    assert on_sample >= 5 and in_next_slice >= 50
    for shift, inclusive in ((0, False), (d, True), (d, False)):
        assert not np.allclose(rec.weights, model(shift, inclusive))
    assert (rec.syn_sign == -1).sum() == 2 * 10 and np.all(rec.weights[rec.syn_sign == -1] < 0)


@pytest.mark.nest
def test_post_spikes_count_at_the_next_pre_spike_with_the_dendritic_delay():
    """Constant term at post spikes: w(t_s) = w(0) + C * #(post spikes of the target with
    t_post + delay <= t_last_pre), t_last_pre the synapse's last pre spike stamped <= t_s; a post
    spike with t_post + delay == t_pre exactly counts at that pre spike."""
    truth = taylor_truth(CONSTANT_MASK, {"th_post_000": C}, eta=1.0)
    delay = 1.0
    rec = generate(truth, n_pre=40, n_post=4, connectivity=0.7, pre_rate=30.0, duration_ms=3000.0,
                   sample_every_ms=5.0, w0=(10.0, 30.0), w_max=NO_CLIP, inhibitory_fraction=0.25, delay=delay, seed=4)
    d, sample = steps(delay), steps(rec.weight_times)
    pre = [steps(t) for t in rec.pre_trains()]
    seen = [steps(t) + d for t in rec.post_trains()]  # when the synapse may see each post spike

    def model(lazy: bool, ties_count: bool) -> np.ndarray:
        counts = []
        for i, j in zip(rec.syn_pre, rec.syn_post):
            k = count_up_to(pre[i], sample)  # pre spikes stamped <= t_s
            last_pre = np.where(k > 0, pre[i][np.maximum(k - 1, 0)], -1)  # -1: none yet, no post spike counts
            counts.append(count_up_to(seen[j], last_pre if lazy else sample, inclusive=ties_count))
        return magnitude_model(rec, np.array(counts))

    np.testing.assert_allclose(rec.weights, model(lazy=True, ties_count=True), rtol=0, atol=1e-9)
    ties = sum(np.isin(pre[i], seen[j]).sum() for i, j in zip(rec.syn_pre, rec.syn_post))
    assert ties >= 10, "premise: pre spikes at t_post + delay exactly"
    assert not np.allclose(rec.weights, model(lazy=True, ties_count=False))
    assert not np.allclose(rec.weights, model(lazy=False, ties_count=True))


def reference_weights(rec, truth, delay, w_max, tie_seen_by_pre=False) -> np.ndarray:
    """The Taylor rule in plain numpy on the recorded spikes, with the timing of the module
    docstring: the synapse sees a post spike at t_post + delay, before a pre spike at the same
    time; that pre spike reads x_post without the coincident post spike's jump (unless
    ``tie_seen_by_pre``), the post spike reads x_pre without the pre spike's jump. A sampled
    weight is the weight after the synapse's last pre spike stamped <= t_s."""
    p = truth.params
    d, sample = steps(delay), steps(rec.weight_times)
    pre, post = rec.pre_trains(), rec.post_trains()
    out = np.empty_like(rec.weights)
    for s, (i, j) in enumerate(zip(rec.syn_pre, rec.syn_post)):
        times = np.concatenate([steps(post[j]) + d, steps(pre[i])])
        is_pre = np.r_[np.zeros(len(post[j]), bool), np.ones(len(pre[i]), bool)]
        order = np.lexsort((is_pre, times))  # by time, post first at equal times
        w, x_pre, x_post, now, last_post = abs(rec.weights[s, 0]), 0.0, 0.0, 0, None
        pre_steps, after_pre = [], []
        for t, event_is_pre in zip(times[order], is_pre[order]):
            x_pre *= np.exp(-(t - now) * RESOLUTION / p["tau_pre"])
            x_post *= np.exp(-(t - now) * RESOLUTION / p["tau_post"])
            now = t
            if event_is_pre:
                seen_x_post = x_post - (last_post == t and not tie_seen_by_pre)  # the jump of a post at t is 1
                w += truth.rule.weight_change(p, "pre", x_pre, seen_x_post, w)
            else:
                w += truth.rule.weight_change(p, "post", x_pre, x_post, w)
            w = min(w_max, max(p["Wmin"], w))
            if event_is_pre:
                x_pre += 1.0
                pre_steps.append(t)
                after_pre.append(w)
            else:
                x_post += 1.0
                last_post = t
        k = count_up_to(np.array(pre_steps, dtype=np.int64), sample)
        magnitude = np.where(k > 0, np.array([abs(rec.weights[s, 0]), *after_pre])[k], abs(rec.weights[s, 0]))
        out[s] = rec.syn_sign[s] * magnitude
    return out


@pytest.mark.nest
def test_vogels_sprekeler_matches_a_numpy_model_at_coincident_spikes():
    """The whole rule with traces (x_post at pre spikes, x_pre at post spikes), many pre spikes at
    exactly t_post + delay: NEST's coincidence convention, to 1e-9."""
    truth = GROUND_TRUTHS["vogels_sprekeler"]
    rec = generate(truth, n_pre=40, n_post=6, pre_rate=30.0, duration_ms=4000.0, sample_every_ms=5.0, seed=7)
    ties = sum(np.isin(steps(rec.pre_spikes(i)), steps(rec.post_spikes(j)) + 10).sum()
               for i, j in zip(rec.syn_pre, rec.syn_post))
    assert ties >= 10, "premise: pre spikes at t_post + delay exactly"
    np.testing.assert_allclose(rec.weights, reference_weights(rec, truth, 1.0, 200.0), rtol=1e-9, atol=1e-12)
    assert not np.allclose(rec.weights, reference_weights(rec, truth, 1.0, 200.0, tie_seen_by_pre=True),
                           rtol=1e-9, atol=1e-12)


# ---- a generated recording ----

SMALL = {"n_pre": 40, "n_post": 3, "connectivity": 0.8, "duration_ms": 3000.0, "inhibitory_fraction": 0.25}


@pytest.fixture(scope="module")
def recording():
    return generate(GROUND_TRUTHS["oja"], seed=5, **SMALL)


@pytest.mark.nest
def test_recording_is_valid_and_round_trips(recording, tmp_path):
    fields = {name: getattr(recording, name) for name in ("pre_times", "pre_ids", "post_times", "post_ids", "duration",
                                                          "syn_pre", "syn_post", "syn_sign", "weight_synapses",
                                                          "weight_times", "weights", "n_pre", "n_post", "description")}
    validate(fields)  # the constructor checked it too
    save(recording, tmp_path / "rec.npz")
    assert load(tmp_path / "rec.npz") == recording
    assert "oja" in recording.description.lower() and "seed 5" in recording.description


@pytest.mark.nest
def test_recording_matches_a_numpy_model_of_its_rule(recording):
    np.testing.assert_allclose(recording.weights, reference_weights(recording, GROUND_TRUTHS["oja"], 1.0, 200.0),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.nest
def test_recording_sizes_times_and_rates(recording):
    rec = recording
    assert (rec.n_pre, rec.n_post, rec.duration) == (40, 3, 3000.0)
    pairs = set(zip(rec.syn_pre.tolist(), rec.syn_post.tolist()))
    assert len(pairs) == rec.n_synapses and 0.6 * 120 < rec.n_synapses < 120  # connectivity 0.8, no multapses
    np.testing.assert_array_equal(rec.syn_sign, np.where(rec.syn_pre < 30, 1, -1))  # the last 10 inputs inhibitory
    np.testing.assert_array_equal(rec.weight_synapses, np.arange(rec.n_synapses))
    np.testing.assert_array_equal(rec.weight_times, 100.0 * np.arange(30))  # 0 .. duration - delay
    assert rec.weights.shape == (rec.n_synapses, 30)
    start = np.abs(rec.weights[:, 0])
    assert start.min() >= 20.0 and start.max() <= 40.0
    assert np.all(np.abs(rec.weights) <= 200.0) and np.ptp(rec.weights, axis=1).min() > 0  # every weight learns
    # spikes: every input fires at about 10 Hz, after the first delay; neurons at 5-20 Hz
    assert rec.pre_times.min() > 1.0 and rec.post_times.max() <= rec.duration
    pre_rates = np.bincount(rec.pre_ids, minlength=40) / 3.0
    assert pre_rates.min() > 2.0 and 7.0 < pre_rates.mean() < 13.0
    post_rates = np.bincount(rec.post_ids, minlength=3) / 3.0
    assert np.all((post_rates > 5.0) & (post_rates < 20.0)), post_rates


@pytest.mark.nest
def test_same_seed_same_recording_other_seed_other(recording):
    assert generate(GROUND_TRUTHS["oja"], seed=5, **SMALL) == recording
    other = generate(GROUND_TRUTHS["oja"], seed=6, **SMALL)
    assert not np.array_equal(other.pre_times, recording.pre_times)
    assert not np.array_equal(other.syn_pre, recording.syn_pre)  # another random connectivity
    np.testing.assert_array_equal(other.weight_times, recording.weight_times)


# ---- ground truths and arguments (no NEST) ----


def test_ground_truths_are_complete_and_inside_the_search_bounds():
    for name, truth in GROUND_TRUTHS.items():
        assert truth.rule.name == "taylor", name
        assert "Wmax" not in truth.params and {"eta", "tau_pre", "tau_post", "Wmin"} <= set(truth.params), name
        assert set(truth.rule.names) <= set(truth.params), name
        for p in truth.rule.parameters:
            assert p.low <= truth.params[p.name] <= p.high, (name, p.name)
    assert GROUND_TRUTHS["vogels_sprekeler"].inhibitory_fraction == 1.0
    oja = GROUND_TRUTHS["oja"]
    assert oja.mask == "post:100,post:011"  # as given: the order of its parameters
    dw = oja.rule.weight_change(oja.params, "post", x_pre=0.3, x_post=0.2, w=-50.0)
    assert dw == pytest.approx(oja.params["eta"] * (0.3 - 0.2 * 50.0 / 40.0))


def test_ground_truth_refuses_wmax_and_unknown_parameters():
    rule = GROUND_TRUTHS["oja"].rule
    with pytest.raises(ValueError, match="Wmax"):
        GroundTruth(rule, {"eta": 1.0, "Wmax": 10.0})
    with pytest.raises(KeyError, match="th_pre_000"):
        GroundTruth(rule, {"th_pre_000": 1.0})
    assert GroundTruth(rule, {"eta": 0.1}).params["th_post_100"] == 0.0  # defaults fill the rest


@pytest.mark.parametrize("kwargs, message", [
    ({"sample_every_ms": 2.5, "delay": 2.0}, "multiple of delay"),
    ({"delay": 0.05}, "multiple of resolution"),
    ({"w0": (50.0, 30.0)}, "w0"),
    ({"connectivity": 0.0}, "connectivity"),
    ({"neuron": "iaf_cond_exp"}, "drive_weight"),
])
def test_generate_refuses_bad_arguments_before_running(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(GROUND_TRUTHS["oja"], **kwargs)


def test_a_resolution_off_nests_tic_is_refused_before_the_users_network_is_reset(nest):
    """generate(..., resolution=0.0005) reset the kernel (the user's network gone) and then ended in
    NEST's KernelException; numpy's float32 0.1 did the same."""
    from nestplast.synthetic import on_tic

    nest.ResetKernel()
    mine = nest.Create("iaf_psc_alpha", 3)
    with pytest.raises(ValueError, match=r"resolution 0.0005 ms must be a positive multiple of NEST's tic, 0.001 ms"):
        generate(GROUND_TRUTHS["oja"], n_pre=4, duration_ms=1000.0, resolution=0.0005)
    assert nest.network_size == 3 and list(mine.get("tau_m")) == [10.0] * 3
    assert on_tic(np.float32(0.1)) == 0.1 and type(on_tic(np.float32(0.1))) is float


@pytest.mark.nest
def test_a_segment_keeps_what_its_rule_needs_to_give_its_weights(recording):
    """The rule that made a recording, run on a segment of it from the segment's first weight
    sample, gives the segment's weights only with the spikes before the segment: cut at its
    start, the traces begin at 0 there, and a fit of Oja's rule came out biased without a word."""
    from nestplast.trajectories import weight_trajectories

    truth = GROUND_TRUTHS["oja"]
    params = {**truth.params, "Wmax": 200.0}

    def largest_error(seg):
        first = seg.weight_times[0]
        predicted = weight_trajectories(truth.rule, params, seg, seg.weight_synapses, seg.weights[:, 0],
                                        seg.weight_times, delay=1.0, t_start=first)
        return np.max(np.abs(predicted - seg.weights))

    assert largest_error(recording.segment(1500.0, 3000.0)) < 1e-9
    assert largest_error(recording.segment(1500.0, 3000.0, history=1000.0)) < 1e-9
    assert largest_error(recording.segment(1500.0, 3000.0, history=0.0)) > 1e-3  # premise: the cut matters
