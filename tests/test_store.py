"""The run store keeps every evaluation, survives kill -9, and refuses misuse clearly."""

import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import read_store

from nestplast.store import RunStore, StoreError
from nestplast.tasks import Evaluation


def evaluation(g=0, k=0, j=0, **kw):
    base = dict(generation=g, candidate=k, trial=j, theta=[0.1, 2.0], params={"IE.alpha": 0.1, "IE.beta": 2.0},
                seed=42, metrics={"rate_e": 9.5, "cv_isi": math.nan, "trace": {"rate": [1.0, math.inf]}},
                loss=0.25, status="ok", error=None, wall_time_s=1.5, rank=1)
    return Evaluation(**{**base, **kw})


def test_round_trip_keeps_nan_and_infinities(tmp_path):
    store = RunStore.create(tmp_path / "run", experiment={"name": "x"}, seed=3, meta={"ranks": 2})
    store.record_evaluation(evaluation())
    store.record_evaluation(evaluation(k=1, loss=math.nan, status="nan", error="NaN weight"))
    store.record_evaluation(evaluation(k=2, loss=200.0, status="blowup", error="E rate left [0.1, 100] Hz"))
    store.close()
    with RunStore.open(tmp_path / "run") as again:
        first = again.get_evaluation(0, 0, 0)
        assert first.params == {"IE.alpha": 0.1, "IE.beta": 2.0} and first.rank == 1 and first.seed == 42
        assert math.isnan(first.metrics["cv_isi"]) and first.metrics["trace"]["rate"][1] == math.inf
        second = again.get_evaluation(0, 1, 0)
        assert math.isnan(second.loss) and second.status == "nan" and second.error == "NaN weight"
        assert again.experiment() == {"name": "x"} and again.seed() == 3 and again.meta() == {"ranks": 2}
        # a blow-up is the rule's result, counted apart from failures of the evaluation itself
        assert again.counts() == {"generations": 0, "evaluations": 3, "failed": 1, "blowups": 1}
        assert [e.status for e in again.evaluations(generation=0, candidate=2)] == ["blowup"]


def test_a_run_recorded_before_the_drive_option_keeps_the_poisson_generator(tmp_path):
    """Such runs were driven by a poisson_generator; the neuron's own drive is the default now."""
    from nestplast import experiment

    RunStore.create(tmp_path / "old", experiment={"network": {"n_e": 10}}, seed=1).close()
    RunStore.create(tmp_path / "new", experiment={"network": {"n_e": 10, "drive": "internal"}}, seed=1).close()
    old, new = (read_store(tmp_path / name, RunStore.experiment, read_only=True) for name in ("old", "new"))
    assert old["network"] == {"n_e": 10, "drive": "poisson_generator"} and new["network"]["drive"] == "internal"
    assert experiment.parse(old).network.drive == "poisson_generator"
    assert experiment.parse({"network": {"n_e": 10}}).network.drive == "internal"


def test_duplicate_key_is_refused_unless_replaced(tmp_path):
    with RunStore.create(tmp_path, experiment={}, seed=1) as store:
        store.record_evaluation(evaluation(status="failed", loss=320.0, error="boom"))
        with pytest.raises(StoreError, match="recorded already"):
            store.record_evaluation(evaluation())
        store.record_evaluation(evaluation(), replace=True)  # a failed evaluation retried
        assert store.get_evaluation(0, 0, 0).status == "ok"


def test_a_burst_is_committed_together_and_closing_keeps_it(tmp_path):
    """Results recorded with commit=False are invisible to other readers until commit() (one disk
    sync for a burst), and close() commits them (a run stopped in the middle of a burst keeps it)."""
    store = RunStore.create(tmp_path, experiment={}, seed=1)

    def seen() -> int:
        with sqlite3.connect(tmp_path / "results.sqlite") as other:
            return other.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    for k in range(3):
        store.record_evaluation(evaluation(k=k), commit=False)
    assert seen() == 0 and store.get_evaluation(0, 2, 0) is not None  # its own connection sees them
    store.commit()
    assert seen() == 3
    store.commit()  # nothing pending: nothing to do
    store.record_evaluation(evaluation(k=3), commit=False)
    with pytest.raises(StoreError, match="recorded already"):  # a duplicate inside a burst
        store.record_evaluation(evaluation(k=0), commit=False)
    store.close()
    assert seen() == 4


