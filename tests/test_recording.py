"""The recording schema: save/load round trip, every malformed file refused with a message that
names the file and the field, and the derived recordings (segment, sparse, jitter, weight noise)."""

import numpy as np
import pytest

from nestplast.errors import UserError
from nestplast.recording import FIELDS, Recording, RecordingError, load, save, validate


def valid_fields():
    """A small valid recording: 3 inputs (0, 1 excitatory, 2 inhibitory) onto 2 neurons."""
    return {
        "pre_times": np.array([0.0, 1.5, 2.0, 2.0, 4.0, 7.5, 10.0]),
        "pre_ids": np.array([0, 1, 2, 0, 1, 2, 0]),
        "post_times": np.array([3.0, 6.0, 9.0]),
        "post_ids": np.array([1, 0, 1]),
        "duration": 10.0,
        "syn_pre": np.array([0, 1, 2, 0, 2]),
        "syn_post": np.array([0, 0, 0, 1, 1]),
        "syn_sign": np.array([1, 1, -1, 1, -1]),
        "weight_synapses": np.array([0, 2, 4]),
        "weight_times": np.array([0.0, 5.0, 10.0]),
        "weights": np.array([[1.0, 1.1, 1.2], [-2.0, -2.5, 0.0], [-1.0, -1.0, -0.5]]),
        "n_pre": 4,  # input 3 never fires and has no synapse
        "n_post": 2,
        "description": "toy recording",
    }


def test_round_trip_field_by_field(tmp_path):
    rec = Recording(**valid_fields())
    save(rec, tmp_path / "rec.npz")
    back = load(tmp_path / "rec.npz")
    assert back == rec
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name), err_msg=name)
    assert back.pre_ids.dtype == np.int64 and back.pre_times.dtype == np.float64
    assert back.duration == 10.0 and back.n_pre == 4 and back.description == "toy recording"


def test_save_writes_exactly_the_path_given(tmp_path):
    save(Recording(**valid_fields()), tmp_path / "rec.data")
    assert [p.name for p in tmp_path.iterdir()] == ["rec.data"]
    assert load(tmp_path / "rec.data").n_synapses == 5


def test_minimal_file_from_numpy_without_weights_or_counts(tmp_path):
    fields = valid_fields()
    minimal = {name: fields[name] for name in ("pre_times", "pre_ids", "post_times", "post_ids", "duration",
                                               "syn_pre", "syn_post", "syn_sign")}
    minimal["pre_ids"] = minimal["pre_ids"].astype(float)  # whole-number floats are accepted as ids
    np.savez(tmp_path / "min.npz", **minimal)
    rec = load(tmp_path / "min.npz")
    assert not rec.has_weights
    assert rec.weights.shape == (0, 0) and rec.weight_synapses.shape == (0,) and rec.weight_times.shape == (0,)
    assert (rec.n_pre, rec.n_post) == (3, 2)  # largest id + 1
    assert rec.description == ""
    save(rec, tmp_path / "again.npz")
    assert load(tmp_path / "again.npz") == rec


def test_constructor_copies_and_freezes():
    fields = valid_fields()
    rec = Recording(**fields)
    fields["pre_times"][0] = 0.25  # the caller's array stays writable and does not leak in
    assert rec.pre_times[0] == 0.0
    with pytest.raises(ValueError):
        rec.pre_times[0] = 1.0
    with pytest.raises(AttributeError):
        rec.duration = 5.0


def test_accessors():
    rec = Recording(**valid_fields())
    assert rec.n_synapses == 5 and rec.has_weights
    np.testing.assert_array_equal(rec.pre_spikes(0), [0.0, 2.0, 10.0])
    np.testing.assert_array_equal(rec.post_spikes(1), [3.0, 9.0])
    assert rec.pre_spikes(3).size == 0
    trains = rec.pre_trains()
    assert len(trains) == 4
    for i, train in enumerate(trains):
        np.testing.assert_array_equal(train, rec.pre_spikes(i))
    assert [t.tolist() for t in rec.post_trains()] == [[6.0], [3.0, 9.0]]
    with pytest.raises(RecordingError, match="pre id 4 out of range"):
        rec.pre_spikes(4)
    assert "7 pre spikes" in repr(rec) and "weights of 3 synapses at 3 times" in repr(rec)


