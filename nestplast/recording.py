"""Recordings of spiking activity and synaptic weights: one ``.npz`` schema, one writer
(:func:`save`) and one loader (:func:`load`), shared by the synthetic generator and the fitting code.

A recording is one ``.npz`` archive (``numpy.savez``/``savez_compressed``) with these arrays:

=================== ======== ======= ==== ======== =====================================================
field               shape    dtype   unit needed   meaning
=================== ======== ======= ==== ======== =====================================================
``pre_times``       (n,)     float   ms   required presynaptic spike times, sorted (non-decreasing)
``pre_ids``         (n,)     int     --   required input of each presynaptic spike, 0 .. n_pre-1
``post_times``      (p,)     float   ms   required postsynaptic spike times, sorted (non-decreasing)
``post_ids``        (p,)     int     --   required neuron of each postsynaptic spike, 0 .. n_post-1
``duration``        ()       float   ms   required length of the recording; every time is in [0, duration]
``syn_pre``         (s,)     int     --   required presynaptic input of each synapse, 0 .. n_pre-1
``syn_post``        (s,)     int     --   required postsynaptic neuron of each synapse, 0 .. n_post-1
``syn_sign``        (s,)     int     --   required +1 excitatory, -1 inhibitory
``weight_synapses`` (k,)     int     --   optional synapses whose weight was sampled (indices into syn_*, distinct)
``weight_times``    (m,)     float   ms   optional sampling times, strictly increasing
``weights``         (k, m)   float   --   optional ``weights[i, j]``: weight of synapse ``weight_synapses[i]`` at
                                               ``weight_times[j]``, signed as in NEST (inhibitory <= 0);
                                               NaN where that synapse was not sampled at that time
``n_pre``           ()       int     --   optional number of inputs (default: largest pre id + 1)
``n_post``          ()       int     --   optional number of neurons (default: largest post id + 1)
``description``     ()       str     --   optional free text (where the data come from)
=================== ======== ======= ==== ======== =====================================================

The three weight fields come together or not at all. Ids are numbered from 0 (map NEST's node
ids onto them). Spike times are sorted over the whole array; NEST's ``spike_recorder`` does not
quite give them so (it collects events in batches of one min_delay), so sort them, as below.
Integer fields may be stored as floats if their values are whole numbers. Any other key is
refused (a misspelt ``wieghts`` must not be silently ignored), and so is a NaN or inf anywhere
but a NaN in ``weights``, a sample missing: a fit leaves it out (and, in the clamped mode, the
synapse from a segment that starts at it). :func:`load` checks everything before returning, and
its errors name the file, the field and what is wrong.

From a NEST simulation, weights sampled every 100 ms (``inputs``: parrot_neurons relaying Poisson
spikes, ``neurons``: the postsynaptic neurons, each population recorded by a spike_recorder)::

    import numpy as np
    from nestplast.recording import Recording, save

    conns = nest.GetConnections(inputs, neurons)
    w = [conns.get("weight")]
    for _ in range(50):
        nest.Simulate(100.0)
        w.append(conns.get("weight"))
    in_ids, out_ids = np.array(inputs.tolist()), np.array(neurons.tolist())  # sorted node ids

    def by_time(recorder, node_ids):  # times sorted, and node ids -> 0 .. n-1
        events = recorder.get("events")
        order = np.argsort(events["times"], kind="stable")
        return events["times"][order], np.searchsorted(node_ids, events["senders"][order])

    pre_times, pre_ids = by_time(pre_recorder, in_ids)
    post_times, post_ids = by_time(post_recorder, out_ids)
    rec = Recording(
        pre_times=pre_times, pre_ids=pre_ids, post_times=post_times, post_ids=post_ids,
        duration=5000.0,
        syn_pre=np.searchsorted(in_ids, conns.get("source")),
        syn_post=np.searchsorted(out_ids, conns.get("target")),
        syn_sign=np.where(np.array(w[0]) < 0, -1, 1),  # or from how you connected them
        # after nest.Simulate(T) the weights are those of T - min_delay: the spikes of NEST's last
        # slice are delivered in the next run (stamped T, a fit's coefficients come out biased)
        weight_synapses=np.arange(len(conns)),
        weight_times=np.r_[0.0, 100.0 * np.arange(1, 51) - nest.GetKernelStatus("min_delay")],
        weights=np.array(w).T,
        description="5 s, 100 Poisson inputs at 10 Hz onto 10 iaf_psc_exp",
    )
    save(rec, "recording.npz")

A ``weight_recorder`` instead logs each synapse's weight at that synapse's own spikes; to put
it on a common grid, take for each sampling time the last logged value at or before it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NoReturn

import numpy as np

from .errors import UserError
from .npz import read_npz

REQUIRED = ("pre_times", "pre_ids", "post_times", "post_ids", "duration", "syn_pre", "syn_post", "syn_sign")
WEIGHT_FIELDS = ("weight_synapses", "weight_times", "weights")
OPTIONAL = (*WEIGHT_FIELDS, "n_pre", "n_post", "description")
FIELDS = REQUIRED + OPTIONAL

_ARRAYS = tuple(name for name in FIELDS if name not in ("duration", "n_pre", "n_post", "description"))
_INT_ARRAYS = ("pre_ids", "post_ids", "syn_pre", "syn_post", "syn_sign", "weight_synapses")
_TIME_ARRAYS = ("pre_times", "post_times", "weight_times")


_Fail = Callable[[str, str], NoReturn]  # fail(field, problem) raises RecordingError


class RecordingError(UserError):
    """A recording (a file or the arrays given to :class:`Recording`) breaks the schema."""


@dataclass(frozen=True, eq=False, repr=False)
class Recording:
    """Spikes and sampled weights of one experiment; see the module docstring for the schema.

    The constructor checks every field (raising :class:`RecordingError`), converts times and
    weights to float64 and ids to int64, and stores read-only copies. Without weights,
    ``weight_synapses``, ``weight_times`` and ``weights`` are empty, shapes (0,), (0,), (0, 0).
    """

    pre_times: np.ndarray
    pre_ids: np.ndarray
    post_times: np.ndarray
    post_ids: np.ndarray
    duration: float
    syn_pre: np.ndarray
    syn_post: np.ndarray
    syn_sign: np.ndarray
    weight_synapses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weight_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    n_pre: int | None = None
    n_post: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        checked = validate({f.name: getattr(self, f.name) for f in fields(self)})
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: the checked, normalised values

    # ---- sizes ----

    @property
    def n_synapses(self) -> int:
        return len(self.syn_pre)

    @property
    def has_weights(self) -> bool:
        """Whether any weight was sampled (at least one synapse at one time)."""
        return self.weights.size > 0

    def first_weights(self) -> np.ndarray:
        """Each recorded synapse's first sampled weight (NaN for one never sampled)."""
        if not self.weights.size:
            return np.zeros(len(self.weights))
        sampled = ~np.isnan(self.weights)
        first = self.weights[np.arange(len(self.weights)), np.argmax(sampled, axis=1)]
        return np.where(sampled.any(axis=1), first, np.nan)

    # ---- spike trains ----

    def pre_spikes(self, pre_id: int) -> np.ndarray:
        """Sorted spike times (ms) of one input."""
        _check_id(pre_id, self.n_pre, "pre id", "n_pre")
        return self.pre_times[self.pre_ids == pre_id]

    def post_spikes(self, post_id: int) -> np.ndarray:
        """Sorted spike times (ms) of one postsynaptic neuron."""
        _check_id(post_id, self.n_post, "post id", "n_post")
        return self.post_times[self.post_ids == post_id]

    def pre_trains(self) -> list[np.ndarray]:
        """All inputs' sorted spike times, ``n_pre`` arrays, in one pass."""
        return _split_trains(self.pre_times, self.pre_ids, self.n_pre)

    def post_trains(self) -> list[np.ndarray]:
        """All postsynaptic neurons' sorted spike times, ``n_post`` arrays, in one pass."""
        return _split_trains(self.post_times, self.post_ids, self.n_post)

    # ---- derived recordings ----

    def segment(self, t0: float, t1: float, *, history: float | None = None) -> Recording:
        """The weight samples on [t0, t1) ms (closed at the end of the recording), with the spikes
        of the ``history`` ms before t0 (default: all of them) and of [t0, t1); times shifted so
        that the spikes kept start at 0 (by t0 - history). A rule's traces, and its updates
        delayed to a synapse's next spike, need the spikes before t0 (back past each synapse's
        last presynaptic spike, and a few of the rule's time constants): cut at t0 (``history=0``),
        they start from 0 there, and a fit of the rule that made the data comes out biased (Oja's
        -0.025 as -0.0239, its deviance explained 94 %, with no warning). ``history=0`` gives
        consecutive segments that split the spikes without overlap. Synapses, ids and
        ``n_pre``/``n_post`` are kept."""
        if not 0.0 <= t0 < t1 <= self.duration:
            raise RecordingError(f"segment: need 0 <= t0 < t1 <= duration = {self.duration:g} ms, "
                                 f"got t0 = {t0:g}, t1 = {t1:g}")
        history = t0 if history is None else history
        if not 0.0 <= history <= t0:
            raise RecordingError(f"segment: need 0 <= history <= t0 = {t0:g} ms (the spikes before t0 kept), "
                                 f"got history = {history:g}")
        start = t0 - history
        last = t1 == self.duration  # keep spikes at exactly t = duration in the last segment

        def inside(times: np.ndarray, since: float) -> np.ndarray:
            return (times >= since) & ((times <= t1) if last else (times < t1))

        pre, post, w = inside(self.pre_times, start), inside(self.post_times, start), inside(self.weight_times, t0)
        window = f"{t0:g}-{t1:g} ms" + (f", the spikes from {start:g} ms" if start < t0 else "")
        return replace(
            self,
            pre_times=self.pre_times[pre] - start, pre_ids=self.pre_ids[pre],
            post_times=self.post_times[post] - start, post_ids=self.post_ids[post],
            duration=t1 - start,
            weight_times=self.weight_times[w] - start, weights=self.weights[:, w],
            description=_note(self.description, f"segment {window}"),
        )

    def with_weights_subset(self, rows: Any) -> Recording:
        """Keep the sampled weights of some synapses only: ``rows`` are positions in
        ``weight_synapses`` (rows of ``weights``), in the order wanted."""
        rows = np.asarray(rows)
        if rows.size == 0:
            rows = rows.astype(np.int64)  # np.asarray([]) is float
        k = len(self.weight_synapses)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise RecordingError(f"with_weights_subset: rows must be a 1-D array of integers, got {rows!r}")
        bad = rows[(rows < 0) | (rows >= k)]
        if bad.size:
            raise RecordingError(f"with_weights_subset: row {bad[0]} out of range 0..{k - 1} "
                                 f"({k} synapses have recorded weights)")
        return replace(self, weight_synapses=self.weight_synapses[rows], weights=self.weights[rows])

    def sparse(self, fraction: float, seed: int) -> Recording:
        """Keep the sampled weights of ``round(fraction * k)`` (at least 1) of the k recorded
        synapses, chosen at random by ``seed``, in their original order."""
        k = len(self.weight_synapses)
        if not 0.0 < fraction <= 1.0:
            raise RecordingError(f"sparse: fraction must be in (0, 1], got {fraction}")
        if k == 0:
            raise RecordingError("sparse: the recording has no recorded weights to thin out")
        keep = max(1, round(fraction * k))
        rows = np.sort(np.random.default_rng(seed).choice(k, size=keep, replace=False))
        return self.with_weights_subset(rows)

    def jittered(self, sigma_ms: float, seed: int) -> Recording:
        """Every pre and post spike time moved by Gaussian noise of std ``sigma_ms``, reflected into
        [0, duration] at its ends and re-sorted (each id moves with its time). Weights are unchanged."""
        _check_sigma(sigma_ms, "jittered: sigma_ms")
        rng = np.random.default_rng(seed)

        def jitter(times: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # reflected, not clipped: clipping piled the spikes that moved out onto 0 and duration
            # exactly, where two of one neuron coincided and the recording was refused
            folded = np.mod(times + rng.normal(0.0, sigma_ms, times.size), 2.0 * self.duration)
            moved = np.where(folded > self.duration, 2.0 * self.duration - folded, folded)
            order = np.argsort(moved, kind="stable")
            return moved[order], ids[order]

        pre_times, pre_ids = jitter(self.pre_times, self.pre_ids)
        post_times, post_ids = jitter(self.post_times, self.post_ids)
        return replace(self, pre_times=pre_times, pre_ids=pre_ids, post_times=post_times, post_ids=post_ids,
                       description=_note(self.description, f"spike jitter {sigma_ms:g} ms"))

    def noisy_weights(self, sigma: float, seed: int) -> Recording:
        """Gaussian measurement noise of std ``sigma`` added to every sampled weight. A weight is
        clipped at 0 rather than cross to the other sign (the schema forbids that), so the noise
        is narrower than ``sigma`` for weights within a few ``sigma`` of 0."""
        _check_sigma(sigma, "noisy_weights: sigma")
        noisy = self.weights + np.random.default_rng(seed).normal(0.0, sigma, self.weights.shape)
        excitatory = self.syn_sign[self.weight_synapses][:, None] > 0
        noisy = np.where(excitatory, np.maximum(noisy, 0.0), np.minimum(noisy, 0.0))
        return replace(self, weights=noisy, description=_note(self.description, f"weight noise {sigma:g}"))

    # ---- comparison and display ----

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recording):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __repr__(self) -> str:
        weights = (f"weights of {len(self.weight_synapses)} synapses at {len(self.weight_times)} times"
                   if self.has_weights else "no weights")
        return (f"Recording({self.duration:g} ms, {self.n_pre} inputs, {self.n_post} neurons, "
                f"{len(self.pre_times)} pre spikes, {len(self.post_times)} post spikes, "
                f"{self.n_synapses} synapses, {weights})")


