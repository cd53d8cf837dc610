"""Conventions every command line shares (nestplast.cli), under a real MPI launcher."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.mark.parametrize("command", [
    ["nestplast", "prune", "--nodes", "10", "--duration", "30", "--out", "{tmp}/out"],
    ["nestplast", "infer-demo", "oja", "--duration", "2000", "--bootstrap", "0", "--out", "{tmp}/out"],
    ["nestplast.report", "{tmp}"],
    ["nestplast", "build", "doublet"],  # it printed all its output once per rank
])
def test_one_process_commands_refuse_several_ranks(tmp_path, command):
    """Under mpiexec every rank would run the whole command and write the same files: one line
    says so, every rank ends with exit code 2, and nothing is written."""
    np.savez(tmp_path / "placeholder.npz", W=np.eye(2))  # to see that nothing is added beside it
    command = [arg.format(tmp=tmp_path) for arg in command]
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", *command],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "runs in one process: start it without mpiexec/srun" in lines[0], out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["placeholder.npz"]


def test_an_srun_step_counts_as_several_ranks_and_a_batch_script_as_one(tmp_path):
    """``srun --mpi=pmix`` tells its tasks no PMI_SIZE, only Slurm's step variables; the batch
    script itself (where jobs/*.slurm run the report) has SLURM_NTASKS but is one process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI", "OMPI_"))}
    step = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**clean, "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "0", "PMIX_RANK": "0"})
    assert step.returncode == 2 and "runs in one process" in step.stderr, step.stderr
    batch = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path)], capture_output=True, text=True,
                           timeout=120, env={**clean, "SLURM_NTASKS": "64", "SLURM_PROCID": "0", "SLURM_JOB_ID": "1"})
    assert "runs in one process" not in batch.stderr, batch.stderr


def test_the_resume_command_names_the_launcher_that_started_the_run(monkeypatch):
    """Under srun the hint said `mpiexec -n 64 ...`, a launcher the cluster may not have."""
    from mpi4py import MPI

    from nestplast.cli import as_launched

    monkeypatch.delenv("SLURM_STEP_NUM_TASKS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    world = MPI.COMM_WORLD  # one rank here: what matters is the launcher's name and the rank count
    assert as_launched("python -m nestplast.search", world) == "mpiexec -n 1 python -m nestplast.search"
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert as_launched("python -m nestplast.search", world) == "srun -n 1 python -m nestplast.search"
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")  # inherited from an outer step: not the one that started it
    assert as_launched("python -m nestplast.search", world) == "mpiexec -n 1 python -m nestplast.search"
    assert as_launched("python -m nestplast.search", None) == "python -m nestplast.search"
    # a step of 2 cores per task: srun -n 1 alone gives the rank one core, which its 2 NEST threads share
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert as_launched("python -m nestplast.search", world) == "srun -n 1 --cpus-per-task=2 python -m nestplast.search"


def test_a_stop_inside_a_batch_job_points_to_its_script(tmp_path, monkeypatch):
    """In a job's log the hint was a bare srun line, where jobs/README.md resumes by submitting the
    script again (and the restart scripts had already resubmitted themselves)."""
    from nestplast import experiment
    from nestplast.cli import resume_hint
    from nestplast.store import RunStore

    RunStore.create(tmp_path / "run", experiment.default().to_dict(), seed=1).close()
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert "batch job" not in resume_hint(tmp_path / "run", "srun -n 2 python -m nestplast.search")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    assert resume_hint(tmp_path / "run", "srun -n 2 python -m nestplast.search").endswith(
        "--resume (in a batch job: submit its script again, search.slurm with --resume; search-restart.slurm and "
        "filter.slurm resubmit themselves: jobs/README.md)")


@pytest.mark.parametrize("command", [["nestplast.search"], ["nestplast", "filter"], ["nestplast", "infer", "data.npz"]])
def test_bad_arguments_under_mpi_end_every_rank_with_one_line(command):
    """Every rank parses the same arguments: a bad one is one line and exit code 2 on every rank,
    not an MPI_Abort after each rank has printed it."""
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", *command, "--no-such-option"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [f"error: python -m {' '.join(command[:2])}: unrecognized arguments: "
                                               "--no-such-option"], out.stderr


@pytest.mark.mpi
def test_an_error_every_rank_finds_is_said_once(tmp_path):
    """A run folder that does not exist, found by both ranks: each printed the error, the two fused
    on one line ("... no directoryerror (rank 1): ...")."""
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "nestplast", "filter", str(tmp_path / "none"),
                          "--recheck", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("error (rank") == 1 and f"{tmp_path / 'none'} is no directory" in out.stderr, out.stderr


def test_a_warning_in_a_command_is_one_line(capsys):
    """Python's format added nestplast's file, line and source line to a command's warning."""
    import warnings

    from nestplast.cli import run_command

    def main(argv) -> int:
        warnings.warn("the schedule starts after the last round", UserWarning, stacklevel=1)
        warnings.warn("NEST was imported before torch", RuntimeWarning, stacklevel=1)
        return 0

    assert run_command(main, []) == 0
    # a warning from this test file is no nestplast one: it says whose it is, as a library's does
    assert capsys.readouterr().err.splitlines() == [
        "warning (test_cli.py): the schedule starts after the last round",
        "warning (test_cli.py, RuntimeWarning): NEST was imported before torch"]

    def warns_as_nestplast(argv) -> int:  # a warning raised from nestplast's own code names no origin
        from nestplast.families import check_bounds

        warnings.warn_explicit("from nestplast", UserWarning, check_bounds.__code__.co_filename, 1)
        return 0

    assert run_command(warns_as_nestplast, []) == 0
    assert capsys.readouterr().err.splitlines() == ["warning: from nestplast"]


@pytest.mark.parametrize("module, usage", [
    ("nestplast.search", "search"), ("nestplast.report", "report"), ("nestplast.prune", "prune"),
    ("nestplast.infer", "infer"), ("nestplast.filter", "filter"), ("nestplast.families", "filter"),
])
def test_each_commands_module_runs_the_command(module, usage):
    """``python -m nestplast.infer data.npz`` did nothing and exited 0, as ``python -m
    nestplast.search`` would lead a user to try: each command's module runs its command."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith(("usage: python -m nestplast " + usage,
                                                          "usage: python -m nestplast." + usage)), (out.stdout, out.stderr)
    assert not out.stderr  # runpy warns of a module that the package imports already


@pytest.mark.parametrize("command", ["search", "filter", "infer", "infer_demo", "prune", "report"])
def test_every_option_says_what_it_does(command):
    """--seed, --resume, --no-plots and others came without a word in --help: what the seed seeds,
    what a resume continues, and the run folder's argument were left to guess."""
    import importlib

    parser = importlib.import_module(f"nestplast.commands.{command}").parser()
    silent = [action.option_strings[0] if action.option_strings else action.dest
              for action in parser._actions if not action.help]
    assert silent == [], f"{command}: options without help: {silent}"


def test_ctrl_c_while_mpi_starts_is_one_line(monkeypatch, capsys):
    """Ctrl-C in the first second of a command (inside mpi4py's import) gave a traceback ending in
    "from mpi4py import MPI ... KeyboardInterrupt", where a moment later it gave one line."""
    from nestplast import parallel
    from nestplast.cli import EXIT_INTERRUPTED, command_world

    def starting():
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "world", starting)
    with pytest.raises(SystemExit) as ended:
        command_world()
    assert ended.value.code == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted: nothing was started\n"


def test_a_signal_in_the_teardown_after_a_command_is_ignored():
    """Ctrl-C after a filter run had written everything, during the interpreter's teardown (NEST's
    and torch's take about a second), ended it with 130 and no word: a batch script took the
    finished run for failed. Here the signal comes from an exit handler that runs after the
    command's (registered before it)."""
    code = ("import atexit, os, signal, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
            "from nestplast.cli import run_command\n"
            "raise SystemExit(run_command(lambda argv: 0, []))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_the_nestplast_script_names_itself_in_its_usage():
    """`.venv/bin/nestplast --help` (the README's other form of every command) printed
    "usage: python -m nestplast COMMAND", another program's name."""
    script = Path(sys.executable).parent / "nestplast"
    if not script.exists():
        pytest.skip("no nestplast script beside this Python (the package is not installed)")
    for args, usage in (([], "usage: nestplast COMMAND [options]"), (["search"], "usage: nestplast search [-h]"),
                        (["infer-demo"], "usage: nestplast infer-demo [-h]")):
        out = subprocess.run([str(script), *args, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.startswith(usage), out.stdout[:200]