def test_generation_is_atomic_and_resumable(tmp_path):
    import numpy as np

    from nestplast.strategies import Budget, SearchSpace
    from nestplast.strategies.cmaes import CMAES

    store = RunStore.create(tmp_path, experiment={}, seed=1)
    space = SearchSpace(("a", "b", "c"), (-1.0,) * 3, (1.0,) * 3, (False,) * 3, (0.0,) * 3)
    es = CMAES(space, Budget(max_generations=5), population_size=6, seed=1)
    xs = es.ask()
    es.tell(xs, [float(np.sum(np.square(x.theta))) for x in xs])
    assert store.last_complete_generation() is None
    store.record_generation(0, pickle.dumps(es), {"best_loss": 1.0, "median_loss": 2.0})
    with pytest.raises(StoreError, match="recorded already"):
        store.record_generation(0, b"other", {})
    assert store.last_complete_generation() == 0
    assert store.generations()[0]["best_loss"] == 1.0
    store.close()
    with RunStore.open(tmp_path) as store:
        resumed = store.load_strategy(0)
    assert resumed.ask() == es.ask(), "the resumed strategy asks what the original asks"
    RunStore.open(tmp_path).close()  # the with block let go of the writer lock


def test_kill_minus_nine_loses_nothing_committed(tmp_path):
    writer = f"""
import itertools
from nestplast.store import RunStore
from nestplast.tasks import Evaluation
store = RunStore.create({str(tmp_path / 'run')!r}, experiment={{}}, seed=1)
for i in itertools.count():
    store.record_evaluation(Evaluation(generation=i // 10, candidate=i % 10, trial=0, theta=[i], params={{}},
                                       seed=i, metrics={{"i": i}}, loss=float(i)))
    print(i, flush=True)
"""
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    for line in process.stdout:  # each printed line follows a committed record
        acknowledged = int(line)
        if acknowledged >= 200:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    with RunStore.open(tmp_path / "run") as store:
        with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        found = store.evaluations()
    assert len(found) >= acknowledged + 1
    assert [e.seed for e in found[:acknowledged + 1]] == list(range(acknowledged + 1))
    assert all(e.metrics == {"i": e.seed} for e in found)