# ---- file I/O ----


def save(recording: Recording, path: str | os.PathLike) -> None:
    """Write every field of ``recording`` to ``path`` (compressed ``.npz``, written at exactly
    that path: numpy's habit of appending ``.npz`` does not apply). A recording :func:`load` would
    refuse (times in seconds, :func:`check_time_unit`) is refused here, before anything is written."""
    check_time_unit(recording, source=str(path))  # it wrote a file that its own load() refused
    arrays = {f.name: np.asarray(getattr(recording, f.name)) for f in fields(Recording)}
    try:
        with open(path, "wb") as file:
            np.savez_compressed(file, **arrays)
    except OSError as e:
        raise RecordingError(f"{path}: cannot write the recording ({e.strerror or e})") from None


def load(path: str | os.PathLike) -> Recording:
    """Read and check a recording written by :func:`save` or by ``numpy.savez`` with the schema's
    keys. Raises :class:`RecordingError` naming the file and the field for anything malformed,
    and for spike trains too fast to be in ms (:func:`check_time_unit`)."""
    raw = read_npz(path, RecordingError, "a recording: build a Recording from your arrays in Python "
                                         "(README 'Recordings') and save it")
    if {"animal", "choice"} <= set(raw) and "pre_times" not in raw:  # "animal: unknown field" said nothing of why
        raise RecordingError(f"{path}: holds animals' choices (animal, choice, ...), not a recording of spikes and "
                             "weights: fit them with --task choices (python -m nestplast infer FILE --task choices)")
    recording = Recording(**validate(raw, source=str(path)))  # checked first to name the file; the constructor re-checks
    check_time_unit(recording, source=str(path))
    return recording


