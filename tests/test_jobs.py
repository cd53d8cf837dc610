"""The SLURM scripts in jobs/, run by bash with stand-ins for srun, sbatch and the job's python:
what they do around the run (resubmitting, reporting), not the run itself."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stand_ins(tmp_path: Path, python_body: str, squeue: str | None = None) -> dict:
    """A venv whose activate puts stand-ins first on PATH: srun runs its command, sbatch records
    its arguments, python does ``python_body`` (a bash snippet), and squeue, where given, does
    ``squeue``. The environment is this one's without its SLURM_ variables (a test run inside a job
    would carry that job's)."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    scripts = {
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
        "sbatch": f'echo "$@" >> "{tmp_path}/sbatch.log"\n',
        "python": python_body,
        **({"squeue": squeue} if squeue is not None else {}),
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    return {**env, "NESTPLAST_VENV": str(tmp_path / "venv"), "SLURM_JOB_ID": "42"}


def begun(run: Path) -> str:
    """A stand-in python's first lines: the run has begun (its store exists), as one warned mid-run."""
    return f'mkdir -p "{run}"; : > "{run}/results.sqlite"\n'


def run_job(tmp_path: Path, script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "jobs" / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


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
def test_the_next_slice_is_submitted_before_the_run_is_stopped(tmp_path, script):
    """The script stopped the run, waited, then resubmitted: a stop that outlasted the warning's lead
    (a rank inside a long NEST simulation answers when it returns) was killed with the job before
    sbatch ran, and the chain of slices ended without a word."""
    log = tmp_path / "sbatch.log"
    body = begun(tmp_path / "run") + \
        f'trap \'sleep 1; echo "run stopped" >> "{log}"; exit 0\' TERM\nkill -USR1 "$PPID"\nsleep 30 & wait\n'
    env = stand_ins(tmp_path, body)
    job = subprocess.run(["bash", str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert job.returncode == 0, job.stdout + job.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("--dependency=afterany:42 ") and lines[1] == "run stopped", lines


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
def test_the_next_slice_asks_for_what_this_one_had(tmp_path, script):
    """`sbatch --cpus-per-task=4 -p long -A proj jobs/search-restart.slurm ...`: the resubmission
    took the #SBATCH lines' 2 cores (the search refused to resume on 2 NEST threads a run begun on 4)
    and the site's default partition and account; and a resubmission that failed ended the job
    as a success, the run left stopped without a word."""
    body = begun(tmp_path / "run") + 'kill -USR1 "$PPID"\nexec sleep 30\n'
    # also the QOS, time limit, memory, nodes, reservation, constraint and name given to sbatch, which
    # the next slice lost (the #SBATCH --time, the site's QOS and memory: refused, or killed early)
    squeue = '[ "$*" = "-h -j 42 -o %l" ] && echo "1-12:00:00"\n[ "$*" = "-h -j 42 -o %f" ] && echo "skylake&ib"\nexit 0\n'
    env = {**stand_ins(tmp_path, body, squeue), "SLURM_NTASKS": "3", "SLURM_CPUS_PER_TASK": "4",
           "SLURM_JOB_PARTITION": "long", "SLURM_JOB_ACCOUNT": "proj", "SLURM_JOB_QOS": "high",
           "SLURM_MEM_PER_NODE": "64000", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_RESERVATION": "maint",
           "SLURM_JOB_NAME": "nestplast-big"}
    job = run_job(tmp_path, script, "experiment.toml", str(tmp_path / "run"), env=env)
    assert job.returncode == 0 and not job.stderr, job.stdout + job.stderr
    assert (tmp_path / "sbatch.log").read_text().split() == [
        "--dependency=afterany:42", "--ntasks=3", "--cpus-per-task=4", "--partition=long", "--account=proj",
        "--qos=high", "--time=1-12:00:00", "--mem=64000", "--nodes=2", "--reservation=maint",
        "--constraint=skylake&ib", "--job-name=nestplast-big",
        str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run"), "--resume"]
    (tmp_path / "venv" / "bin" / "sbatch").write_text('#!/bin/bash\necho "sbatch: error: Invalid account" >&2\nexit 1\n')
    shutil.rmtree(tmp_path / "run")  # a first slice again
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
    assert search.startswith("-m nestplast.search --out") and \
        search.endswith("--quiet --resume --max-generations 30"), search  # resumed: the stored experiment
    for script, command in [("search-restart.slurm", "nestplast.search"), ("filter.slurm", "nestplast filter")]:
        log.unlink()
        shutil.rmtree(tmp_path / "run", ignore_errors=True)  # each script's first slice
        body = begun(tmp_path / "run") + f'echo "$@" >> "{log}"\nkill -USR1 "$PPID"\nexec sleep 30\n'
        env = stand_ins(tmp_path / script, body)
        job = subprocess.run(["bash", str(ROOT / "jobs" / script), "experiment.toml", str(tmp_path / "run"),
                              "--seed", "3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert job.returncode == 0, job.stdout + job.stderr
        assert command in log.read_text() and log.read_text().split()[-2:] == ["--seed", "3"], log.read_text()
        resubmitted = (tmp_path / script / "sbatch.log").read_text().split()
        assert resubmitted[-5:] == ["experiment.toml", str(tmp_path / "run"), "--seed", "3", "--resume"], resubmitted


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
def test_what_the_next_slice_cannot_be_given_is_said(tmp_path, script):
    """Without squeue (or when it fails) the job still resubmits, and says that the time limit is
    the #SBATCH line's; --mem-per-cpu goes on as such (not as --mem)."""
    body = begun(tmp_path / "run") + 'kill -USR1 "$PPID"\nexec sleep 30\n'
    env = {**stand_ins(tmp_path, body, squeue="exit 1\n"), "SLURM_MEM_PER_CPU": "2000"}
    job = run_job(tmp_path, script, "experiment.toml", str(tmp_path / "run"), env=env)
    assert job.returncode == 0 and "could not read this job's time limit" in job.stderr, job.stdout + job.stderr
    assert (tmp_path / "sbatch.log").read_text().split() == [
        "--dependency=afterany:42", "--mem-per-cpu=2000", str(ROOT / "jobs" / script), "experiment.toml",
        str(tmp_path / "run"), "--resume"]


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
def test_a_time_warning_during_the_start_up_resubmits(tmp_path, script):
    """The warning (USR1) that came while the environment was activated killed the job (the trap was
    set after it), with no resubmission: the run stayed stopped."""
    body = 'exec sleep 30\n'
    env = stand_ins(tmp_path, body)
    activate = tmp_path / "venv" / "bin" / "activate"
    activate.write_text(activate.read_text() + 'kill -USR1 $$\n')  # sourced by the job's shell
    job = run_job(tmp_path, script, "experiment.toml", str(tmp_path / "run"), env=env)
    assert job.returncode == 0 and "time limit near" in job.stdout, (job.returncode, job.stdout + job.stderr)
    assert (tmp_path / "sbatch.log").read_text().startswith("--dependency=afterany:42 ")


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
@pytest.mark.parametrize("when", ["before the run is started", "while the run starts"])
def test_a_warning_before_the_run_exists_gives_the_next_slice_no_resume(tmp_path, script, when):
    """The next slice was given --resume whatever the run's state: warned before the run had made its
    folder (a slow start, a test job shorter than the warning's lead), it found no run ("no run
    directory"), exited 2 and ended the chain. It now begins the run; a run that made its store
    while being stopped is resumed."""
    log = tmp_path / "python.log"
    if when == "before the run is started":
        body = f'echo "$@" >> "{log}"\nexec sleep 30\n'
    else:  # warned while starting; its store is made as it stops
        body = f'trap \'{begun(tmp_path / "run").strip()}; exit 0\' TERM\nkill -USR1 "$PPID"\nsleep 30 & wait\n'
    env = stand_ins(tmp_path, body)
    if when == "before the run is started":
        activate = tmp_path / "venv" / "bin" / "activate"
        activate.write_text(activate.read_text() + 'kill -USR1 $$\n')
    job = run_job(tmp_path, script, "experiment.toml", str(tmp_path / "run"), "--seed", "3", env=env)
    assert job.returncode == 0, job.stdout + job.stderr
    resubmitted = (tmp_path / "sbatch.log").read_text().split()
    expected = ["experiment.toml", str(tmp_path / "run"), "--seed", "3"]
    if when == "while the run starts":
        expected.append("--resume")
    assert resubmitted[-len(expected):] == expected and resubmitted.count("--resume") == len(expected) - 4, resubmitted


@pytest.mark.parametrize("script", ["search.slurm", "search-restart.slurm"])
def test_a_resume_goes_on_with_the_runs_threads(tmp_path, script):
    """A run begun on 1 thread, resumed by a job with 2 cores per task: the script gave the
    experiment and --threads 2 again, and the search refused ("search.threads: 1 -> 2. Resume without
    an experiment file and without ... --threads"), a way out the script did not offer. Now the run
    goes on with what it stored, and the job's log says that cores and threads differ."""
    from nestplast import experiment
    from nestplast.store import RunStore

    run = tmp_path / "run"
    stored = experiment.default().to_dict()
    assert stored["search"]["threads"] == 1
    RunStore.create(run, stored, seed=1).close()
    log = tmp_path / "python.log"
    body = f'[ "$1" = -c ] && exec "{sys.executable}" "$@"\necho "$@" >> "{log}"\n'  # the script's own read
    env = {**stand_ins(tmp_path, body), "SLURM_CPUS_PER_TASK": "2"}
    options = ["--resume"]
    job = run_job(tmp_path, script, "experiment.toml", str(run), *options, "--max-generations", "9", env=env)
    assert job.returncode == 0, job.stdout + job.stderr
    search = log.read_text().splitlines()[0].split()
    assert search[:4] == ["-m", "nestplast.search", "--out", str(run)] and "--resume" in search and \
        "--threads" not in search and "experiment.toml" not in search, search
    assert "gives each rank 2 cores (--cpus-per-task) but the run uses 1 NEST threads" in job.stdout, job.stdout
    # NEST's own "OMP_NUM_THREADS is set ... but NEST ignores it" read as if the threads were not applied
    assert "limits numpy's and torch's threads per rank (NEST says it ignores it: its threads are search.threads)" \
        in job.stdout, job.stdout
    assert "--cpus-per-task=1" in job.stdout
    env["SLURM_CPUS_PER_TASK"] = "1"  # as the run began: nothing to say
    job = run_job(tmp_path, script, "experiment.toml", str(run), *options, env=env)
    assert job.returncode == 0 and "note:" not in job.stdout, job.stdout + job.stderr


def test_a_new_filter_run_takes_the_jobs_cores_as_threads(tmp_path):
    """It ran the experiment's search.threads (1 by default) on --cpus-per-task=2: one core of each
    rank idle, without a word. An option given after RUN_DIR still has the last word."""
    log = tmp_path / "python.log"
    env = {**stand_ins(tmp_path, f'echo "$@" >> "{log}"\n'), "SLURM_CPUS_PER_TASK": "2"}
    assert run_job(tmp_path, "filter.slurm", "experiment.toml", str(tmp_path / "run"), env=env).returncode == 0
    assert log.read_text().split() == ["-m", "nestplast", "filter", "experiment.toml", "--out", str(tmp_path / "run"),
                                       "--threads", "2", "--quiet"], log.read_text()


def test_a_filter_slice_resumes_with_the_stored_experiment(tmp_path):
    """Later slices gave EXPERIMENT again: a file changed since the run began (an edit, an upgraded
    shipped one) was refused in every slice, with advice the script could not follow."""
    from nestplast import experiment
    from nestplast.store import RunStore

    run = tmp_path / "run"
    RunStore.create(run, experiment.default().to_dict(), seed=1).close()
    log = tmp_path / "python.log"
    env = stand_ins(tmp_path, f'echo "$@" >> "{log}"\n')
    job = run_job(tmp_path, "filter.slurm", "experiment.toml", str(run), "--threads", "2", "--resume", env=env)
    assert job.returncode == 0, job.stdout + job.stderr
    assert log.read_text().split() == ["-m", "nestplast", "filter", "--out", str(run), "--quiet", "--threads", "2",
                                       "--resume"], log.read_text()
    assert "(experiment.toml is not read)" in job.stdout, job.stdout


@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm"])
def test_a_first_slice_refuses_a_folder_that_holds_a_run(tmp_path, script):
    """Given a new experiment and a folder that held another run (reused, or mistyped), the restart
    scripts resumed the old run with its own experiment, EXPERIMENT unread, and exited 0. The next
    slices are given --resume; a requeue of the job (the same arguments) resumes by itself."""
    from nestplast import experiment
    from nestplast.store import RunStore

    run = tmp_path / "run"
    RunStore.create(run, experiment.default().to_dict(), seed=1).close()
    log = tmp_path / "python.log"
    env = stand_ins(tmp_path, f'[ "$1" = -c ] && exit 0\necho "$@" >> "{log}"\n')
    job = run_job(tmp_path, script, "new.toml", str(run), env=env)
    assert job.returncode == 2 and not log.exists(), job.stdout + job.stderr
    assert f"{run} holds a run already: to continue it, submit with --resume after RUN_DIR" in job.stderr
    assert "for a new run of new.toml give another RUN_DIR" in job.stderr
    requeued = run_job(tmp_path, script, "new.toml", str(run), env={**env, "SLURM_RESTART_COUNT": "1"})
    assert requeued.returncode == 0 and "requeued (restart 1): resuming" in requeued.stdout, requeued.stderr
    ran = log.read_text().split()
    assert "--resume" in ran and "new.toml" not in ran, ran


@pytest.mark.parametrize("script", ["search.slurm", "search-restart.slurm", "filter.slurm"])
@pytest.mark.parametrize("args", [["runs/spikes", "--resume"], ["runs/spikes"], []])
def test_a_misuse_gets_the_usage(tmp_path, script, args):
    """`sbatch jobs/search.slurm RUN_DIR --resume` (the experiment forgotten) gave the search's
    "argument --out: expected one argument", naming neither RUN_DIR nor the usage."""
    log = tmp_path / "python.log"
    env = stand_ins(tmp_path, f'echo "$@" >> "{log}"\n')
    job = run_job(tmp_path, script, *args, env=env)
    assert job.returncode == 2, job.stdout + job.stderr
    assert f"usage: sbatch {script} EXPERIMENT.toml RUN_DIR [" in job.stderr, job.stderr
    assert f"got: {' '.join(args) or 'nothing'}" in job.stderr, job.stderr
    assert not log.exists()  # nothing was started


@pytest.mark.parametrize("script", ["search.slurm", "search-restart.slurm", "filter.slurm"])
@pytest.mark.parametrize("out", [["--out", "runs/other"], ["--out=runs/other"]])
def test_an_out_among_the_options_is_refused(tmp_path, script, out):
    """`search.slurm tiny.toml runs/a --out runs/b`: the search ran into runs/b, the job's report
    then found no runs/a and the job failed; the restart script resubmitted to resume runs/a, which
    never existed, and the chain broke."""
    log = tmp_path / "python.log"
    env = stand_ins(tmp_path, f'echo "$@" >> "{log}"\n')
    job = run_job(tmp_path, script, "tiny.toml", "runs/a", "--max-generations", "2", *out, env=env)
    assert job.returncode == 2, job.stdout + job.stderr
    assert (f"{script}: RUN_DIR (runs/a) is the run's folder: no --out among the options after it" in job.stderr), job.stderr
    assert not log.exists()  # nothing was started


def test_a_run_directory_in_use_gets_the_jobs_own_advice(tmp_path):
    """Submitted again without --resume, the job ended with the search's advice, a command line
    (python -m nestplast.search --out RUN_DIR --resume), where the user needs the job's."""
    log = tmp_path / "python.log"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.sqlite").write_bytes(b"")
    env = stand_ins(tmp_path, f'echo "$@" >> "{log}"\n')
    job = run_job(tmp_path, "search.slurm", "experiment.toml", str(tmp_path / "run"), env=env)
    assert job.returncode == 2 and not log.exists(), job.stdout + job.stderr
    assert f"to continue it: sbatch jobs/search.slurm experiment.toml {tmp_path / 'run'} --resume" in job.stderr
    # a path with a space is quoted, so that the advice pastes as it is printed
    (tmp_path / "my run").mkdir()
    (tmp_path / "my run" / "results.sqlite").write_bytes(b"")
    job = run_job(tmp_path, "search.slurm", "experiment.toml", str(tmp_path / "my run"), env=env)
    assert job.returncode == 2 and f"sbatch jobs/search.slurm experiment.toml {tmp_path}/my\\ run --resume" in job.stderr
    # requeued by Slurm (node failure, preemption) with the arguments it began with: it resumes
    job = run_job(tmp_path, "search.slurm", "experiment.toml", str(tmp_path / "run"),
                  env={**env, "SLURM_RESTART_COUNT": "1"})
    assert job.returncode == 0 and "requeued (restart 1): resuming" in job.stdout, job.stdout + job.stderr
    assert f"-m nestplast.search --out {tmp_path / 'run'} --quiet --resume" in log.read_text()



@pytest.mark.parametrize("script", ["search-restart.slurm", "filter.slurm", "search.slurm"])
def test_a_missing_environment_ends_the_job(tmp_path, script):
    """Without set -e (the time warning's trap must run) a failed activate went on: every rank then
    failed with the system Python's "No module named nestplast". search.slurm (set -e) ended with
    bash's own "No such file or directory"."""
    log = tmp_path / "python.log"
    env = stand_ins(tmp_path, f'echo "$@" >> "{log}"\n')
    job = run_job(tmp_path, script, "experiment.toml", str(tmp_path / "run"),
                  env={**env, "NESTPLAST_VENV": str(tmp_path / "nowhere")})
    assert job.returncode == 1 and not log.exists(), job.stdout + job.stderr
    assert f"no environment at {tmp_path / 'nowhere'}: submit from the repository root after ./setup.sh" in job.stderr
    assert not (tmp_path / "sbatch.log").exists()
