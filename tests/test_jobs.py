"""The SLURM scripts in jobs/, run by bash with stand-ins for srun, sbatch and the job's python:
what they do around the run (resubmitting, reporting), not the run itself."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stand_ins(tmp_path: Path, python_body: str) -> dict:
    """A venv whose activate puts stand-ins first on PATH: srun runs its command, sbatch records
    its arguments, and python does ``python_body`` (a bash snippet)."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    scripts = {
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
        "sbatch": f'echo "$@" >> "{tmp_path}/sbatch.log"\n',
        "python": python_body,
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "NESTPLAST_VENV": str(tmp_path / "venv"), "SLURM_JOB_ID": "42"}


def test_a_time_warning_after_the_run_ended_resubmits_nothing(tmp_path):
    """SLURM's warning (USR1) while the finished search was reported resubmitted the job, which
    then resumed a finished run: after the run, the warning is let go."""
    # the search ends at once; its report is running when the warning comes
    body = '''[[ "$*" == *nestplast.search* ]] && exit 0
kill -USR1 "$PPID"; sleep 1; exit 0
'''
    env = stand_ins(tmp_path, body)
    job = subprocess.run(["bash", str(ROOT / "jobs" / "search-restart.slurm"), "experiment.toml", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert not (tmp_path / "sbatch.log").exists(), job.stdout + job.stderr
    assert job.returncode == 0, job.stdout + job.stderr  # nor did the warning end the job before its report


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
def test_a_time_warning_during_the_run_stops_it_and_resubmits(tmp_path, script):
    """Also when the warning comes as the run starts (before, the job failed on an unset variable
    and resubmitted nothing)."""
    body = 'kill -USR1 "$PPID"\nexec sleep 30\n'  # the run, warned at once, while it goes on
    env = stand_ins(tmp_path, body)
    job = subprocess.run(["bash", str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert job.returncode == 0 and "time limit near" in job.stdout, job.stdout + job.stderr
    assert (tmp_path / "sbatch.log").read_text().startswith("--dependency=afterany:42 ")


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
def test_the_next_slice_asks_for_what_this_one_had(tmp_path, script):
    """`sbatch --cpus-per-task=4 -p long -A proj jobs/search-restart.slurm ...`: the resubmission
    took the #SBATCH lines' 2 cores (the search refused to resume on 2 NEST threads a run begun on 4)
    and the site's default partition and account; and a resubmission that failed ended the job
    as a success, the run left stopped without a word."""
    body = 'kill -USR1 "$PPID"\nexec sleep 30\n'
    env = {**stand_ins(tmp_path, body), "SLURM_NTASKS": "3", "SLURM_CPUS_PER_TASK": "4",
           "SLURM_JOB_PARTITION": "long", "SLURM_JOB_ACCOUNT": "proj"}
    job = subprocess.run(["bash", str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert job.returncode == 0, job.stdout + job.stderr
    assert (tmp_path / "sbatch.log").read_text().split() == [
        "--dependency=afterany:42", "--ntasks=3", "--cpus-per-task=4", "--partition=long", "--account=proj",
        str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run")]
    (tmp_path / "venv" / "bin" / "sbatch").write_text('#!/bin/bash\necho "sbatch: error: Invalid account" >&2\nexit 1\n')
    job = subprocess.run(["bash", str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert job.returncode != 0 and "could not resubmit" in job.stderr, job.stdout + job.stderr


def test_options_after_the_run_directory_reach_the_search(tmp_path):
    """`sbatch jobs/search.slurm EXP RUN --resume` (the README's way to go on after a killed job)
    dropped --resume without a word, and the search refused the folder that held the run; so went
    --max-generations or --seed. The restart scripts pass them on to every slice."""
    log = tmp_path / "python.log"
    env = stand_ins(tmp_path, f'echo "$@" >> "{log}"\n')
    job = subprocess.run(["bash", str(ROOT / "jobs" / "search.slurm"), "experiment.toml", str(tmp_path / "my run"),
                          "--resume", "--max-generations", "30"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert job.returncode == 0, job.stdout + job.stderr
    search = log.read_text().splitlines()[0]
    assert search.startswith("-m nestplast.search experiment.toml --out") and \
        search.endswith("--quiet --resume --max-generations 30"), search
    for script, command in [("search-restart.slurm", "nestplast.search"), ("filter.slurm", "nestplast filter")]:
        log.unlink()
        body = f'echo "$@" >> "{log}"\nkill -USR1 "$PPID"\nexec sleep 30\n'
        env = stand_ins(tmp_path / script, body)
        job = subprocess.run(["bash", str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run"),
                              "--seed", "3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert job.returncode == 0, job.stdout + job.stderr
        assert command in log.read_text() and log.read_text().split()[-2:] == ["--seed", "3"], log.read_text()
        resubmitted = (tmp_path / script / "sbatch.log").read_text().split()
        assert resubmitted[-4:] == ["experiment.toml", str(tmp_path / "run"), "--seed", "3"], resubmitted