def off_grid(times: np.ndarray, step: float) -> float | None:
    """The first of ``times`` (ms) that is no whole number of ``step`` ms, None if every one is.
    Within the times' own precision: float32 data (7 digits) put 1234.1 ms at 1234.0999755859375."""
    times = np.asarray(times, dtype=float)
    steps = times / step
    off = np.abs(steps - np.round(steps)) > 1e-6 + 2.4e-7 * np.abs(steps)
    return float(times[off][0]) if off.any() else None


MAX_RATE_HZ = 1000.0  # no neuron fires faster than this on average (its refractory period is about 1 ms)


def check_time_unit(recording: Recording, source: str | None = None) -> None:
    """Refuse a recording whose busiest spike train fires faster than :data:`MAX_RATE_HZ` on
    average, with the times read as ms: the schema cannot tell seconds from ms, and a recording
    in seconds (20 Hz becomes 20 000 Hz) would otherwise be fitted without complaint and give
    coefficients that mean nothing. Trains of fewer than 3 spikes are not judged."""
    prefix = f"{source}: " if source else ""
    for name, ids, n in (("pre_times", recording.pre_ids, recording.n_pre),
                         ("post_times", recording.post_ids, recording.n_post)):
        counts = np.bincount(ids, minlength=n) if n else np.zeros(0, int)
        if counts.size == 0 or counts.max() < 3:
            continue
        busiest = int(np.argmax(counts))
        rate = 1000.0 * counts[busiest] / recording.duration
        if rate > MAX_RATE_HZ:
            raise RecordingError(
                f"{prefix}{name}: id {busiest} fires {counts[busiest]} spikes in duration = "
                f"{recording.duration:g} ms, {rate:.0f} Hz on average; times and duration must be in ms "
                f"(in seconds? multiply pre_times, post_times, weight_times and duration by 1000)")
    # Every time in seconds and duration in ms: the rates above look plausible, but the whole
    # recording sits in the first thousandth of duration
    last = max((t.max() for t in (recording.pre_times, recording.post_times, recording.weight_times) if t.size),
               default=None)
    if last is not None and recording.duration > 1.0 and last <= recording.duration / 1000.0:
        raise RecordingError(
            f"{prefix}every spike and weight sample lies in the first {last:g} ms of duration = "
            f"{recording.duration:g} ms: times in seconds and duration in ms? give all of them in ms (multiply "
            f"pre_times, post_times and weight_times by 1000)")
    # Spike times in seconds beside weight times in ms: every spike in the first thousandth, while the
    # weights change for the whole recording (fitted without complaint, 100 times worse than no rule)
    sampled_to = recording.weight_times[-1] if recording.weight_times.size else 0.0
    for name, spikes in (("pre_times", recording.pre_times), ("post_times", recording.post_times)):
        if spikes.size and spikes.max() <= recording.duration / 1000.0 < sampled_to:
            raise RecordingError(
                f"{prefix}{name}: every spike lies in the first {spikes.max():g} ms of duration = "
                f"{recording.duration:g} ms, while the weights are sampled up to {sampled_to:g} ms; spike times must "
                f"be in ms like weight_times (in seconds? multiply {name} by 1000)")
    # Weight times in seconds beside spikes in ms put every sample in the first thousandth of the
    # recording: the fit would then see a few ms of learning and call every coefficient unidentified.
    times = recording.weight_times
    last_spike = max((t.max() for t in (recording.pre_times, recording.post_times) if t.size), default=0.0)
    if times.size >= 2 and times[-1] <= recording.duration / 1000.0 < last_spike:
        raise RecordingError(
            f"{prefix}weight_times: every sample lies in the first {times[-1]:g} ms of duration = "
            f"{recording.duration:g} ms, while the spikes go on to {last_spike:g} ms; weight_times must be in ms "
            f"like the spikes (in seconds? multiply weight_times by 1000)")


