"""A probabilistic two-choice task in NEST, learnt with a three-factor rule (the flies' task of the
model-based inference paper, with spiking neurons).

Each simulated animal has a population of Kenyon-cell-like inputs (parrot neurons); each of two
odours activates its own sparse random group of them (Poisson at ``odour_rate``) for one window.
The inputs reach one output neuron (the rule's NESTML neuron, with a Poisson background) through
plastic synapses of the rule. A trial: odour 0 is presented, then odour 1, and the output spikes
counted in each window (``n0``, ``n1``); the animal chooses odour 0 with probability
``sigmoid(beta (n0 - n1))``; the chosen odour is rewarded with its block's probability; the
reward signal ``R = r - E[r]`` (``E[r]``: the mean reward of the animal's last ``reward_memory``
trials) is set on the animal's synapse model (a common property of the rule, read by every one of
its synapses at their next presynaptic spike) and the chosen odour is presented again for the
learning window, then ``R`` goes back to 0. Between events the rule's forgetting term, if any,
decays every weight.

Why the reward is a common property set between trials rather than NEST's volume transmitter:
the task's reward is one number per trial and animal, known only after the choice; a volume
transmitter would need it turned into neuromodulator spikes and a trace, which adds parameters
(their time constants) that the data cannot inform. Setting it costs one ``SetDefaults`` per
animal and trial.

All animals of a call run side by side in one NEST kernel (their trials in lock-step), so the
per-call cost of ``nest.Simulate`` is shared. With ``choices`` and ``rewards`` given (fitting),
the animals do what the data say (teacher forcing) and the model's choice probabilities are
returned; without them (generating data), choices and rewards are drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .builder import build
from .kernel import import_nest, install, lent_kernel, nest_seed, reset_kernel
from .rules import Rule

DEFAULT_BLOCKS = ((0.2, 0.8), (0.9, 0.1), (0.2, 0.8))  # reward probability of odour 0 and 1, per block


@dataclass(frozen=True)
class ChoiceTask:
    """The task and the network every animal has (times in ms, rates in Hz, weights in pA)."""

    blocks: tuple[tuple[float, float], ...] = DEFAULT_BLOCKS
    trials_per_block: int | tuple[int, ...] = 80  # every block's, or one count per block (a lab's blocks of 60, 80, 70)
    n_inputs: int = 100
    group_size: int = 20  # inputs each odour activates
    odour_rate: float = 40.0
    window_ms: float = 100.0  # each odour's presentation, and the learning window
    background_rate: float = 3000.0
    background_weight: float = 40.0
    w_start: float = 30.0
    w_max: float = 200.0
    beta: float = 0.5  # choice = sigmoid(beta (n0 - n1))
    reward_memory: int = 10
    resolution: float = 1.0  # ms: the task needs spike counts, not sub-millisecond timing
    neuron: str = "iaf_psc_exp"
    neuron_params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.trials_per_block, (tuple, list)):
            if len(self.trials_per_block) != len(self.blocks):
                raise ValueError(f"trials_per_block: {len(self.trials_per_block)} counts for {len(self.blocks)} blocks; "
                                 "give one count for every block, or one for all")
            object.__setattr__(self, "trials_per_block", tuple(int(n) for n in self.trials_per_block))

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """The trials of each block."""
        n = self.trials_per_block
        return n if isinstance(n, tuple) else (n,) * len(self.blocks)

    @property
    def n_trials(self) -> int:
        return sum(self.block_sizes)

    def block_of(self, trial: int) -> int:
        return int(np.searchsorted(np.cumsum(self.block_sizes), trial, side="right"))


@dataclass
class Session:
    """What one call gives, per animal (rows) and trial (columns)."""

    p_choose_0: np.ndarray  # the model's probability of choosing odour 0
    choices: np.ndarray  # 0 or 1 (drawn, or the data's)
    rewards: np.ndarray  # 0 or 1
    counts: np.ndarray  # animals x trials x 2: output spikes during odour 0 and odour 1
    blocks: np.ndarray  # trials


def reward_signal(rewards: np.ndarray, trial: int, memory: int) -> np.ndarray:
    """``r - E[r]`` for every animal at ``trial``: E[r] is the mean of the previous ``memory``
    rewards (0 before the first)."""
    past = rewards[:, max(0, trial - memory):trial]
    expected = past.mean(axis=1) if past.shape[1] else np.zeros(rewards.shape[0])
    return rewards[:, trial] - expected


@lent_kernel("nestplast.choice_task.run_animals")
def run_animals(rule: Rule, params: Mapping[str, float], task: ChoiceTask, seeds: Sequence[int], *,
                choices: np.ndarray | None = None, rewards: np.ndarray | None = None,
                choice_seed: int = 0) -> Session:
    """Simulate the animals seeded ``seeds`` through the task with ``rule`` at ``params`` (without
    ``Wmax``: the task's ``w_max``). Each seed fixes its animal's odour groups; the kernel's random
    streams (the Poisson inputs) come from all the seeds together, so the same list of seeds gives
    the same session. Give ``choices`` and ``rewards`` (animals x trials, 0/1) to replay data; otherwise
    they are drawn from ``choice_seed``."""
    nest = import_nest()
    module = build(rule, task.neuron)
    n_animals, n_trials = len(seeds), task.n_trials
    forced = choices is not None
    if forced:
        choices, rewards = np.asarray(choices, dtype=int), np.asarray(rewards, dtype=float)
        if choices.shape != (n_animals, n_trials) or rewards.shape != (n_animals, n_trials):
            raise ValueError(f"choices and rewards must be {n_animals} animals x {n_trials} trials")
    else:
        choices, rewards = np.zeros((n_animals, n_trials), dtype=int), np.zeros((n_animals, n_trials))
    rng = np.random.default_rng(choice_seed)
    reset_kernel()
    install(module)
    # one kernel for all animals: its random streams are seeded by all of them together
    nest.SetKernelStatus({"rng_seed": nest_seed(list(seeds)),
                          "resolution": task.resolution})
    window, trial_ms = task.window_ms, 3 * task.window_ms
    starts = np.arange(n_trials) * trial_ms  # odour 0 at start, odour 1 at start + window, learning after
    step = task.resolution  # a generator's rate changes take effect one step late: shift them by one
    offer = {o: {"rate_times": np.ravel([[t + o * window, t + (o + 1) * window] for t in starts]) + step,
                 "rate_values": np.tile([task.odour_rate, 0.0], n_trials)} for o in range(2)}
    models, outputs, learning = [], [], []
    for k, seed in enumerate(seeds):
        animal = np.random.default_rng(seed)
        inputs = nest.Create("parrot_neuron", task.n_inputs)
        odours = nest.Create("inhomogeneous_poisson_generator", 2)
        if forced:  # the chosen odour again in every learning window: known in advance
            learn = nest.Create("inhomogeneous_poisson_generator", 2)
            for o in range(2):
                on = starts[choices[k] == o] + 2 * window + step
                learn[o].set(rate_times=np.ravel([[a, a + window] for a in on]).tolist(),
                             rate_values=np.tile([task.odour_rate, 0.0], on.size).tolist())
        else:  # chosen at run time (a poisson_generator takes a new rate at the next Simulate)
            learn = nest.Create("poisson_generator", 2, params={"rate": 0.0})
        for o in range(2):
            odours[o].set(rate_times=offer[o]["rate_times"].tolist(), rate_values=offer[o]["rate_values"].tolist())
            group = np.sort(animal.choice(task.n_inputs, task.group_size, replace=False)).tolist()
            nest.Connect(odours[o], inputs[group])
            nest.Connect(learn[o], inputs[group])
        output = nest.Create(module.neuron_model, params=dict(task.neuron_params))
        background = nest.Create("poisson_generator", params={"rate": task.background_rate})
        nest.Connect(background, output, syn_spec={"weight": task.background_weight})
        model = f"reward_animal_{k}"
        nest.CopyModel(module.synapse_model, model, {**params, "Wmax": task.w_max, "R": 0.0})
        nest.Connect(inputs, output, syn_spec={"synapse_model": model, "weight": task.w_start, "delay": 1.0})
        models.append(model)
        outputs.append(output)
        learning.append(learn)
    outputs_all = sum(outputs[1:], outputs[0])
    recorder = nest.Create("spike_recorder")
    nest.Connect(outputs_all, recorder)
    index = {node_id: k for k, node_id in enumerate(outputs_all.tolist())}

    def set_reward(signal: Sequence[float]) -> None:
        for k, value in enumerate(signal):
            nest.SetDefaults(models[k], {"R": float(value)})

    def set_learning(rate_of_animal: Sequence[tuple[int, float]]) -> None:
        for k, (odour, rate) in enumerate(rate_of_animal):
            learning[k][odour].rate = rate

    counts = np.zeros((n_animals, n_trials, 2), dtype=int)
    blocks = np.array([task.block_of(t) for t in range(n_trials)])
    read = 0  # events read so far (a recorder cannot be cleared inside a RunManager)

    def count(trials: slice) -> None:
        """Output spikes of the odour windows of ``trials``, from the events not read yet."""
        nonlocal read
        events = recorder.events
        senders, times = np.asarray(events["senders"])[read:], np.asarray(events["times"])[read:]
        read += senders.size
        trial, phase = np.divmod(times - step - 1e-9, trial_ms)  # the input reaches the output a step late
        window_of = (phase // window).astype(int)
        chosen = (window_of < 2) & (trial >= trials.start) & (trial < trials.stop)
        animal = np.array([index[s] for s in senders[chosen]], dtype=int)
        np.add.at(counts, (animal, trial[chosen].astype(int), window_of[chosen]), 1)

    if forced:
        with nest.RunManager():  # one Prepare for the whole session: a trial costs two Runs
            for t in range(n_trials):
                nest.Run(2 * window)
                set_reward(reward_signal(rewards, t, task.reward_memory))
                nest.Run(window)
                set_reward(np.zeros(n_animals))
    else:
        for t in range(n_trials):
            nest.Simulate(2 * window)
            count(slice(t, t + 1))  # the choice needs this trial's counts now
            p = choice_probability(counts[:, t], task.beta)
            choices[:, t] = (rng.random(n_animals) >= p).astype(int)
            p_reward = np.asarray(task.blocks[blocks[t]])[choices[:, t]]
            rewards[:, t] = (rng.random(n_animals) < p_reward).astype(float)
            set_reward(reward_signal(rewards, t, task.reward_memory))
            set_learning([(c, task.odour_rate) for c in choices[:, t]])
            nest.Simulate(window)
            set_learning([(c, 0.0) for c in choices[:, t]])
            set_reward(np.zeros(n_animals))
    if forced:
        count(slice(0, n_trials))
    return Session(p_choose_0=choice_probability(counts, task.beta), choices=choices, rewards=rewards.astype(int),
                   counts=counts, blocks=blocks)


def choice_probability(counts: np.ndarray, beta: float) -> np.ndarray:
    """The probability of choosing odour 0, ``sigmoid(beta (n0 - n1))``, from the output spike
    ``counts`` (last axis: during odour 0 and odour 1)."""
    return 1.0 / (1.0 + np.exp(-beta * (counts[..., 0] - counts[..., 1])))


def log_likelihood(p_choose_0: np.ndarray, choices: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """Per animal, the summed log-likelihood (nats) of ``choices`` under ``p_choose_0`` (minus the
    binary cross-entropy); probabilities are kept inside [floor, 1 - floor]."""
    p = np.clip(p_choose_0, floor, 1.0 - floor)
    return np.sum(np.where(np.asarray(choices) == 0, np.log(p), np.log1p(-p)), axis=-1)
