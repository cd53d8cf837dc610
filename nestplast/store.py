"""The run store: every evaluation and the optimiser's state after every generation, in SQLite.

``RUN_DIR/results.sqlite`` has three tables: ``run`` (the experiment, seed, metadata and, once
the run has ended, why it stopped),
``evaluations`` (one row per (generation, candidate, trial), committed the moment it arrives, or
with the others that arrived at the same moment) and
``generations`` (the pickled optimiser and a summary, written in one transaction, so a generation
is either complete or absent). After ``kill -9`` at any moment nothing committed is lost: the
journal is SQLite's write-ahead log, and a killed process cannot lose a committed transaction
(only a power cut could, with ``synchronous=NORMAL``; we use FULL to be safe against that too).
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import pickle
import shlex
import sqlite3
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

from .errors import UserError
from .tasks import FAILURES, STATUSES, Evaluation

SCHEMA_VERSION = 2  # 2: run.stop
DB_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    experiment TEXT NOT NULL,
    seed INTEGER NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL,
    stop TEXT
);
CREATE TABLE evaluations (
    generation INTEGER NOT NULL,
    candidate INTEGER NOT NULL,
    trial INTEGER NOT NULL,
    theta TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    loss REAL,
    status TEXT NOT NULL,
    error TEXT,
    wall_time_s REAL NOT NULL,
    rank INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (generation, candidate, trial)
);
CREATE TABLE generations (
    generation INTEGER PRIMARY KEY,
    optimizer BLOB NOT NULL,
    summary TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class StoreError(UserError):
    """A run directory or database that cannot be used as asked, with the reason."""


def _encode(value: Any) -> str:
    """JSON that keeps NaN and infinities (JSON has none): they become the strings "NaN", "Infinity"."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "tolist"):  # numpy scalars and arrays
            return clean(v.tolist())
        return v
    return json.dumps(clean(value))


_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _decode(text: str) -> Any:
    def restore(v):
        if isinstance(v, str) and v in _SPECIAL:
            return _SPECIAL[v]
        if isinstance(v, dict):
            return {k: restore(x) for k, x in v.items()}
        if isinstance(v, list):
            return [restore(x) for x in v]
        return v
    return restore(json.loads(text))


_COLUMNS = ("generation", "candidate", "trial", "theta", "params", "seed", "metrics", "loss", "status", "error",
            "wall_time_s", "rank", "created")


def as_stored(value: Any) -> Any:
    """``value`` as the store gives it back (tuples as lists), to compare with what it holds."""
    return _decode(_encode(value))


def _row(e: Evaluation) -> tuple:
    loss = None if e.loss is None or math.isnan(e.loss) else float(e.loss)  # SQLite stores NaN as NULL anyway
    return (e.generation, e.candidate, e.trial, _encode(list(e.theta)), _encode(e.params), int(e.seed),
            _encode(e.metrics), loss, e.status, e.error, float(e.wall_time_s), int(e.rank), float(e.created))


def _evaluation(row: sqlite3.Row) -> Evaluation:
    return Evaluation(generation=row["generation"], candidate=row["candidate"], trial=row["trial"],
                      theta=_decode(row["theta"]), params=_decode(row["params"]), seed=row["seed"],
                      metrics=_decode(row["metrics"]), loss=math.nan if row["loss"] is None else row["loss"],
                      status=row["status"], error=row["error"], wall_time_s=row["wall_time_s"], rank=row["rank"],
                      created=row["created"])


WRITER_LOCK = ".writer.lock"
# SQLite's primary result codes for a disk or folder that refuses a write: the user's to fix
_DISK_ERRORS = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}


def _is_disk_error(err: sqlite3.Error) -> bool:
    return (getattr(err, "sqlite_errorcode", 0) & 0xFF) in _DISK_ERRORS


