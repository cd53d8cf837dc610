"""Postsynaptic neuron models a rule can be compiled with: the NESTML models that ship with the
installed NESTML (``<venv>/models/neurons/``), used as they are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownNameError


class UnknownNeuronError(UnknownNameError):
    """An unknown neuron name; the message lists the available neurons."""


@dataclass(frozen=True)
class Neuron:
    """A NESTML neuron model: ``name`` is what users type, ``model`` the NESTML model name."""

    name: str
    model: str
    description: str
    # NEST's built-in model of the same neuron, and its parameter names that NESTML spells differently
    nest_model: str = ""
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> Path:
        """The NESTML source, as installed with NESTML."""
        from .build import nestml_model  # build imports this module

        return nestml_model("neurons", self.model)

    @property
    def source(self) -> str:
        return self.path.read_text()

    def params_from_nest(self, params: dict) -> dict:
        """Parameters of NEST's built-in model (e.g. ``tau_syn_ex``, ``t_ref``) under this
        NESTML neuron's names (``tau_syn_exc``, ``refr_T``), so an existing model keeps its values."""
        names = dict(self.renamed)
        return {names.get(key, key): value for key, value in params.items()}


NEURONS = {
    n.name: n
    for n in (
        Neuron("iaf_psc_exp", "iaf_psc_exp_neuron",
               "current-based LIF, exponential synaptic currents (NEST's iaf_psc_exp; parameters "
               "tau_syn_exc, tau_syn_inh, refr_T)",
               nest_model="iaf_psc_exp",
               renamed=(("tau_syn_ex", "tau_syn_exc"), ("tau_syn_in", "tau_syn_inh"), ("t_ref", "refr_T"))),
        Neuron("iaf_cond_exp", "iaf_cond_exp_neuron",
               "conductance-based LIF, exponential synaptic conductances (NEST's iaf_cond_exp; parameters "
               "tau_syn_exc, tau_syn_inh, refr_T, E_exc, E_inh)",
               nest_model="iaf_cond_exp",
               renamed=(("tau_syn_ex", "tau_syn_exc"), ("tau_syn_in", "tau_syn_inh"), ("t_ref", "refr_T"),
                        ("E_ex", "E_exc"), ("E_in", "E_inh"))),
    )
}


def get_neuron(name: str) -> Neuron:
    """The neuron called ``name``; NESTML's model name (``iaf_psc_exp_neuron``) is accepted too."""
    for neuron in NEURONS.values():
        if name in (neuron.name, neuron.model):
            return neuron
    raise UnknownNeuronError(f"unknown neuron {name!r}; available neurons: {', '.join(sorted(NEURONS))}")