def test_open_and_create_misuse(tmp_path):
    with pytest.raises(StoreError, match="no run directory"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "a.toml").write_text("")  # a file given where a run goes: said so, not "no run directory"
    with pytest.raises(StoreError, match=r"a\.toml is a file; a run is the folder that holds results\.sqlite"):
        RunStore.open(tmp_path / "a.toml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"empty holds no nestplast run \(no results.sqlite\)$"):
        RunStore.open(tmp_path / "empty")
    # infer-demo's --out holds its fit in fit/: the message names it
    RunStore.create(tmp_path / "demo" / "fit", experiment={}, seed=1).close()
    with pytest.raises(StoreError, match=r"demo holds no nestplast run \(no results.sqlite\); the folders in it that "
                                         r"do: .*demo/fit$"):
        RunStore.open(tmp_path / "demo")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "results.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(StoreError, match="not a nestplast database"):
        RunStore.open(tmp_path / "junk")
    RunStore.create(tmp_path / "run", experiment={}, seed=1).close()
    with pytest.raises(StoreError, match="--resume"):
        RunStore.create(tmp_path / "run", experiment={}, seed=1)
    with RunStore.open(tmp_path / "run") as store, pytest.raises(StoreError, match="unknown status"):
        store.record_evaluation(evaluation(status="weird"))


def test_each_generation_is_in_the_database_file_itself(tmp_path):
    """A copy of results.sqlite alone, made while a run went on or after it was killed, showed an
    empty run: every row was in the -wal file, checkpointed only when the run ended."""
    import shutil

    with RunStore.create(tmp_path / "run", experiment={}, seed=1) as store:
        for k in range(3):
            store.record_evaluation(evaluation(k=k))
        store.record_generation(0, b"state", {"best_loss": 0.25})
        (tmp_path / "copy").mkdir()
        shutil.copy(tmp_path / "run" / "results.sqlite", tmp_path / "copy")  # the run still open, as if killed now
        with RunStore.open(tmp_path / "copy", read_only=True) as copy:
            assert copy.counts()["generations"] == 1 and copy.counts()["evaluations"] == 3


def test_a_damaged_store_is_refused_on_opening(tmp_path):
    """A page broken inside a run's database: the report ended in a traceback from counting, and a
    resume ran a whole generation into the damaged file before failing the same way."""
    with RunStore.create(tmp_path / "run", experiment={}, seed=1) as store:
        for k in range(400):  # enough rows for pages beyond the schema's
            store.record_evaluation(evaluation(k=k, loss=float(k)))
    path = tmp_path / "run" / "results.sqlite"
    with open(path, "r+b") as file:  # break a page in the middle, leave the header
        file.seek(path.stat().st_size // 2 // 4096 * 4096)
        file.write(b"\xff" * 4096)
    for read_only in (True, False):
        with pytest.raises(StoreError, match=r"results.sqlite is damaged \(.*\): it cannot be reported or continued"):
            RunStore.open(tmp_path / "run", read_only=read_only)


def test_a_killed_creation_leaves_no_half_made_run(tmp_path):
    """A process killed while creating its database leaves at most a draft; the next create
    starts afresh instead of finding a schema-less results.sqlite that neither --resume nor a
    new run could use."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.sqlite.draft").write_text("the remains of a killed creation")
    (run / "results.sqlite.draft-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + bytes(504))
    store = RunStore.create(run, experiment={"name": "x"}, seed=5)
    assert store.experiment() == {"name": "x"}
    assert not (run / "results.sqlite.draft").exists() and not (run / "results.sqlite.draft-journal").exists()
    store.close()
    assert read_store(run, RunStore.seed) == 5


def test_one_writer_at_a_time(tmp_path):
    """A second process that opens a run to write it (a resume started while the run goes on, an
    overlapping SLURM job) is refused, naming the writer; reading goes on; once the writer ends,
    however it ends (kill -9 included), the run can be resumed."""
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    RunStore.create(run, experiment={}, seed=1).close()
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from nestplast.store import RunStore
store = RunStore.open({str(run)!r})
print("open", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match=f"being written by process {writer.pid} .*wait for that run to end"):
            RunStore.open(run)
        # a new run into its folder was told to resume it, which the lock then refused: named as going on
        with pytest.raises(StoreError, match=f"being written by process {writer.pid} .*wait for that run to end"):
            RunStore.check_free(run)
        RunStore.open(run, read_only=True).close()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    RunStore.open(run).close()
    with pytest.raises(StoreError, match="already holds a run .*continue it with --resume"):  # ended: resume it
        RunStore.check_free(run)


def test_a_full_disk_is_a_message_and_the_run_stays_resumable(tmp_path):
    """A disk that fills up in the middle of a run (SQLite's own limit on the database's size
    stands in for it) was a traceback from inside the run loop; it is a StoreError that says what is
    kept and how to go on, the writer lock is let go, and every earlier commit is there."""
    store = RunStore.create(tmp_path, experiment={}, seed=1)
    store.record_evaluation(evaluation(k=0))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    big = {"trace": {"rate": list(range(20000))}}  # more than the pages left
    with pytest.raises(StoreError, match=r"cannot record \(database or disk is full\).*--resume"):
        store.record_evaluation(evaluation(k=1, metrics=big), commit=False)
        store.commit()
    store.close()
    with RunStore.open(tmp_path) as reopened:  # the lock was released
        assert [e.candidate for e in reopened.evaluations()] == [0]


def test_a_programming_error_is_not_called_a_full_disk(tmp_path):
    """Only a disk or folder that refuses a write becomes 'make room and --resume'; any other
    SQLite error keeps its own message and traceback."""
    store = RunStore.create(tmp_path, experiment={}, seed=1)
    store.record_evaluation(evaluation(k=0), commit=False)
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        store.record_generation(0, b"", {})  # a generation recorded inside an open burst: a bug, not the disk
    store.close()


def test_a_run_that_could_not_be_created_lets_go_of_its_folder(tmp_path):
    with pytest.raises(TypeError) as failed:  # kept, as a notebook keeps its last traceback
        RunStore.create(tmp_path, experiment={"x": object()}, seed=1)
    RunStore.create(tmp_path, experiment={}, seed=1).close()  # the writer lock was let go
    assert failed.type is TypeError


def test_a_run_database_is_in_wal_mode_before_it_appears(tmp_path, monkeypatch):
    """A kill -9 while a new run's database switched to WAL (just after it appeared under its name)
    left a rollback journal that only a writer can roll back: the report and --resume (which reads
    the run first) refused it as 'not a nestplast database (attempt to write a readonly
    database)'. The database is in WAL mode when it appears, and nothing else is left over."""
    import os

    seen = []
    replace = os.replace

    def watched(source, target):
        replace(source, target)
        seen.append(open(target, "rb").read(20)[18:20])  # the header's file format bytes: 2, 2 is WAL

    monkeypatch.setattr(os, "replace", watched)
    RunStore.create(tmp_path, experiment={}, seed=1).close()
    assert seen == [b"\x02\x02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".writer.lock", "results.sqlite"]
    RunStore.open(tmp_path, read_only=True).close()


def test_a_candidate_with_trials_still_to_come_is_not_the_best(tmp_path):
    """A report read while the run goes on (or after a kill) named as the best rule a candidate
    of the generation in progress with one lucky trial of two recorded, its 'loss' that trial's."""
    with RunStore.create(tmp_path, experiment={"trials": {"n": 2}}, seed=1) as store:
        for trial, loss in enumerate([5.0, 7.0]):
            store.record_evaluation(evaluation(g=0, k=0, j=trial, loss=loss))
        store.record_evaluation(evaluation(g=1, k=3, j=0, loss=0.5))  # its trial 1 is still running
        best = store.best_candidates(2)
        assert [(b["generation"], b["candidate"], b["loss"], b["trials"]) for b in best] == [(0, 0, 6.0, 2)]
        store.record_evaluation(evaluation(g=1, k=3, j=1, loss=1.5))
        assert [(b["generation"], b["candidate"], b["loss"]) for b in store.best_candidates(1)] == [(1, 3, 1.0)]


def copy_of_a_running_run(base: Path) -> None:
    """``base/run``, a run of one generation (3 evaluations) and 2 evaluations of the next, and
    ``base/copy`` of it taken while it was open (as cp -a while the run goes on): the copy's last
    results (the 2 after the generation's checkpoint) are in its -wal file only."""
    import shutil

    store = RunStore.create(base / "run", experiment={}, seed=1)
    for k in range(3):
        store.record_evaluation(evaluation(k=k))
    store.record_generation(0, b"state", {"best_loss": 0.25})  # checkpointed into the file
    for k in range(2):  # committed, not checkpointed
        store.record_evaluation(evaluation(g=1, k=k))
    shutil.copytree(base / "run", base / "copy")
    store.close()


def test_a_read_only_copy_of_a_running_run_reads_its_wal_file(tmp_path):
    """A read-only copy of a run that was killed or goes on (cp -a, a colleague's folder) keeps its
    last results in results.sqlite-wal: it reported none of them without a word (the database was
    opened immutable, which ignores that file). The folder's writability is given, as tests run as
    root, for whom every folder is writable."""
    import warnings

    copy_of_a_running_run(tmp_path)
    copy = tmp_path / "copy" / "results.sqlite"
    assert (tmp_path / "copy" / "results.sqlite-wal").stat().st_size > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RunStore(copy, RunStore._connect_read_only(copy, writable=False)) as found:
            assert found.counts() == {"generations": 1, "evaluations": 5, "failed": 0, "blowups": 0}
    # without its -shm file the -wal file cannot be read there: said, with the way out
    (tmp_path / "copy" / "results.sqlite-shm").unlink()
    with pytest.warns(UserWarning, match=r"cannot read .*results\.sqlite-wal in this read-only folder.*"
                                         r"copy the folder somewhere writable"):
        db = RunStore._connect_read_only(copy, writable=False)
    with RunStore(copy, db) as found:
        assert found.counts()["evaluations"] == 3  # up to the last generation's checkpoint
    with warnings.catch_warnings():  # once per file: a report opening the store again said it 4 times
        warnings.simplefilter("error")
        RunStore._connect_read_only(copy, writable=False).close()
    with warnings.catch_warnings():  # once the run is closed and checkpointed, nothing is left out
        warnings.simplefilter("error")
        db = RunStore._connect_read_only(tmp_path / "run" / "results.sqlite", writable=False)
        with RunStore(tmp_path / "run" / "results.sqlite", db) as found:
            assert found.counts()["evaluations"] == 5


def test_a_read_only_copy_is_read_with_its_wal_by_a_user_who_cannot_write_there():
    """The same as a user without write permission (tests run as root, for whom every folder is
    writable): nobody, through setpriv, reads a copy whose folder and files are read-only."""
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to read as another user")
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                            "import nestplast.store"], capture_output=True, text=True, cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot import nestplast from this checkout: {probe.stderr.strip()[-200:]}")
    base = Path(tempfile.mkdtemp(prefix="nestplast-ro-", dir="/tmp"))  # pytest's own tmp is root's alone
    try:
        base.chmod(0o755)
        copy_of_a_running_run(base)
        for path in (base / "copy").iterdir():
            path.chmod(0o444)
        (base / "copy").chmod(0o555)
        code = ("import sys; from nestplast.store import RunStore\n"
                "with RunStore.open(sys.argv[1], read_only=True) as store: print(store.counts())")
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-W",
                              "error", "-c", code, str(base / "copy")], capture_output=True, text=True, cwd="/")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str({"generations": 1, "evaluations": 5, "failed": 0, "blowups": 0}), out.stdout
    finally:
        (base / "copy").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_a_run_whose_thetas_name_other_parameters_is_refused_not_misread(tmp_path):
    """Before 0.3 a Taylor mask's coefficients were sorted by term: a run of the mask
    post:100,post:011 recorded theta as (th_post_011, th_post_100), which this version would report
    and resume as (th_post_100, th_post_011), the coefficients swapped without a word."""
    from nestplast import experiment
    from nestplast.experiment import ExperimentError, run_experiment

    exp = experiment.parse({"rule": {"name": "taylor", "mask": "post:100,post:011", "fixed": {"eta": 1.0}}}, "<test>")
    assert exp.layout().names == ["IE.th_post_100", "IE.th_post_011"]
    for name, order in (("now", exp.layout().names), ("then", ["IE.th_post_011", "IE.th_post_100"])):
        with RunStore.create(tmp_path / name, experiment=exp.to_dict(), seed=exp.seed, meta={"nestplast": "0.2.0"}) as s:
            s.record_evaluation(evaluation(theta=[1.0, -0.5], params=dict(zip(order, [1.0, -0.5]))))
    with RunStore.open(tmp_path / "now", read_only=True) as store:
        assert run_experiment(store.experiment(), tmp_path / "now").layout().names == exp.layout().names
    with pytest.raises(ExperimentError, match=r"its evaluations hold the parameters in the order IE.th_post_011, "
                                              r"IE.th_post_100, this nestplast reads them in the order IE.th_post_100, "
                                              r"IE.th_post_011 .* report or resume it with nestplast 0.2.0"):
        with RunStore.open(tmp_path / "then", read_only=True) as store:
            run_experiment(store.experiment(), tmp_path / "then")


