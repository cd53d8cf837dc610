"""The search end to end on a tiny network: it lowers its loss, gives the same answer on 1 and 2
MPI ranks, resumes a killed run without losing or repeating evaluations, and reports."""

import fcntl
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_run, needs_sbi, read_store

from nestplast import __version__, experiment
from nestplast.kernel import nest_has_mpi
from nestplast.networks import draw_trials
from nestplast.objectives import FAILURE_LOSS
from nestplast.store import WRITER_LOCK, RunStore

pytestmark = [pytest.mark.nest, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"

TINY = """
name = "tiny"
seed = 4
[rule]
name = "doublet"
plastic = ["IE"]
search = ["alpha", "beta", "gamma", "kappa"]
fixed = { eta = 1.0 }
[network]
n_e = 80
n_i = 20
p = 0.2
weights = { EE = 30.0, EI = 30.0, IE = 60.0, II = 60.0 }
w_max = { IE = 300.0 }
[trials]
n = 2
weight_scale = [0.8, 1.2]
[objective]
target_rate = 10.0
constraints = { w_blow = [0.0, 0.1] }
t_train = 2.0
t_score = 1.0
chunk = 0.5
rate_band = [1.0, 100.0]  # a silent network counts as a blow-up within these 3 s
[search]
population_size = 6
max_generations = GENERATIONS
"""

# what TINY's rule runs with beside its searched parameters: rule.fixed, the rule's own fixed settings,
# the start of what rule.search leaves out (the doublet's time constants), and the signed w_max
FIXED_OF_THE_REFERENCE = {"eta": 1.0, "Wmin": 0.0, "Wmax": -300.0, "tau_pre": 20.0, "tau_post": 20.0}


def tiny(tmp_path: Path, generations: int = 5) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("GENERATIONS", str(generations)))
    return path


def wait_for_the_writer_to_end(run: Path, timeout: float = 30.0) -> None:
    """Until no process holds ``run``'s writer lock (see nestplast.store)."""
    deadline = time.time() + timeout
    with open(run / WRITER_LOCK) as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.time() < deadline, f"{run} is still being written: {lock.read()}"
                time.sleep(0.1)


def search(args, mpi: int = 0, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "nestplast.search", *map(str, args)]
    if mpi:
        command = [str(MPIEXEC), "-n", str(mpi), *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900, **kwargs)


def rows(run: Path) -> list[tuple]:
    with sqlite3.connect(run / "results.sqlite") as db:
        return db.execute("SELECT generation, candidate, trial, theta, seed, loss, status FROM evaluations "
                          "ORDER BY generation, candidate, trial").fetchall()