# The typical interval between a neuron's spikes below which the times are surely not in ms: 500 Hz
# while firing. Seconds read as ms pass check_time_unit's mean rate where neurons fire sparsely (0.5 Hz
# over 60 s read as 293 Hz), but their intervals of a second or two read as 1 or 2 ms.
MIN_TYPICAL_ISI_MS = 2.0


def data_warnings(recording: Recording) -> list[str]:
    """What the recording's numbers suggest is wrong that the schema cannot refuse: ids numbered
    differently on the two sides (:func:`id_numbering_warnings`), and spike trains whose typical
    interval (the median over neurons of each one's median inter-spike interval, trains of 3
    spikes or more) is under :data:`MIN_TYPICAL_ISI_MS`: times in seconds?; and weights that change
    after every input fell silent (:func:`spikes_end_early_warnings`)."""
    warnings = id_numbering_warnings(recording)
    medians = [float(np.median(np.diff(train))) for train in (*recording.pre_trains(), *recording.post_trains())
               if train.size >= 3]
    if medians and (typical := float(np.median(medians))) < MIN_TYPICAL_ISI_MS:
        warnings.append(f"the neurons' typical interval between spikes is {typical:.3g} ms (each neuron's median, "
                        f"their median), {1000.0 / typical:.0f} Hz while they fire: are the times in seconds? "
                        "(pre_times, post_times, weight_times and duration must be in ms: multiply them by 1000)")
    return warnings + spikes_end_early_warnings(recording)