def _lock_writer(run_dir: Path):
    """The run's writer lock (an flock, released when the process ends however it ends), or a
    StoreError naming the process that holds it: two processes writing one run (a resume started
    while the run still goes on, two SLURM jobs overlapping) would crash one of them mid-run."""
    try:
        lock = open(run_dir / WRITER_LOCK, "a+")
    except OSError as err:
        raise StoreError(f"{run_dir}: a run cannot be written there ({err.strerror})") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EAGAIN, errno.EACCES):
            return lock  # a file system without locks (some network mounts): go on unlocked, as before
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise StoreError(f"{run_dir} is being written by {holder}: wait for that run to end (or stop it) before "
                         "writing to it again, or give this run another folder; `nestplast report` (or "
                         "RunStore.open(..., read_only=True)) reads it meanwhile") from None
    lock.truncate(0)
    lock.write(f"process {os.getpid()} on {os.uname().nodename}")
    lock.flush()
    return lock


class RunStore:
    """A run's SQLite database. Only rank 0 writes; one process at a time (a writer lock).
    A context manager: ``with RunStore.open(run_dir, read_only=True) as store: ...`` closes it."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock=None):
        self.path = path
        self._db = connection
        self._lock = lock
        self._closed = False  # last: a store that __init__ left half-made is not warned about

    def __del__(self, _warn=warnings.warn) -> None:  # _warn: still there while the interpreter shuts down
        # as Python's files and sockets: a store left to the garbage collector is a ResourceWarning
        # (ignored by default; the tests make it an error), and closes no sooner than it did before
        if getattr(self, "_closed", True) is False:
            _warn(f"RunStore {self.path} was not closed: close it (or open it in a with block)",
                  ResourceWarning, source=self)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # autocommit; explicit transactions
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    @classmethod
    def create(cls, run_dir: str | Path, experiment: dict, seed: int, meta: dict | None = None) -> RunStore:
        """A new run in ``run_dir``; refuses a directory that already holds a run."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_writer(run_dir)  # before the check: two processes cannot both find the folder free
        try:
            cls.check_free(run_dir, _held=True)
        except StoreError:
            lock.close()
            raise
        try:
            cls._build(path, experiment, seed, meta)
            return cls(path, cls._connect(path), lock)
        except sqlite3.OperationalError as err:
            lock.close()
            if not _is_disk_error(err):
                raise
            raise StoreError(f"{run_dir}: cannot create the run ({err}); nothing was recorded: make room (or fix "
                             "the folder) and start it again") from None
        except BaseException:
            lock.close()  # the folder is free again for the next try
            raise

    @staticmethod
    def check_free(run_dir: str | Path, _held: bool = False) -> None:
        """Refuse (StoreError) a ``run_dir`` that already holds a run (``_held``: this process holds
        its writer lock, as :meth:`create` does)."""
        path = Path(run_dir) / DB_NAME
        if not path.exists():
            return
        if not _held:  # a run going on there: named as such, not advised to be resumed (the lock refused that)
            _lock_writer(Path(run_dir)).close()
        kind = stored_kind(run_dir)
        if kind in RUN_KINDS and kind != "recheck":  # "--resume" of a search's folder given to filter was refused next
            what, again = RUN_KINDS[kind]
            raise StoreError(f"{run_dir} already holds a run, {what} ({path}); continue it with "
                             f"{again.format(out=shlex.quote(str(run_dir)))} (in Python: resume=True), or choose another --out "
                             "(another folder)")
        raise StoreError(f"{run_dir} already holds a run ({path}); continue it with --resume (in Python: "
                         "resume=True), or choose another --out (another folder)")

    @staticmethod
    def check_no_other_files(run_dir: str | Path) -> None:
        """Refuse (StoreError) a folder for a new run that holds files of something else: the run's
        own (its database, the report's plots, the rule's copy) would mix with them, and a report
        writes over files of the same names."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            return
        # what a run killed while it was being created leaves is its own
        others = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith((DB_NAME, WRITER_LOCK)))
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise StoreError(f"{run_dir} holds other files ({shown}) and no run: give a new run a folder of its "
                             f"own, new or empty (e.g. --out {shlex.quote(str(run_dir / 'run1'))})")

    @staticmethod
    def _build(path: Path, experiment: dict, seed: int, meta: dict | None) -> None:
        # Built under another name and renamed: a run's database never exists without its schema,
        # whenever the process is killed (a half-made file would block both --resume and a new run).
        draft = path.with_name(path.name + ".draft")
        for suffix in ("", "-journal", "-wal", "-shm"):  # a stale journal would be replayed
            draft.with_name(draft.name + suffix).unlink(missing_ok=True)
        with closing(sqlite3.connect(draft, isolation_level=None)) as db:
            # WAL before the rename (the mode is kept in the file): switched after it, a kill -9
            # during the switch left a rollback journal that only a writer can roll back, and the
            # report and --resume (which reads the run first) refused the run as "not a nestplast
            # database (attempt to write a readonly database)"
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO run VALUES (1, ?, ?, ?, ?, NULL)",
                       (_encode(experiment), int(seed), _encode(meta or {}), time.time()))
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        os.replace(draft, path)

    @classmethod
    def open(cls, run_dir: str | Path, *, read_only: bool = False) -> RunStore:
        """An existing run: to resume it, or ``read_only`` to report on it (also from a read-only
        copy, or while the run goes on)."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if run_dir.is_file():  # e.g. the run's results.sqlite itself, or an experiment file
            raise StoreError(f"{run_dir} is a file; a run is the folder that holds {DB_NAME}")
        if not run_dir.is_dir():
            raise StoreError(f"no run directory {run_dir}")
        if not path.is_file():
            # e.g. infer-demo's --out, whose fit is in fit/: name the runs one level down
            inside = sorted(str(p.parent) for p in run_dir.glob(f"*/{DB_NAME}"))
            # a run interrupted while its store was being made: nothing was recorded, nothing to resume
            begun = (path.with_name(path.name + ".draft").exists() or (run_dir / WRITER_LOCK).exists()) and not inside
            raise StoreError(f"{run_dir} holds no nestplast run (no {DB_NAME})"
                             + (f"; the folders in it that do: {', '.join(inside)}" if inside else "")
                             + ("; a run began here and was stopped before it recorded anything: start it again "
                                "without resume (it takes the folder as it is)" if begun else ""))
        if not read_only and not (os.access(path, os.W_OK) and os.access(run_dir, os.W_OK)):
            raise StoreError(f"{run_dir} is read-only: a run cannot be continued there (copy it somewhere writable)")
        lock = None if read_only else _lock_writer(run_dir)
        try:
            return cls(path, cls._connect_checked(path, read_only), lock)
        except BaseException:
            if lock is not None:
                lock.close()
            raise

    @classmethod
    def _connect_checked(cls, path: Path, read_only: bool) -> sqlite3.Connection:
        """A connection to ``path`` once it is known to be a nestplast database (brought up to the
        current schema unless ``read_only``)."""
        # checked over a read-only connection first: opening to write sets WAL mode, which changed
        # another program's database before it was refused
        db, version = cls._read_checked(path, writable=None if read_only else True)
        if read_only:
            return db
        db.close()
        db = cls._connect(path)
        if version == 1:  # a run made before the stop reason was recorded
            # one transaction: killed between the two, the next resume added the column again
            db.execute("BEGIN IMMEDIATE")
            db.execute("ALTER TABLE run ADD COLUMN stop TEXT")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        return db

    @classmethod
    def _read_checked(cls, path: Path, writable: bool | None) -> tuple[sqlite3.Connection, int]:
        """``path`` opened to read (see :meth:`_connect_read_only`) and its schema version, or a
        StoreError that says what it is instead: another file, another program's database, or a
        damaged run."""
        damaged = (f"{path} is damaged ({{}}): it cannot be reported or continued; a copy of the run folder made "
                   f"before the damage can (SQLite's own `sqlite3 {path.name} .recover` may save part of its rows)")
        db = None
        try:
            db = cls._connect_read_only(path, writable)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as err:
            if db is not None:
                db.close()
            if "malformed" in str(err):  # a nestplast database or not, its header is broken
                raise StoreError(damaged.format(err)) from None
            raise StoreError(f"{path} is not a nestplast database ({err})") from None
        if not {"run", "evaluations", "generations"} <= tables or version not in (1, SCHEMA_VERSION):
            db.close()
            raise StoreError(f"{path} is not a nestplast database of schema version {SCHEMA_VERSION}")
        # a page broken inside: the report ended in a traceback, and a resume ran a whole generation
        # before it failed on reading the store back
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as err:
            check = str(err)
        if check != "ok":
            db.close()
            raise StoreError(damaged.format(check))
        return db, version

    @staticmethod
    def _connect_read_only(path: Path, writable: bool | None = None) -> sqlite3.Connection:
        """``path`` opened to read; ``writable``: whether its folder is (asked of the system unless
        given)."""
        # mode=ro reads a WAL database's -wal file (its last results) where the folder is writable,
        # or where the -wal and -shm files exist already (a read-only copy of a killed or running
        # run); elsewhere only immutable=1 opens it, and that ignores the -wal file.
        writable = os.access(path.parent, os.W_OK) if writable is None else writable
        wal = path.with_name(path.name + "-wal")
        if writable or (wal.exists() and path.with_name(path.name + "-shm").exists()):
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # mode=ro fails on first use
            except sqlite3.OperationalError:
                db.close()
                if writable:
                    raise
            else:
                db.row_factory = sqlite3.Row
                return db
        if wal.exists() and wal.stat().st_size > 0 and wal not in _WARNED_UNREAD:
            _WARNED_UNREAD.add(wal)  # once per file: a report opens the store several times
            warnings.warn(f"SQLite cannot read {wal} in this read-only folder, so the results recorded last are "
                          "left out: copy the folder somewhere writable (cp -a) and read the copy", stacklevel=4)
        db = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        db.row_factory = sqlite3.Row
        return db

    def close(self) -> None:
        """Commit what is pending and let go of the database and the writer lock."""
        self._closed = True
        try:
            self.commit()  # what an interrupted burst recorded (Ctrl-C, SIGTERM) is kept
        finally:  # also when that commit fails (a full disk): the run is let go of
            self._db.close()
            if self._lock is not None:
                self._lock.close()  # releases the writer lock
                self._lock = None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write to the database; one the disk refuses (full, read-only, an I/O error) becomes a
        StoreError that says what is kept and how to go on, instead of a traceback in the middle of
        a run (a full disk on a cluster is the user's to fix, not a bug)."""
        try:
            yield
        except sqlite3.OperationalError as err:
            if not _is_disk_error(err):  # a programming error stays one, with its traceback
                raise
            if self._db.in_transaction:
                with suppress(sqlite3.Error):  # the refusal is the news, not a failed rollback
                    self._db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot record ({err}); everything committed before is kept: make room "
                             "(or fix the folder) and continue the run with --resume") from None

    # ------------------------------------------------------------------ run

    def experiment(self) -> dict:
        """The run's experiment as recorded (every option resolved)."""
        data = _decode(self._db.execute("SELECT experiment FROM run").fetchone()[0])
        # recorded before network.drive existed, a run was driven by a poisson_generator (the
        # default is now the neuron's own drive): keep resuming, re-filtering, reporting it as it ran
        data.get("network", {}).setdefault("drive", "poisson_generator")
        return data

    def seed(self) -> int:
        """The run's seed."""
        return self._db.execute("SELECT seed FROM run").fetchone()[0]

    def meta(self) -> dict:
        """The run's metadata as recorded when it began (e.g. nestplast's version, ranks, mode)."""
        return _decode(self._db.execute("SELECT meta FROM run").fetchone()[0])

    def record_stop(self, reason: dict) -> None:
        """Why the run stopped (the strategy's stop dictionary, e.g. pycma's ``{"maxiter": 12}``)."""
        with self._writing():
            self._db.execute("UPDATE run SET stop=?", (_encode(reason),))

    def record_resumed(self, experiment: dict, meta: dict | None = None) -> None:
        """The run goes on: ``experiment`` is what it now runs (when to stop may have changed), and
        it has not stopped. Kept, a later plain ``--resume`` (after a crash) stopped at once at the
        first run's ``max_generations``, and a report read while the run went on, or after it was
        killed, gave the first run's stop reason. ``meta``: its metadata, where that changes too."""
        with self._writing():
            # one statement: a kill between two kept the new experiment beside the old metadata
            self._db.execute("UPDATE run SET experiment=?, stop=NULL, meta=COALESCE(?, meta)",
                             (_encode(experiment), None if meta is None else _encode(meta)))

    def stop(self) -> dict | None:
        """Why the run stopped, or None while it has not (or was killed)."""
        row = self._db.execute("SELECT * FROM run").fetchone()
        # a run of schema version 1, read only, has no stop column: it recorded no reason
        return None if row is None or "stop" not in row.keys() or row["stop"] is None else _decode(row["stop"])

    # ------------------------------------------------------------------ evaluations

    def record_evaluation(self, evaluation: Evaluation, replace: bool = False, *, commit: bool = True) -> None:
        """Record one evaluation, committed on return, or with ``commit=False`` at the next
        :meth:`commit` (several results that arrived together, one disk sync). The same
        (generation, candidate, trial) twice is an error unless ``replace`` (a failed evaluation
        retried)."""
        if evaluation.status not in STATUSES:
            raise StoreError(f"unknown status {evaluation.status!r}; expected one of {', '.join(STATUSES)}")
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with self._writing():
                if not commit and not self._db.in_transaction:
                    self._db.execute("BEGIN")
                self._db.execute(f"{verb} INTO evaluations ({', '.join(_COLUMNS)}) "
                                 f"VALUES ({', '.join('?' * len(_COLUMNS))})", _row(evaluation))
        except sqlite3.IntegrityError:
            raise StoreError(f"evaluation (generation {evaluation.generation}, candidate {evaluation.candidate}, "
                             f"trial {evaluation.trial}) is recorded already") from None
        if commit:  # with the burst before it, where one was pending: "committed on return" is kept
            self.commit()

    def commit(self) -> None:
        """Commit the evaluations recorded with ``commit=False`` (nothing to do if none)."""
        if self._db.in_transaction:
            with self._writing():
                self._db.execute("COMMIT")

    def get_evaluation(self, generation: int, candidate: int, trial: int) -> Evaluation | None:
        """The evaluation of (``generation``, ``candidate``, ``trial``), or None if not recorded."""
        row = self._db.execute("SELECT * FROM evaluations WHERE generation=? AND candidate=? AND trial=?",
                               (generation, candidate, trial)).fetchone()
        return None if row is None else _evaluation(row)

    def recorded_parameters(self) -> list[str]:
        """The names the run's evaluations record theta's entries under, in theta's order (its first
        evaluation's; [] before any)."""
        row = self._db.execute("SELECT * FROM evaluations ORDER BY generation, candidate, trial LIMIT 1").fetchone()
        return [] if row is None else list(_evaluation(row).params)

    def evaluations(self, generation: int | None = None, status: str | None = None, *,
                    candidate: int | None = None) -> list[Evaluation]:
        """Every evaluation (of ``generation``, with ``status``, of ``candidate``), by generation,
        candidate and trial."""
        query, args = "SELECT * FROM evaluations WHERE 1=1", []
        if generation is not None:
            query, args = query + " AND generation=?", args + [generation]
        if candidate is not None:
            query, args = query + " AND candidate=?", args + [candidate]
        if status is not None:
            query, args = query + " AND status=?", args + [status]
        rows = self._db.execute(query + " ORDER BY generation, candidate, trial", args)
        return [_evaluation(r) for r in rows]

    def best_candidates(self, n: int = 1) -> list[dict]:
        """The ``n`` candidates with the lowest mean loss over their trials (every one of the
        experiment's ``trials.n`` recorded, and ok). A candidate still being evaluated (a report
        of a running run) or cut short by a kill is not one yet: the mean of its first trials
        is not its loss."""
        trials = self.experiment().get("trials")
        trials = trials.get("n") if isinstance(trials, dict) else None  # a closed-loop fit stores a count of its own
        rows = self._db.execute(
            "SELECT generation, candidate, AVG(loss) AS loss, COUNT(*) AS trials, MIN(theta) AS theta "
            "FROM evaluations GROUP BY generation, candidate "
            "HAVING SUM(status != 'ok') = 0 AND COUNT(loss) = COUNT(*) AND (? IS NULL OR COUNT(*) = ?) "
            "ORDER BY loss LIMIT ?", (trials, trials, n))
        return [{"generation": r["generation"], "candidate": r["candidate"], "loss": r["loss"],
                 "trials": r["trials"], "theta": _decode(r["theta"])} for r in rows]

    def counts(self) -> dict:
        """Generations, evaluations, and of these the failures (error, timeout, NaN) and blow-ups."""
        failures = ", ".join(f"'{s}'" for s in FAILURES)
        evaluations, failed, blowups = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(status IN ({failures})), 0), COALESCE(SUM(status = 'blowup'), 0) "
            "FROM evaluations").fetchone()
        generations = self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        return {"generations": generations, "evaluations": evaluations, "failed": failed, "blowups": blowups}

    def candidates_evaluated(self, up_to_generation: int) -> int:
        """The candidates (not the mean, not each trial) of generations 0 .. ``up_to_generation``:
        what pycma's ``countevals`` and ``max_evaluations`` count."""
        return self._db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT generation, candidate FROM evaluations "
                                "WHERE candidate >= 0 AND generation <= ?)", (up_to_generation,)).fetchone()[0]

    # ------------------------------------------------------------------ generations

    def record_generation(self, generation: int, optimizer_state: bytes, summary: dict) -> None:
        """The optimiser after ``generation`` and its summary, in one transaction."""
        try:
            with self._writing():
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)",
                                 (generation, sqlite3.Binary(optimizer_state), _encode(summary), time.time()))
                self._db.execute("COMMIT")
                # into the database file itself: a copy of results.sqlite alone (off a cluster, of a
                # killed run) held none of the run, all of it in the -wal file until the run ended
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.IntegrityError:
            self._db.execute("ROLLBACK")
            raise StoreError(f"generation {generation} is recorded already") from None

    def last_complete_generation(self) -> int | None:
        """The last generation recorded with its optimiser, or None before the first."""
        return self._db.execute("SELECT MAX(generation) FROM generations").fetchone()[0]

    def load_strategy(self, generation: int) -> Any:
        """The strategy as it was after ``generation``, unpickled (what a resumed run goes on with)."""
        row = self._db.execute("SELECT optimizer FROM generations WHERE generation=?", (generation,)).fetchone()
        if row is None:
            raise StoreError(f"no strategy recorded after generation {generation} in {self.path}")
        return pickle.loads(bytes(row[0]))

    def generations(self) -> list[dict]:
        """Every generation's summary, with its ``generation`` and ``created`` time."""
        rows = self._db.execute("SELECT generation, summary, created FROM generations ORDER BY generation")
        return [{"generation": r["generation"], **_decode(r["summary"]), "created": r["created"]} for r in rows]