def wait_for_evaluations(database: Path, generation: int, count: int, timeout: float = 600.0) -> None:
    """Until ``database`` holds ``count`` evaluations of ``generation`` (a run in another process)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if database.exists():
            with sqlite3.connect(database) as db:
                if db.execute("SELECT COUNT(*) FROM evaluations WHERE generation = ?", (generation,)).fetchone()[0] >= count:
                    return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, doublet_module):
    tmp = tmp_path_factory.mktemp("search")
    out = search([tiny(tmp), "--out", tmp / "run"])
    assert out.returncode == 0, out.stderr
    return tmp / "run", out


def test_tiny_search_lowers_its_loss(reference_run):
    run, out = reference_run
    generations = read_store(run, RunStore.generations)
    assert len(generations) == 5
    median = [g["median_loss"] for g in generations]
    assert median[-1] < 0.5 * median[0], "the population moves from runaway rules to working ones"
    assert "gen   4" in out.stdout and "eval/s" in out.stdout
    # every (candidate + mean) x trial evaluated once per generation
    assert read_store(run, RunStore.counts)["evaluations"] == 5 * (6 + 1) * 2


@pytest.mark.mpi
@pytest.mark.skipif(nest_has_mpi(), reason="this NEST has MPI inside: 2 ranks split every simulation over "
                    "2 virtual processes (tests/test_networks.py tests that mode)")
def test_two_ranks_give_the_same_run(reference_run, tmp_path):
    run, _ = reference_run
    out = search([tiny(tmp_path), "--out", tmp_path / "run2", "--quiet"], mpi=2)
    assert out.returncode == 0, out.stderr
    assert rows(tmp_path / "run2") == rows(run)
    ranks = {r[0] for r in sqlite3.connect(tmp_path / "run2" / "results.sqlite").execute("SELECT rank FROM evaluations")}
    assert ranks == {0, 1}, "both ranks evaluated"


def test_resume_after_kill_loses_and_repeats_nothing(reference_run, tmp_path):
    run, _ = reference_run
    out_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "nestplast.search", str(tiny(tmp_path)), "--out", str(out_dir),
                                "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = out_dir / "results.sqlite"
    # kill -9 in the middle of generation 2: after its first evaluations, before it completes
    wait_for_evaluations(database, generation=2, count=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = rows(out_dir)
    with RunStore.open(out_dir, read_only=True) as store:
        assert store.last_complete_generation() in (1, 2)
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    out = search(["--out", out_dir, "--resume"])
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stdout and "other software" not in out.stdout
    after = rows(out_dir)
    assert set(before) <= set(after), "every evaluation recorded before the kill is still there, unchanged"
    assert after == rows(run), "the resumed run is the uninterrupted run"


def report(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nestplast.report", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_report_json_and_plots(reference_run, tmp_path):
    run, _ = reference_run
    copy = tmp_path / "copy"
    copy_run(run, copy)
    out = report(copy, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["generations"] == 5 and summary["evaluations"] == 70
    assert summary["stop"] == {"maxiter": 5}, "pycma's stop dictionary is the run's stop reason"
    assert summary["failed"] + summary["blowups"] == sum(r["status"] != "ok" for r in map(dict, _statuses(run)))
    assert summary["best_loss"] == min(g["best_loss"] for g in read_store(run, RunStore.generations))
    assert set(summary["best_params"]) == {"IE.alpha", "IE.beta", "IE.gamma", "IE.kappa"}
    assert summary["best_nest_params"]["IE"] == pytest.approx(
        {**FIXED_OF_THE_REFERENCE, **{k.removeprefix("IE."): v for k, v in summary["best_params"].items()}})
    trials = summary["best_trials"]
    assert [t["trial"] for t in trials] == [0, 1] and all(t["status"] == "ok" for t in trials)
    assert all(0 < t["rate_e"] < 100 and t["cv_isi"] > 0 and "IE" in t["weight_drift"] for t in trials)
    assert summary["best_loss"] == pytest.approx(sum(t["loss"] for t in trials) / 2)
    # each trial's draws are recorded (a trial could not be simulated again from the run), as the
    # run draws them: from the experiment's seed and the generation
    exp = experiment.parse(read_store(run, RunStore.experiment, read_only=True), "<run>")
    drawn = draw_trials(exp.trials, np.random.SeedSequence([exp.seed, summary["best"]["generation"]]))
    assert [t["conditions"] for t in trials] == [{"weight_scale": d.weight_scale, "input_rate_scale": d.input_rate_scale,
                                                  "w_max_scale": d.w_max_scale} for d in drawn]
    assert [t["seed"] for t in trials] == [d.seed for d in drawn]
    for name in ("loss.png", "stdp_window.png", "rates_weights.png"):
        assert (copy / name).stat().st_size > 1000
    # pycma's own log beside the plots: one line per generation, the best loss pycma was told
    fit = np.loadtxt(copy / "outcmaes" / "fit.dat", comments="%", ndmin=2)
    assert fit[:, 0].tolist() == [1, 2, 3, 4, 5] and fit[:, 1].tolist() == [6, 12, 18, 24, 30]
    assert fit[:, 5].min() >= summary["best_loss"]  # the best also counts the mean, which pycma is not told
    # pycma's iterations from 1 beside the report's generations from 0: the report says so where it writes the log
    assert "its iteration k is generation k - 1" in report(copy).stdout
    text = report(copy, "--no-plots").stdout
    assert "what the loss means" in text and "best rule on its trials" in text and "stopped: maxiter = 5" in text
    assert f"trial 0 (NEST seed {drawn[0].seed}): " in text
    assert (f"; drawn: input rate x {drawn[0].input_rate_scale:.6g}, start weights x {drawn[0].weight_scale:.6g}, "
            f"w_max x {drawn[0].w_max_scale:.6g}\n") in text
    assert report(copy / "results.sqlite", "--no-plots").stdout == text, "the database named instead of its folder"
    # a reader that has gone away before the report is written (`| head -n 1`) ends it quietly, also
    # where stdout is buffered (the report would fail only at exit)
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    reader_gone = subprocess.Popen([sys.executable, "-m", "nestplast.report", str(copy), "--no-plots"], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=buffered)
    reader_gone.stdout.close()
    err = reader_gone.stderr.read()
    assert reader_gone.wait() == 141 and err == "", err


def _statuses(run: Path):
    with sqlite3.connect(run / "results.sqlite") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT status FROM evaluations").fetchall()


def test_report_reads_a_read_only_copy(reference_run, tmp_path):
    run, _ = reference_run
    copy = tmp_path / "readonly"
    copy_run(run, copy)
    for path in [*copy.iterdir(), copy]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        out = report(copy, "--plots-to", tmp_path / "plots")
        assert out.returncode == 0, out.stderr
        assert "best loss" in out.stdout and (tmp_path / "plots" / "loss.png").exists()
        if os.geteuid() != 0:  # root writes through file modes
            resumed = search(["--out", copy, "--resume"])
            assert resumed.returncode == 2 and "read-only" in resumed.stderr and "Traceback" not in resumed.stderr
    finally:
        copy.chmod(0o755)


def test_resume_refuses_another_experiment_and_extends_with_more_generations(reference_run, tmp_path):
    run, _ = reference_run
    copy = tmp_path / "copy"
    copy_run(run, copy)
    before = rows(copy)
    out = search(["--out", copy, "--resume", "--seed", "5"])
    assert out.returncode == 2 and "seed: 4 -> 5" in out.stderr and "Traceback" not in out.stderr
    changed = tiny(tmp_path).read_text().replace("n_e = 80", "n_e = 90")
    (tmp_path / "changed.toml").write_text(changed)
    out = search([tmp_path / "changed.toml", "--out", copy, "--resume"])
    assert out.returncode == 2 and "network.n_e: 80 -> 90" in out.stderr
    out = search(["--out", copy, "--resume", "--population-size", "8"])
    assert out.returncode == 2 and "search.population_size: 6 -> 8" in out.stderr
    assert "without --seed, --threads or --population-size" in out.stderr, "the flag given is among those named"
    assert rows(copy) == before, "nothing was mixed into the run"
    # the run began with another NEST (its metadata says so): it goes on, with a note
    with sqlite3.connect(copy / "results.sqlite") as db:
        meta = json.loads(db.execute("SELECT meta FROM run").fetchone()[0])
        assert set(meta["versions"]) == {"nest-simulator", "nestml", "cma", "numpy", "nestplast"}
        meta["versions"]["nest-simulator"] = "3.9.0"
        # nestplast's own code changed (an editable install pulled between two slices): its version
        # number stays, its source digest does not
        meta["versions"]["nestplast"] = meta["versions"]["nestplast"].split("+")[0] + "+000000000000"
        db.execute("UPDATE run SET meta = ?", (json.dumps(meta),))
    db.close()
    out = search(["--out", copy, "--resume", "--max-generations", "6"])
    assert out.returncode == 0, out.stderr
    assert read_store(copy, RunStore.counts)["generations"] == 6 and rows(copy)[:len(before)] == before
    assert "note: this run began with other software (nest-simulator 3.9.0 -> " in out.stdout, out.stdout
    assert f"nestplast {__version__}+000000000000 -> {__version__}+" in out.stdout, out.stdout
    # ... and the run keeps from which generation on it ran with which (the note was one job's log line)
    with RunStore.open(copy, read_only=True) as stored:
        after = stored.meta()
    assert after["versions"]["nest-simulator"] == "3.9.0" and len(after["versions_from"]) == 1, after
    resumed_at = after["versions_from"][0]["generation"]
    assert 0 < resumed_at < 6 and after["versions_from"][0]["versions"]["nest-simulator"] != "3.9.0"
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(copy), "--no-plots"], capture_output=True,
                            text=True, cwd=ROOT)
    assert "software: from generation 0: nest-simulator 3.9.0, " in report.stdout and \
        f"; then from generation {resumed_at}: nest-simulator " in report.stdout, report.stdout
    assert search(["--out", copy, "--resume", "--max-generations", "7"]).returncode == 0
    with RunStore.open(copy, read_only=True) as stored:
        assert len(stored.meta()["versions_from"]) == 1, "the same software again: nothing more to keep"


def test_existing_run_is_not_overwritten(reference_run, tmp_path):
    run, _ = reference_run
    out = search([tiny(tmp_path), "--out", run])
    assert out.returncode == 2
    assert "--resume" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--out", "FILE"], "FILE is an existing file"),
    (["--out", "FILE/run"], "FILE is a file"),
    (["--seed", "-1", "--out", "NEW"], "--seed: expected an integer in [0, 2**32), got -1"),
    (["--seed", str(2**40), "--out", "NEW"], "--seed: expected an integer in [0, 2**32)"),
    (["--threads", "0", "--out", "NEW"], "--threads: expected an integer >= 1, got 0"),
    # a folder of one's own (here, one's notes): the run's files and a report's plots mixed with them
    (["--out", "MINE"], "MINE holds other files (notes.txt) and no run: give a new run a folder of its own"),
])
def test_bad_paths_and_seeds_are_one_line_before_anything_is_created(tmp_path, args, message):
    (tmp_path / "FILE").write_text("not a directory")
    (tmp_path / "MINE").mkdir()
    (tmp_path / "MINE" / "notes.txt").write_text("mine")
    args = [str(tmp_path / a) if a in ("FILE", "FILE/run", "NEW", "MINE") else a for a in args]
    out = search([tiny(tmp_path), *args])
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "NEW").exists() and [p.name for p in (tmp_path / "MINE").iterdir()] == ["notes.txt"]


def test_neuron_parameters_the_neuron_refuses_are_named_before_a_run_is_created(tmp_path):
    """tau_syn_in = tau_m: NESTML's solution divides by their difference, so the paired neuron
    refuses it. Every evaluation failed; now the run is refused before it exists, so that the
    corrected experiment can go to the same --out."""
    path = tiny(tmp_path)
    path.write_text(path.read_text().replace("p = 0.2\n", "p = 0.2\nneuron_params = { tau_m = 10.0, tau_syn_in = 10.0 }\n"))
    out = search([path, "--out", tmp_path / "run"])
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"error: {path}: network.neuron_params: the neuron iaf_psc_exp refuses" in out.stderr, out.stderr
    assert "abs(tau_syn_inh - tau_m)" in out.stderr and "(tau_syn_inh is your tau_syn_in)" in out.stderr
    assert "nestplast_neuron_check" not in out.stderr  # the model copied only to ask NEST, no name of the user's
    assert not (tmp_path / "run").exists()


def test_quiet_keeps_the_notes_on_stderr_such_as_threads_that_outnumber_the_cores(tmp_path):
    """A batch job runs --quiet: before, its notes were dropped with the progress lines. Here one
    core for 2 NEST threads (they spin waiting for each other: many times slower)."""
    out = search([tiny(tmp_path, generations=1), "--out", tmp_path / "run", "--threads", "2", "--quiet"],
                 preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert out.returncode == 0, out.stderr
    assert ("note: 1 rank x 2 NEST threads on" in out.stderr and "which gives them 1 core" in out.stderr
            and "give ranks x threads = cores" in out.stderr), out.stderr
    assert "gen   0" not in out.stdout + out.stderr and "best parameters:" in out.stdout, "progress stays quiet"
    spacious = search([tiny(tmp_path, generations=1), "--out", tmp_path / "run1", "--threads", "1", "--quiet"])
    assert spacious.returncode == 0 and "NEST threads" not in spacious.stderr, spacious.stderr


def test_a_resume_with_the_experiment_file_does_not_take_back_a_raised_limit(tmp_path):
    """An experiment file given again on a resume: its max_generations (2 here) stopped a run
    raised to 3 at once, and rewrote the run's stop reason."""
    run = tmp_path / "run"
    assert search([tiny(tmp_path, generations=2), "--out", run, "--max-generations", "3", "--quiet"]).returncode == 0
    with RunStore.open(run, read_only=True) as stored:
        before = (stored.meta(), stored.stop(), stored.experiment())
    out = search([tiny(tmp_path, generations=2), "--out", run, "--resume", "--quiet"])
    assert out.returncode == 2, out.stdout + out.stderr
    assert ("search.max_generations = 2" in out.stderr and "the run had 3" in out.stderr
            and "already has 3 generations. Give --max-generations above 3" in out.stderr), out.stderr
    with RunStore.open(run, read_only=True) as stored:
        assert (stored.meta(), stored.stop(), stored.experiment()) == before, "the refused resume changed nothing"
    out = search([tiny(tmp_path, generations=2), "--out", run, "--resume", "--max-generations", "4"])
    assert out.returncode == 0 and "note: resuming with search.max_generations = 4 (the run had 3)" in out.stdout, out.stdout
    assert read_store(run, RunStore.counts, read_only=True)["generations"] == 4
    assert "nothing was left to run" not in out.stdout
    # a resume of the finished run (a batch job resubmitted after the end): "resuming", then "done", and why nothing ran
    again = search(["--out", run, "--resume"])
    assert again.returncode == 0 and "note: nothing was left to run: the resumed run stopped at once, on maxiter = 4" \
        in again.stdout, again.stdout


