"""The running NEST kernel: importing NEST safely and installing compiled rule modules.

``install(module)`` loads a module built by :func:`nestplast.builder.build` into the running
kernel. It is idempotent and survives ``nest.ResetKernel()`` (which unloads modules since NEST
3.7): call it after every reset, it installs again only when needed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError
from .wording import counted

if TYPE_CHECKING:
    from .builder import Module

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


def nest_seed(seed: int | list[int]) -> int:
    """NEST's ``rng_seed`` (1 .. 2**31 - 2) derived from any non-negative integer seed, or from a
    list of them (numpy's SeedSequence mixes its entries)."""
    import numpy as np

    return int(np.random.SeedSequence(seed).generate_state(1)[0] % (2**31 - 2)) + 1


def import_nest():
    """Import and return the ``nest`` module, quietly when nestplast is the one importing it (a
    NEST the user imported keeps the verbosity the user chose). Under an MPI launcher with a NEST
    built without MPI, hide the launcher's variables first so that each rank runs its own kernel."""
    if "nest" in sys.modules:
        return sys.modules["nest"]
    os.environ.setdefault("PYNEST_QUIET", "1")
    if any(v in os.environ for v in _LAUNCHER_VARIABLES) and not nest_has_mpi():
        for variable in _LAUNCHER_VARIABLES:
            os.environ.pop(variable, None)
    # The job scripts set OMP_NUM_THREADS for numpy and torch; NEST, which sets its own threads,
    # logged "OMP_NUM_THREADS is set ... but NEST ignores it" on every rank (128 lines a 64-rank job)
    omp_threads = os.environ.pop("OMP_NUM_THREADS", None)
    try:
        import nest
    finally:
        if omp_threads is not None:
            os.environ["OMP_NUM_THREADS"] = omp_threads

    nest.verbosity = nest.VerbosityLevel.ERROR
    return nest


class KernelResetWarning(UserWarning):
    """A nestplast run is about to discard the network the user built in the running NEST kernel."""


# The user's kernel settings that a run's ResetKernel would lose, restored after the run.
# The kernel settings a user may have set and a run gives back: every one NEST takes in an empty
# kernel (min/max delay, compressed spikes, ... were reset to NEST's defaults while the warning said
# "your kernel settings are restored"). Buffer sizes NEST adapts itself are not settings.
USER_SETTINGS = ("tics_per_ms", "resolution", "local_num_threads", "rng_type", "rng_seed", "data_path", "data_prefix",
                 "overwrite_files", "print_time", "min_delay", "max_delay", "use_compressed_spikes", "keep_source_table",
                 "update_time_limit", "dict_miss_is_error", "off_grid_spiking", "adaptive_target_buffers", "use_wfr",
                 "wfr_comm_interval", "wfr_tol", "wfr_max_iterations", "wfr_interpolation_order",
                 "structural_plasticity_update_interval")
_loan: dict = {}  # the lent_kernel() in progress: its name, and what its first reset saved (empty: none)


@contextlib.contextmanager
def lent_kernel(what: str) -> Iterator[None]:
    """Lend the running NEST kernel to a nestplast run (``what`` names it in the warning).

    A run resets the kernel for every simulation (:func:`reset_kernel`). Within this block the
    first reset warns (:class:`KernelResetWarning`) when the kernel holds the user's nodes, and
    saves the user's settings (resolution, threads, seed, ...), verbosity and installed modules.
    At the end, however the block ends (an error, Ctrl-C), the kernel is reset once more and those
    are restored: the user gets an empty kernel as they had set it up, and their old node handles
    fail loudly (``UnknownNode``) instead of silently reading the run's last network. What cannot
    be restored, the user's model copies (``nest.CopyModel``) and changed model defaults
    (``nest.SetDefaults``; each model with its keys), is named in a warning at the end: a model used again with NEST's
    defaults would otherwise run a different rule or neuron without a word. A block
    that never reset the kernel (e.g. refused before it began) leaves it untouched. Inside another
    such block (a fit that generates its data first) it does nothing: the outer one lends the kernel.

    Usable as a decorator: ``@lent_kernel("nestplast.infer.fit")``."""
    if _loan:
        yield
        return
    _loan["what"] = what
    try:
        yield
    finally:
        saved = dict(_loan)
        _loan.clear()
        if "settings" in saved:
            try:
                lost = _restore(sys.modules["nest"], saved)
            except Exception as err:  # the run's own error (or Ctrl-C), if any, is the news: not hidden by this
                warnings.warn(f"{what} could not restore your NEST kernel settings ({type(err).__name__}: {err}); "
                              "set them again", KernelResetWarning, stacklevel=user_stacklevel())
            else:
                if lost:
                    warnings.warn(f"{what} reset the NEST kernel, which discarded {' and '.join(lost)}. Your kernel "
                                  "settings and modules are restored, these are not: make them again before you "
                                  "use these models.", KernelResetWarning, stacklevel=user_stacklevel())


def _defaults_changed(nest) -> bool:
    """Whether model defaults were changed in the running kernel (``nest.SetDefaults``,
    ``nest.CopyModel``). NEST tracks this but tells only when it refuses a new resolution, so
    the resolution is set to its own value (called just before a reset: it changes nothing), quietly
    (NEST would report "resolution changed from 0.1 to 0.1 ms"; the reset sets the verbosity anyway)."""
    nest.verbosity = nest.VerbosityLevel.ERROR
    try:
        nest.SetKernelStatus({"resolution": nest.resolution})
    except nest.NESTError as err:
        return "Model defaults were modified" in str(err)
    return False


# what NEST counts in a model's defaults as nodes and connections are made: no setting of the user's
_COUNTERS = frozenset({"capacity", "instantiations", "available", "num_connections"})
# NEST 3.10 leaves this default uninitialised: it differs from kernel to kernel with no SetDefaults
_UNINITIALISED = frozenset({("diffusion_connection", "weight")})


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except (TypeError, ValueError):  # not numbers: strings, a NodeCollection (a weight recorder)
        return repr(a) == repr(b)


def _changed_defaults(nest, saved: dict, copies: Sequence[str]) -> list[str]:
    """The models whose defaults the user changed, each with its keys (``model (key, ...)``): the
    ``saved`` defaults against those of the restored kernel (NEST's own, the modules installed);
    ``copies`` are named apart."""
    changed = []
    for model, before in saved.get("defaults", {}).items():
        if model in copies:
            continue
        try:
            now = nest.GetDefaults(model)
        except nest.NESTError:  # a model of a module not installed again
            continue
        keys = sorted(k for k, v in before.items()
                      if k not in _COUNTERS and (model, k) not in _UNINITIALISED and not _same(v, now.get(k)))
        if keys:
            changed.append(f"{model} ({', '.join(keys)})")
    return changed


def _lost_models(nest, saved: dict, models: set[str]) -> list[str]:
    """What of the user's models the ``saved`` kernel had (see :func:`reset_kernel`) that the
    restored one, with these ``models``, lacks, in words: copies, and changed defaults."""
    copies = sorted(set(saved["models"]) - models)
    lost = [f"your model copies (nest.CopyModel) {', '.join(copies)}"] if copies else []
    if saved["defaults_changed"]:
        named = _changed_defaults(nest, saved, copies)
        lost.append(f"the model defaults you set (nest.SetDefaults) of {', '.join(named)}" if named else
                    f"{'any' if copies else 'the'} model defaults you set (nest.SetDefaults)")
    return lost


def _restore(nest, saved: dict) -> list[str]:
    """An empty kernel with the ``saved`` settings, modules and verbosity (see :func:`lent_kernel`);
    returns what of the user's models it could not restore (see :func:`_lost_models`)."""
    nest.ResetKernel()
    changed = {key: value for key, value in saved["settings"].items() if nest.GetKernelStatus(key) != value}
    if "tics_per_ms" in changed:  # NEST takes the tics only together with the resolution, and as an integer
        changed.update(tics_per_ms=int(round(changed["tics_per_ms"])), resolution=saved["settings"]["resolution"])
    nest.SetKernelStatus(changed)  # in one call, as NEST needs for tics and resolution
    for path in saved["modules"]:
        if path not in nest.GetKernelStatus("modules"):
            nest.Install(path)
    nest.verbosity = saved["verbosity"]
    return _lost_models(nest, saved, {*nest.node_models, *nest.synapse_models})


def reset_kernel():
    """``nest.ResetKernel()`` for a nestplast simulation, quiet (verbosity ERROR); returns the
    ``nest`` module. The first reset inside :func:`lent_kernel` saves (and warns about) what the
    user had in the kernel, their verbosity included."""
    nest = import_nest()
    if _loan and "settings" not in _loan:
        status = nest.GetKernelStatus()
        _loan.update(settings={key: status[key] for key in USER_SETTINGS}, modules=list(status["modules"]),
                     verbosity=nest.verbosity, models=[*status["node_models"], *status["synapse_models"]],
                     defaults_changed=_defaults_changed(nest))
        if _loan["defaults_changed"]:  # to name the models changed at the end (every model: milliseconds)
            _loan["defaults"] = {model: nest.GetDefaults(model) for model in _loan["models"]}
        if status["network_size"] > 0:
            shown = f"resolution {status['resolution']} ms, {status['local_num_threads']} thread(s), " \
                    f"rng_seed {status['rng_seed']}"
            warnings.warn(f"{_loan['what']} resets the NEST kernel for each of its simulations: the network in it "
                          f"({counted(status['network_size'], 'node')}) is discarded now. Afterwards the kernel is empty, with "
                          f"your settings ({shown}) and modules restored: create your nodes again (the old "
                          "NodeCollections are invalid).", KernelResetWarning, stacklevel=user_stacklevel())
    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.ERROR  # NEST's messages for every simulation would drown the run's
    return nest


def user_stacklevel() -> int:
    """The ``stacklevel`` for a warning of the calling function that names the user's line which
    started the nestplast run: naming nestplast's own line, a user's warning filter could not
    match it, and Python would show it once per nestplast line, not once per run."""
    frame, level = sys._getframe(1), 1  # the function that warns is level 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("nestplast", "contextlib"):
        frame, level = frame.f_back, level + 1
    return level


def _library(path: str | os.PathLike[str]) -> Path:
    """A module's library file, one spelling for every way of naming it (with or without ``.so``,
    through symlinks)."""
    text = os.fspath(path)
    return Path(text if text.endswith(".so") else text + ".so").resolve()


class ModuleConflictError(UserError):
    """Two nestplast modules (or a module and a model already defined) name the same NEST model."""


def install(module: Module | str | os.PathLike[str]) -> None:
    """Install a compiled module into the running kernel, unless it is there already.

    ``module`` is a :class:`~nestplast.builder.Module`, the absolute path of its library (with or
    without ``.so``) or its folder in the cache. Raises TypeError for anything else, ValueError for
    a relative path, FileNotFoundError for a library that is not there, and
    :class:`ModuleConflictError` for another variant of a rule already installed (another mask:
    the same model names).
    """
    from .builder import Module
    from .rules import Rule

    if not isinstance(module, (Module, str, os.PathLike)):  # e.g. the rule itself: pathlib's TypeError said nothing
        raise TypeError(f"install: expected the Module that build() returns, a module's path or its folder; got "
                        f"{type(module).__name__}" + (" (build it first: install(build(rule)))"
                                                      if isinstance(module, Rule) else ""))
    nest = import_nest()
    if not isinstance(module, Module) and Path(module).is_dir():  # the folder build prints ("cached in ...")
        found = Module.from_dir(Path(module))
        if found is None:
            raise FileNotFoundError(f"no compiled module in the folder {module} (no module.json, or its library is gone)")
        module = found
    if not isinstance(module, Module):
        path = Path(module)
        path = path.with_suffix("") if path.suffix == ".so" else path
        module = Module.from_dir(path.parent) or Module(str(path), path.name, "", {})
    path = Path(module.path)
    if not path.is_absolute():
        raise ValueError(f"module path must be absolute (NEST 3.10 does not search library paths): {path}")
    if not _library(path).is_file():
        raise FileNotFoundError(f"no compiled module at {path}.so (was the cache moved or deleted? build() the "
                                "rule again for its new path)")
    # NEST lists the modules loaded into the running kernel (none after ResetKernel), each as the
    # path it was given, and refuses to load one twice; any other refusal (e.g. a library built for
    # another NEST) is raised. The same library may have been given as .so or through a symlink.
    loaded = nest.GetKernelStatus("modules")
    if _library(path) in {_library(m) for m in loaded}:
        return
    try:
        nest.Install(str(path))
    except nest.NESTErrors.NamingConflict as err:  # e.g. two masks of one rule: the same model names
        others = ", ".join(Path(m).name for m in _defining_the_same_models(module, loaded)) or "another module"
        raise ModuleConflictError(
            f"cannot install {path.name} beside {others} in one kernel ({err}): both define that model, as "
            "two masks of one rule do. Build one module whose mask holds the terms of both (the others' "
            "coefficients 0), or run them in separate kernels (nest.ResetKernel() between them).") from None


def _defining_the_same_models(module, loaded: Sequence[str]) -> list[str]:
    """The modules in ``loaded`` (paths) that define a model ``module`` defines: every loaded module where
    that cannot be told (before, the message named every loaded module, conflicting or not)."""
    from .builder import Module

    ours = {module.neuron_model, *module.synapse_models.values()} - {""}

    def clashes(path: str) -> bool:
        other = Module.from_dir(Path(path).parent)
        return not ours or other is None or bool(ours & {other.neuron_model, *other.synapse_models.values()})

    return [m for m in loaded if clashes(m)]
