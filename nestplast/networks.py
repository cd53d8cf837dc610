"""Spiking networks for the search, built in the running NEST kernel.

Two kinds (``NetworkSpec.kind``):
- ``recurrent``: N_E excitatory and N_I inhibitory neurons, fixed in-degree p * N_source for each
  connection type (EE, EI, IE, II: source then target), independent Poisson drive into every
  neuron (from a ``poisson_generator``, or drawn inside the neuron: ``NetworkSpec.drive``); any
  connection types plastic, each with its own copy of the rule.
- ``single_neuron``: one neuron with N_E excitatory and N_I inhibitory Poisson afferents (parrot
  neurons, so that their synapses can learn); EE and/or IE plastic (Vogels et al. 2011 style).

All neurons are the rule's paired NESTML neuron (a NESTML rule only connects to it); NEST's
parameter names in the spec (``tau_syn_ex``, ``t_ref``) are translated. Inhibitory weights are
negative in NEST: the spec gives magnitudes and the signs are applied here (``Wmax`` too).
Several networks can live in one kernel side by side, each with its own ``label``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .builder import Module, unpaired_name
from .experiment import Experiment, ExperimentError, NetworkSpec, TrialSpec
from .kernel_reads import connection_weights, model_weights, node_ids, spike_count
from .neurons import Neuron, get_neuron
from .rules import NO_RULE, RuleLayout

INHIBITORY_SOURCES = ("IE", "II")


def signed(ct: str, magnitude: float) -> float:
    """NEST's sign for connection type ``ct``: negative when the source is inhibitory."""
    return -abs(magnitude) if ct in INHIBITORY_SOURCES else abs(magnitude)


def nest_settings(exp: Experiment | str | os.PathLike, theta: Sequence[float] | Mapping[str, float],
                  layout: RuleLayout | None = None) -> dict[str, dict[str, float]]:
    """Each plastic connection type's synapse settings for ``theta``, as ``nest.CopyModel`` takes
    them: the searched parameters, the rule's fixed ones (``rule.fixed``, the start of those
    ``rule.search`` leaves out) and ``Wmax``, signed for the type, at ``network.w_max`` (a trial
    may scale it by ``trials.w_max_scale``). ``theta`` alone left those at the rule's defaults.
    ``exp``: an Experiment, or a run's folder (the experiment that run recorded, also after its
    file was edited) or an experiment file. ``theta``: the searched values in order, by name
    (``exp.layout().as_dict(theta)``'s names), or a row of :func:`nestplast.families.family` (its
    ``theta``). ``layout``: ``exp.layout()``, where the caller holds it already."""
    from .runs import as_experiment

    exp = as_experiment(exp)
    layout = layout or exp.layout()
    if theta is None:  # run_search's best_theta where no candidate had all its trials ok
        raise ValueError(NO_RULE)
    if isinstance(theta, Mapping) and "theta" in theta:  # a family's row (the docstring said so, and it failed)
        theta = theta["theta"]
    if isinstance(theta, Mapping):
        theta = layout.from_dict(theta)
    settings = {ct: {**layout.rule_of(ct).synapse_params(block, **exp.fixed(ct)), "Wmax": signed(ct, exp.network.w_max[ct])}
                for ct, block in layout.split(theta).items()}
    for ct, params in settings.items():
        layout.rule_of(ct).check_bound_signs(params.get("Wmin", 0.0), params["Wmax"])
    return settings


def drawn_wmax_note(exp: Experiment, settings: Mapping[str, Mapping[str, float]]) -> str | None:
    """Where the trials scaled Wmax (``trials.w_max_scale`` other than [1, 1]), a note that the
    Wmax of ``settings`` (:func:`nest_settings`) is ``network.w_max``, and the range each type's
    rule ran with: a report printed the nominal -300 as what the best rule "ran with", while its
    every trial had -150 to -180, and a copy of it saturated elsewhere. None otherwise."""
    low, high = exp.trials.w_max_scale
    if low == high == 1.0 or not settings:
        return None
    ranges = ", ".join(f"{ct} {signed(ct, exp.network.w_max[ct] * low):g} to {signed(ct, exp.network.w_max[ct] * high):g}"
                       for ct in settings)
    return (f"note: Wmax above is network.w_max; the trials scaled it by trials.w_max_scale [{low:g}, {high:g}], so the "
            f"rule ran with Wmax from {ranges}: choose yours in that range")