def test_a_wall_time_limit_below_the_time_spent_is_refused(tmp_path):
    """--max-wall-s 2 on a run that had spent more evaluating (read as "2 s more") ran nothing, exited
    0 and recorded timeout = 2 as the run's stop reason; the run's own time is said."""
    run = tmp_path / "run"
    assert search([tiny(tmp_path, generations=2), "--out", run, "--quiet"]).returncode == 0
    with RunStore.open(run, read_only=True) as stored:
        before = (stored.meta(), stored.stop(), stored.experiment())
        spent = stored.load_strategy(stored.last_complete_generation()).wall_s
    assert spent > 0.0
    limit = spent / 2
    out = search(["--out", run, "--resume", "--max-generations", "4", "--max-wall-s", f"{limit}"])
    assert out.returncode == 2, out.stdout + out.stderr
    assert (f"search.max_wall_s = {limit} (the run had None): it already has {spent:.1f} s spent evaluating (the limit "
            f"is the run's total, not this session's). Give --max-wall-s above {spent:.0f} to go on") in out.stderr, \
        out.stderr
    with RunStore.open(run, read_only=True) as stored:
        assert (stored.meta(), stored.stop(), stored.experiment()) == before, "the refused resume changed nothing"
    out = search(["--out", run, "--resume", "--max-generations", "3", "--max-wall-s", f"{spent + 600}", "--quiet"])
    assert out.returncode == 0, out.stderr
    assert read_store(run, RunStore.counts, read_only=True)["generations"] == 3