SILENT_INTERVALS = 20  # the inputs' mean intervals without any presynaptic spike that make an end silent
DELAY_MARGIN_MS = 10.0  # a last spike's change reaches the weights after its delay


def spikes_end_early_warnings(recording: Recording) -> list[str]:
    """A warning where every input falls silent long before the last weight sample (for
    :data:`SILENT_INTERVALS` of their mean interval) and the weights still change in that
    silence: NEST changes a weight only when a presynaptic spike arrives, so no rule explains
    those changes (a fit of spikes recorded for half the time came out 26 % off, without a word)."""
    pre, times = recording.pre_times, recording.weight_times
    if pre.size < 2:
        return []
    last = float(pre[-1])
    if times[-1] - last <= SILENT_INTERVALS * last / pre.size:
        return []
    silent = times > last + DELAY_MARGIN_MS
    if silent.sum() < 2 or not np.any(varies(recording.weights[:, silent])):
        return []
    return [f"no presynaptic spike after {last:g} ms, yet the weights, sampled until {times[-1]:g} ms, still change "
            "after it (NEST changes a weight only when a presynaptic spike arrives): were the spikes recorded for "
            f"less time than the weights? No rule explains those changes; fit the part with spikes "
            f"(recording.segment(0, {last + DELAY_MARGIN_MS:g}))"]


