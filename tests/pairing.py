"""A test bench that shows several synapse models exactly the same pre- and postsynaptic spikes.

Presynaptic parrot neurons replay fixed spike trains; one postsynaptic neuron (the NESTML neuron
paired with the rule) is made to fire at chosen times by strong input. Every synapse model under
test connects the same parrots to the same neuron, so all of them see identical spikes, and
their weights are read after every chunk of the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nestplast.kernel import install

RESOLUTION = 0.1  # ms
DELAY = 1.0  # ms, of the plastic synapses (all of it dendritic, as in NEST's STDP synapses)
DRIVE_DELAY = 1.0  # ms
PARROT_DELAY = 1.0  # ms, from a spike generator to its parrot: parrots spike this much later
DRIVE_WEIGHT = {"iaf_psc_exp": 3000.0, "iaf_cond_exp": 60.0}  # one spike per kick, no second one


def poisson_times(rng: np.random.Generator, rate_hz: float, t_stop: float, t_start: float = 1.0,
                  min_gap: float = RESOLUTION) -> np.ndarray:
    """Poisson spike times on the simulation grid, at least ``min_gap`` apart."""
    isi = rng.exponential(1000.0 / rate_hz, size=int(3 * rate_hz * t_stop / 1000.0) + 20)
    times = np.round(t_start + np.cumsum(np.maximum(isi, min_gap)) / RESOLUTION) * RESOLUTION
    return times[times < t_stop]


def avoid_coincidence(pre: np.ndarray, drive: np.ndarray) -> np.ndarray:
    """Drop presynaptic spikes that could coincide with a postsynaptic spike (t_pre - delay ==
    t_post): NESTML-generated rules pair such spikes, NEST's built-in synapses do not (see
    test_coincident_spikes_are_paired). A driven spike follows its kick by 2-4 ms."""
    post_low = drive + DRIVE_DELAY
    post_high = drive + DRIVE_DELAY + 4.0
    shifted = pre + PARROT_DELAY - DELAY
    idx = np.searchsorted(post_low, shifted, side="right") - 1
    inside = (idx >= 0) & (shifted <= post_high[np.clip(idx, 0, None)])
    return pre[~inside]


@dataclass
class PairedResult:
    weights: dict[str, np.ndarray]  # model -> (chunks, n_pre) weights after each chunk
    pre_times: list[np.ndarray]  # spike times of the presynaptic parrots
    post_times: np.ndarray
    chunk_ms: float


def run_paired(nest, module, synapses: dict[str, tuple[str, dict]], weight: float, *, neuron: str = "iaf_psc_exp",
               n_pre: int = 8, pre_rate: float = 15.0, post_rate: float = 20.0, t_stop: float = 4000.0,
               chunks: int = 40, seed: int = 1, tau_minus: float = 20.0, coincidences: bool = False,
               pre_stop: float | None = None) -> PairedResult:
    """Connect ``n_pre`` parrots to one driven neuron through each of ``synapses``
    (label -> (base model, CopyModel params)), all starting at ``weight``; run and read weights."""
    nest.ResetKernel()
    install(module)
    nest.resolution = RESOLUTION
    rng = np.random.default_rng(seed)

    drive_times = poisson_times(rng, post_rate, t_stop, min_gap=8.0)
    pre_times = [poisson_times(rng, pre_rate, pre_stop or t_stop) for _ in range(n_pre)]
    if not coincidences:
        pre_times = [avoid_coincidence(t, drive_times) for t in pre_times]

    post = nest.Create(module.neuron_model, 1, {"tau_minus": tau_minus})
    kick = nest.Create("spike_generator", 1, {"spike_times": drive_times})
    nest.Connect(kick, post, syn_spec={"weight": DRIVE_WEIGHT[neuron], "delay": DRIVE_DELAY})
    sources = nest.Create("spike_generator", n_pre)
    for generator, times in zip(sources, pre_times):
        generator.spike_times = times
    parrots = nest.Create("parrot_neuron", n_pre)
    nest.Connect(sources, parrots, "one_to_one", syn_spec={"delay": PARROT_DELAY})
    recorder, pre_recorder = nest.Create("spike_recorder", 2)
    nest.Connect(post, recorder)
    nest.Connect(parrots, pre_recorder)

    connections = {}
    for label, (base, params) in synapses.items():
        nest.CopyModel(base, label, {**params, "weight": weight, "delay": DELAY})
        nest.Connect(parrots, post, syn_spec={"synapse_model": label})
        connections[label] = nest.GetConnections(synapse_model=label)

    chunk = t_stop / chunks
    weights = {label: np.empty((chunks, n_pre)) for label in synapses}
    for k in range(chunks):
        nest.Simulate(chunk)
        for label, conns in connections.items():
            # GetConnections orders by source; parrots were created in order
            order = np.argsort(conns.source)
            weights[label][k] = np.asarray(conns.weight)[order]
    # the spikes the synapses saw: the parrots' (time-sorted within each parrot)
    senders, times = pre_recorder.events["senders"], pre_recorder.events["times"]
    seen = [np.sort(times[senders == parrot]) for parrot in parrots.tolist()]
    return PairedResult(weights, seen, np.asarray(recorder.events["times"]), chunk)


def coincidences(result: PairedResult) -> int:
    """Pre/post pairs with t_pre - delay == t_post."""
    post = np.round(result.post_times / RESOLUTION).astype(np.int64)
    return sum(np.isin(np.round((t - DELAY) / RESOLUTION).astype(np.int64), post).sum() for t in result.pre_times)


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))
