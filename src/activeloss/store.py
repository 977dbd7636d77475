"""The store: one SQLite database per output folder, the single source of truth.

It holds the settings and the task, one row per (strategy, trial) run, one row per
trained cycle with its metrics, every queried item with its score and rank, and every
label with the cycle that first used it and where it came from.  A learner writes its
steps one transaction each, in this order, so a crash between any two leaves a state it
can continue from:

1. **fit** - the cycle row (labeled count, train seconds), after the model's checkpoint;
2. **evaluation** - the cycle's metrics and the small arrays the figures need;
3. **query** - the ranked batch with its scores: until labels arrive it is *pending*
   (queried, not yet labeled), and another process may supply them;
4. **teach** - labels, for the next cycle (``PRIMARY KEY (run_id, item)``: a label is never
   lost or recorded twice).

Targets are stored as JSON values the task defines (a class index, a real number...).
It imports no model code.
"""
from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    strategy TEXT NOT NULL,
    trial INTEGER NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',
    UNIQUE (strategy, trial)
);
CREATE TABLE IF NOT EXISTS cycles (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    labeled INTEGER NOT NULL,
    train_seconds REAL NOT NULL,
    query_seconds REAL NOT NULL,
    finished_at REAL NOT NULL,
    eval_seconds REAL NOT NULL DEFAULT 0,
    diagnostics_seconds REAL NOT NULL DEFAULT 0,
    wall_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, cycle)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, cycle, name)
);
CREATE TABLE IF NOT EXISTS queries (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    item INTEGER NOT NULL,
    score REAL,
    PRIMARY KEY (run_id, cycle, rank)
);
CREATE TABLE IF NOT EXISTS labels (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    item INTEGER NOT NULL,
    cycle INTEGER NOT NULL,
    label NOT NULL,
    true_label,
    source TEXT NOT NULL,
    PRIMARY KEY (run_id, item)
);
CREATE TABLE IF NOT EXISTS arrays (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    cycle INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, cycle, name)
);
"""

STORE_NAME = "store.sqlite"

#: the columns of results.csv around the metrics
RESULT_FIRST_COLUMNS = ["strategy", "trial", "cycle", "labeled"]
#: the timing columns of a cycle (stores written before 0.2 have only the first two)
TIME_COLUMNS = ("train_seconds", "query_seconds", "eval_seconds", "diagnostics_seconds", "wall_seconds")
RESULT_LAST_COLUMNS = list(TIME_COLUMNS)
#: keys of result rows that are bookkeeping, not metrics
RESULT_INTERNAL = {"seed", "folder", "queried"}

#: the task of a store written before tasks were recorded
DEFAULT_TASK = {"name": "classification",
                "metrics": [{"name": "accuracy", "higher_is_better": True, "percent": True, "description": ""}]}


@dataclass
class CycleResult:
    """A whole cycle at once (fit, evaluation, query, labels): for building or merging stores;
    a learner writes the same rows one step at a time."""

    cycle: int
    labeled: int
    train_seconds: float
    query_seconds: float
    metrics: dict[str, float]
    queried: Sequence[tuple[int, float | None]] = ()  # (item, score) in order of preference
    new_labels: Sequence[tuple[int, Any, Any, str]] = ()  # (item, label, true label, source)
    arrays: dict[str, list] | None = None  # small per-cycle arrays kept for plots


def encode_value(value: Any) -> Any:
    """A target as stored: numbers as SQLite numbers (a class index, a real value: readable in
    SQL, exact), anything else (boxes, keypoints) as JSON text."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return json.dumps(value)


