"""nestplast: discover and infer synaptic plasticity rules in NEST.

Plasticity rules are written in NESTML with free parameters, compiled once into a NEST
module (:mod:`nestplast.build`), and run in NEST with any parameter values
(:mod:`nestplast.rules`, :mod:`nestplast.kernel`).
"""

__version__ = "0.1.0"
