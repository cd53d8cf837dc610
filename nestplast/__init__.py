"""nestplast: discover and infer synaptic plasticity rules in NEST.

Plasticity rules are written in NESTML with free parameters, compiled once into a NEST module,
and run in NEST with any parameter values::

    import nest, nestplast
    rule = nestplast.get_rule("doublet")
    module = nestplast.build(rule, "iaf_psc_exp")        # compiled once, then cached
    nestplast.install(module)                            # after every nest.ResetKernel()

    exp = nestplast.load_experiment("my.toml")           # or nestplast.default_experiment()
    outcome = nestplast.run_search(exp, "runs/my")       # CMA-ES through the engine
    nestplast.nest_settings(exp, outcome.best_theta)     # the best rule's nest.CopyModel settings, per plastic type

    fit = nestplast.fit_rule(nestplast.load_recording("data.npz"), nestplast.RuleChoice("taylor", "post:100,post:011"),
                             fixed={"eta": 0.5, "Wmax": 1000.0})   # the recording's path does too

The parts: :mod:`~nestplast.rules` (what a rule is), :mod:`~nestplast.builder` (NESTML to NEST
module), :mod:`~nestplast.experiment` (the options table), :mod:`~nestplast.engine` and
:mod:`~nestplast.strategies` (the run loop), :mod:`~nestplast.runs` (a run in its folder),
:mod:`~nestplast.search`, :mod:`~nestplast.store`,
:mod:`~nestplast.prune` (noise-driven pruning); command lines in :mod:`nestplast.commands`.
"""

__version__ = "0.3.0"

import importlib
import importlib.util

from .builder import BuildError, Module, build
from .errors import UserError
from .experiment import Experiment, ExperimentError
from .experiment import default as default_experiment
from .experiment import load as load_experiment
from .kernel import KernelResetWarning, install
from .networks import nest_settings
from .neurons import get_neuron
from .recording import load as load_recording
from .rules import get_rule, vogels_sprekeler
from .store import RunStore


def __getattr__(name: str):
    # Imported on first use: importing nestplast.search here would make `python -m nestplast.search`
    # run a module that is already imported (runpy warns, and the module would exist twice).
    if name == "run_search":
        from .search import run_search

        return run_search
    if name == "fit_rule":  # inference from a recording
        from .infer import fit

        return fit
    if name == "RuleChoice":  # which rule fit_rule fits
        from .infer import RuleChoice

        return RuleChoice
    # a part the docstring names (nestplast.prune, nestplast.rate_network, ...), as after its import: an
    # AttributeError sent users who followed the docstring to look for a missing feature
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'nestplast' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir() and tab completion list what __getattr__ provides too
    return sorted(set(globals()) | set(__all__))


__all__ = ["__version__", "build", "install", "get_rule", "get_neuron", "vogels_sprekeler", "load_experiment",
           "default_experiment", "run_search", "nest_settings", "fit_rule", "RuleChoice", "load_recording",
           "Experiment", "Module", "RunStore", "UserError", "BuildError", "ExperimentError", "KernelResetWarning"]