def test_rule_settings_nest_refuses_are_refused_before_the_run(tmp_path):
    """A negative time constant: NEST refused every candidate, each evaluation recorded as failed,
    and the search's stop blamed a flat fitness first. (|Wmin| above w_max, the case first met, is
    now refused earlier still: above the start weights; and a time constant below the resolution
    by the experiment's own check, before the rule's settings go to NEST.)"""
    path = tmp_path / "tau.toml"
    path.write_text(TINY.replace("GENERATIONS", "1").replace('name = "doublet"', 'name = "taylor"\nmask = "pre:000"')
                    .replace('search = ["alpha", "beta", "gamma", "kappa"]\n', "")
                    .replace("fixed = { eta = 1.0 }", "fixed = { eta = 1.0, tau_pre = -20.0 }"))
    out = search([path, "--out", tmp_path / "run"])
    assert out.returncode == 2, out.stdout + out.stderr
    assert (f"error: {path}: rule.fixed.tau_pre: expected a time constant in ms, at least network.resolution (0.1 ms; "
            "seconds meant?), got -20.0" in out.stderr), out.stderr
    assert "nestplast_check_IE" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_the_search_names_the_best_rule_as_the_report_does(tmp_path):
    """Every candidate blew up on some trial: the search printed a "best" rule (the lowest loss,
    a blow-up's penalty in it) while its report said that no candidate had all its trials ok."""
    path = tmp_path / "blown.toml"
    path.write_text(TINY.replace("GENERATIONS", "1").replace("rate_band = [1.0, 100.0]", "rate_band = [500.0, 1000.0]")
                    .replace("target_rate = 10.0", 'target_rate = "none"'))
    out = search([path, "--out", tmp_path / "run", "--quiet"])
    assert out.returncode == 0, out.stderr
    assert ("no candidate with all its trials ok" in out.stdout and "no rule found: every candidate blew up or "
            "failed on some trial" in out.stdout and "best parameters" not in out.stdout), out.stdout
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--no-plots"],
                            capture_output=True, text=True, cwd=ROOT)
    assert "no candidate had all its trials ok" in report.stdout, report.stdout
    # the JSON keeps its keys where there is no best (a script read summary["best"] into a KeyError)
    data = json.loads(subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--json"],
                                     capture_output=True, text=True, cwd=ROOT).stdout)
    assert data["best"] is None and data["best_loss"] is None and data["best_params"] == data["best_nest_params"] == {}


def test_a_search_whose_every_evaluation_failed_says_why_and_exits_non_zero(tmp_path):
    """Before, it printed a 'best' rule and exit code 0: a batch system chained the next job on it."""
    path = tmp_path / "fail.toml"
    path.write_text(TINY.replace("GENERATIONS", "2").replace("chunk = 0.5", "chunk = 0.5\nmax_wall_s = 0.001"))
    out = search([path, "--out", tmp_path / "run", "--quiet"])
    assert out.returncode == 1, out.stdout + out.stderr
    assert ("every evaluation failed, so no rule was found; most often (timeout, x" in out.stdout
            and "objective.max_wall_s = 0.001 s" in out.stdout and "best parameters" not in out.stdout), out.stdout


@pytest.mark.parametrize("broken", ["another MPI", "no mpi4py"])
def test_a_launcher_that_mpi_does_not_see_is_named_instead_of_running_alone(tmp_path, broken):
    """Open MPI's mpirun (its variables) with mpi4py on the PyPI MPICH, or no mpi4py at all: each
    rank ran the whole search alone, and all but one failed on the run's lock with a message about
    another run."""
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}
    if broken == "no mpi4py":
        (tmp_path / "mpi4py").mkdir()
        (tmp_path / "mpi4py" / "__init__.py").write_text("raise ImportError('no MPI library here')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    out = search([tiny(tmp_path, generations=1), "--out", tmp_path / "run"], env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    expected = ("MPI puts each in a world of its own: mpi4py uses another MPI" if broken == "another MPI"
                else "started as 2 ranks, but mpi4py cannot be imported (no MPI library here)")
    assert len(lines) == 1 and expected in lines[0] and "jobs/README.md" in lines[0], out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.mpi
@pytest.mark.skipif(nest_has_mpi(), reason="population mode needs the PyPI NEST (no MPI inside)")
def test_more_ranks_than_tasks_are_named_idle_with_what_to_do(tmp_path):
    # (2 candidates + the mean) x 1 trial = 3 tasks a generation on 4 ranks: one waits out every generation
    path = tmp_path / "small.toml"
    path.write_text(TINY.replace("GENERATIONS", "1").replace("population_size = 6", "population_size = 2")
                    .replace("n = 2\n", "n = 1\n"))
    out = search([path, "--out", tmp_path / "run"], mpi=4)
    assert out.returncode == 0, out.stderr
    assert ("note: 4 ranks for 3 tasks a generation (2 candidates and the mean, 1 trial each): 1 rank stays idle; "
            "use fewer ranks with more --threads each") in out.stdout, out.stdout
    out = search([path, "--out", tmp_path / "run3"], mpi=3)
    assert out.returncode == 0 and "idle" not in out.stdout, out.stdout


@pytest.mark.mpi
@pytest.mark.skipif(nest_has_mpi(), reason="population mode needs the PyPI NEST (no MPI inside)")
def test_mpi_error_before_the_first_task_ends_every_rank(tmp_path):
    (tmp_path / "FILE").write_text("not a directory")
    started = time.time()
    out = search([tiny(tmp_path), "--out", tmp_path / "FILE"], mpi=2)
    assert time.time() - started < 60
    assert out.returncode == 2 and out.stderr.count("is an existing file") == 1 and "Traceback" not in out.stderr


@pytest.mark.mpi
@pytest.mark.skipif(nest_has_mpi(), reason="population mode needs the PyPI NEST (no MPI inside)")
@pytest.mark.parametrize("sent, to_whom, word", [(signal.SIGINT, "0", "interrupted"),
                                                 (signal.SIGTERM, "mpiexec", "terminated"),
                                                 (signal.SIGTERM, "1", "terminated")],
                         ids=["ctrl-c", "sigterm", "sigterm-to-a-worker"])
def test_mpi_interrupt_in_the_middle_ends_every_rank_and_keeps_the_run(tmp_path, sent, to_whom, word):
    """Ctrl-C reaching rank 0 alone (the worker is busy evaluating or waiting for a task), SIGTERM
    sent to the launcher (as ``kill`` or a batch system's time limit does), or to a worker alone
    (which waits for rank 0 to end the job, then ends it itself), ends both ranks within seconds
    with one message; the run resumes to the uninterrupted one."""
    out_dir = tmp_path / "run"
    # generations enough that the signal, sent once generation 1 is recorded, lands mid-run: a tiny
    # evaluation takes a few hundredths of a second, and a finished run has nothing to stop
    process = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-m", "nestplast.search",
                                str(tiny(tmp_path, generations=8)), "--out", str(out_dir), "--quiet"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    database = out_dir / "results.sqlite"
    wait_for_evaluations(database, generation=1, count=2)
    if to_whom != "mpiexec":
        rank = [p for p in _children(process.pid) if _rank(p) == to_whom]
        assert rank, f"found rank {to_whom}"
        os.kill(rank[0], sent)
    else:
        process.send_signal(sent)
    interrupted = time.time()
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert time.time() - interrupted < 30 and process.returncode != 0
    # one line: mpiexec passes SIGTERM on to every rank, and each rank printed one
    assert err.count(word) == 1 and "--resume" in err, err
    # on 2 ranks again: the hint without the launcher led a run with MPI inside NEST to a refused resume
    assert f"Resume with: mpiexec -n 2 python -m nestplast.search --out {out_dir} --resume" in err, err
    assert read_store(out_dir, RunStore.counts, read_only=True)["generations"] < 8, "the signal stopped the run before its end"
    wait_for_the_writer_to_end(out_dir)  # the launcher can be gone a moment before rank 0
    resumed = search(["--out", out_dir, "--resume", "--quiet"])
    assert resumed.returncode == 0 and "best parameters:" in resumed.stdout, "--quiet still prints the result"
    assert read_store(out_dir, RunStore.counts)["generations"] == 8


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    found = [int(p) for p in out]
    return found + [q for p in found for q in _children(p)]


