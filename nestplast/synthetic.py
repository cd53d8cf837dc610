"""Ground-truth recordings: spikes and sampled weights generated in NEST by a known plasticity
rule, for testing the inference of rules from recorded data (schema: :mod:`nestplast.recording`).

A :class:`GroundTruth` is a rule with all its synapse parameters; :func:`generate` runs it and
returns a :class:`~nestplast.recording.Recording`; :data:`GROUND_TRUTHS` holds named examples::

    from nestplast.synthetic import GROUND_TRUTHS, generate
    from nestplast.recording import save

    rec = generate(GROUND_TRUTHS["oja"], duration_ms=20_000.0, seed=1)
    save(rec, "oja.npz")

The network: ``n_pre`` parrot neurons replay independent Poisson trains (spike_generator ->
parrot, so the presynaptic spike times are exactly those the synapses see); each connects
(all-to-all, or each pair with probability ``connectivity``) through the plastic rule onto
``n_post`` neurons of the rule's paired NESTML model. Each neuron has its own Poisson background
(one poisson_generator, static synapses) that makes it fire irregularly, at about 12 Hz with the
defaults; the plastic inputs move the rate (about 1 Hz per 5 pA of mean excitatory weight), and
the named ground truths keep it within 5-20 Hz. The last ``inhibitory_fraction`` of the inputs are
inhibitory: negative weights, negative ``Wmax`` (the rule acts on ``|w|``, see
:mod:`nestplast.rules`). Every connection has the same delay ``delay``, which is then NEST's
min_delay, the length of its communication slice.

Timing, as NEST does it and as a model of the data must reproduce it (all times are spike time
stamps on the ``resolution`` grid, as recorded; tested in tests/test_synthetic.py):

- Presynaptic spikes: the synapse processes a spike of stamp ``t_pre`` (the parrot's spike
  time) at the start of the slice after the one in which it was emitted; slices are
  ``(k delay, (k + 1) delay]`` in stamps.
- Sampled weights: ``weights[:, j]`` is each synapse's weight after NEST has processed every
  presynaptic spike with stamp ``<= weight_times[j]`` and none later. The sampling times are
  multiples of ``sample_every_ms`` (itself a multiple of ``delay``) from 0 to at most
  ``duration - delay``; the weights at ``t_s`` are read after simulating ``t_s + delay`` ms, when
  exactly the spikes stamped ``<= t_s`` have been delivered (those in ``(t_s, t_s + delay]`` wait
  for the next slice). Weights at 0 are the initial ones (no input spikes before ``delay``).
- Postsynaptic spikes reach the synapse with NEST's dendritic delay (the whole ``delay``) and
  lazily: the update of a presynaptic spike at ``t_pre`` first applies every postsynaptic spike
  with ``t_prev < t_post + delay <= t_pre`` (``t_prev``: the synapse's previous presynaptic spike),
  in time order, then the presynaptic update. A postsynaptic spike with ``t_post + delay ==
  t_pre`` exactly is applied before that presynaptic spike (its weight update counts), but the
  presynaptic update reads the postsynaptic trace as it was before that postsynaptic spike, and
  the postsynaptic update reads ``x_pre`` before the presynaptic spike's jump (NEST's
  coincidence convention, see :meth:`nestplast.rules.Rule.stdp_window`). So the weight at ``t_s``
  includes the effect of the postsynaptic spikes with ``t_post + delay <= t_last_pre``, where
  ``t_last_pre`` is the synapse's last presynaptic spike stamped ``<= t_s``, and of no other.

The spike arrays hold every spike stamped in ``[0, duration]``, sorted by time and then id
(recorders, unlike synapses, receive spikes in the step they are emitted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .builder import build
from .kernel import import_nest, install, lent_kernel, reset_kernel
from .neurons import get_neuron
from .recording import Recording
from .rules import Rule, get_rule

# Poisson background of each neuron: rate (Hz) and, per neuron model, weight. With generate()'s
# defaults an iaf_psc_exp fires at about 12 Hz (6 Hz without the plastic inputs, 20 Hz with them
# all at 60 pA): the drive sits just below threshold, so that the neurons fire irregularly.
DEFAULT_DRIVE_RATE = 3000.0
DEFAULT_DRIVE_WEIGHT: dict[str, float] = {"iaf_psc_exp": 52.0}  # pA; other neurons: give drive_weight


@dataclass(frozen=True)
class GroundTruth:
    """A known rule that generates data: ``rule`` and its full NEST synapse parameters
    (``params``: coefficients, ``eta``, time constants, ``Wmin``; every parameter of the rule
    but ``Wmax``, which :func:`generate` sets with the sign of each synapse). Parameters not
    given take the rule's defaults.

    The conditions the rule is meant for, which :func:`generate` uses unless told otherwise:
    ``inhibitory_fraction`` of the inputs are inhibitory (1.0 for inhibitory plasticity such as
    Vogels-Sprekeler), and ``drive_rate`` (Hz) is the Poisson background of each neuron (None:
    :data:`DEFAULT_DRIVE_RATE`).
    """

    rule: Rule
    params: Mapping[str, float]
    inhibitory_fraction: float = 0.0
    drive_rate: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if "Wmax" in self.params:
            raise ValueError("GroundTruth params must not hold Wmax: generate(w_max=...) sets it, signed per synapse")
        if not 0.0 <= self.inhibitory_fraction <= 1.0:
            raise ValueError(f"inhibitory_fraction must be in [0, 1], got {self.inhibitory_fraction}")
        searched = {k: v for k, v in self.params.items() if k in self.rule.names}
        fixed = {k: v for k, v in self.params.items() if k not in self.rule.names}
        full = self.rule.synapse_params(searched, **fixed)  # unknown names raise; defaults fill the rest
        full.pop("Wmax")
        object.__setattr__(self, "params", {k: float(v) for k, v in full.items()})

    @property
    def mask(self) -> str | None:
        """The Taylor mask of the rule (``"post:100,post:011"``: its terms in the order of its
        parameters), or None for another rule."""
        if self.rule.name != "taylor":
            return None
        return ",".join(f"{t.event}:{t.abc}" for t in self.rule.terms)

    def __str__(self) -> str:
        rule = f"taylor {self.mask}" if self.mask else self.rule.name
        params = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.description or rule} ({rule}; {params})"


def taylor_truth(mask: str, coefficients: Mapping[str, float], *, eta: float, tau_pre: float = 20.0,
                 tau_post: float = 20.0, inhibitory_fraction: float = 0.0, drive_rate: float | None = None,
                 description: str = "") -> GroundTruth:
    """A Taylor-rule ground truth: the terms of ``mask`` with ``coefficients`` (``th_pre_abc`` or
    ``th_post_abc``; terms not given are 0), learning rate ``eta`` and trace time constants (ms)."""
    rule = get_rule("taylor", mask=mask)
    return GroundTruth(rule, {**coefficients, "eta": eta, "tau_pre": tau_pre, "tau_post": tau_post},
                       inhibitory_fraction, drive_rate, description)


# Named rules for demonstrations and tests of the inference. With generate()'s defaults (20 s,
# weights starting at 20-40 pA, neurons at 10-20 Hz) the weights change by tens of percent without
# reaching 0 or w_max. Coefficients stay inside the Taylor rule's search bounds [-2, 2]; where a
# rule has a fixed point in |w| (Oja, decay), it lies at tens of pA, not at about 1.
GROUND_TRUTHS: dict[str, GroundTruth] = {
    # x_pre and x_post read at a post spike are about rate * tau = 0.2: |w| -> 40 pA x_pre / x_post
    "oja": taylor_truth(
        "post:100,post:011", {"th_post_100": 1.0, "th_post_011": -0.025}, eta=0.5,
        description="spiking Oja, weights in units of 40 pA: at a post spike dw = eta (x_pre - x_post |w| / 40)"),
    # iSTDP needs neurons above the 10 Hz target at the start: a stronger drive against the inhibition
    "vogels_sprekeler": taylor_truth(
        "pre:000,pre:010,post:100", {"th_pre_000": -0.4, "th_pre_010": 1.0, "th_post_100": 1.0}, eta=0.25,
        inhibitory_fraction=1.0, drive_rate=3600.0,
        description="Vogels-Sprekeler iSTDP, target 10 Hz: pre dw = eta (x_post - 0.4), post dw = eta x_pre"),
    "additive_stdp": taylor_truth(
        "pre:010,post:100", {"th_post_100": 1.0, "th_pre_010": -1.1}, eta=0.75,
        description="additive STDP, A- = 1.1 A+: post dw = eta x_pre, pre dw = -1.1 eta x_post"),
    # growth eta r_post x_pre against decay 0.01 eta r_pre |w|: |w| -> about 25 pA
    "weight_decay": taylor_truth(
        "pre:001,post:100", {"th_post_100": 1.0, "th_pre_001": -0.01}, eta=1.0,
        description="Hebbian growth with decay: post dw = eta x_pre, pre dw = -0.01 eta |w|"),
}


SAMPLE_EVERY_MS = 100.0  # the ground truths' weights are sampled this often


@lent_kernel("nestplast.synthetic.generate")
def generate(truth: GroundTruth, *, n_pre: int = 40, n_post: int = 2, connectivity: float = 1.0,
             pre_rate: float = 10.0, duration_ms: float = 20_000.0, sample_every_ms: float = SAMPLE_EVERY_MS,
             w0: tuple[float, float] = (20.0, 40.0), w_max: float = 200.0, inhibitory_fraction: float | None = None,
             drive_rate: float | None = None, drive_weight: float | None = None, neuron: str = "iaf_psc_exp",
             neuron_params: Mapping[str, float] | None = None, delay: float = 1.0, resolution: float = 0.1,
             seed: int = 1) -> Recording:
    """Simulate ``truth`` in NEST and return the spikes and sampled weights (module docstring:
    the network and the exact timing of the samples).

    ``w0``: initial weight magnitudes, uniform in that range; ``w_max``: magnitude of ``Wmax``
    (pA or nS, the neuron's units). ``inhibitory_fraction`` (default: the truth's) of the inputs,
    the last ones, are inhibitory. ``drive_rate`` (Hz; default: the truth's, else
    :data:`DEFAULT_DRIVE_RATE`) and ``drive_weight`` (default only for ``iaf_psc_exp``) set the
    Poisson background of each neuron; ``neuron_params`` use NEST's names (``tau_syn_ex``,
    ``t_ref``). Every connection has delay ``delay``; ``sample_every_ms`` must be a multiple of
    it, and it of ``resolution``. All randomness (spike trains, connectivity, initial weights,
    NEST's generators) follows ``seed``: the same seed gives the same recording. Resets the NEST
    kernel; compiles the rule on first use (cached afterwards).
    """
    fraction = truth.inhibitory_fraction if inhibitory_fraction is None else inhibitory_fraction
    drive_rate = truth.drive_rate if drive_rate is None else drive_rate
    _check(n_pre >= 1 and n_post >= 1, f"need n_pre, n_post >= 1, got {n_pre}, {n_post}")
    _check(0.0 < connectivity <= 1.0, f"connectivity must be in (0, 1], got {connectivity}")
    _check(0.0 <= fraction <= 1.0, f"inhibitory_fraction must be in [0, 1], got {fraction}")
    _check(0.0 <= w0[0] <= w0[1] <= w_max, f"need 0 <= w0[0] <= w0[1] <= w_max, got w0 = {w0}, w_max = {w_max}")
    resolution = on_tic(resolution)
    _check_timing(delay, resolution, duration_ms, sample_every_ms)
    drive_rate = DEFAULT_DRIVE_RATE if drive_rate is None else drive_rate
    drive_weight = DEFAULT_DRIVE_WEIGHT.get(get_neuron(neuron).name) if drive_weight is None else drive_weight
    _check(drive_weight is not None, f"give drive_weight for neuron {neuron!r} (and w0, w_max in its units)")

    # Everything random comes from one generator: the layout, the inputs, then NEST's seed.
    rng = np.random.default_rng(seed)
    n_inh = round(fraction * n_pre)
    input_sign = np.where(np.arange(n_pre) < n_pre - n_inh, 1, -1)
    syn_pre, syn_post = np.nonzero(rng.random((n_pre, n_post)) < connectivity)  # sorted by pre, then post
    syn_sign = input_sign[syn_pre]
    w_start = syn_sign * rng.uniform(w0[0], w0[1], len(syn_pre))
    step_d, step_end = _steps(delay, resolution), _steps(duration_ms, resolution)
    trains = [_poisson_steps(rng, pre_rate, step_d + 1, step_end, resolution) for _ in range(n_pre)]
    nest_seed = int(rng.integers(1, 2**31 - 1))
    inputs = f"{n_pre} Poisson inputs at {pre_rate:g} Hz ({n_inh} inhibitory, connectivity {connectivity:g})"
    description = (f"nestplast.synthetic: {truth}; {inputs} onto {n_post} {neuron} driven at "
                   f"{drive_rate:g} Hz x {drive_weight:g}; w0 {w0[0]:g}-{w0[1]:g}, |Wmax| {w_max:g}, "
                   f"delay {delay:g} ms, resolution {resolution:g} ms, seed {seed}")
    return simulate(truth.rule, truth.params, trains=trains, syn_pre=syn_pre, syn_post=syn_post, syn_sign=syn_sign,
                    w_start=w_start, n_post=n_post, w_max=w_max, drive_rate=drive_rate, drive_weight=drive_weight,
                    neuron=neuron, neuron_params=neuron_params, delay=delay, resolution=resolution,
                    duration_ms=duration_ms, sample_every_ms=sample_every_ms, nest_seed=nest_seed,
                    description=description)


@lent_kernel("nestplast.synthetic.simulate")
def simulate(rule: Rule, params: Mapping[str, float], *, trains: list[np.ndarray], syn_pre: np.ndarray,
             syn_post: np.ndarray, syn_sign: np.ndarray, w_start: np.ndarray, n_post: int, w_max: float,
             drive_rate: float, drive_weight: float, neuron: str = "iaf_psc_exp",
             neuron_params: Mapping[str, float] | None = None, delay: float = 1.0, resolution: float = 0.1,
             duration_ms: float, sample_every_ms: float | None = None, sample_times_ms: Sequence[float] | None = None,
             nest_seed: int, description: str = "") -> Recording:
    """The network of :func:`generate` with given input spike trains (``trains``: one array of
    grid steps per input) and synapses, simulated with ``rule`` at ``params``: the recording it
    gives, its weights sampled every ``sample_every_ms`` from 0, or at ``sample_times_ms`` (a
    recording's own times; each a multiple of ``delay``, at most ``duration_ms - delay``). The
    closed-loop forward model of the inference runs the recorded inputs through this (the same
    network, node for node, so the same ``nest_seed`` gives the same background)."""
    n_pre = len(trains)
    resolution = on_tic(resolution)
    step_d, step_end = _steps(delay, resolution), _steps(duration_ms, resolution)
    _check((sample_every_ms is None) != (sample_times_ms is None), "give sample_every_ms or sample_times_ms")
    _check_timing(delay, resolution, duration_ms, sample_every_ms)  # a closed-loop fit's come from a recording
    if sample_times_ms is None:
        sample_steps = np.arange(0, step_end - step_d + 1, _steps(sample_every_ms, resolution))
    else:  # read after t + delay, at the end of one of NEST's slices: t a multiple of delay, t + delay within the run
        slices = [_steps(float(t), delay) for t in sample_times_ms]
        _check(all(0 <= k <= step_end // step_d - 1 for k in slices) and list(slices) == sorted(set(slices)),
               f"sample_times_ms must be increasing multiples of delay {delay} ms from 0 to duration_ms - delay "
               f"({duration_ms - delay:g} ms)")
        sample_steps = np.array(slices, dtype=np.int64) * step_d
    module = build(rule, neuron)
    nest = import_nest()
    reset_kernel()
    install(module)
    nest.set(resolution=resolution, rng_seed=nest_seed, local_num_threads=1)

    # Inputs: generator -> parrot with the common delay, so parrots spike at the planned steps.
    generators = nest.Create("spike_generator", n_pre)
    for generator, steps in zip(generators, trains):
        generator.spike_times = (np.asarray(steps) - step_d) * resolution
    parrots = nest.Create("parrot_neuron", n_pre)
    nest.Connect(generators, parrots, "one_to_one", syn_spec={"delay": delay})
    neuron_settings = get_neuron(neuron).params_from_nest(dict(neuron_params or {}))
    neurons = nest.Create(module.neuron_model, n_post, params=neuron_settings)
    drive = nest.Create("poisson_generator", params={"rate": drive_rate})  # independent trains per target
    nest.Connect(drive, neurons, syn_spec={"weight": drive_weight, "delay": delay})

    # Plastic synapses: one copy of the rule per sign (Wmax carries the sign).
    pre_ids, post_ids = np.array(parrots.tolist()), np.array(neurons.tolist())
    labels = []
    for sign, label in ((1, "synthetic_excitatory"), (-1, "synthetic_inhibitory")):
        chosen = syn_sign == sign
        if chosen.any():
            nest.CopyModel(module.synapse_model, label, {**params, "Wmax": sign * w_max})
            nest.Connect(pre_ids[syn_pre[chosen]], post_ids[syn_post[chosen]], "one_to_one",
                         syn_spec={"synapse_model": label, "weight": w_start[chosen],
                                   "delay": np.full(chosen.sum(), delay)})
            labels.append(label)

    def locate() -> tuple[list, np.ndarray]:
        """The plastic connections and the row of each in the recording (synapses sorted by pre, then post)."""
        connections = [nest.GetConnections(synapse_model=label) for label in labels]
        keys = np.concatenate([np.searchsorted(pre_ids, c.source) * n_post + np.searchsorted(post_ids, c.target)
                               for c in connections])
        return connections, np.searchsorted(syn_pre * n_post + syn_post, keys)

    pre_recorder, post_recorder = nest.Create("spike_recorder", 2)
    nest.Connect(parrots, pre_recorder, syn_spec={"delay": delay})
    nest.Connect(neurons, post_recorder, syn_spec={"delay": delay})
    min_delay = nest.GetKernelStatus("min_delay")
    _check(abs(min_delay - delay) < 1e-9, f"NEST's min_delay is {min_delay} ms, not the delay {delay} ms")

    # Weights at t_s: read after t_s + delay, when the spikes stamped <= t_s have been delivered.
    weights = np.empty((len(syn_pre), len(sample_steps)))
    done = 0
    with nest.RunManager():
        for j, step in enumerate(sample_steps):
            nest.Run((step + step_d - done) * resolution)
            done = step + step_d
            if j == 0:  # NEST reorders connections when a run starts: collections taken before point elsewhere
                connections, rows = locate()
            weights[rows, j] = np.concatenate([np.atleast_1d(c.get("weight")) for c in connections])
        nest.Run((step_end - done) * resolution)  # recorders receive spikes at once, up to the last step
    if not np.array_equal(locate()[1], rows):
        raise RuntimeError("NEST reordered the plastic connections during the run; the sampled weights are mixed up")

    pre_times, pre_index = _events(pre_recorder, pre_ids, duration_ms)
    post_times, post_index = _events(post_recorder, post_ids, duration_ms)
    return Recording(
        pre_times=pre_times, pre_ids=pre_index, post_times=post_times, post_ids=post_index,
        duration=float(duration_ms), syn_pre=syn_pre, syn_post=syn_post, syn_sign=syn_sign,
        weight_synapses=np.arange(len(syn_pre)), weight_times=sample_steps * resolution, weights=weights,
        n_pre=n_pre, n_post=n_post,
        description=description,
    )


def on_tic(resolution: float) -> float:
    """``resolution`` (ms) on NEST's grid of tics (0.001 ms) as a Python float, or a ValueError
    before anything is reset: numpy's float32 0.1 (0.10000000149) passed, and NEST refused it once
    the user's network was gone."""
    tics = 1000.0 * float(resolution)
    _check(tics >= 0.5 and abs(tics - round(tics)) < 1e-6 * tics,
           f"resolution {resolution!r} ms must be a positive multiple of NEST's tic, 0.001 ms")
    return round(tics) / 1000.0


def _check_timing(delay: float, resolution: float, duration_ms: float, sample_every_ms: float | None) -> None:
    """The grid generate() and simulate() run on: a delay of whole steps, samples on NEST's slices
    (multiples of the delay), a duration of whole steps and at least two delays."""
    _check(_steps(delay, resolution) >= 1, f"delay {delay} ms must be a positive multiple of resolution {resolution} ms")
    if sample_every_ms is not None:
        _check(_steps(sample_every_ms, delay) >= 1, f"sample_every_ms {sample_every_ms} must be a positive multiple "
                                                    f"of delay {delay} ms (samples fall on NEST's slice boundaries)")
    _check(_steps(duration_ms, resolution) >= 2 * _steps(delay, resolution),
           f"duration_ms {duration_ms} must be a multiple of resolution and at least 2 * delay")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _steps(ms: float, unit: float) -> int:
    """``ms`` as a whole number of ``unit``; -1 if it is not one."""
    n = round(ms / unit)
    return n if abs(n * unit - ms) < 1e-9 * max(1.0, abs(ms)) else -1


def _poisson_steps(rng: np.random.Generator, rate_hz: float, first: int, last: int, resolution: float) -> np.ndarray:
    """A Poisson train on the grid: sorted distinct steps in [first, last]. Two spikes drawn in one
    step merge (a parrot would relay them as one event of multiplicity 2), a loss of
    rate * resolution, 0.1 % at 10 Hz."""
    count = rng.poisson(rate_hz * (last - first + 1) * resolution / 1000.0)
    return np.unique(rng.integers(first, last + 1, count))


def _events(recorder, node_ids: np.ndarray, duration_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """A recorder's spikes stamped <= duration as (times, 0-based ids), sorted by time then id
    (NEST's recorder holds them in delivery order, not globally sorted)."""
    events = recorder.get("events")
    times, ids = np.asarray(events["times"], dtype=float), np.searchsorted(node_ids, events["senders"])
    keep = times <= duration_ms + 1e-9
    times, ids = times[keep], ids[keep]
    order = np.lexsort((ids, times))
    return times[order], ids[order]
