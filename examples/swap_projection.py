"""Bring a compiled plasticity rule into an existing NEST model.

An ordinary NEST network (excitatory and inhibitory iaf_psc_exp neurons, Poisson drive, static
synapses) is built by a function the user already has. We then swap ONE projection, I -> E, to the
compiled doublet rule set to Vogels-Sprekeler inhibitory STDP with a 5 Hz target rate, and watch
the excitatory rate come down towards the target.

What changes in the user's model:
  1. the rule's module is built (once, cached) and installed after every nest.ResetKernel();
  2. the TARGET population of the plastic projection uses the rule's paired neuron model (a
     NESTML iaf_psc_exp with the rule's hooks); NEST's parameter names are translated;
  3. the projection connects with the rule's synapse model, copied with the rule's parameters;
     inhibitory weights stay negative (the rule acts on |w| and keeps the sign of Wmax).

Run:  .venv/bin/python examples/swap_projection.py [--scale 0.5] [--seconds 10]
"""

import argparse
import math

import numpy as np

from nestplast.builder import build
from nestplast.kernel import import_nest, install
from nestplast.neurons import get_neuron
from nestplast.rules import get_rule, vogels_sprekeler

NEURON = {"tau_m": 20.0, "t_ref": 2.0, "tau_syn_ex": 5.0, "tau_syn_in": 10.0}


def existing_model(nest, n_e, n_i, e_model="iaf_psc_exp", e_params=NEURON, ie_synapse="static_synapse"):
    """The user's model, unchanged apart from the two arguments that name E's model and I->E's synapse."""
    exc = nest.Create(e_model, n_e, params=e_params)
    inh = nest.Create("iaf_psc_exp", n_i, params=NEURON)
    drive = nest.Create("poisson_generator", params={"rate": 8000.0})
    nest.Connect(drive, exc + inh, syn_spec={"weight": 25.0})
    conn = {"rule": "fixed_indegree", "indegree": 50}
    nest.Connect(exc, exc + inh, conn, syn_spec={"weight": 30.0, "delay": 1.5})
    nest.Connect(inh, inh, conn, syn_spec={"weight": -60.0, "delay": 1.5})
    nest.Connect(inh, exc, conn, syn_spec={"synapse_model": ie_synapse, "weight": -60.0, "delay": 1.5})
    recorder = nest.Create("spike_recorder")
    nest.Connect(exc, recorder)
    return exc, recorder


def e_rate(nest, recorder, n_e, t_from, t_to):
    times = recorder.events["times"]
    return np.sum((times >= t_from) & (times < t_to)) / n_e / ((t_to - t_from) / 1000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="network size factor (1: 800 E + 200 I)")
    parser.add_argument("--seconds", type=float, default=10.0, help="biological time with plasticity")
    args = parser.parse_args()
    for option, value in (("--scale", args.scale), ("--seconds", args.seconds)):
        if not math.isfinite(value):  # nan: a ValueError from int(); inf: NEST's "simulation time must be finite"
            parser.error(f"{option} must be a finite number, got {value:g}")
    n_e, n_i = int(800 * args.scale), int(200 * args.scale)
    if n_e < 1 or n_i < 1 or not args.seconds >= 2.0:  # rates over the first and last second, which must differ
        parser.error(f"--scale must leave at least one E and one I neuron (800 and 200 at 1) and --seconds must be "
                     f"at least 2; got {n_e} E + {n_i} I, {args.seconds:g} s")
    nest = import_nest()

    # The model as the user had it.
    nest.ResetKernel()
    nest.SetKernelStatus({"rng_seed": 1})
    _, recorder = existing_model(nest, n_e, n_i)
    nest.Simulate(1000.0)
    print(f"static I->E:          E rate {e_rate(nest, recorder, n_e, 0, 1000):6.2f} Hz")

    # The same model with I->E learning by the compiled rule.
    rule, neuron = get_rule("doublet"), get_neuron("iaf_psc_exp")
    module = build(rule, neuron, quiet=False)
    nest.ResetKernel()
    nest.SetKernelStatus({"rng_seed": 1})
    install(module)  # after every ResetKernel
    target_hz, tau = 5.0, 20.0
    # tau_pre = tau_post = tau, alpha = -2 target tau, beta = 0, gamma = kappa = 1; Wmax < 0: inhibitory
    istdp = rule.synapse_params(vogels_sprekeler(target_hz, tau), eta=1.0, Wmax=-300.0)
    nest.CopyModel(module.synapse_model, "istdp_ie", istdp)
    _, recorder = existing_model(nest, n_e, n_i, e_model=module.neuron_model,
                                 e_params=neuron.params_from_nest(NEURON), ie_synapse="istdp_ie")
    t_end = 1000.0 * args.seconds
    nest.Simulate(t_end)
    weights = np.array(nest.GetConnections(synapse_model="istdp_ie").weight)
    print(f"iSTDP I->E (target {target_hz:g} Hz): E rate {e_rate(nest, recorder, n_e, 0, 1000):6.2f} Hz in the first "
          f"second, {e_rate(nest, recorder, n_e, t_end - 1000, t_end):6.2f} Hz in the last; "
          f"mean I->E weight {weights.mean():.1f} (started at -60)")


if __name__ == "__main__":
    main()
