"""Reading weights and spike counts out of the NEST kernel.

NEST's Python interface reads one connection's weight by converting the connection's whole status
into a Python dict (about 1 us per entry: 4-7 us per synapse), and a spike recorder's event count
by converting its whole status, every event included (0.3 ms for 2,000 spikes). An evaluation reads
every plastic weight at its end and the scored population's spike count after every chunk. A small
C++ library (``native/kernel_reads.cpp``), compiled once against the installed NEST's headers and
cached beside the modules, makes the same kernel calls and hands over only the numbers: 2,000 end
weights in 2 ms instead of 11, a spike count in 10 us.

Where that library cannot be built or loaded, NEST's Python interface reads the same values, to
the bit, only slower (a warning says so once). Where a read fails (an unknown model, say after a
``ResetKernel``), that interface is asked too, and raises NEST's own error.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np

from .builder import BuildError, cache_dir, cache_lock, nest_path, nest_version, read_nest_config
from .kernel import import_nest
from .values import is_whole

SOURCE = Path(__file__).resolve().parent / "native" / "kernel_reads.cpp"
LIBRARY = "libnestplast_kernel_reads.so"


def connection_weights(connections) -> np.ndarray:
    """The weights of a SynapseCollection, as its ``get("weight")`` reads them, without what PyNEST
    adds around that read: a check that the kernel holds nodes (``GetKernelStatus``, which builds
    the whole kernel status: 0.4 ms, more than reading the 64 weights sampled after every chunk)
    and regrouping every connection's status by key. A collection from before a ResetKernel raises."""
    if len(connections) == 0:
        return np.zeros(0)
    from nest import nestkernel_api  # the call behind SynapseCollection.get

    return np.array([status["weight"] for status in nestkernel_api.llapi_get_connection_status(connections._datum)],
                    dtype=float)


_last_count: dict[str, int] = {}  # synapse model -> its connections at the last read: the room to give the next


def model_weights(model: str, step: int = 1) -> np.ndarray:
    """The weights of every ``step``-th connection of synapse model ``model`` on this rank, from
    the first, as ``nest.GetConnections(synapse_model=model)`` finds them: in that order on one
    thread. (With several, NEST's own order differs from call to call: the threads' connections
    come in turn, the threads in any order.) An unknown model raises NEST's error."""
    if not is_whole(step):  # 2.5 failed in NEST's slicing
        raise TypeError(f"model_weights: step is a whole number of connections, got {step!r}")
    if step < 1:
        raise ValueError(f"model_weights: step must be 1 or more, got {step}")
    lib = library()
    if lib is not None:
        for _ in range(2):  # a second time where the model has more connections than the room given
            out = np.empty(-(-_last_count.get(model, 0) // step))
            n = lib.nestplast_model_weights(model.encode(), step, out.ctypes.data, out.size)
            if n < 0:
                break  # NEST's error, raised by its Python interface below
            _last_count[model] = n
            if -(-n // step) <= out.size:
                return out[:-(-n // step)]
    return connection_weights(import_nest().GetConnections(synapse_model=model)[::step])


def node_ids(nodes) -> list[int]:
    """The node IDs of a NodeCollection, as its ``tolist()`` gives them, without reading every
    node's whole status for its ``global_id`` (a recorder's includes every event it holds)."""
    from nest import nestkernel_api  # the call behind NodeCollection._to_array

    return list(nestkernel_api.llapi_node_collection_to_array(nodes._datum, "all"))


def spike_count(recorder) -> int:
    """The events a spike recorder holds on this rank (its ``n_events``)."""
    lib = library()
    if lib is not None:
        n = lib.nestplast_n_events(node_ids(recorder)[0])
        if n >= 0:
            return n
    return int(recorder.n_events)


def _compile_command(target: Path) -> list[str]:
    config = str(nest_path() / "bin" / "nest-config")
    flags = [read_nest_config(config, option).split() for option in ("--compiler", "--cflags", "--includes", "--libs")]
    compiler = flags[0][0] if flags[0] else "g++"
    return [compiler, *flags[1], *flags[2], "-fPIC", "-shared", str(SOURCE), "-o", str(target), *flags[3]]


def build_library() -> Path:
    """The compiled library, built into the cache on first use (one process compiles, the others
    wait). Raises :class:`~nestplast.builder.BuildError` naming the compiler's log."""
    from nest import nestkernel_api  # a NEST rebuilt in place (same version, same path) changes this file

    kernel = os.stat(nestkernel_api.__file__)
    # where NEST is, not nest_path(): that writes a nest-config into the cache, before cache_lock
    # can say that the cache cannot be written to
    installed = f"{nest_version()} {nestkernel_api.__file__} {kernel.st_size} {kernel.st_mtime_ns}"
    key = hashlib.sha256(SOURCE.read_bytes() + installed.encode()).hexdigest()[:16]
    folder = cache_dir() / "native"
    final = folder / key / LIBRARY
    if final.is_file():
        return final
    with cache_lock(folder, key, LIBRARY):
        if final.is_file():
            return final
        final.parent.mkdir(exist_ok=True)
        partial = final.with_suffix(f".tmp{os.getpid()}")
        try:
            command = _compile_command(partial)
            proc = subprocess.run(command, capture_output=True, text=True)
        except (OSError, subprocess.SubprocessError) as err:  # no compiler
            raise BuildError(f"cannot compile {SOURCE.name}: {err}") from None
        if proc.returncode != 0:
            log = folder / f"{key}.failed.log"
            log.write_text(" ".join(command) + "\n" + proc.stdout + proc.stderr)
            raise BuildError(f"compiling {SOURCE.name} failed (the log: {log})")
        os.replace(partial, final)  # atomic: another process sees all of it or nothing
    return final


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded library, compiled on the first call in a cache (after NEST, whose symbols it
    uses), or None where it cannot be had (a warning says why)."""
    import_nest()
    try:
        lib = ctypes.CDLL(str(build_library()))
    except (BuildError, OSError) as err:
        warnings.warn(f"nestplast reads weights and spike counts through NEST's Python interface, which is slower: "
                      f"{err}", RuntimeWarning, stacklevel=3)
        return None
    lib.nestplast_model_weights.restype = ctypes.c_long
    lib.nestplast_model_weights.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
    lib.nestplast_n_events.restype = ctypes.c_long
    lib.nestplast_n_events.argtypes = [ctypes.c_long]
    return lib


__all__ = ["build_library", "library", "connection_weights", "model_weights", "node_ids", "spike_count"]