def decode_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class Store:
    def __init__(self, path: str | Path, wal: bool | None = None) -> None:
        """``wal``: the write-ahead log, which lets the processes of one machine take turns writing
        (the default for a new file); False for a rollback journal, for a file on a network
        filesystem (a cluster unit's shard); None keeps the mode of an existing file."""
        self.path = Path(path)
        existed = str(path) != ":memory:" and self.path.exists()
        # parallel workers take turns writing; a writer waits for the lock rather than failing
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=120)
        if str(path) != ":memory:":
            if wal is None:
                wal = not existed or self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
            self.conn.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    @classmethod
    def in_folder(cls, folder: str | Path, wal: bool | None = None) -> Store:
        return cls(Path(folder) / STORE_NAME, wal=wal)

    @classmethod
    def read_only(cls, path: str | Path) -> Store:
        """A store file opened for reading only (a unit's published snapshot)."""
        store = cls.__new__(cls)
        store.path = Path(path)
        store.conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, isolation_level=None,
                                     timeout=120)
        return store

    def snapshot(self, path: str | Path) -> None:
        """A consistent copy of the whole store at ``path``, written under a temporary name and
        renamed: a reader on another machine never sees half of it."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        copy = sqlite3.connect(tmp)
        try:
            self.conn.backup(copy)
        finally:
            copy.close()
        os.replace(tmp, path)

    def adopt_run(self, source: Store, strategy: str, trial: int) -> str | None:
        """Make this store's rows of run (``strategy``, ``trial``) those of ``source`` (a unit's
        shard), in one transaction; returns the run's status there, or None if it has no such run.
        Merging the same shard twice changes nothing."""
        row = source.conn.execute("SELECT id, settings, status FROM runs WHERE strategy = ? AND trial = ?",
                                  (strategy, trial)).fetchone()
        if row is None:
            return None
        src, settings, status = row
        dest = self.run_id(strategy, trial, json.loads(settings))
        with self._transaction():
            for table in ("cycles", "metrics", "queries", "labels", "arrays"):
                cols = [c[1] for c in source.conn.execute(f"PRAGMA table_info({table})")]
                at = cols.index("run_id")
                rows = [r[:at] + (dest,) + r[at + 1:] for r in source.conn.execute(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE run_id = ?", (src,))]
                self.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (dest,))
                self.conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                      f"({', '.join('?' * len(cols))})", rows)
            self.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, dest))
        return str(status)

    def run_status(self, strategy: str, trial: int) -> str | None:
        row = self.conn.execute("SELECT status FROM runs WHERE strategy = ? AND trial = ?", (strategy, trial))
        found = row.fetchone()
        return None if found is None else str(found[0])

    @classmethod
    def in_memory(cls) -> Store:
        """A store that lives only as long as the object (a learner without an output folder)."""
        return cls(":memory:")

    @staticmethod
    def exists_in(folder: str | Path) -> bool:
        return (Path(folder) / STORE_NAME).is_file()

    @property
    def folder(self) -> Path | None:
        """The output folder, or None for an in-memory store."""
        return None if str(self.path) == ":memory:" else self.path.parent

    def close(self) -> None:
        self.conn.close()

    # -- settings ---------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def task(self) -> dict[str, Any]:
        """The task's name and metrics (with their direction), as the learner recorded them."""
        return self.get_meta("task") or DEFAULT_TASK

    # -- runs -------------------------------------------------------------
    def run_id(self, strategy: str, trial: int, settings: dict[str, Any]) -> int:
        """The id of run (strategy, trial), created on first use."""
        self.conn.execute(
            "INSERT OR IGNORE INTO runs (strategy, trial, settings) VALUES (?, ?, ?)",
            (strategy, trial, json.dumps(settings, sort_keys=True)),
        )
        row = self.conn.execute("SELECT id FROM runs WHERE strategy = ? AND trial = ?", (strategy, trial)).fetchone()
        return int(row[0])

    def set_status(self, run_id: int, status: str) -> None:
        self.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def runs(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, strategy, trial, settings, status FROM runs ORDER BY id").fetchall()
        return [dict(id=r[0], strategy=r[1], trial=r[2], settings=json.loads(r[3]), status=r[4]) for r in rows]

    def count_evaluated(self) -> int:
        """Evaluated cycles of all runs (the progress of an experiment)."""
        return self.conn.execute("SELECT COUNT(*) FROM (SELECT DISTINCT run_id, cycle FROM metrics)").fetchone()[0]

    def finished_cycles(self, run_id: int) -> list[int]:
        """The run's trained cycles, in order."""
        return [r[0] for r in self.conn.execute("SELECT cycle FROM cycles WHERE run_id = ? ORDER BY cycle", (run_id,))]

    def evaluated(self, run_id: int, cycle: int) -> bool:
        row = self.conn.execute("SELECT 1 FROM metrics WHERE run_id = ? AND cycle = ? LIMIT 1", (run_id, cycle))
        return row.fetchone() is not None

    # -- the learner's steps ----------------------------------------------
    def record_fit(self, run_id: int, cycle: int, labeled: int, train_seconds: float,
                   wall_seconds: float | None = None) -> None:
        """Step 1: cycle ``cycle`` is trained (its checkpoint is already on disk).  ``wall_seconds``:
        the whole step (training, the objective's extra networks, the checkpoint)."""
        with self._transaction():
            self._insert_cycle(run_id, cycle, labeled, train_seconds, 0.0,
                               train_seconds if wall_seconds is None else wall_seconds)

    def record_evaluation(self, run_id: int, cycle: int, metrics: dict[str, float],
                          arrays: dict[str, list] | None = None, eval_seconds: float = 0.0,
                          diagnostics_seconds: float = 0.0, wall_seconds: float = 0.0) -> None:
        """Step 2: the metrics of a trained cycle (replaced if evaluated again), its arrays and the
        seconds of the evaluation and of the figures' diagnostics."""
        with self._transaction():
            self._insert_evaluation(run_id, cycle, metrics, arrays, replace=True)
            self.conn.execute("UPDATE cycles SET eval_seconds = ?, diagnostics_seconds = ?, "
                              "wall_seconds = wall_seconds + ? WHERE run_id = ? AND cycle = ?",
                              (eval_seconds, diagnostics_seconds, wall_seconds, run_id, cycle))

    def record_query(self, run_id: int, cycle: int, queried: Sequence[tuple[int, float | None]],
                     seconds: float, wall_seconds: float | None = None) -> None:
        """Step 3: a ranked batch queried after ``cycle``'s training, pending until taught.

        A second query in the same cycle continues the ranks (it extends the batch).
        """
        with self._transaction():
            start = self.conn.execute("SELECT COUNT(*) FROM queries WHERE run_id = ? AND cycle = ?",
                                      (run_id, cycle)).fetchone()[0]
            self._insert_queries(run_id, cycle, queried, start)
            self.conn.execute("UPDATE cycles SET query_seconds = query_seconds + ?, wall_seconds = wall_seconds + ? "
                              "WHERE run_id = ? AND cycle = ?",
                              (seconds, seconds if wall_seconds is None else wall_seconds, run_id, cycle))

    def add_labels(self, run_id: int, cycle: int, labels: Iterable[tuple[int, Any, Any, str]]) -> None:
        """Step 4: labels (item, label, true label or None, source) for training cycle ``cycle``, in
        one transaction; an item labeled twice fails the whole call."""
        with self._transaction():
            self._insert_labels(run_id, cycle, labels)

    def _insert_cycle(self, run_id: int, cycle: int, labeled: int, train_seconds: float, query_seconds: float,
                      wall_seconds: float) -> None:
        self.conn.execute(
            "INSERT INTO cycles (run_id, cycle, labeled, train_seconds, query_seconds, finished_at, wall_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, cycle, labeled, train_seconds, query_seconds, time.time(), wall_seconds))

    def _insert_evaluation(self, run_id: int, cycle: int, metrics: dict[str, float],
                           arrays: dict[str, list] | None, replace: bool = False) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.conn.executemany(f"{verb} INTO metrics VALUES (?, ?, ?, ?)",
                              [(run_id, cycle, k, float(v)) for k, v in metrics.items()])
        for name, values in (arrays or {}).items():
            self.conn.execute(f"{verb} INTO arrays VALUES (?, ?, ?, ?)", (run_id, cycle, name, json.dumps(values)))

    def _insert_queries(self, run_id: int, cycle: int, queried: Sequence[tuple[int, float | None]],
                        start: int = 0) -> None:
        self.conn.executemany(
            "INSERT INTO queries VALUES (?, ?, ?, ?, ?)",
            [(run_id, cycle, start + rank, int(item), None if score is None else float(score))
             for rank, (item, score) in enumerate(queried)],
        )

    def _insert_labels(self, run_id: int, cycle: int, labels: Iterable[tuple[int, Any, Any, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO labels (run_id, item, cycle, label, true_label, source) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, int(i), cycle, encode_value(y), encode_value(t), s) for i, y, t, s in labels],
        )

    def sync_labels(self, run_id: int, cycle: int, wanted: dict[int, tuple[Any, str]]) -> None:
        """Make the run's labels ``wanted`` (item -> (label, source)) in one transaction: new items
        are labeled for ``cycle``, changed ones relabeled (keeping their cycle), missing ones removed.
        For labels that people may change or take back (a labeling project's answers)."""
        with self._transaction():
            have = {item: (decode_value(label), source) for item, label, source in self.conn.execute(
                "SELECT item, label, source FROM labels WHERE run_id = ?", (run_id,))}
            gone = [(run_id, item) for item in have if item not in wanted]
            self.conn.executemany("DELETE FROM labels WHERE run_id = ? AND item = ?", gone)
            changed = [(encode_value(y), s, run_id, item) for item, (y, s) in wanted.items()
                       if item in have and have[item] != (y, s)]
            self.conn.executemany("UPDATE labels SET label = ?, source = ? WHERE run_id = ? AND item = ?", changed)
            self._insert_labels(run_id, cycle, [(item, y, None, s) for item, (y, s) in sorted(wanted.items())
                                                if item not in have])

    # -- reading a run's state -----------------------------------------------
    def labels(self, run_id: int) -> list[tuple[int, Any, int]]:
        """(item, label, cycle) of every label of the run, labels decoded."""
        rows = self.conn.execute(
            "SELECT item, label, cycle FROM labels WHERE run_id = ? ORDER BY cycle, item", (run_id,)
        ).fetchall()
        return [(item, decode_value(label), cycle) for item, label, cycle in rows]

    def queried(self, run_id: int, cycle: int) -> list[tuple[int, float | None]]:
        """(item, score) of the batch queried after ``cycle``, in rank order."""
        return self.conn.execute("SELECT item, score FROM queries WHERE run_id = ? AND cycle = ? ORDER BY rank",
                                 (run_id, cycle)).fetchall()

    def pending(self, run_id: int) -> list[tuple[int, int, float | None]]:
        """(cycle, item, score) of every queried item of the run that has no label yet, in
        query order: the batch waiting for an oracle or a person."""
        return self.conn.execute(
            "SELECT q.cycle, q.item, q.score FROM queries q WHERE q.run_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM labels l WHERE l.run_id = q.run_id AND l.item = q.item) ORDER BY q.cycle, q.rank",
            (run_id,),
        ).fetchall()

    # -- a whole cycle --------------------------------------------------------
    def record_cycle(self, run_id: int, result: CycleResult) -> None:
        """Write a finished cycle, its query and the labels it bought (for the next cycle) atomically."""
        with self._transaction():
            self._insert_cycle(run_id, result.cycle, result.labeled, result.train_seconds, result.query_seconds,
                               result.train_seconds + result.query_seconds)
            self._insert_evaluation(run_id, result.cycle, result.metrics, result.arrays)
            self._insert_queries(run_id, result.cycle, result.queried)
            self._insert_labels(run_id, result.cycle + 1, result.new_labels)

    def array(self, run_id: int, cycle: int, name: str) -> list | None:
        row = self.conn.execute(
            "SELECT value FROM arrays WHERE run_id = ? AND cycle = ? AND name = ?", (run_id, cycle, name)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def results(self) -> list[dict[str, Any]]:
        """One dict per (strategy, trial, cycle) with its metrics and its seconds as keys (the timing
        columns a store predating them lacks are absent)."""
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(cycles)")}
        times = [c for c in TIME_COLUMNS if c in have]
        rows = self.conn.execute(
            "SELECT r.id, r.strategy, r.trial, c.cycle, c.labeled" + "".join(f", c.{c}" for c in times)
            + " FROM cycles c JOIN runs r ON r.id = c.run_id ORDER BY r.id, c.cycle"
        ).fetchall()
        metrics: dict[tuple[int, int], dict[str, float]] = {}
        for run_id, cycle, name, value in self.conn.execute("SELECT run_id, cycle, name, value FROM metrics"):
            metrics.setdefault((run_id, cycle), {})[name] = value
        out = []
        for run_id, strategy, trial, cycle, labeled, *seconds in rows:
            row: dict[str, Any] = dict(strategy=strategy, trial=trial, cycle=cycle, labeled=labeled)
            row.update(metrics.get((run_id, cycle), {}))
            row.update(zip(times, seconds))
            out.append(row)
        return out

    def write_results_csv(self, path: str | Path) -> None:
        """``results.csv``: one row per (strategy, trial, cycle), the task's primary metric first."""
        primary = [m["name"] for m in self.task().get("metrics", [])[:1]]
        write_rows_csv(self.results(), path, primary=primary)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def write_rows_csv(rows: list[dict[str, Any]], path: str | Path, extra: Sequence[str] = (),
                   primary: Sequence[str] = ("accuracy",)) -> None:
    """``strategy, trial, cycle, labeled, <metrics>, train_seconds, query_seconds, <extra>``, written to a
    temporary file and renamed, so it is never half-written.  ``primary`` metrics come first."""
    metric_names: list[str] = []
    for row in rows:
        for key in row:
            if (key not in RESULT_FIRST_COLUMNS + RESULT_LAST_COLUMNS and key not in RESULT_INTERNAL
                    and key not in metric_names):
                metric_names.append(key)
    metric_names.sort(key=lambda k: (k not in primary, k))
    columns = RESULT_FIRST_COLUMNS + metric_names + RESULT_LAST_COLUMNS + list(extra)
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
    os.replace(tmp, path)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