def inert_note(exp: Experiment, settings: Mapping[str, Mapping[str, float]], what: str = "the best rule") -> str | None:
    """A warning where ``settings`` (:func:`nest_settings`) change no weight on some type (every
    update 0: the search's start point, all coefficients 0, can be its best when nothing beat a
    static network), handed over as a run's best rule without a word; None where every type learns."""
    layout = exp.layout()
    if inert := [ct for ct, params in settings.items() if layout.rule_of(ct).changes_no_weight(params)]:
        return (f"warning: {what} changes no weight on {', '.join(inert)} (every update 0, e.g. all its coefficients "
                "0): in a model of your own it is a static synapse; no candidate that learns did better (more "
                "generations, a larger search.sigma0, or check the objective)")
    return None


@dataclass(frozen=True)
class Trial:
    """One randomised realisation of the network (seed, initial weights, input, weight bound)."""

    index: int
    seed: int
    weight_scale: float = 1.0
    input_rate_scale: float = 1.0
    w_max_scale: float = 1.0


def draw_trials(spec: TrialSpec, seed_sequence: np.random.SeedSequence) -> list[Trial]:
    """``spec.n`` trials drawn from ``seed_sequence``; the search passes the same sequence to every
    candidate of a generation, so candidates are compared on the same trials."""
    trials = []
    for index, child in enumerate(seed_sequence.spawn(spec.n)):
        rng = np.random.default_rng(child)
        nest_seed = int(rng.integers(1, 2**31 - 1))
        trials.append(Trial(index, nest_seed, float(rng.uniform(*spec.weight_scale)),
                            float(rng.uniform(*spec.input_rate_scale)), float(rng.uniform(*spec.w_max_scale))))
    return trials