def id_numbering_warnings(recording: Recording) -> list[str]:
    """Warnings, one per side (pre, post), where some ids have synapses but no spike while others
    spike but have no synapse: the mark of spike ids and synapse ids numbered differently (NEST's
    node ids in one, 0-based ids in the other), which the schema cannot refuse (both are in range)
    and which makes every synapse read another cell's spikes."""
    warnings = []
    for side, ids, syn, n in (("pre", recording.pre_ids, recording.syn_pre, recording.n_pre),
                              ("post", recording.post_ids, recording.syn_post, recording.n_post)):
        spiking = np.bincount(ids, minlength=n) > 0
        connected = np.bincount(syn, minlength=n) > 0
        silent, stray = np.flatnonzero(connected & ~spiking), np.flatnonzero(spiking & ~connected)
        if silent.size and stray.size:
            warnings.append(f"{side} ids {_few(silent)} have synapses (syn_{side}) but no spike, while {side} ids "
                            f"{_few(stray)} spike ({side}_ids) but have no synapse: are {side}_ids and syn_{side} "
                            f"numbered alike (both from 0, NEST's node ids mapped the same way)?")
    return warnings


def _few(ids: np.ndarray) -> str:
    return ", ".join(map(str, ids[:3])) + (f" (and {ids.size - 3} more)" if ids.size > 3 else "")


# ---- the checks ----