_WARNED_UNREAD: set[Path] = set()  # -wal files warned of as unread in this process


RUN_KINDS = {  # a run's kind (its metadata): what it is, and the command that goes on with it
    "search": ("a search", "python -m nestplast.search --out {out} --resume"),
    "filter": ("a filter run (rule families)", "python -m nestplast filter --out {out} --resume"),
    "infer": ("an inference", "python -m nestplast infer DATA --out {out} --resume (with the fit's other options)"),
    "recheck": ("a filter run's re-check", "python -m nestplast filter RUN_DIR --recheck N (it is RUN_DIR/recheck)"),
}


def note_what_is_kept(err: BaseException, run_dir: str | Path | None) -> None:
    """Add to a Ctrl-C (or another error) that ends a run called from Python (its traceback all a
    notebook shows; the command line prints its own line) where the run's complete generations
    are and how to go on."""
    if run_dir is None:
        err.add_note("nestplast: out=None ran in a temporary folder, now removed; give out=FOLDER to keep what a run "
                     "has done and go on from it with resume=True")
    elif (Path(run_dir) / DB_NAME).is_file():
        try:
            with RunStore.open(run_dir, read_only=True) as store:
                none_yet = store.last_complete_generation() is None
        except Exception:  # the error may be the store's own (a disk fault): it, not this, is the news
            return
        err.add_note(f"nestplast: the run is in {run_dir}, no generation complete yet; the same call with resume=True "
                     "starts it there" if none_yet else
                     f"nestplast: the run's complete generations are kept in {run_dir}; the same call with "
                     "resume=True goes on from the last one")