# ---- malformed files: (name, corruption of valid_fields(), field named, words of the problem) ----


def _set(**changes):
    def corrupt(fields):
        fields.update(changes)
    return corrupt


def _drop(*names):
    def corrupt(fields):
        for name in names:
            del fields[name]
    return corrupt


def _poke(name, index, value):
    def corrupt(fields):
        fields[name] = fields[name].astype(type(value))
        fields[name][index] = value
    return corrupt


MALFORMED = [
    ("missing", _drop("pre_ids"), "pre_ids", "missing"),
    ("missing scalar", _drop("duration"), "duration", "missing"),
    ("partial weights", _drop("weight_times"), "weight_times", "come together"),
    ("unknown key", lambda f: f.update(wieghts=f.pop("weights")), "wieghts", "did you mean 'weights'"),
    ("2-D times", _set(pre_times=np.zeros((7, 1))), "pre_times", "1-D"),
    ("1-D weights", _set(weights=np.ones(9)), "weights", "2-D"),
    ("non-scalar duration", _set(duration=np.array([10.0, 20.0])), "duration", "one number"),
    ("text times", _set(post_times=np.array(["a", "b", "c"])), "post_times", "numbers"),
    ("times vs ids", _set(pre_ids=np.array([0, 1, 2])), "pre_ids", "length 3 differs from pre_times"),
    ("post times vs ids", _set(post_ids=np.array([0])), "post_ids", "differs from post_times"),
    ("synapse lengths", _set(syn_sign=np.array([1, 1, -1])), "syn_sign", "differs from syn_pre"),
    ("weights shape", _set(weights=np.ones((3, 2))), "weights", "does not match"),
    ("unsorted pre", _poke("pre_times", 4, 1.0), "pre_times", "not sorted"),
    ("unsorted post", _set(post_times=np.array([3.0, 9.0, 6.0])), "post_times", "not sorted"),
    # the same spike twice (events read twice) halved the fitted coefficients, without a word; two ids at one time are fine
    ("repeated spike", _poke("pre_ids", 3, 2), "pre_times", "id 2 spikes twice at 2 ms"),
    ("repeated post spike", _set(post_times=np.array([3.0, 6.0, 6.0]), post_ids=np.array([1, 0, 0])), "post_times",
     "id 0 spikes twice at 6 ms"),
    # times binned to whole ms: the cause named beside a recorder read twice
    ("repeated spike, whole ms", _set(post_times=np.array([3.0, 6.0, 6.0]), post_ids=np.array([1, 0, 0])),
     "post_times", "events read twice? or times rounded to whole ms"),
    ("repeated weight time", _set(weight_times=np.array([0.0, 5.0, 5.0])), "weight_times", "strictly increasing"),
    # the other unit mix-ups each had their hint
    ("duration in seconds", _set(duration=0.01), "pre_times", "after duration = 0.01 ms (duration in seconds? give "
                                                              "it in ms, like the times: 10)"),
    ("negative time", _poke("pre_times", 0, -0.5), "pre_times", "negative"),
    ("beyond duration", _poke("post_times", 2, 10.5), "post_times", "after duration = 10 ms; give the recording's "
                                                                    "whole length, at least its last time (10.5 ms)"),
    ("weight time beyond", _poke("weight_times", 2, 11.0), "weight_times", "after duration"),
    ("zero duration", _set(duration=0.0), "duration", "positive"),
    ("negative pre id", _poke("pre_ids", 1, -1), "pre_ids", "out of range"),
    ("pre id >= n_pre", _poke("pre_ids", 1, 4), "pre_ids", "out of range 0..n_pre-1 = 0..3"),
    ("post id >= n_post", _poke("post_ids", 0, 2), "post_ids", "out of range 0..n_post-1"),
    ("syn_pre >= n_pre", _poke("syn_pre", 0, 7), "syn_pre", "out of range"),
    ("negative syn_post", _poke("syn_post", 0, -2), "syn_post", "out of range"),
    ("sign 0", _poke("syn_sign", 1, 0), "syn_sign", "+1 (excitatory) or -1"),
    ("sign 2", _poke("syn_sign", 1, 2), "syn_sign", "+1 (excitatory) or -1"),
    ("weight synapse out of range", _poke("weight_synapses", 2, 5), "weight_synapses", "not a synapse index"),
    ("weight synapse twice", _set(weight_synapses=np.array([0, 2, 0])), "weight_synapses", "more than once"),
    ("NaN time", _poke("pre_times", 3, np.nan), "pre_times", "NaN or inf"),
    ("inf weight", _set(weights=np.array([[1.0, np.inf, 1.0], [-2.0, -2.5, 0.0], [-1.0, -1.0, -0.5]])),
     "weights", "1 inf value(s), the first at index (0, 1) (NaN marks a sample not taken)"),
    ("no weight sampled", _set(weights=np.full((3, 3), np.nan)), "weights", "every sample is NaN (not taken)"),
    ("NaN duration", _set(duration=np.nan), "duration", "finite"),
    ("fractional id", _poke("post_ids", 1, 0.5), "post_ids", "integers"),
    ("fractional n_pre", _set(n_pre=3.5), "n_pre", "integer"),
    ("negative n_post", _set(n_post=-1), "n_post", ">= 0"),
    ("excitatory weight negative", _poke("weights", (0, 1), -0.1), "weights", "is excitatory"),
    ("inhibitory weight positive", _poke("weights", (2, 0), 0.3), "weights", "is inhibitory"),
    ("description not text", _set(description=np.array([1, 2])), "description", "text"),
]


