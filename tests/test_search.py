"""The search end to end on a tiny network: it lowers its loss, gives the same answer on 1 and 2
MPI ranks, resumes a killed run without losing or repeating evaluations, and reports."""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nestplast.kernel import nest_has_mpi
from nestplast.store import RunStore

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


def tiny(tmp_path: Path, generations: int = 5) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("GENERATIONS", str(generations)))
    return path


def search(args, mpi: int = 0, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "nestplast.search", *map(str, args)]
    if mpi:
        command = [str(MPIEXEC), "-n", str(mpi), *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900, **kwargs)


def rows(run: Path) -> list[tuple]:
    with sqlite3.connect(run / "results.sqlite") as db:
        return db.execute("SELECT generation, candidate, trial, theta, seed, loss, status FROM evaluations "
                          "ORDER BY generation, candidate, trial").fetchall()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, doublet_module):
    tmp = tmp_path_factory.mktemp("search")
    out = search([tiny(tmp), "--out", tmp / "run"])
    assert out.returncode == 0, out.stderr
    return tmp / "run", out


def test_tiny_search_lowers_its_loss(reference_run):
    run, out = reference_run
    generations = RunStore.open(run).generations()
    assert len(generations) == 5
    median = [g["median_loss"] for g in generations]
    assert median[-1] < 0.5 * median[0], "the population moves from runaway rules to working ones"
    assert "gen   4" in out.stdout and "eval/s" in out.stdout
    # every (candidate + mean) x trial evaluated once per generation
    assert RunStore.open(run).counts()["evaluations"] == 5 * (6 + 1) * 2


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
    deadline = time.time() + 600
    # kill -9 in the middle of generation 2: after its first evaluations, before it completes
    while time.time() < deadline:
        if database.exists():
            with sqlite3.connect(database) as db:
                done = db.execute("SELECT COUNT(*) FROM evaluations WHERE generation = 2").fetchone()[0]
            if done >= 3:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = rows(out_dir)
    store = RunStore.open(out_dir)
    assert store.last_complete_generation() in (1, 2)
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    out = search(["--out", out_dir, "--resume"])
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stdout
    after = rows(out_dir)
    assert set(before) <= set(after), "every evaluation recorded before the kill is still there, unchanged"
    assert after == rows(run), "the resumed run is the uninterrupted run"


def test_report_json_and_plots(reference_run, tmp_path):
    run, _ = reference_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    out = subprocess.run([sys.executable, "-m", "nestplast.report", str(copy), "--json"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary) == {"generations", "evaluations", "failed", "best_loss", "best_params"}
    assert summary["generations"] == 5 and summary["evaluations"] == 70
    assert summary["best_loss"] == min(g["best_loss"] for g in RunStore.open(run).generations())
    assert set(summary["best_params"]) == {"IE.alpha", "IE.beta", "IE.gamma", "IE.kappa"}
    for name in ("loss.png", "stdp_window.png", "rates_weights.png"):
        assert (copy / name).stat().st_size > 1000


def test_existing_run_is_not_overwritten(reference_run, tmp_path):
    run, _ = reference_run
    out = search([tiny(tmp_path), "--out", run])
    assert out.returncode == 2
    assert "--resume" in out.stderr and "Traceback" not in out.stderr


def test_failed_evaluations_are_recorded_and_a_flat_generation_stops_the_search(tmp_path):
    """A neuron parameter NEST does not know makes every evaluation raise inside NEST: each
    failure is recorded with NEST's message and the penalty loss; a generation in which every
    candidate scores the same stops the search (pycma's tolflatfitness), saying why."""
    path = tiny(tmp_path, generations=3)
    path.write_text(path.read_text().replace("p = 0.2", "p = 0.2\nneuron_params = { tau_m = 20.0, no_such_param = 1.0 }"))
    out = search([path, "--out", tmp_path / "run"])
    assert out.returncode == 0, out.stderr
    assert "tolflatfitness" in out.stdout and "scored the same" in out.stdout
    store = RunStore.open(tmp_path / "run")
    assert store.counts()["generations"] == 1
    assert "tolflatfitness" in store.stop()
    evaluations = store.evaluations()
    assert len(evaluations) == 1 * 7 * 2
    assert {e.status for e in evaluations} == {"failed"}
    assert all("no_such_param" in e.error for e in evaluations)
    assert {e.loss for e in evaluations} == {320.0}
    assert store.counts()["failed"] == 14 and store.counts()["blowups"] == 0