def _rank(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"PMI_RANK=")]
    return ranks[0] if ranks else None


def test_failed_evaluations_are_recorded_and_a_flat_generation_stops_the_search(tmp_path, doublet_module):
    """An experiment whose every evaluation fails (here each runs past its wall time): each
    failure is recorded with its reason and the penalty loss; a generation in which every candidate scores the same stops the
    search (pycma's tolflatfitness), saying why. What the checks do know is refused before the run,
    also for an experiment made in Python."""
    import dataclasses

    from nestplast import experiment
    from nestplast.experiment import ExperimentError
    from nestplast.search import run_search

    exp = experiment.load(tiny(tmp_path, generations=3))
    unknown = dataclasses.replace(exp, network=dataclasses.replace(exp.network, neuron_params={"no_such_param": 1.0}))
    with pytest.raises(ExperimentError, match="network.neuron_params.no_such_param"):
        run_search(unknown, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    # and a population under half pycma's default for 4 parameters (8) is noted
    # every evaluation past its wall time at its first check (a resolution below NEST's tic, which
    # failed them all in NEST, is now refused before the run)
    exp = dataclasses.replace(exp, objective=dataclasses.replace(exp.objective, max_wall_s=1e-6),
                              search=dataclasses.replace(exp.search, population_size=3))
    lines = []
    outcome = run_search(exp, tmp_path / "run", progress=lines.append)
    assert "tolflatfitness" in outcome.stop and "scored the same" in "\n".join(lines)
    assert "a population of 3 is less than half pycma's default of 8 for 4 parameters" in "\n".join(lines)
    with RunStore.open(tmp_path / "run") as store:
        assert store.counts()["generations"] == 1
        assert "tolflatfitness" in store.stop()
        evaluations = store.evaluations()
        assert store.counts()["failed"] == 8 and store.counts()["blowups"] == 0
    assert len(evaluations) == 1 * 4 * 2  # 3 candidates and the mean, 2 trials
    assert {e.status for e in evaluations} == {"timeout"}
    assert all("evaluation exceeded objective.max_wall_s" in e.error for e in evaluations)
    assert {e.loss for e in evaluations} == {FAILURE_LOSS}


@pytest.mark.parametrize("sent, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
                         ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_says_where_it_stands_and_how_to_resume(tmp_path, sent, code, word):
    """Ctrl-C, or SIGTERM (``kill``; SLURM at the time limit, as jobs/search-restart.slurm relies
    on), stops the run cleanly: one line, every evaluation kept, the resume command (quoted for the
    shell: the folder's name has a space) with the limits the command was given: a resume that
    raised --max-generations, stopped while it compiled, had not recorded the raise yet, and the
    hint without it stopped the run at once at its old limit."""
    out_dir = tmp_path / "my run"
    # more generations than can run before the signal lands (an evaluation of the tiny network
    # takes milliseconds): the run must be stopped, not finished
    # A process started with SIGINT ignored (anything started in the background by a non-interactive
    # shell, as a CI runner may start these tests) inherits that and cannot be interrupted: the run
    # under test gets SIGINT back as a terminal would give it.
    process = subprocess.Popen([sys.executable, "-m", "nestplast.search", str(tiny(tmp_path)), "--max-generations",
                                "500", "--out", str(out_dir), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    database = out_dir / "results.sqlite"
    wait_for_evaluations(database, generation=1, count=1)
    process.send_signal(sent)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()  # a run that ignored the signal must not go on after the test
    assert process.returncode == code
    with sqlite3.connect(database) as db:
        last = db.execute("SELECT MAX(generation) FROM generations").fetchone()[0]
        kept = db.execute("SELECT COUNT(*) FROM evaluations WHERE generation <= ?", (last,)).fetchone()[0]
    assert kept == (last + 1) * 7 * 2  # every evaluation of every complete generation
    assert err.strip().splitlines() == [f"{word}: after generation {last}; every evaluation so far is kept. "
                                        f"Resume with: python -m nestplast.search --out '{out_dir}' --resume "
                                        "--max-generations 500"]


def test_every_command_tells_its_version():
    from nestplast import __version__

    for command in (["-m", "nestplast", "--version"], ["-m", "nestplast.search", "--version"],
                    ["-m", "nestplast", "infer", "--version"]):
        out = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT)
        assert (out.returncode, out.stdout.strip()) == (0, f"nestplast {__version__}"), (command, out.stderr)


@pytest.mark.parametrize("changes, message", [
    ([("t_score = 1.0", "t_score = 0.05")], "objective.t_score: expected at least 0.1 s with a target_rate"),
    ([("[network]", '[network]\nkind = "single_neuron"'), ("target_rate = 10.0", 'target_rate = 10.0\npopulation = "I"')],
     "objective.population: expected 'E' for network.kind = 'single_neuron'"),
])
def test_an_experiment_whose_every_evaluation_would_fail_is_refused_before_the_run(tmp_path, changes, message):
    """Valid files that made a run of nothing but 320s: a scoring window shorter than one rate bin
    (every working rule scored NaN) and a single neuron scored on an I population it has not
    (every evaluation failed with KeyError: 'I')."""
    text = tiny(tmp_path).read_text()
    for old, new in changes:
        text = text.replace(old, new)
    (tmp_path / "edge.toml").write_text(text)
    out = search([tmp_path / "edge.toml", "--out", tmp_path / "NEW"])
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "NEW").exists()


def test_a_resumed_run_keeps_its_new_budget_and_has_not_stopped_until_it_stops(reference_run, tmp_path):
    """`--resume --max-generations 7`, killed, then a plain `--resume` (as after any crash): the
    second resume stopped at once at the first run's 5 generations ('done (maxiter = 5)'), and the
    report of the killed run said it had stopped for that reason."""
    run, _ = reference_run
    copy = tmp_path / "copy"
    copy_run(run, copy)
    process = subprocess.Popen([sys.executable, "-m", "nestplast.search", "--out", str(copy), "--resume",
                                "--max-generations", "7", "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL)
    wait_for_evaluations(copy / "results.sqlite", generation=5, count=1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = json.loads(report(copy, "--json", "--no-plots").stdout)
    assert killed["stop"] is None, "a killed run has not stopped for a reason"
    out = search(["--out", copy, "--resume", "--quiet"])
    assert out.returncode == 0, out.stderr
    assert "done (maxiter = 7): 7 generations" in out.stdout
    assert read_store(copy, RunStore.experiment, read_only=True)["search"]["max_generations"] == 7


def test_a_finished_run_without_a_best_rule_says_so_without_yet(tmp_path):
    from nestplast.analysis.search import summarise, text
    from nestplast.experiment import default
    from nestplast.tasks import Evaluation

    store = RunStore.create(tmp_path, experiment=default().to_dict(), seed=1)
    store.record_evaluation(Evaluation(generation=0, candidate=0, trial=0, theta=[0.0] * 6, params={}, seed=1,
                                       metrics={"t_blowup_s": 0.5}, loss=300.0, status="blowup", error="left"))
    running = text(summarise(tmp_path), tmp_path)
    assert "all its trials" in running and "yet" in running
    store.record_stop({"maxiter": 1})
    store.close()
    words = text(summarise(tmp_path), tmp_path)
    assert "trials ok yet" not in words
    assert "no candidate had all its trials ok: every one blew up or failed" in words


def test_the_report_says_on_which_side_of_the_band_the_blow_ups_left_it(tmp_path):
    """A blow-up was reported with its time only: a runaway network and a silent one, which a user
    fixes in opposite ways, read alike. Runs stored before the side was recorded say no side."""
    from nestplast.analysis.search import summarise, text
    from nestplast.experiment import default
    from nestplast.tasks import Evaluation

    def blown(k: int, side: str | None) -> Evaluation:
        return Evaluation(generation=0, candidate=k, trial=0, theta=[0.0] * 6, params={}, seed=1, loss=300.0,
                          status="blowup", error="E rate left the band",
                          metrics={"t_blowup_s": 0.5 + k, **({"left_band": side} if side else {})})

    for run, sides, says in [("both", ["above", "above", "below"],
                              "blow-ups: 3 (2 above the band (runaway), 1 below (too quiet); rate left the band at "
                              "t = 0.5 .. 2.5 s"),
                             ("old", [None], "blow-ups: 1 (rate left the band at t = 0.5 .. 0.5 s")]:
        with RunStore.create(tmp_path / run, experiment=default().to_dict(), seed=1) as store:
            for k, side in enumerate(sides):
                store.record_evaluation(blown(k, side))
        summary = summarise(tmp_path / run)
        assert says in text(summary, tmp_path / run)
    assert summary["failures"]["blowups_above"] == 0 and summary["failures"]["blowups_below"] == 0


def test_a_resume_that_would_split_simulations_otherwise_is_refused(tmp_path):
    """With MPI inside NEST (network mode) every simulation is spread over the ranks, and its random
    streams belong to NEST's virtual processes (ranks x threads): a run begun on 2 ranks and resumed
    on 3, or begun without MPI inside NEST and resumed with it (or the other way), went on silently
    with other results. In serial and population mode any number of ranks gives the same run."""
    from nestplast import experiment
    from nestplast.runs import open_run
    from nestplast.store import StoreError

    exp = experiment.load(tiny(tmp_path))
    for began, resumed in [((1, "serial"), (3, "population")), ((2, "population"), (1, "serial")),
                           ((2, "network"), (2, "network"))]:
        run = tmp_path / f"{began[1]}-{resumed[1]}"
        open_run(exp, run, resume=False, ranks=began[0], mode=began[1]).close()
        open_run(exp, run, resume=True, ranks=resumed[0], mode=resumed[1]).close()
    for began, resumed, message in [
            ((2, "network"), (3, "network"), "on 3 ranks (each simulation spread over all of them): it began in "
                                             "network mode on 2 ranks"),
            ((2, "network"), (1, "serial"), "Resume it on 2 ranks with the NEST built with MPI"),
            ((2, "population"), (2, "network"), "it began with each simulation in one process")]:
        run = tmp_path / f"refused-{began[1]}-{resumed[0]}-{resumed[1]}"
        open_run(exp, run, resume=False, ranks=began[0], mode=began[1]).close()
        with pytest.raises(StoreError, match="results would change") as refused:
            open_run(exp, run, resume=True, ranks=resumed[0], mode=resumed[1])
        assert message in str(refused.value)
        RunStore.open(run).close()  # the refusal let go of the run


@pytest.mark.mpi
def test_the_command_refuses_to_resume_a_run_in_another_mode(tmp_path):
    """The whole command, as a user resuming a run begun without MPI inside NEST with a NEST built
    with MPI (NESTPLAST_NEST_MPI says which NEST this is): one line on rank 0, nothing recorded."""
    from nestplast import experiment
    from nestplast.runs import open_run

    run = tmp_path / "run"
    open_run(experiment.load(tiny(tmp_path)), run, resume=False, ranks=1, mode="serial").close()
    before = read_store(run, RunStore.experiment, read_only=True)
    out = search(["--out", run, "--resume"], mpi=2, env={**os.environ, "NESTPLAST_NEST_MPI": "1"})
    assert out.returncode == 2 and out.stderr.count("results would change") == 1, out.stderr
    assert "Traceback" not in out.stderr and "network mode on 2 ranks" in out.stderr
    assert read_store(run, RunStore.experiment, read_only=True) == before


def run_row(run: Path) -> tuple:
    """The run's own record: its experiment (stop settings included), metadata and stop reason."""
    with sqlite3.connect(run / "results.sqlite") as db:
        return db.execute("SELECT experiment, meta, stop FROM run").fetchone()


def test_a_run_resumes_only_as_the_command_that_made_it(tmp_path):
    """A filter resumed on a search killed in its first generation took the search's folder for its
    own and began a family there (nothing else said it was a search's). Each run records its kind."""
    from nestplast import experiment
    from nestplast.runs import open_run
    from nestplast.store import StoreError

    exp, run = experiment.load(tiny(tmp_path)), tmp_path / "run"
    open_run(exp, run, resume=False, ranks=1, mode="serial", kind="search").close()
    with pytest.raises(StoreError, match=re.escape(f"cannot resume {run} as a filter run (rule families): it holds "
                                                   f"a search; go on with python -m nestplast.search --out {run} --resume")):
        open_run(exp, run, resume=True, ranks=1, mode="serial", kind="filter")
    open_run(exp, run, resume=True, ranks=1, mode="serial", kind="search").close()


@needs_sbi
def test_the_search_refuses_to_resume_a_filter_run(tmp_path, doublet_module):
    """`nestplast search --out FILTER_RUN --resume` simulated a whole round into the filter's run,
    then ended in a traceback (the filter needs every metric); killed in its first round, the filter
    run was resumed as a CMA-ES search that took the filter's evaluations for its own candidates'."""
    exp = tiny(tmp_path).read_text() + "[filter]\nrounds = 1\nsimulations_per_round = 6\nmax_epochs = 5\n"
    (tmp_path / "filter.toml").write_text(exp)
    run = tmp_path / "families"
    out = subprocess.run([sys.executable, "-m", "nestplast", "filter", str(tmp_path / "filter.toml"), "--out", str(run),
                          "--no-plots", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    first_round_cut = tmp_path / "cut"
    copy_run(run, first_round_cut)
    with sqlite3.connect(first_round_cut / "results.sqlite") as db:  # as if killed before its first round ended
        db.execute("DELETE FROM generations")
    older = tmp_path / "older"  # made before runs recorded their kind: told apart by what it holds
    copy_run(first_round_cut, older)
    with sqlite3.connect(older / "results.sqlite") as db:
        db.execute("UPDATE run SET meta = json_remove(meta, '$.kind')")
    for where, message in [(run, f"it holds a filter run (rule families); go on with python -m nestplast filter --out "
                                 f"{run} --resume"),
                           (first_round_cut, f"it holds a filter run (rule families); go on with python -m nestplast "
                                             f"filter --out {first_round_cut} --resume"),
                           (older, "was of other parameters than this run asks for there")]:
        before = rows(where), run_row(where)
        out = search(["--out", where, "--resume"])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert (rows(where), run_row(where)) == before, "nothing was mixed into the filter's run, nor its settings changed"


def test_a_simulation_time_given_in_ms_is_pointed_out(tmp_path):
    """t_train = 1000 meant as 1000 ms is 1000 s of network time per evaluation: every evaluation of
    a real network runs into max_wall_s (a cluster job of timeouts) without a word at the start."""
    from nestplast import experiment, run_search

    settings = {"name": "ms", "network": {"n_e": 20, "n_i": 5}, "trials": {"n": 1},
                "search": {"population_size": 2, "max_generations": 1}}
    lines = []
    ms = experiment.parse({**settings, "objective": {"t_train": 1000.0, "t_score": 200.0, "max_wall_s": 1.0}}, "<test>")
    run_search(ms, tmp_path / "ms", progress=lines.append)  # this tiny network blows up at once
    assert ("note: each evaluation simulates 1200 s of network time (objective.t_train + t_score are in seconds, "
            "not ms)") in "\n".join(lines)
    from nestplast.runs import long_simulation_note

    # t_train = 500 meant as ms (the note began at 1000 s); the shipped experiments' longest, 60 + 5 s, has none
    assert "not ms" in long_simulation_note(experiment.parse({"objective": {"t_train": 500.0, "t_score": 0.2}}))
    assert long_simulation_note(experiment.load("families_paper")) == ""
    lines.clear()
    seconds = experiment.parse({**settings, "objective": {"t_train": 0.2, "t_score": 0.2}}, "<test>")
    run_search(seconds, tmp_path / "s", progress=lines.append)
    assert "not ms" not in "\n".join(lines)


def test_a_network_silent_whatever_the_rule_is_named(tmp_path):
    """network.input_rate = 8 (meant as 8000 Hz): no spike in any evaluation, every rule scored alike,
    and the search's end blamed the rule (its all-zero start as "best": "more generations, a larger
    sigma0"). The end of the search and the report now say that the network is silent."""
    from nestplast import experiment, run_search
    from nestplast.analysis.search import summarise, text

    settings = {"name": "quiet", "network": {"n_e": 20, "n_i": 5, "input_rate": 8.0}, "trials": {"n": 1},
                "objective": {"t_train": 0.3, "t_score": 0.2}, "search": {"population_size": 2, "max_generations": 1}}
    lines = []
    run_search(experiment.parse(settings, "<test>"), tmp_path / "quiet", progress=lines.append)
    said = ("note: the scored population fired no spike in any evaluation (0 Hz on every trial of every candidate): "
            "the network is silent whatever the rule, so every rule scored alike; check network.input_rate (in Hz) "
            "and network.input_weight")
    assert said in lines[-1].splitlines(), lines[-1]
    assert said in text(summarise(tmp_path / "quiet"), tmp_path / "quiet").splitlines()
    lines.clear()
    run_search(experiment.parse({**settings, "network": {"n_e": 20, "n_i": 5}}, "<test>"), tmp_path / "driven",
               progress=lines.append)
    assert "silent whatever the rule" not in lines[-1] + text(summarise(tmp_path / "driven"), tmp_path / "driven")
    # a single neuron's drive is its afferents': it was told of input_rate, which it never reads
    from nestplast.analysis.search import silent_note
    from nestplast.tasks import Evaluation

    quiet = [Evaluation(0, 0, 0, [0.0], 1, metrics={"rate": 0.0}), Evaluation(0, 1, 0, [0.5], 1, metrics={"rate": 0.0})]
    assert silent_note(quiet, "single_neuron").endswith(
        "check network.input_rate_e and input_rate_i (in Hz), n_e_inputs and weights.EE")
    # a report early in a run, after one evaluation: one silent rule says nothing of the others (the
    # next candidate of that run fired at 0.43 Hz)
    assert silent_note(quiet[:1]) is None


def test_a_search_without_a_best_rule_is_named_where_its_parameters_are_asked_for():
    """The README's own print of outcome.best_theta, None where no candidate had all its trials ok:
    "TypeError: object of type 'float' has no len()"."""
    from nestplast import experiment

    with pytest.raises(ValueError, match=r"theta is None: no rule to give settings for \(a search's best_theta"):
        experiment.default().layout().as_dict(None)


def test_a_refused_resume_names_the_options_of_the_command_resuming(tmp_path):
    """The filter's refusal told the user to resume without --threads and --population-size,
    options the filter does not have."""
    import dataclasses

    from nestplast import experiment
    from nestplast.runs import check_resumable
    from nestplast.store import StoreError

    exp = experiment.load(tiny(tmp_path))
    for kind, options in (("search", "--seed, --threads or --population-size"), ("filter", "--seed or --threads")):
        with pytest.raises(StoreError, match=f"seed: 4 -> 5. Resume without an experiment file \\(in Python: the run.s "
                                             f"folder for the experiment\\) and without {options}, or"):
            check_resumable(exp.to_dict(), dataclasses.replace(exp, seed=5), tmp_path, kind)
    # the file and --seed 3 again is a way too (the file's stopping limits): the message did not say so
    with pytest.raises(StoreError, match=r"or with them as the run began \(the value left of each ->; e.g. the --seed"):
        check_resumable(exp.to_dict(), dataclasses.replace(exp, seed=5), tmp_path)


def test_a_run_begun_when_by_type_fixed_replaced_the_rules_is_not_resumed(tmp_path):
    """A type's by_type fixed settings now add to rule.fixed; a run begun when they replaced them
    (no kind in its metadata) would go on with other settings, without a word."""
    from nestplast import experiment
    from nestplast.runs import open_run
    from nestplast.store import StoreError

    path = tiny(tmp_path)
    path.write_text(path.read_text().replace('fixed = { eta = 1.0 }',
                                             'fixed = { eta = 1.0 }\nby_type = { IE = { fixed = { Wmin = 0.1 } } }'))
    exp, run = experiment.load(path), tmp_path / "run"
    assert exp.fixed_added_to() == ["IE"] and exp.rule_spec("IE").fixed == {"eta": 1.0, "Wmin": 0.1}
    open_run(exp, run, resume=False, ranks=1, mode="serial").close()
    open_run(exp, run, resume=True, ranks=1, mode="serial").close()  # begun now: it goes on
    with sqlite3.connect(run / "results.sqlite") as db:
        db.execute("UPDATE run SET meta = json_remove(meta, '$.kind')")
    with pytest.raises(StoreError, match="began when rule.by_type.IE.fixed replaced rule.fixed"):
        open_run(exp, run, resume=True, ranks=1, mode="serial")


def test_a_run_stopped_on_its_wall_time_goes_on_only_once_that_limit_is_raised(tmp_path):
    """A run stopped on search.max_wall_s, resumed with --max-generations raised, stopped again at
    once and said nothing; --max-wall-s did not exist. A resume that changes no limit still reports
    the run as done (a resubmitted batch job does that)."""
    run = tmp_path / "run"
    # a limit the first generation passes on any machine (0.5 s let a fast one run a second)
    out = search([tiny(tmp_path, generations=50), "--out", run, "--max-wall-s", "0.001", "--quiet"])
    assert out.returncode == 0 and "done (timeout = 0.001): 1 generations" in out.stdout, out.stdout + out.stderr
    before = rows(run)
    out = search(["--out", run, "--resume", "--max-generations", "60"])
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert (f"cannot resume {run}: it stopped on search.max_wall_s = 0.001 (pycma's timeout), which this resume leaves "
            "as it was, so it would stop again at once. Give --max-wall-s to go on") in out.stderr, out.stderr
    assert rows(run) == before
    out = search(["--out", run, "--resume", "--max-generations", "1"])  # no experiment file: no word of one
    assert out.returncode == 2 and out.stderr.rstrip().endswith("Give --max-generations above 1 to go on "
                                                                "(in Python: exp.search.max_generations)"), out.stderr
    out = search(["--out", run, "--resume", "--quiet"])
    assert out.returncode == 0 and "done (timeout = 0.001): 1 generations" in out.stdout, out.stdout + out.stderr
    out = search(["--out", run, "--resume", "--max-wall-s", "1e6", "--max-generations", "2", "--quiet"])
    assert out.returncode == 0 and "done (maxiter = 2): 2 generations" in out.stdout, out.stdout + out.stderr
    assert rows(run)[:len(before)] == before and read_store(run, RunStore.counts)["generations"] == 2


@pytest.mark.parametrize("command", [["nestplast.search"], ["nestplast", "filter"]])
def test_a_search_or_filter_resumed_on_an_inference_names_it(tmp_path, command):
    """`--resume` on an inference's folder ended in a traceback (its stored rule is a name, not a
    table) before the run's kind was checked."""
    run = tmp_path / "fit"
    RunStore.create(run, experiment={"rule": "taylor", "seed": 1}, seed=1, meta={"kind": "infer"}).close()
    out = subprocess.run([sys.executable, "-m", *command, "--out", str(run), "--resume"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"it holds an inference; go on with python -m nestplast infer DATA --out {run} --resume" in out.stderr, out.stderr


def test_show_defaults_shows_what_the_run_would_use(reference_run):
    """`--resume --show-defaults` printed the built-in defaults, not the run's settings, and
    overrides without an experiment file were dropped from the table."""
    run, _ = reference_run
    out = search(["--out", run, "--resume", "--show-defaults"])
    assert out.returncode == 0 and "n_e = 80  #" in out.stdout and "population_size = 6  #" in out.stdout, out.stdout
    out = search(["--population-size", "5", "--seed", "7", "--show-defaults"])
    assert out.returncode == 0 and "population_size = 5  #" in out.stdout and "\nseed = 7  #" in out.stdout, out.stdout
    plain = search(["--show-defaults"]).stdout
    assert "key = default" in plain and "population_size = 8  #" in plain


def test_a_resume_counts_candidates_as_pycma_does(tmp_path):
    """--max-evaluations 20 on a run of 3 generations of 4 candidates (12, as pycma counts) was refused:
    "it already has 30 evaluations" (the stored rows: each candidate's 2 trials and the mean's)."""
    import dataclasses

    from nestplast import experiment
    from nestplast.runs import check_limit_ahead
    from nestplast.store import StoreError
    from nestplast.tasks import Evaluation

    exp = experiment.default()
    exp.search = dataclasses.replace(exp.search, population_size=4, max_evaluations=8)
    with RunStore.create(tmp_path / "run", experiment=exp.to_dict(), seed=1) as store:
        for generation in range(3):
            for candidate in (0, 1, 2, 3, -1):
                for trial in (0, 1):
                    store.record_evaluation(Evaluation(generation, candidate, trial, [0.0] * 6, 7, loss=1.0))
            store.record_generation(generation, b"", {})
        assert store.candidates_evaluated(2) == 12 and store.counts()["evaluations"] == 30
        for limit in (12, 20):  # pycma stops once the count exceeds the limit: 12 goes on for a generation
            exp.search = dataclasses.replace(exp.search, max_evaluations=limit)
            check_limit_ahead(store, exp, tmp_path / "run", "search")
        exp.search = dataclasses.replace(exp.search, max_evaluations=11)
        with pytest.raises(StoreError, match="it already has 12 candidates evaluated. Give --max-evaluations of 12 or "
                                             "more to go on"):
            check_limit_ahead(store, exp, tmp_path / "run", "search")
