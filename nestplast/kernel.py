"""The running NEST kernel: importing NEST safely and installing compiled rule modules.

``install(module)`` loads a module built by :func:`nestplast.build.build` into the running
kernel. It is idempotent and survives ``nest.ResetKernel()`` (which unloads modules since NEST
3.7): call it after every reset, it installs again only when needed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    from .build import Module

# Variables by which NEST without MPI recognises an MPI launcher and refuses to start.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK")


@functools.cache
def nest_has_mpi() -> bool:
    """Whether the installed NEST was built with MPI, found without importing it (importing a
    NEST without MPI under ``mpiexec`` is fatal): does its kernel library link an MPI library?"""
    spec = importlib.util.find_spec("nest")
    if spec is None or spec.origin is None:
        return False
    package = Path(spec.origin).parent
    override = os.environ.get("NESTPLAST_NEST_MPI")
    if override is not None:
        return override.lower() in ("1", "true", "yes")
    for library in package.glob("nestkernel_api*.so"):
        with open(library, "rb") as f:
            if b"libmpi" in f.read():
                return True
    return False


def import_nest():
    """Import and return the ``nest`` module quietly. Under an MPI launcher with a NEST built
    without MPI, hide the launcher's variables first so that each rank runs its own kernel."""
    if "nest" not in sys.modules:
        os.environ.setdefault("PYNEST_QUIET", "1")
        if any(v in os.environ for v in _LAUNCHER_VARIABLES) and not nest_has_mpi():
            for variable in _LAUNCHER_VARIABLES:
                os.environ.pop(variable, None)
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    return nest


class ModuleConflictError(UserError):
    """Two nestplast modules (or a module and a model already defined) name the same NEST model."""


def install(module: Module | str | os.PathLike[str]) -> None:
    """Install a compiled module into the running kernel, unless it is there already.

    ``module`` is a :class:`~nestplast.build.Module` or the absolute path of its library
    (with or without ``.so``).
    """
    from .build import Module

    nest = import_nest()
    if not isinstance(module, Module):
        path = Path(module)
        path = path.with_suffix("") if path.suffix == ".so" else path
        module = Module.from_dir(path.parent) or Module(str(path), path.name, "", {})
    path = Path(module.path)
    if not path.is_absolute():
        raise ValueError(f"module path must be absolute (NEST 3.10 does not search library paths): {path}")
    if not path.with_suffix(".so").is_file():
        raise FileNotFoundError(f"no compiled module at {path}.so")
    # NEST lists the modules loaded into the running kernel (none after ResetKernel) and refuses
    # to load one twice; any other refusal (e.g. a library built for another NEST) is raised.
    loaded = nest.GetKernelStatus("modules")
    if str(path) in loaded:
        return
    try:
        nest.Install(str(path))
    except nest.NESTErrors.NamingConflict as err:  # the paired neuron's name is the neuron's, in every module
        others = ", ".join(Path(m).name for m in loaded) or "another module"
        raise ModuleConflictError(
            f"cannot install {path.name} beside {others} in one kernel ({err}). "
            "Rules that run in one kernel go into one module: build([rule_a, rule_b], neuron).") from None