def validate(values: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """Check a recording's fields against the schema and return them normalised (float64 times
    and weights, int64 ids, read-only copies, Python scalars, defaults filled in). Used by both
    :func:`load` (``source`` is the file, named in every message) and :class:`Recording`.
    Raises :class:`RecordingError` with the field and what is wrong."""
    prefix = f"{source}: " if source else ""

    def fail(name: str, problem: str) -> NoReturn:
        raise RecordingError(f"{prefix}{name}: {problem}")

    # keys: nothing unknown, nothing required missing, the weight fields all or none
    for key in sorted(set(values) - set(FIELDS)):
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        fail(key, f"unknown field; {hint}allowed: {', '.join(FIELDS)}")
    missing = [name for name in REQUIRED if values.get(name) is None]
    if missing:
        fail(missing[0], f"missing (required: {', '.join(REQUIRED)})")
    given = [name for name in WEIGHT_FIELDS if values.get(name) is not None]
    if given and len(given) < len(WEIGHT_FIELDS):
        absent = [name for name in WEIGHT_FIELDS if name not in given]
        fail(absent[0], f"missing: {', '.join(given)} given without {', '.join(absent)} "
                        f"(the weight fields come together or not at all)")

    # each field alone: shape, dtype, finite, whole numbers for ids
    out: dict[str, Any] = {}
    out["duration"] = _scalar(values["duration"], "duration", fail, integer=False)
    if not out["duration"] > 0:
        fail("duration", f"must be positive, got {out['duration']:g}")
    empty = {"weight_synapses": np.zeros(0, np.int64), "weight_times": np.zeros(0), "weights": np.zeros((0, 0))}
    for name in _ARRAYS:
        value = values.get(name)
        if value is None:
            value = empty[name]
        out[name] = _array(value, name, fail, ndim=2 if name == "weights" else 1, integer=name in _INT_ARRAYS)
    for name in ("n_pre", "n_post"):
        value = values.get(name)
        out[name] = None if value is None else _scalar(value, name, fail, integer=True)
        if out[name] is not None and out[name] < 0:
            fail(name, f"must be >= 0, got {out[name]}")
    description = np.asarray(values.get("description", ""))
    if description.ndim != 0 or description.dtype.kind != "U":
        fail("description", f"must be one text string, got {description.dtype} array of shape {description.shape}")
    out["description"] = str(description.item())

    # lengths that must agree
    for times, ids in (("pre_times", "pre_ids"), ("post_times", "post_ids")):
        if len(out[ids]) != len(out[times]):
            fail(ids, f"length {len(out[ids])} differs from {times} (length {len(out[times])})")
    for name in ("syn_post", "syn_sign"):
        if len(out[name]) != len(out["syn_pre"]):
            fail(name, f"length {len(out[name])} differs from syn_pre (length {len(out['syn_pre'])})")
    expected = (len(out["weight_synapses"]), len(out["weight_times"]))
    if out["weights"].shape != expected:
        fail("weights", f"shape {out['weights'].shape} does not match "
                        f"(len(weight_synapses), len(weight_times)) = {expected}")

    # times: inside [0, duration]; spikes sorted, weight samples strictly increasing
    for name in _TIME_ARRAYS:
        times, strict = out[name], name == "weight_times"
        if (i := _first(times < 0)) is not None:
            fail(name, f"{times[i]:g} ms at index {i} is negative: times run from 0, the recording's start "
                       "(times relative to a stimulus: subtract the first time of the recording from every time)")
        if (i := _first(times > out["duration"])) is not None:
            # a factor of about 1000 is a unit; a little past it, a duration too short (advised 1000 x it, it was
            # a recording 2.5 s long given 2500 s)
            hint = (f" (duration in seconds? give it in ms, like the times: {1000.0 * out['duration']:g})"
                    if 100.0 * out["duration"] < times.max() <= 1000.0 * out["duration"] else
                    f"; give the recording's whole length, at least its last time ({times.max():g} ms)")
            fail(name, f"{times[i]:g} ms at index {i} is after duration = {out['duration']:g} ms{hint}")
        steps = np.diff(times)
        if (i := _first(steps <= 0 if strict else steps < 0)) is not None:
            problem = f"{name}[{i + 1}] = {times[i + 1]:g} follows {name}[{i}] = {times[i]:g}"
            if strict:
                fail(name, f"not strictly increasing: {problem}")
            fail(name, f"not sorted: {problem}; sort the spikes by time, moving each id with its time "
                       f"(order = np.argsort(times, kind='stable'))")

    # ids: 0 .. n-1, n defaulting to the largest id + 1
    for side in ("pre", "post"):
        count, id_fields = f"n_{side}", (f"{side}_ids", f"syn_{side}")
        if out[count] is None:
            out[count] = int(max((out[name].max() + 1 for name in id_fields if out[name].size), default=0))
        for name in id_fields:
            ids, n = out[name], out[count]
            if (i := _first((ids < 0) | (ids >= n))) is not None:
                fail(name, f"id {ids[i]} at index {i} is out of range 0..{count}-1 = 0..{n - 1}")

    # a neuron fires once in a time step: the same spike twice (a recorder's events concatenated
    # twice) was fitted without a word, its coefficients halved
    for side in ("pre", "post"):
        times, ids = out[f"{side}_times"], out[f"{side}_ids"]
        order = np.lexsort((ids, times))
        same = (np.diff(times[order]) == 0) & (np.diff(ids[order]) == 0)
        if (i := _first(same)) is not None:
            # times binned to whole ms put two spikes of a burst on one time, as a recorder read twice does
            binned = (" or times rounded to whole ms, which put two spikes less than 1 ms apart on one time (give "
                      "them at the recording's resolution)" if np.all(times == np.round(times)) else "")
            fail(f"{side}_times", f"id {ids[order][i]} spikes twice at {times[order][i]:g} ms (a neuron spikes once "
                                  f"at a time; events read twice?{binned}); give each spike once")

    # synapses: signs, which ones have weights, weights of the right sign
    signs = out["syn_sign"]
    if (i := _first((signs != 1) & (signs != -1))) is not None:
        fail("syn_sign", f"{signs[i]} at index {i}; must be +1 (excitatory) or -1 (inhibitory)")
    rows, n_syn = out["weight_synapses"], len(out["syn_pre"])
    if (i := _first((rows < 0) | (rows >= n_syn))) is not None:
        fail("weight_synapses", f"{rows[i]} at index {i} is not a synapse index "
                                f"(there are {n_syn} synapses: 0..{n_syn - 1})")
    unique, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        s = unique[counts > 1][0]
        fail("weight_synapses", f"synapse {s} appears more than once (at indices {np.flatnonzero(rows == s).tolist()})")
    weights = out["weights"]
    row_signs = signs[rows][:, None]
    wrong = (weights != 0) & (np.sign(weights) != row_signs) & ~np.isnan(weights)
    if wrong.any():
        i, j = np.argwhere(wrong)[0]
        kind = "excitatory (syn_sign +1)" if row_signs[i, 0] > 0 else "inhibitory (syn_sign -1)"
        fail("weights", f"synapse {rows[i]} (row {i}) is {kind} but has weight {weights[i, j]:g} at "
                        f"weight_times[{j}] = {out['weight_times'][j]:g} ms; weights are signed as in NEST "
                        f"(excitatory >= 0, inhibitory <= 0)")

    for name in _ARRAYS:
        out[name].setflags(write=False)
    return out


def _array(value: Any, name: str, fail: _Fail, ndim: int, integer: bool) -> np.ndarray:
    """One array field as a fresh float64 (or int64) copy, after shape and value checks."""
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        fail(name, f"not a rectangular array ({e})")
    if array.dtype.kind not in "iuf":
        fail(name, f"must be numbers, got dtype {array.dtype}")
    if array.ndim != ndim:
        trains = (" (one spike train per row? give every spike in one array, with its neuron in "
                  f"{name.replace('times', 'ids')}: np.concatenate(trains) and np.repeat(np.arange(n), lengths))"
                  if name in ("pre_times", "post_times") and array.ndim == 2 else "")
        fail(name, f"must be {ndim}-D, got shape {array.shape}{trains}")
    if array.dtype.kind == "f":
        missing = name == "weights"  # a NaN weight is a sample not taken
        bad = np.isinf(array) if missing else ~np.isfinite(array)
        if bad.any():
            where = [int(i) for i in np.argwhere(bad)[0]]
            fail(name, f"{int(bad.sum())} {'inf' if missing else 'NaN or inf'} value(s), the first at index "
                       f"{where[0] if array.ndim == 1 else tuple(where)}"
                       f"{' (NaN marks a sample not taken)' if missing else ''}")
        if missing and array.size and np.isnan(array).all():
            fail(name, "every sample is NaN (not taken): no weight was recorded; leave out the three weight fields")
    if integer and array.dtype.kind == "f":
        # whole-number floats are fine (e.g. ids that went through a float array); beyond 2**53 they are not exact
        fractional = (array != np.round(array)) | (np.abs(array) > 2.0**53)
        if fractional.any():
            i = int(np.argmax(fractional))
            fail(name, f"ids must be integers, got {array[i]:g} at index {i}")
    return array.astype(np.int64 if integer else np.float64)  # astype copies: later changes by the caller don't leak in


def _scalar(value: Any, name: str, fail: _Fail, integer: bool) -> int | float:
    array = np.asarray(value)
    if array.ndim != 0 or array.dtype.kind not in "iuf":
        fail(name, f"must be one number, got {array.dtype} array of shape {array.shape}")
    number = array.item()
    if not np.isfinite(number):
        fail(name, f"must be finite, got {number}")
    if integer:
        if number != round(number):
            fail(name, f"must be an integer, got {number}")
        return int(number)
    return float(number)


def varies(weights: np.ndarray) -> np.ndarray:
    """Per row of ``weights``, whether its samples (NaN: missing, left out) take more than one value."""
    # fmax and fmin pass over NaN without nanmax's warning for a row with no sample
    return np.fmax.reduce(weights, axis=1, initial=-np.inf) > np.fmin.reduce(weights, axis=1, initial=np.inf)


def _first(bad: np.ndarray) -> int | None:
    """Index of the first True in ``bad``, or None."""
    return int(np.argmax(bad)) if bad.any() else None


def _check_id(value: int, n: int, what: str, count: str) -> None:
    if not 0 <= value < n:
        raise RecordingError(f"{what} {value} out of range 0..{count}-1 = 0..{n - 1}")


def _check_sigma(sigma: float, what: str) -> None:
    if not (np.isfinite(sigma) and sigma >= 0):
        raise RecordingError(f"{what} must be a finite number >= 0, got {sigma}")


def _split_trains(times: np.ndarray, ids: np.ndarray, n: int) -> list[np.ndarray]:
    if n == 0:
        return []
    order = np.argsort(ids, kind="stable")  # stable: each id's times stay sorted
    return np.split(times[order], np.cumsum(np.bincount(ids, minlength=n))[:-1])


def _note(description: str, note: str) -> str:
    return f"{description} ({note})" if description else note
