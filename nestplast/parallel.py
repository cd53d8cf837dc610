"""Evaluating tasks over MPI ranks.

Three modes, chosen from what NEST offers (:func:`choose_mode`):

- ``serial``: one process, no MPI needed.
- ``population``: NEST without MPI (the PyPI wheel); every rank runs its own NEST kernels. Rank 0
  owns the optimiser and hands tasks out through a dynamic queue (evaluation times differ a lot
  because runaway networks are aborted early); it keeps two tasks queued at every worker so that
  none waits for rank 0, and evaluates the tasks that no worker has room for.
  :mod:`nestplast.queue_model` models this queue.
- ``network``: NEST built with MPI; every rank takes part in every simulation (one network spread
  over all ranks), so tasks run one after the other on all ranks at once.

Results come back in task order whichever rank computed them, so a run does not depend on the
number of ranks.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import UserError
from .kernel import nest_has_mpi
from .wording import counted

if TYPE_CHECKING:
    from mpi4py.MPI import Comm

T = TypeVar("T")

TASK, RESULT, STOP = 1, 2, 3
QUEUED_PER_WORKER = 2
POLL_S = 0.001  # how often a rank waiting for a message looks for it (see _wait_for)


def launched_ranks() -> tuple[int, int]:
    """(rank, number of ranks) as an MPI launcher (MPICH/Hydra and Intel MPI, Open MPI, ``srun``)
    tells its processes in the environment; (0, 1) without one. Read from the environment, not
    from mpi4py: initialising MPI on a login node can fail or hang."""
    # srun --mpi=pmix sets no PMI_SIZE; SLURM_STEP_NUM_TASKS is set in an srun step's tasks only
    # (SLURM_NTASKS is also in the batch script's own environment, where the report runs alone).
    for size, rank in (("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"), ("PMI_SIZE", "PMI_RANK"),
                       ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID")):
        if os.environ.get(size, "").isdigit() and os.environ.get(rank, "").isdigit():
            return int(os.environ[rank]), int(os.environ[size])
    return 0, 1


def check_comm_given(comm: Comm | None, what: str) -> None:
    """Refuse to run ``what`` without ``comm`` in a process that a launcher started as one of
    several ranks: each would run all of it alone, into the same folder (one ran the whole search,
    the others ended in tracebacks on the run it held)."""
    rank, ranks = launched_ranks()
    if comm is None and ranks > 1:
        raise UserError(f"{what}: this process is rank {rank} of the {ranks} that mpiexec/srun started, but no comm was "
                        f"given, so each rank would run all of it alone; pass comm=MPI.COMM_WORLD (from mpi4py import "
                        f"MPI) to run it on all {ranks} ranks, or start one process")


def world():
    """MPI.COMM_WORLD, or None when mpi4py is unavailable or there is one process only. Started
    as several ranks by a launcher that MPI does not see (no mpi4py, or one built for another MPI),
    each rank would run the whole command alone: a :class:`UserError` says so."""
    launched = launched_ranks()[1]
    try:
        with warnings.catch_warnings(record=True) as said:  # mpi4py's own, kept for where it is not ours
            warnings.simplefilter("always")
            from mpi4py import MPI
    except ImportError as err:
        if launched > 1:
            raise UserError(f"started as {launched} ranks, but mpi4py cannot be imported ({err}): each rank would run "
                            "the whole command alone. Install mpi4py for the launcher's MPI (jobs/README.md, "
                            "'Modules')") from None
        return None
    size = MPI.COMM_WORLD.Get_size()
    if launched > 1 and size == 1:
        raise UserError(f"the launcher started {launched} ranks, but MPI puts each in a world of its own: mpi4py uses "
                        f"another MPI ({MPI.Get_library_version().splitlines()[0].strip()}) than the launcher. Start "
                        "it with that MPI's mpiexec, or build mpi4py for the launcher's MPI: MPICC=mpicc pip install "
                        "--no-binary mpi4py mpi4py (jobs/README.md, 'Modules')")
    for warning in said:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return MPI.COMM_WORLD if size > 1 else None


def crowded_cores_note(comm: Comm | None, threads: int) -> str:
    """On rank 0, :func:`cores_note` of the hosts that ``comm``'s ranks run on ('' on the other
    ranks). Called on every rank (it gathers)."""
    import socket

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    mine = (socket.gethostname(), cores)
    everyone = [mine] if comm is None else comm.gather(mine, root=0)
    if everyone is None:  # not rank 0
        return ""
    hosts: dict[str, tuple[int, set]] = {}
    for host, allowed in everyone:
        ranks, union = hosts.get(host, (0, set()))
        hosts[host] = (ranks + 1, union | set(allowed))
    return cores_note({host: (ranks, len(union)) for host, (ranks, union) in hosts.items()}, threads,
                      mpi=comm is not None)


def cores_note(hosts: dict[str, tuple[int, int]], threads: int, mpi: bool) -> str:
    """A note where a host's ranks x NEST ``threads`` differ from the cores those ranks may run on
    (``hosts``: host -> (ranks, cores)); '' where they match. More: NEST's threads wait for each
    other at every step by spinning, so two that share a core run many times slower (2 ranks x 2
    threads on 2 cores took 13 x as long as 2 x 1). Fewer, under MPI: cores a job was given sit
    idle (e.g. srun --cpus-per-task=2 with search.threads = 1); a run without MPI is one process
    by choice."""
    for host, (ranks, cores) in hosts.items():
        given = counted(cores, "core")
        if ranks * threads > cores:
            if threads == 1:  # processes that share cores: slower, but no spinning
                return (f"note: {ranks} ranks on {host}, which gives them {given}: ranks that share a core "
                        "evaluate slower; start as many ranks as cores (mpiexec -n, srun --ntasks)")
            return (f"note: {counted(ranks, 'rank')} x {threads} NEST threads on {host}, which "
                    f"gives them {given}: threads that share a core wait for each other and run many times "
                    "slower; give ranks x threads = cores (--threads or search.threads for a new run; "
                    "--cpus-per-task or fewer ranks for a resumed one)")
        if mpi and ranks * threads < cores:
            return (f"note: {host} gives {counted(ranks, 'rank')} {given}, but ranks x NEST threads = {ranks} x "
                    f"{threads} keep only {ranks * threads} busy: give ranks x threads = cores (--threads or "
                    "search.threads for a new run; mpiexec -n, or --cpus-per-task, for a resumed one)")
    return ""


def choose_mode(comm: Comm | None) -> str:
    """``serial`` without ``comm``, else ``network`` if NEST has MPI, else ``population``."""
    if comm is None:
        return "serial"
    return "network" if nest_has_mpi() else "population"


def map_tasks(tasks: Sequence[Any], evaluate: Callable[[Any], Any], on_result: Callable[[Any], None],
              comm=None, mode: str = "serial", flush: Callable[[], None] = lambda: None) -> list:
    """Evaluate ``tasks`` and return their results in order; ``on_result`` is called on rank 0 as
    each result arrives (to record it at once), and ``flush`` once the results that arrived
    together have all been passed on, before rank 0 waits or evaluates (to commit them in one
    go). On worker ranks of the population mode, call :func:`serve` instead; in network mode
    every rank calls this with the same tasks."""
    if mode == "population":
        return _map_population(list(tasks), evaluate, on_result, flush, comm)
    results = []
    for task in tasks:
        result = evaluate(task)
        if comm is None or comm.Get_rank() == 0:
            on_result(result)
            flush()
        results.append(result)
    return results


def _map_population(tasks: list, evaluate, on_result, flush, comm) -> list:
    from mpi4py import MPI

    workers = range(1, comm.Get_size())
    pending = deque(enumerate(tasks))
    results: list = [None] * len(tasks)
    queued = {w: 0 for w in workers}
    sends = []

    def hand_out() -> None:
        # One task to every worker first, then a second to each: two keep a worker busy while rank
        # 0 evaluates. Near the end of the queue only one, so that no worker holds a backlog while
        # others (or rank 0) have nothing to do; with fewer tasks than 2 x workers, filling each
        # worker to two in turn left the last workers idle (nestplast.queue_model).
        for depth in range(1, QUEUED_PER_WORKER + 1):
            for w in workers:
                if queued[w] < depth and pending and (depth == 1 or len(pending) > len(workers)):
                    sends.append(comm.isend(pending.popleft(), dest=w, tag=TASK))
                    queued[w] += 1

    def arrived() -> bool:
        # MPICH: the first Iprobe after rank 0 has evaluated a task can miss a result that arrived
        # meanwhile (measured; it only makes progress), and rank 0 would take another task while
        # that worker runs dry: probe again before concluding that nothing is there.
        return any(comm.Iprobe(source=MPI.ANY_SOURCE, tag=RESULT) for _ in range(2))

    def receive(wait: bool) -> None:
        """Every result that has arrived (with ``wait``, at least one), refilling the queues."""
        status = MPI.Status()
        received = False
        while wait or arrived():
            _wait_for(comm, MPI.ANY_SOURCE, RESULT)
            index, result = comm.recv(source=MPI.ANY_SOURCE, tag=RESULT, status=status)
            queued[status.Get_source()] -= 1
            results[index] = result
            on_result(result)
            hand_out()
            wait, received = False, True
        if received:  # one commit for a burst: on many ranks results arrive faster than a disk syncs
            flush()

    def spare() -> bool:
        # Rank 0 takes a task itself only when no worker has room for it (more tasks left than
        # workers holding fewer than two), or it is the last one; otherwise, busy with it, rank 0
        # would leave workers that finish meanwhile waiting (nestplast.queue_model: 4 ranks and more).
        room = sum(queued[w] < QUEUED_PER_WORKER for w in workers)
        return len(pending) > room or len(pending) == 1

    hand_out()
    while pending:
        receive(wait=False)
        if pending and spare():  # rank 0 works too
            index, task = pending.popleft()
            results[index] = evaluate(task)
            on_result(results[index])
            flush()
            hand_out()
        elif pending:
            receive(wait=True)
    while any(queued.values()):
        receive(wait=True)
    MPI.Request.Waitall(sends)
    return results


def serve(evaluate: Callable[[Any], Any], comm: Comm) -> None:
    """Worker ranks in population mode: evaluate what rank 0 sends until it says stop."""
    from mpi4py import MPI

    status = MPI.Status()
    while True:
        _wait_for(comm, 0, MPI.ANY_TAG)
        message = comm.recv(source=0, tag=MPI.ANY_TAG, status=status)
        if status.Get_tag() == STOP:
            return
        index, task = message
        comm.send((index, evaluate(task)), dest=0, tag=RESULT)


def _wait_for(comm: Comm, source: int, tag: int) -> None:
    """Return once a message from ``source`` with ``tag`` has arrived. Not a blocking receive:
    Python runs its signal handlers only between calls, so a Ctrl-C or SIGTERM reaching a rank
    blocked in MPI_Recv took effect when the next message came (minutes on a large network)."""
    while not comm.Iprobe(source=source, tag=tag):
        time.sleep(POLL_S)


def stop_workers(comm: Comm) -> None:
    """Tell every worker rank of the population mode that there are no more tasks."""
    for w in range(1, comm.Get_size()):
        comm.send(None, dest=w, tag=STOP)


class Transport:
    """How a run's tasks reach NEST: ``serial``, ``population`` or ``network`` mode over ``comm``
    (see the module's doc). Rank 0 drives the run; in population mode the other ranks only
    :meth:`serve`, in network mode they follow rank 0 through :meth:`share`."""

    def __init__(self, comm=None):
        self.comm = comm
        self.mode = choose_mode(comm)
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def is_worker(self) -> bool:
        """A rank that only evaluates what rank 0 sends (population mode)."""
        return self.mode == "population" and self.rank != 0

    def share(self, value: T) -> T:
        """Rank 0's ``value`` on every rank that takes part in every simulation (network mode)."""
        return self.comm.bcast(value, root=0) if self.mode == "network" else value

    def map(self, tasks: Sequence[Any], evaluate: Callable[[Any], Any], on_result: Callable[[Any], None],
            flush: Callable[[], None] = lambda: None) -> list:
        """:func:`map_tasks` in this transport's mode."""
        return map_tasks(tasks, evaluate, on_result, comm=self.comm, mode=self.mode, flush=flush)

    def serve(self, evaluate: Callable[[Any], Any]) -> None:
        serve(evaluate, self.comm)

    def close(self) -> None:
        """Release the workers (rank 0, population mode)."""
        if self.mode == "population" and self.is_root:
            stop_workers(self.comm)


class SharedError(UserError):
    """A user error that every rank raises together (see :func:`together`): each rank can end
    cleanly, and rank 0 prints it."""


def together(comm: Comm | None, step: Callable[[], T]) -> T:
    """Run ``step`` on every rank; if it raises a :class:`UserError` on any rank, raise it as a
    :class:`SharedError` on every rank (the first failing rank's message), so that no rank goes on
    to wait for one that gave up. Without MPI, just ``step()``."""
    if comm is None:
        return step()
    try:
        value, error = step(), None
    except UserError as err:
        value, error = None, str(err)
    first = next((e for e in comm.allgather(error) if e is not None), None)
    if first is not None:
        raise SharedError(first)
    return value


ABORT_GRACE_S = 0.5  # for the launcher to pass on the last message before MPI_Abort (abort_on_error)


def abort_on_error(comm: Comm | None, code: int, message: str) -> None:
    """The last resort under MPI: an error on one rank in the middle of a run (the others may be
    waiting for it in a receive) ends every rank now, after printing the message once here."""
    print(message, file=sys.stderr, flush=True)
    if comm is not None and comm.Get_size() > 1:
        # The launcher passes a rank's stderr on through a pipe, and MPI_Abort tears that down:
        # without a moment to read it, the message was lost now and then (a Ctrl-C or SIGTERM that
        # ended the run without a word, seen twice in a full test run).
        time.sleep(ABORT_GRACE_S)
        comm.Abort(code)


__all__ = ["Transport", "SharedError", "together", "abort_on_error", "world", "choose_mode", "map_tasks", "serve", "stop_workers"]