@dataclass
class Network:
    """Handles to a built network: populations, spike recorders and plastic connections."""

    populations: dict
    recorders: dict
    plastic: dict  # connection type -> SynapseCollection
    w_max: dict[str, float]  # connection type -> signed bound
    w_start: dict[str, float] = field(default_factory=dict)  # connection type -> the weight all its synapses start at
    models: dict[str, str] = field(default_factory=dict)  # connection type -> its own synapse model (a copy)

    def weights(self, ct: str, step: int = 1) -> np.ndarray:
        """The weights of connection type ``ct``'s plastic synapses (this rank's, under MPI), every
        ``step``-th."""
        if ct in self.models:  # all of that model's connections: read in C++ (kernel_reads)
            return model_weights(self.models[ct], step)
        return connection_weights(self.plastic[ct][::step])

    def spike_count(self, name: str) -> int:
        """The spikes population ``name``'s recorder holds (this rank's, under MPI)."""
        return spike_count(self.recorders[name])

    def start_weights(self, ct: str) -> np.ndarray:
        """The plastic weights as built, without asking NEST: reading them back cost as much as
        reading the end weights (a quarter of a second for 41,000 synapses, seconds at the
        reference size)."""
        return np.full(len(self.plastic[ct]), self.w_start[ct])

    def sample_weights(self, ct: str, n: int = 64) -> np.ndarray:
        """Weights of about ``n`` plastic connections, every k-th, so spread over every source:
        reading all of them after every chunk took a fifth of an evaluation's time through NEST's
        Python interface (which builds each connection's whole status, about 5 us), and the first
        200 came from 5 sources."""
        return self.weights(ct, step=max(1, len(self.plastic[ct]) // n))

    def node_ids(self, name: str) -> np.ndarray:
        """The node IDs of population ``name`` (NodeCollection.tolist reads every node's whole status:
        1.3 ms for 200)."""
        return np.asarray(node_ids(self.populations[name]), dtype=np.int64)

    def clear_spikes(self, name: str) -> None:
        """Drop the spikes that population ``name``'s recorder holds (NEST clears them when
        ``n_events`` is set to 0). Through the call behind NodeCollection.set: set itself first
        reads the recorder's whole status, every event included (2 ms for 20,000 spikes)."""
        from nest import nestkernel_api

        nestkernel_api.llapi_set_nc_status(self.recorders[name]._datum, [{"n_events": 0}])

    def silence(self) -> None:
        """Stop a runaway network from costing more time (other networks in the kernel go on)."""
        for name in ("E", "I"):  # the neurons; parrots have no threshold
            if name in self.populations:
                self.populations[name].set(V_th=1e9)


def drive_params(nest, spec: NetworkSpec, module: Module, rate: float) -> dict:
    """The neuron parameters of the Poisson drive: independent input at ``rate`` (Hz) with
    ``spec.input_weight`` into each neuron. With ``spec.drive == "internal"`` it is drawn inside each
    neuron (the neuron's own drive, see :func:`nestplast.neurons.add_internal_drive`): the same
    statistics as a ``poisson_generator`` without an event per spike. Empty for the generator,
    which :func:`add_poisson_generator` connects."""
    if spec.drive == "poisson_generator":
        return {}
    if "drive_rate" not in nest.GetDefaults(module.neuron_model):
        raise ValueError(f"network.drive = 'internal' needs a neuron with the internal drive (iaf_psc_exp), and "
                         f"{module.neuron_model} ({module.name}) has none: use network.drive = 'poisson_generator'")
    return {"drive_rate": rate, "drive_weight": spec.input_weight}


def add_poisson_generator(nest, spec: NetworkSpec, neurons, rate: float) -> None:
    """The drive from one ``poisson_generator`` (NEST draws each target's spikes separately)."""
    drive = nest.Create("poisson_generator", params={"rate": rate})
    nest.Connect(drive, neurons, syn_spec={"weight": spec.input_weight, "delay": spec.delay})


def _refusal(err: Exception, model: str) -> str:
    """NEST's message without the name of the model copied only to ask it."""
    return str(err).replace(f"Setting status of model '{model}': ", "")


def check_neuron_params(nest, spec: NetworkSpec, module: Module) -> None:
    """Refuse (ExperimentError) ``spec.neuron_params`` where the module's neuron refuses them
    (e.g. ``tau_syn_in`` equal to ``tau_m``): every network built with them would fail alike."""
    try:
        nest.CopyModel(module.neuron_model, "nestplast_neuron_check", neuron_params(spec, module))
    except nest.NESTErrors.BadProperty as err:
        neuron = paired_neuron(module)
        # NESTML's names in NEST's message: say which of the experiment's keys they are
        spelt = [f"{own} is your {key}" for key, own in neuron.renamed if key in spec.neuron_params]
        also = f" ({'; '.join(spelt)})" if spelt else ""
        raise ExperimentError(f"network.neuron_params: the neuron {neuron.name} refuses {spec.neuron_params}: "
                              f"{_refusal(err, 'nestplast_neuron_check')}{also}") from None


def check_synapse_params(nest, spec: NetworkSpec, synapse_params: dict[str, dict], models: dict[str, str],
                         fixed: dict[str, dict]) -> None:
    """Refuse (ExperimentError) rule settings that the synapse model refuses (e.g. ``tau_pre = 0``,
    ``|Wmin| > |Wmax|``) at the search's start point, before a run: where they are the fixed ones
    (``fixed``: per type), every evaluation would fail alike."""
    for ct, params in synapse_params.items():
        try:
            nest.CopyModel(models[ct], f"nestplast_check_{ct}", {**params, "Wmax": signed(ct, spec.w_max[ct])})
        except nest.NESTErrors.BadProperty as err:
            given = {k: v for k, v in fixed.get(ct, {}).items() if k != "Wmax"}
            raise ExperimentError(f"the rule's settings on {ct} ({given or 'its defaults'} fixed, the rest at the "
                                  f"search's start; w_max {spec.w_max[ct]}): {models[ct]} refuses them: "
                                  f"{_refusal(err, f'nestplast_check_{ct}')}") from None


def paired_neuron(module: Module) -> Neuron:
    """The neuron that the module's rules are paired with."""
    return get_neuron(unpaired_name(module.neuron_model))


def synapse_models(layout: RuleLayout, module: Module) -> dict[str, str]:
    """Each plastic type's synapse model in ``module``, the module of ``layout``'s rules (a
    co-active run's holds one model per rule)."""
    return {ct: module.synapse_models[layout.rule_of(ct).name] for ct in layout.connection_types}


def neuron_params(spec: NetworkSpec, module: Module) -> dict:
    """``spec.neuron_params`` in the names of the module's NESTML neuron (NEST's ``tau_syn_ex``
    becomes ``tau_syn_exc``)."""
    return paired_neuron(module).params_from_nest(spec.neuron_params)


def build_network(nest, spec: NetworkSpec, module: Module, synapse_params: dict[str, dict], trial: Trial,
                  label: str = "", models: dict[str, str] | None = None) -> Network:
    """Build one network in the running kernel (the module must be installed).

    ``synapse_params`` maps each plastic connection type to the rule's NEST settings (from
    :meth:`nestplast.rules.Rule.synapse_params`, without ``Wmax``); the signed, trial-scaled
    ``Wmax`` is added here. ``models``: each plastic type's synapse model in the module, where it
    holds several (co-active rules); by default the module's one.
    """
    params = neuron_params(spec, module)
    w_max = {ct: signed(ct, spec.w_max[ct] * trial.w_max_scale) for ct in synapse_params}

    w_start = {}

    def synapse(ct: str) -> dict:
        weight = signed(ct, spec.weights[ct])
        if ct not in synapse_params:
            return {"synapse_model": "static_synapse", "weight": weight, "delay": spec.delay}
        model = f"{label}{ct}_plastic"
        nest.CopyModel(models[ct] if models else module.synapse_model, model, {**synapse_params[ct], "Wmax": w_max[ct]})
        start = weight * trial.weight_scale
        w_start[ct] = start = float(np.clip(start, -abs(w_max[ct]), abs(w_max[ct])))
        return {"synapse_model": model, "weight": start, "delay": spec.delay}

    recorders = {}
    if spec.kind == "recurrent":
        # The neurons' parameters go into a copy of the model, not into Create(params=...): that
        # calls NodeCollection.set, which reads every node's whole status first (4 ms for 200)
        rate = spec.input_rate * trial.input_rate_scale
        model = f"{label}nestplast_neuron"
        nest.CopyModel(module.neuron_model, model, {**params, **drive_params(nest, spec, module, rate)})
        pops = {"E": nest.Create(model, spec.n_e), "I": nest.Create(model, spec.n_i)}
        if spec.drive == "poisson_generator":
            add_poisson_generator(nest, spec, pops["E"] + pops["I"], rate)
        for ct in ("EE", "EI", "IE", "II"):
            source, target = pops[ct[0]], pops[ct[1]]
            indegree = max(1, int(round(spec.p * len(source))))
            nest.Connect(source, target, {"rule": "fixed_indegree", "indegree": indegree, "allow_autapses": False},
                         syn_spec=synapse(ct))
    else:
        post = nest.Create(module.neuron_model, 1, params=params)
        pops = {"E": post,
                "inputs_E": nest.Create("parrot_neuron", spec.n_e_inputs),
                "inputs_I": nest.Create("parrot_neuron", spec.n_i_inputs)}
        for ct, key, rate in (("EE", "inputs_E", spec.input_rate_e), ("IE", "inputs_I", spec.input_rate_i)):
            generator = nest.Create("poisson_generator", params={"rate": rate * trial.input_rate_scale})
            nest.Connect(generator, pops[key])
            nest.Connect(pops[key], post, syn_spec=synapse(ct))
    for name in ("E", "I"):
        if name in pops:
            recorders[name] = nest.Create("spike_recorder")
            nest.Connect(pops[name], recorders[name])
    models = {ct: f"{label}{ct}_plastic" for ct in synapse_params}
    plastic = {ct: nest.GetConnections(synapse_model=model) for ct, model in models.items()}
    return Network(populations=pops, recorders=recorders, plastic=plastic, w_max=w_max, w_start=w_start, models=models)
