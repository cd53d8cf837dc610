"""The note on ranks x NEST threads against the cores a host gives them."""

from nestplast.parallel import cores_note, crowded_cores_note


def test_more_threads_than_cores_are_named():
    assert cores_note({"n1": (2, 2)}, threads=2, mpi=True).startswith(
        "note: 2 ranks x 2 NEST threads on n1, which gives them 2 cores: threads that share a core wait")
    assert cores_note({"n1": (4, 2)}, threads=1, mpi=True).startswith("note: 4 ranks on n1, which gives them 2 cores")


def test_idle_cores_under_mpi_are_named():
    """srun --cpus-per-task=2 with search.threads = 1 (filter.slurm's run of an experiment with the
    default threads): half the cores a job was given stood idle without a word."""
    note = cores_note({"n1": (1, 16), "n2": (64, 128)}, threads=1, mpi=True)
    assert note.startswith("note: n1 gives 1 rank 16 cores, but ranks x NEST threads = 1 x 1 keep only 1 busy: "
                           "give ranks x threads = cores"), note
    assert cores_note({"n1": (8, 16)}, threads=2, mpi=True) == ""
    # one process without MPI is the user's choice (a laptop's default search): nothing to say
    assert cores_note({"n1": (1, 16)}, threads=1, mpi=False) == ""


def test_this_process_alone_fits():
    assert crowded_cores_note(None, threads=1) == ""
