"""The store: one SQLite database per output folder, the single source of truth.

It holds the settings, one row per (strategy, trial) run, one row per finished
cycle with its metrics, every queried item with its score and rank, and every
label with the cycle that first used it and where it came from.  A cycle's
metrics, its query and the labels it bought are written in one transaction, so a
crash leaves either all of them or none, and a label is never lost or duplicated
(``PRIMARY KEY (run_id, item)``).  It imports no model code.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

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
    label INTEGER NOT NULL,
    true_label INTEGER,
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


@dataclass
class CycleResult:
    """What one finished cycle writes, all at once."""

    cycle: int
    labeled: int
    train_seconds: float
    query_seconds: float
    metrics: dict[str, float]
    queried: Sequence[tuple[int, float | None]] = ()  # (item, score) in order of preference
    new_labels: Sequence[tuple[int, int, int | None, str]] = ()  # (item, label, true label, source)
    arrays: dict[str, list] | None = None  # small per-cycle arrays kept for plots


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # parallel workers take turns writing; a writer waits for the lock rather than failing
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=120)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    @classmethod
    def in_folder(cls, folder: str | Path) -> "Store":
        return cls(Path(folder) / STORE_NAME)

    @staticmethod
    def exists_in(folder: str | Path) -> bool:
        return (Path(folder) / STORE_NAME).is_file()

    def close(self) -> None:
        self.conn.close()

    # -- settings ---------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- runs -------------------------------------------------------------
    def run_id(self, strategy: str, trial: int, settings: dict[str, Any]) -> int:
        """The id of run (strategy, trial), created on first use."""
        self.conn.execute(
            "INSERT OR IGNORE INTO runs (strategy, trial, settings) VALUES (?, ?, ?)",
            (strategy, trial, json.dumps(settings, sort_keys=True)),
        )
        return self.conn.execute("SELECT id FROM runs WHERE strategy = ? AND trial = ?", (strategy, trial)).fetchone()[0]

    def set_status(self, run_id: int, status: str) -> None:
        self.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def runs(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, strategy, trial, settings, status FROM runs ORDER BY id").fetchall()
        return [dict(id=r[0], strategy=r[1], trial=r[2], settings=json.loads(r[3]), status=r[4]) for r in rows]

    def count_cycles(self) -> int:
        """Finished cycles of all runs (progress of parallel workers)."""
        return self.conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]

    def finished_cycles(self, run_id: int) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT cycle FROM cycles WHERE run_id = ? ORDER BY cycle", (run_id,))]

    # -- labels -------------------------------------------------------------
    def add_labels(self, run_id: int, cycle: int, labels: Iterable[tuple[int, int, int | None, str]]) -> None:
        """Record labels outside a cycle (the initial set), in one transaction."""
        with self._transaction():
            self._insert_labels(run_id, cycle, labels)

    def _insert_labels(self, run_id: int, cycle: int, labels) -> None:
        self.conn.executemany(
            "INSERT INTO labels (run_id, item, cycle, label, true_label, source) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, int(i), cycle, int(y), None if t is None else int(t), s) for i, y, t, s in labels],
        )

    def labels(self, run_id: int) -> list[tuple[int, int, int]]:
        """(item, label, cycle) of every label of the run."""
        return self.conn.execute(
            "SELECT item, label, cycle FROM labels WHERE run_id = ? ORDER BY cycle, item", (run_id,)
        ).fetchall()

    # -- cycles -------------------------------------------------------------
    def record_cycle(self, run_id: int, result: CycleResult) -> None:
        """Write a finished cycle, its query and the labels it bought (for the next cycle) atomically."""
        with self._transaction():
            self.conn.execute(
                "INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, result.cycle, result.labeled, result.train_seconds, result.query_seconds, time.time()),
            )
            self.conn.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [(run_id, result.cycle, k, float(v)) for k, v in result.metrics.items()],
            )
            self.conn.executemany(
                "INSERT INTO queries VALUES (?, ?, ?, ?, ?)",
                [(run_id, result.cycle, rank, int(item), None if score is None else float(score))
                 for rank, (item, score) in enumerate(result.queried)],
            )
            self._insert_labels(run_id, result.cycle + 1, result.new_labels)
            for name, values in (result.arrays or {}).items():
                self.conn.execute(
                    "INSERT INTO arrays VALUES (?, ?, ?, ?)", (run_id, result.cycle, name, json.dumps(values))
                )

    def array(self, run_id: int, cycle: int, name: str) -> list | None:
        row = self.conn.execute(
            "SELECT value FROM arrays WHERE run_id = ? AND cycle = ? AND name = ?", (run_id, cycle, name)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def results(self) -> list[dict[str, Any]]:
        """One dict per (strategy, trial, cycle) with its metrics as keys."""
        rows = self.conn.execute(
            "SELECT r.id, r.strategy, r.trial, c.cycle, c.labeled, c.train_seconds, c.query_seconds "
            "FROM cycles c JOIN runs r ON r.id = c.run_id ORDER BY r.id, c.cycle"
        ).fetchall()
        metrics: dict[tuple[int, int], dict[str, float]] = {}
        for run_id, cycle, name, value in self.conn.execute("SELECT run_id, cycle, name, value FROM metrics"):
            metrics.setdefault((run_id, cycle), {})[name] = value
        out = []
        for run_id, strategy, trial, cycle, labeled, train_s, query_s in rows:
            row = dict(strategy=strategy, trial=trial, cycle=cycle, labeled=labeled)
            row.update(metrics.get((run_id, cycle), {}))
            row.update(train_seconds=train_s, query_seconds=query_s)
            out.append(row)
        return out

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