def test_a_run_stopped_before_it_recorded_anything_says_so_on_resume(tmp_path):
    """Ctrl-C 0.06 s into run_search left the writer lock and results.sqlite.draft: resume=True said
    only "holds no nestplast run"; a new run into the folder is the way on."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.sqlite.draft").write_bytes(b"")
    (run / ".writer.lock").write_text("")
    with pytest.raises(StoreError, match="a run began here and was stopped before it recorded anything: start it "
                                         "again without resume"):
        RunStore.open(run)
    with pytest.raises(StoreError) as plain:
        RunStore.open(tmp_path)  # a folder that never held a run: nothing more to say
    assert "began here" not in str(plain.value)
    RunStore.check_free(run)  # a new run takes the folder as it is
    with RunStore.create(run, experiment={}, seed=1):
        pass


def _version_1_run(run_dir: Path) -> None:
    """A run as schema version 1 recorded it: no stop reason."""
    RunStore.create(run_dir, experiment={"name": "old"}, seed=1).close()
    db = sqlite3.connect(run_dir / "results.sqlite")
    db.execute("ALTER TABLE run DROP COLUMN stop")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_a_version_1_run_is_reported_and_resumed(tmp_path):
    """A report of it read a stop column it never had: a raw sqlite3 traceback."""
    _version_1_run(tmp_path / "old")
    with RunStore.open(tmp_path / "old", read_only=True) as store:
        assert store.stop() is None and store.experiment() == {"name": "old"}
    with RunStore.open(tmp_path / "old") as store:  # brought up to the current schema
        store.record_stop({"maxiter": 3})
    with RunStore.open(tmp_path / "old", read_only=True) as store:
        assert store.stop() == {"maxiter": 3}


def test_a_version_1_run_is_upgraded_in_one_transaction(tmp_path):
    """Killed between adding the column and raising the version, the next resume added the column
    again: "duplicate column name: stop"."""
    _version_1_run(tmp_path / "old")
    killed = subprocess.run([sys.executable, "-c", """if True:
        import os, sqlite3, sys
        from nestplast.store import RunStore
        real = RunStore._connect
        def connect(path):  # the process dies as the version is raised, after the new column
            db = real(path)
            db.set_trace_callback(lambda s: s.startswith("PRAGMA user_version=") and os._exit(9))
            return db
        RunStore._connect = staticmethod(connect)
        RunStore.open(sys.argv[1])
        """, str(tmp_path / "old")], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    with RunStore.open(tmp_path / "old") as store:
        assert store.stop() is None and store.experiment() == {"name": "old"}
        store.record_stop({"maxiter": 1})


def test_a_foreign_database_is_refused_unchanged(tmp_path):
    """Resuming in a folder whose results.sqlite is another program's database turned it to WAL
    mode before refusing it."""
    (tmp_path / "theirs").mkdir()
    path = tmp_path / "theirs" / "results.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a nestplast database"):
        RunStore.open(tmp_path / "theirs")
    assert path.read_bytes() == before
    assert not path.with_name("results.sqlite-wal").exists()


def test_a_resume_records_its_experiment_and_metadata_together(tmp_path):
    """Two UPDATEs: a kill between them kept the new experiment with the old metadata."""
    RunStore.create(tmp_path / "run", experiment={"v": 1}, seed=1, meta={"m": 1}).close()
    statements = []
    with RunStore.open(tmp_path / "run") as store:
        store._db.set_trace_callback(statements.append)
        store.record_resumed({"v": 2}, meta={"m": 2})
        store._db.set_trace_callback(None)
        assert store.experiment() == {"v": 2} and store.meta() == {"m": 2}
    assert len([s for s in statements if s.startswith("UPDATE")]) == 1


def test_an_evaluation_recorded_with_commit_is_committed_after_a_pending_burst(tmp_path):
    """Recorded with commit=True while a burst (commit=False) was pending, it joined the burst's
    transaction and waited for commit(): not "committed on return"."""
    with RunStore.create(tmp_path / "run", experiment={}, seed=1) as store:
        store.record_evaluation(evaluation(k=0), commit=False)
        store.record_evaluation(evaluation(k=1))
        assert read_store(tmp_path / "run", RunStore.counts, read_only=True)["evaluations"] == 2


def test_the_source_digest_follows_the_code(tmp_path):
    """An editable install changed by a git pull keeps its version number: a run resumed on other
    code said nothing. The digest of the source changes with any file, and not with caches."""
    from nestplast.runs import source_digest

    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = source_digest.__wrapped__((tmp_path / "pkg",))
    (tmp_path / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"cache")
    assert source_digest.__wrapped__((tmp_path / "pkg",)) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert source_digest.__wrapped__((tmp_path / "pkg",)) != before