def software_since(meta: dict) -> list[tuple[int, dict[str, str]]]:
    """The software versions a run ran with (its ``meta``), each from the generation it began at:
    [(0, the first), (G, another after a resume at generation G), ...]; [] where none were recorded."""
    if "versions" not in meta:
        return []
    return [(0, meta["versions"]), *((entry["generation"], entry["versions"]) for entry in meta.get("versions_from", []))]


def stored_kind(run_dir: str | Path) -> str | None:
    """The kind of the run in ``run_dir`` (a key of :data:`RUN_KINDS`), None where it cannot be read
    (no run, a run made before runs recorded their kind, a damaged store)."""
    try:
        with RunStore.open(run_dir, read_only=True) as store:
            return store.meta().get("kind")
    except (StoreError, sqlite3.Error):
        return None


def check_same_kind(stored: str | None, kind: str, where: Path) -> None:
    """Refuse to resume another command's run (a search on a filter's, ...): each reads the other's
    evaluations as its own. Runs made before runs recorded their kind say nothing (None)."""
    if stored is not None and stored != kind:
        what, again = RUN_KINDS.get(stored, (f"a {stored} run", "the command that made it"))
        raise StoreError(f"cannot resume {where} as {RUN_KINDS[kind][0]}: it holds {what}; go on with "
                         f"{again.format(out=shlex.quote(str(where)))}")


def check_same_parameters(store: RunStore, names: Sequence[str], where: Path) -> None:
    """Refuse to resume a run whose evaluations name the entries of theta otherwise than ``names``:
    every stored theta, and CMA-ES's state, would be read as other parameters (a mask's terms in
    another order; a Taylor mask's coefficients were sorted until they followed the mask)."""
    recorded = store.recorded_parameters()
    if recorded and recorded != list(names):
        raise StoreError(f"cannot resume {where}: its evaluations hold the parameters in the order "
                         f"{', '.join(recorded)}, this resume's would be {', '.join(names)}, so each recorded theta "
                         "would be read as other values: give the mask's terms in the run's order (nestplast "
                         f"{store.meta().get('nestplast', 'of an earlier version')} began it; before 0.3 it "
                         "sorted them), or start a new run with another --out")