@pytest.mark.parametrize("corrupt, name, problem", [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_file_is_refused_naming_file_and_field(tmp_path, corrupt, name, problem):
    fields = valid_fields()
    corrupt(fields)
    path = tmp_path / "bad.npz"
    np.savez(path, **fields)
    with pytest.raises(RecordingError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {name}: "), message
    assert problem in message, message


def test_unknown_key_lists_the_allowed_ones(tmp_path):
    np.savez(tmp_path / "bad.npz", **valid_fields(), extra=np.zeros(1))
    with pytest.raises(RecordingError, match="extra: unknown field; allowed: pre_times, pre_ids, .* description"):
        load(tmp_path / "bad.npz")


def test_constructor_uses_the_same_checks():
    fields = valid_fields()
    fields["syn_sign"] = np.array([1, 1, 0, 1, -1])
    with pytest.raises(RecordingError, match=r"^syn_sign: 0 at index 2"):
        Recording(**fields)
    with pytest.raises(RecordingError, match=r"^bad\.npz: syn_sign: "):
        validate(fields, source="bad.npz")
    assert issubclass(RecordingError, UserError)


@pytest.mark.parametrize("content, problem", [
    (b"", "not a readable .npz file"),
    (b"pre_times,pre_ids\n1.0,0\n", "not a readable .npz file"),
    (b"PK\x03\x04 truncated zip", "not a readable .npz file"),
], ids=["empty", "csv", "broken zip"])
def test_unreadable_file(tmp_path, content, problem):
    path = tmp_path / "rec.npz"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=f"^{path}: {problem}"):
        load(path)


def test_npy_missing_and_pickled_files(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(RecordingError, match="one.npy: a single .npy array"):
        load(tmp_path / "one.npy")
    with pytest.raises(RecordingError, match="nothere.npz: no such file"):
        load(tmp_path / "nothere.npz")
    fields = valid_fields()
    fields["pre_ids"] = np.array([0, 1, 2, 0, 1, 2, None], dtype=object)
    np.savez(tmp_path / "pickled.npz", **fields)
    with pytest.raises(RecordingError, match="pickled.npz: pre_ids: cannot be read"):
        load(tmp_path / "pickled.npz")


# ---- derived recordings ----


def test_segment_keeps_exactly_the_window_shifted():
    rec = Recording(**valid_fields())
    seg = rec.segment(2.0, 7.5, history=0.0)
    assert seg.duration == 5.5
    np.testing.assert_array_equal(seg.pre_times, [0.0, 0.0, 2.0])  # 2.0, 2.0, 4.0; 7.5 is outside [2, 7.5)
    np.testing.assert_array_equal(seg.pre_ids, [2, 0, 1])
    np.testing.assert_array_equal(seg.post_times, [1.0, 4.0])
    np.testing.assert_array_equal(seg.post_ids, [1, 0])
    np.testing.assert_array_equal(seg.weight_times, [3.0])
    np.testing.assert_array_equal(seg.weights, rec.weights[:, [1]])
    assert (seg.n_pre, seg.n_post, seg.n_synapses) == (4, 2, 5)
    assert "segment 2-7.5 ms" in seg.description
    # by default with the spikes before t0, which a rule's traces need: only the weight samples cut
    whole = rec.segment(2.0, 7.5)
    assert whole.duration == 7.5 and whole.weight_times.tolist() == [5.0]
    np.testing.assert_array_equal(whole.pre_times, rec.pre_times[rec.pre_times < 7.5])
    np.testing.assert_array_equal(whole.weights, rec.weights[:, [1]])
    part = rec.segment(2.0, 7.5, history=1.5)
    assert part.duration == 7.0 and part.weight_times.tolist() == [4.5] and part.pre_times.min() >= 0.0
    assert "segment 2-7.5 ms, the spikes from 0.5 ms" in part.description
    with pytest.raises(RecordingError, match="segment: need 0 <= history <= t0 = 2 ms"):
        rec.segment(2.0, 7.5, history=3.0)


def test_consecutive_segments_split_every_spike_once():
    rec = Recording(**valid_fields())
    bounds = [0.0, 2.0, 5.0, 10.0]
    parts = [rec.segment(a, b, history=0.0) for a, b in zip(bounds[:-1], bounds[1:])]
    pre = np.concatenate([p.pre_times + a for p, a in zip(parts, bounds)])
    np.testing.assert_array_equal(pre, rec.pre_times)  # includes the spike at t = duration
    np.testing.assert_array_equal(np.concatenate([p.pre_ids for p in parts]), rec.pre_ids)
    assert sum(len(p.post_times) for p in parts) == len(rec.post_times)
    for t0, t1 in ((-1.0, 5.0), (5.0, 5.0), (6.0, 3.0), (0.0, 10.5)):
        with pytest.raises(RecordingError, match="segment: need 0 <= t0 < t1 <= duration"):
            rec.segment(t0, t1)


def _many_weights(k=40, m=500, seed=0):
    """Synapse i of 2k (every other one inhibitory); the odd ones' weights recorded, far from 0."""
    rng = np.random.default_rng(seed)
    n = 2 * k
    sign = np.where(np.arange(n) % 2 == 0, 1, -1)
    rows = np.arange(1, n, 2)
    weights = sign[rows][:, None] * rng.uniform(5.0, 10.0, (k, m))
    return Recording(pre_times=np.zeros(0), pre_ids=np.zeros(0, int), post_times=np.zeros(0),
                     post_ids=np.zeros(0, int), duration=float(m), syn_pre=np.arange(n), syn_post=np.zeros(n, int),
                     syn_sign=sign, weight_synapses=rows, weight_times=np.arange(m, dtype=float), weights=weights)


def test_sparse_keeps_a_reproducible_fraction():
    rec = _many_weights(k=40)
    for fraction, kept in ((0.25, 10), (0.3, 12), (1.0, 40), (0.001, 1)):
        sub = rec.sparse(fraction, seed=3)
        assert len(sub.weight_synapses) == kept == max(1, round(fraction * 40))
        assert np.all(np.diff(sub.weight_synapses) > 0)  # original order
        rows = np.searchsorted(rec.weight_synapses, sub.weight_synapses)
        np.testing.assert_array_equal(sub.weights, rec.weights[rows])
    assert rec.sparse(0.25, seed=3) == rec.sparse(0.25, seed=3)
    assert rec.sparse(0.25, seed=3) != rec.sparse(0.25, seed=4)
    for fraction in (0.0, 1.5):
        with pytest.raises(RecordingError, match="sparse: fraction"):
            rec.sparse(fraction, seed=0)
    with pytest.raises(RecordingError, match="no recorded weights"):
        rec.with_weights_subset([]).sparse(0.5, seed=0)


def test_with_weights_subset():
    rec = Recording(**valid_fields())
    sub = rec.with_weights_subset([2, 0])
    np.testing.assert_array_equal(sub.weight_synapses, [4, 0])
    np.testing.assert_array_equal(sub.weights, rec.weights[[2, 0]])
    none = rec.with_weights_subset([])
    assert not none.has_weights and none.weights.shape == (0, 3)
    with pytest.raises(RecordingError, match="row 3 out of range 0..2"):
        rec.with_weights_subset([0, 3])


def test_jitter_keeps_counts_and_order_and_has_the_given_std():
    n, period, sigma = 20000, 50.0, 2.0
    times = period * np.arange(n) + 25.0  # far apart: the order survives, so spike i pairs with spike i
    ids = np.arange(n) % 7
    rec = Recording(pre_times=times, pre_ids=ids, post_times=times[::2], post_ids=np.zeros(n // 2, int),
                    duration=period * n, syn_pre=np.arange(7), syn_post=np.zeros(7, int), syn_sign=np.ones(7, int))
    jit = rec.jittered(sigma, seed=1)
    assert len(jit.pre_times) == n and len(jit.post_times) == n // 2
    assert np.all(np.diff(jit.pre_times) >= 0)
    np.testing.assert_array_equal(jit.pre_ids, ids)
    shift = jit.pre_times - times
    assert abs(shift.std() - sigma) < 0.05 * sigma and abs(shift.mean()) < 0.05 * sigma
    assert abs((jit.post_times - rec.post_times).std() - sigma) < 0.05 * sigma
    assert jit == rec.jittered(sigma, seed=1) and jit != rec.jittered(sigma, seed=2)
    assert rec.jittered(0.0, seed=1) == Recording(**{**rec.__dict__, "description": "spike jitter 0 ms"})


def test_jitter_reflects_into_the_recording_and_resorts():
    """Clipped to [0, duration], two spikes of one neuron that moved out at the same end met at
    exactly 0 or duration, and the jittered recording was refused ("id 18 spikes twice at 2000 ms")
    for 11 of 20 seeds at 100 ms. Reflected, no spike lands on an end, and none is lost."""
    rec = Recording(**valid_fields())  # spikes at 0 and at duration, a tie at 2.0
    jit = rec.jittered(3.0, seed=0)
    assert jit.pre_times.min() >= 0.0 and jit.pre_times.max() <= rec.duration
    assert np.all(np.diff(jit.pre_times) >= 0)
    np.testing.assert_array_equal(np.bincount(jit.pre_ids), np.bincount(rec.pre_ids))
    with pytest.raises(RecordingError, match="sigma_ms must be"):
        rec.jittered(-1.0, seed=0)
    rng = np.random.default_rng(2)  # one neuron firing 20 spikes in 2 s, jittered by 100 ms
    times = np.sort(rng.uniform(0.0, 2000.0, 20))
    train = Recording(pre_times=times, pre_ids=np.zeros(20, int), post_times=np.zeros(0), post_ids=np.zeros(0, int),
                      duration=2000.0, syn_pre=[0], syn_post=[0], syn_sign=[1])
    for seed in range(20):
        moved = train.jittered(100.0, seed).pre_times  # a valid recording: it was built
        assert moved.size == 20 and 0.0 < moved.min() and moved.max() < 2000.0
    # reflection keeps the spread: a spike at the end moves in by |N(0, sigma)|
    ends = Recording(pre_times=np.full(1, 2000.0), pre_ids=[0], post_times=np.zeros(0), post_ids=np.zeros(0, int),
                     duration=2000.0, syn_pre=[0], syn_post=[0], syn_sign=[1])
    inward = np.array([2000.0 - ends.jittered(10.0, seed).pre_times[0] for seed in range(400)])
    assert abs(inward.mean() - 10.0 * np.sqrt(2 / np.pi)) < 1.0  # E|N(0, 10)| = 7.98


def test_noisy_weights_std_and_signs():
    rec = _many_weights(k=40, m=500)
    noisy = rec.noisy_weights(0.5, seed=0)
    noise = noisy.weights - rec.weights
    assert abs(noise.std() - 0.5) < 0.025 and abs(noise.mean()) < 0.025
    assert noisy == rec.noisy_weights(0.5, seed=0)
    # near 0 a weight is clipped, never flipped to the other sign
    small = Recording(**valid_fields()).noisy_weights(5.0, seed=0)
    signs = small.syn_sign[small.weight_synapses][:, None]
    assert np.all(small.weights * signs >= 0)
    with pytest.raises(RecordingError, match="sigma must be"):
        rec.noisy_weights(np.nan, seed=0)


def test_readme_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --- as in the README ---
    from nestplast.recording import Recording, load, save
    rec = Recording(pre_times=[1.0, 2.5, 7.0], pre_ids=[0, 1, 0], post_times=[3.0], post_ids=[0], duration=10.0,
                    syn_pre=[0, 1], syn_post=[0, 0], syn_sign=[1, -1],  # input 1 is inhibitory
                    weight_synapses=[0, 1], weight_times=[0.0, 5.0], weights=[[1.0, 1.2], [-0.5, -0.4]])
    save(rec, "recording.npz")
    held_out = load("recording.npz").segment(5.0, 10.0)  # the second half's samples, with the spikes before them
    # ---
    assert held_out.pre_times.tolist() == [1.0, 2.5, 7.0] and held_out.weights.tolist() == [[1.2], [-0.4]]
    assert held_out.weight_times.tolist() == [5.0]


def test_times_in_seconds_are_refused_with_the_unit_named(tmp_path):
    """The schema cannot tell seconds from ms: a recording in seconds passed every check and was
    fitted into meaningless coefficients. 20 Hz read as ms is 20 000 Hz, which no neuron fires.
    save() refuses what load() would, before writing (it wrote files its own load refused); a file
    written by one's own script (numpy.savez) is refused on loading."""

    def written(fields, path):
        with pytest.raises(RecordingError) as refused:
            save(Recording(**fields), path)
        assert not path.exists()
        np.savez(path, **fields)
        with pytest.raises(RecordingError) as on_loading:
            load(path)
        assert str(on_loading.value) == str(refused.value)
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0.0, 5.0, 100))  # 5 s of 20 Hz, in seconds
    fields = {"pre_times": times, "pre_ids": np.zeros(100, int), "post_times": times[::4],
              "post_ids": np.zeros(25, int), "duration": 5.0, "syn_pre": [0], "syn_post": [0], "syn_sign": [1]}
    written(fields, tmp_path / "seconds.npz")
    with pytest.raises(RecordingError, match=r"seconds.npz: pre_times: id 0 fires 100 spikes .* 20000 Hz .* in ms"):
        load(tmp_path / "seconds.npz")
    in_ms = {**fields, "pre_times": times * 1000, "post_times": times[::4] * 1000, "duration": 5000.0}
    save(Recording(**in_ms), tmp_path / "ms.npz")
    assert load(tmp_path / "ms.npz").duration == 5000.0
    save(Recording(**valid_fields()), tmp_path / "toy.npz")  # 3 spikes in 10 ms: 300 Hz, plausible
    # every time in seconds, duration in ms: 20 Hz on average, so the rate did not tell; the fit ran on
    written({**fields, "duration": 5000.0}, tmp_path / "seconds_of_ms.npz")
    with pytest.raises(RecordingError, match=r"every spike and weight sample lies in the first 4.9\d* ms of duration = "
                                             r"5000 ms: times in seconds and duration in ms\?"):
        load(tmp_path / "seconds_of_ms.npz")
    load(tmp_path / "toy.npz")
    # spikes in ms, the weights' sample times in seconds: every sample in the first 5 ms of 5 s
    weights = {"weight_synapses": [0], "weight_times": np.arange(6.0), "weights": np.linspace(1.0, 2.0, 6)[None, :]}
    written({**in_ms, **weights}, tmp_path / "weights_in_s.npz")
    with pytest.raises(RecordingError, match=r"weight_times: every sample lies in the first 5 ms .* multiply weight_times"):
        load(tmp_path / "weights_in_s.npz")
    save(Recording(**in_ms, **{**weights, "weight_times": 1000.0 * np.arange(6.0)}), tmp_path / "weights_in_ms.npz")
    assert load(tmp_path / "weights_in_ms.npz").has_weights
    # the spikes in seconds, the weights in ms: every spike in the first 5 ms, weights changing for 5 s
    # (fitted without a word into a rule 100 times worse than none); the post spikes alone too
    ms_weights = {**weights, "weight_times": 1000.0 * np.arange(6.0)}
    for name, changed in (("pre_times", {"pre_times": times, "post_times": times[::4]}),
                          ("post_times", {"post_times": times[::4]})):
        written({**in_ms, **changed, **ms_weights}, tmp_path / f"{name}_in_s.npz")
        with pytest.raises(RecordingError, match=rf"{name}: every spike lies in the first 4.\d* ms of duration = 5000 "
                                                 rf"ms, while the weights are sampled up to 5000 ms; .* multiply {name}"):
            load(tmp_path / f"{name}_in_s.npz")


def test_a_csv_file_is_named_as_such(tmp_path):
    """numpy's own message for a text file is about pickles."""
    path = tmp_path / "spikes.csv"
    path.write_text("# time,id\n1.0,0\n2.5,1\n")
    with pytest.raises(RecordingError, match="CSV or text file.*build a Recording") as err:
        load(path)
    assert "pickle" not in str(err.value)


def test_times_on_the_grid_within_their_own_precision():
    """float32 times put 1234.1 ms at 1234.0999755859375: the closed loop refused them as off its
    0.1 ms grid, naming no time."""
    from nestplast.recording import off_grid

    on = np.array([0.0, 1234.1, 4999.9], dtype=np.float32)
    assert off_grid(on, 0.1) is None and off_grid(on.astype(float), 0.1) is None
    assert off_grid(np.array([0.0, 12.35, 20.0]), 0.1) == 12.35
    assert off_grid(np.array([0.0, 99.0, 199.5]), 1.0) == 199.5


def test_spike_trains_too_fast_for_ms_while_firing_are_warned_of():
    """20 inputs and a neuron at 0.5 Hz over 60 s, all in seconds, passed the mean-rate check (the
    busiest train 30 spikes in "60 ms", under 1000 Hz) and were fitted without a word."""
    from nestplast.recording import data_warnings

    rng = np.random.default_rng(0)
    trains = [np.sort(rng.uniform(0.0, 60.0, rng.poisson(30))) for _ in range(21)]  # seconds
    pre_times, pre_ids = np.concatenate(trains[:20]), np.concatenate([[i] * len(t) for i, t in enumerate(trains[:20])])
    order = np.argsort(pre_times, kind="stable")

    def recording(scale):
        return Recording(pre_times=pre_times[order] * scale, pre_ids=pre_ids[order], post_times=trains[20] * scale,
                         post_ids=np.zeros(len(trains[20]), int), duration=60.0 * scale, syn_pre=np.arange(20),
                         syn_post=np.zeros(20, int), syn_sign=np.ones(20, int), weight_synapses=np.arange(20),
                         weight_times=np.arange(60.0) * scale, weights=np.ones((20, 60)))

    # the median over neurons of each one's median interval, computed here a second way
    typical = np.median([np.median(np.diff(t)) for t in trains])
    warned = [w for w in data_warnings(recording(1.0)) if "are the times in seconds?" in w]
    assert warned and warned[0].startswith(f"the neurons' typical interval between spikes is {typical:.3g} ms"), warned
    assert data_warnings(recording(1000.0)) == []  # the same recording in ms


def test_a_weight_sample_not_taken_is_nan(tmp_path):
    """A lab's trace with a missing sample was refused whole ("NaN or inf"): NaN now marks a sample
    not taken, of either sign, with the others checked as before."""
    fields = valid_fields()
    fields["weights"] = np.array([[np.nan, 1.1, 1.2], [-2.0, np.nan, 0.0], [-1.0, -1.0, np.nan]])
    np.savez(tmp_path / "gaps.npz", **fields)
    rec = load(tmp_path / "gaps.npz")
    assert np.array_equal(rec.weights, fields["weights"], equal_nan=True)
    assert rec.first_weights().tolist() == [1.1, -2.0, -1.0]
    fields["weights"][0, 1] = -1.1  # a sign still checked beside a NaN
    with pytest.raises(RecordingError, match=r"synapse 0 \(row 0\) is excitatory \(syn_sign \+1\) but has weight -1.1"):
        Recording(**fields)
