"""The project's tables, beside the learner's in the same ``store.sqlite``.

* ``items`` - the pool: id (the learner's index), key (path or row id), fields of a row;
* ``val_items`` - the labeled validation set;
* ``answers`` - annotators' events (:mod:`.answers`), append-only; ``request`` is unique, so a
  request sent twice is recorded once;
* ``guesses`` - the latest model's class and confidence for items on the page;
* ``versions`` - one row per trained model: the strategy that trained it, labels, metric;
* ``jobs`` - background trainings, with their progress, so the page can show it.

Every write is one transaction; a reader never sees half of one.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import Store
from .answers import Answer, Kind

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, fields TEXT);
CREATE TABLE IF NOT EXISTS val_items (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, label INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL REFERENCES items(id),
    annotator TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'undo')),
    label INTEGER,
    undoes INTEGER REFERENCES answers(id),
    request TEXT UNIQUE,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS guesses (
    item INTEGER PRIMARY KEY, version INTEGER NOT NULL, label INTEGER NOT NULL, confidence REAL NOT NULL,
    probabilities TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY, strategy TEXT NOT NULL, labeled INTEGER NOT NULL, metric TEXT, value REAL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, pid INTEGER, started REAL NOT NULL, finished REAL,
    epoch INTEGER NOT NULL DEFAULT 0, epochs INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class Version:
    version: int
    strategy: str
    labeled: int
    metric: str | None
    value: float | None
    at: float


@dataclass(frozen=True)
class Job:
    id: int
    status: str  # running, done, failed
    pid: int | None
    started: float
    finished: float | None
    epoch: int
    epochs: int
    message: str


class Records:
    """The project's tables on a :class:`Store`'s connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn: sqlite3.Connection = store.conn
        self.conn.executescript(SCHEMA)

    def _tx(self) -> Any:
        return self.store._transaction()

    # -- items ------------------------------------------------------------------
    def add_items(self, keys: Sequence[str], fields: Sequence[dict[str, str]] | None) -> None:
        rows = [(i, k, json.dumps(fields[i]) if fields else None) for i, k in enumerate(keys)]
        with self._tx():
            self.conn.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)

    def add_val_items(self, keys: Sequence[str], labels: Sequence[int]) -> None:
        with self._tx():
            self.conn.executemany("INSERT INTO val_items VALUES (?, ?, ?)",
                                  [(i, k, int(y)) for i, (k, y) in enumerate(zip(keys, labels))])

    def keys(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT key FROM items ORDER BY id")]

    def item_of(self, key: str) -> int | None:
        row = self.conn.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else None

    def key_of(self, item: int) -> str | None:
        row = self.conn.execute("SELECT key FROM items WHERE id = ?", (item,)).fetchone()
        return row[0] if row else None

    def fields_of(self, item: int) -> dict[str, str] | None:
        row = self.conn.execute("SELECT fields FROM items WHERE id = ?", (item,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def val_labels(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT label FROM val_items ORDER BY id")]

    def count_items(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    # -- answers ----------------------------------------------------------------
    def answers(self) -> list[Answer]:
        rows = self.conn.execute("SELECT id, item, annotator, kind, label, undoes, at FROM answers ORDER BY id")
        return [Answer(*r) for r in rows]

    def by_request(self, request: str) -> Answer | None:
        row = self.conn.execute("SELECT id, item, annotator, kind, label, undoes, at FROM answers WHERE request = ?",
                                (request,)).fetchone()
        return Answer(*row) if row else None

    def add_answers(self, rows: Iterable[tuple[int, str, Kind, int | None, int | None, str | None]]) -> list[int]:
        """Append (item, annotator, kind, label, undoes, request) events in one transaction; their ids."""
        ids = []
        now = time.time()
        with self._tx():
            for item, annotator, kind, label, undoes, request in rows:
                cur = self.conn.execute(
                    "INSERT INTO answers (item, annotator, kind, label, undoes, request, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (item, annotator, kind, label, undoes, request, now))
                ids.append(int(cur.lastrowid or 0))
        return ids

    # -- guesses ------------------------------------------------------------------
    def set_guesses(self, version: int, rows: Iterable[tuple[int, int, float, list[float]]]) -> None:
        with self._tx():
            self.conn.executemany("INSERT OR REPLACE INTO guesses VALUES (?, ?, ?, ?, ?)",
                                  [(i, version, y, c, json.dumps([round(p, 5) for p in ps])) for i, y, c, ps in rows])

    def guesses(self, items: Sequence[int]) -> dict[int, tuple[int, int, float]]:
        """item -> (version, class, confidence) for the items that have a guess."""
        out = {}
        for start in range(0, len(items), 500):
            chunk = list(items[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for item, version, label, conf in self.conn.execute(
                    f"SELECT item, version, label, confidence FROM guesses WHERE item IN ({marks})", chunk):
                out[int(item)] = (int(version), int(label), float(conf))
        return out

    # -- model versions --------------------------------------------------------------
    def add_version(self, version: int, strategy: str, labeled: int, metric: str | None, value: float | None) -> None:
        with self._tx():
            self.conn.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                              (version, strategy, labeled, metric, value, time.time()))

    def versions(self) -> list[Version]:
        return [Version(*r) for r in self.conn.execute("SELECT * FROM versions ORDER BY version")]

    # -- background jobs -----------------------------------------------------------------
    def start_job(self, pid: int | None, message: str = "starting") -> int:
        with self._tx():
            cur = self.conn.execute("INSERT INTO jobs (status, pid, started, message) VALUES ('running', ?, ?, ?)",
                                    (pid, time.time(), message))
        return int(cur.lastrowid or 0)

    def update_job(self, job: int, *, epoch: int | None = None, epochs: int | None = None, message: str | None = None,
                   status: str | None = None, pid: int | None = None) -> None:
        sets: list[str] = []
        values: list[object] = []
        for col, value in (("epoch", epoch), ("epochs", epochs), ("message", message), ("status", status),
                           ("pid", pid)):
            if value is not None:
                sets.append(f"{col} = ?")
                values.append(value)
        if status is not None and status != "running":
            sets.append("finished = ?")
            values.append(time.time())
        if sets:
            self.conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*values, job))

    def job(self, job: int | None = None) -> Job | None:
        """A job by id, or the latest one."""
        if job is None:
            row = self.conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
        else:
            row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
        return Job(*row) if row else None
