"""The clamped forward model in NEST: a recording's spikes replayed exactly through a compiled rule.

Presynaptic spikes are replayed by parrot neurons; each postsynaptic neuron (the rule's paired
NESTML neuron, so that the rule sees its spikes as in any network) is made to fire at the recorded
times and nowhere else: a brief, strong kick makes it spike one time step after the kick arrives,
and its membrane capacitance is raised a thousandfold so that the plastic inputs cannot make it
fire. The replay checks that every postsynaptic spike happened exactly as recorded.

Weights are read with the convention of :mod:`nestplast.trajectories`: the weight at time t is its
value after NEST has processed every presynaptic spike at or before t. NEST delivers the spikes of
one min-delay slice at the start of the next, so the weight at t is read after simulating to
t + delay (all delays equal ``delay``; sample times must be multiples of it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .builder import Module
from .errors import UserError
from .kernel import import_nest, install, lent_kernel, reset_kernel
from .recording import Recording, off_grid

RESOLUTION = 0.1  # ms
DEAF = 1000.0  # membrane capacitance x DEAF: plastic inputs move V by microvolts
KICK_TAU_SYN = 0.02  # ms: 99 % of the kick's charge arrives within its first step (one spike per kick)
KICK_CHARGE_MV = 100.0  # the kick raises V by about this much: far above any threshold, its rest below it


class ReplayError(UserError):
    """The recording cannot be replayed in NEST as asked (times off the grid, a post spike that
    could not be reproduced)."""


def _on_grid(times: np.ndarray, what: str, step: float) -> None:
    if (bad := off_grid(times, step)) is not None:
        raise ReplayError(f"{what}: times must lie on the {step} ms grid to be replayed in NEST; {bad:g} ms does not")


@lent_kernel("nestplast.replay.replay")
def replay(module: Module, params: Mapping[str, float], recording: Recording, synapses: Sequence[int],
           w_start: Sequence[float], sample_times: Sequence[float], *, delay: float,
           synapse_model: str | None = None, neuron_params: Mapping[str, float] | None = None) -> np.ndarray:
    """Weights (signed, (len(synapses), len(sample_times))) of ``synapses`` of ``recording`` under
    the compiled rule (``module``; or NEST's own ``synapse_model`` connected to the rule's neuron)
    with settings ``params`` (``Wmax`` as a magnitude: it gets each synapse's sign), from
    ``w_start`` at time 0. ``neuron_params`` go to the postsynaptic neurons (e.g. ``tau_minus``,
    the postsynaptic trace of NEST's own STDP synapses)."""
    nest = import_nest()
    synapses = np.asarray(synapses, dtype=int)
    sample_times = np.asarray(sample_times, dtype=float)
    _on_grid(recording.pre_times, "pre_times", RESOLUTION)
    _on_grid(recording.post_times, "post_times", RESOLUTION)
    _on_grid(sample_times, "sample times", delay)
    shift = 2.0 * delay  # every generator time stays positive
    reset_kernel()
    install(module)
    nest.resolution = RESOLUTION

    pre_ids = np.unique(recording.syn_pre[synapses])
    post_ids = np.unique(recording.syn_post[synapses])
    pre_trains, post_trains = recording.pre_trains(), recording.post_trains()
    generators = nest.Create("spike_generator", len(pre_ids))
    for generator, i in zip(generators, pre_ids):
        generator.spike_times = pre_trains[i] + shift - delay
    parrots = nest.Create("parrot_neuron", len(pre_ids))
    nest.Connect(generators, parrots, "one_to_one", syn_spec={"delay": delay})

    posts = nest.Create(module.neuron_model, len(post_ids))
    c_m = posts[0].get("C_m") * DEAF
    posts.set(C_m=c_m, tau_syn_exc=KICK_TAU_SYN, refr_T=RESOLUTION, **(neuron_params or {}))
    kicks = nest.Create("spike_generator", len(post_ids))
    for kick, i in zip(kicks, post_ids):
        kick.spike_times = post_trains[i] + shift - delay - RESOLUTION  # the neuron fires one step after the kick
    nest.Connect(kicks, posts, "one_to_one", syn_spec={"delay": delay, "weight": KICK_CHARGE_MV * c_m / KICK_TAU_SYN})
    recorder = nest.Create("spike_recorder")
    nest.Connect(posts, recorder)

    base = synapse_model or module.synapse_model
    w_start = np.asarray(w_start, dtype=float)
    sign = recording.syn_sign[synapses]
    w_max = abs(params.get("Wmax", 1e300))
    models = {}
    for s in sorted(set(sign.tolist())):  # only the signs present: NEST's own synapses refuse a negative Wmax
        models[s] = f"replay_{'exc' if s > 0 else 'inh'}"
        settings = dict(params, Wmax=s * w_max) if "Wmax" in params else dict(params)
        nest.CopyModel(base, models[s], settings)
    parrot_of = dict(zip(pre_ids.tolist(), parrots.tolist()))
    post_of = dict(zip(post_ids.tolist(), posts.tolist()))
    pairs = [(parrot_of[recording.syn_pre[s]], post_of[recording.syn_post[s]]) for s in synapses]
    if len(set(pairs)) < len(pairs):
        raise ReplayError("synapses: two of them join the same input and neuron; the replay tells synapses apart "
                          "by their input and neuron")
    for j, (source, target) in enumerate(pairs):
        nest.Connect(nest.NodeCollection([source]), nest.NodeCollection([target]),
                     syn_spec={"synapse_model": models[int(sign[j])], "weight": w_start[j], "delay": delay})

    out = np.empty((len(synapses), sample_times.size))
    now = 0.0
    for k, t in enumerate(sample_times):
        nest.Simulate(t + shift + delay - now)
        now = t + shift + delay
        # read by (input, neuron) every time: NEST reorders its connections when a run starts, so
        # handles taken before would point at other synapses
        weight_of = {}
        for model in models.values():
            found = nest.GetConnections(synapse_model=model).get(["source", "target", "weight"])
            columns = [np.atleast_1d(found[key]).tolist() for key in ("source", "target", "weight")]
            weight_of.update(zip(zip(columns[0], columns[1]), columns[2]))
        out[:, k] = [weight_of[pair] for pair in pairs]

    nest.Simulate(max(recording.duration + shift + delay - now, RESOLUTION))
    _check_post_spikes(recording, post_ids, post_of, recorder, shift)
    return out


def _check_post_spikes(recording: Recording, post_ids, post_of, recorder, shift: float) -> None:
    events = recorder.get("events")
    senders, times = np.asarray(events["senders"]), np.asarray(events["times"]) - shift
    for i in post_ids:
        fired = np.sort(times[senders == post_of[i]])
        wanted = recording.post_spikes(i)
        if fired.size != wanted.size or not np.allclose(fired, wanted, atol=RESOLUTION / 10):
            raise ReplayError(f"post neuron {i}: replayed {fired.size} spikes, recorded {wanted.size} "
                              f"(first recorded {wanted[:3]}, replayed {fired[:3]}): a recorded interval shorter "
                              "than the time step?")
