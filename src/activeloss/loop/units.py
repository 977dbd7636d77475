"""One (strategy, trial) unit of an experiment, run on any machine into a store of its own.

A cluster's machines must never write one SQLite file together (its write-ahead log needs
memory shared between the writers, which a network filesystem does not give), so each unit
writes its **shard**, ``OUT/shards/<strategy>-trial<T>/store.sqlite``, in rollback-journal
mode, and after every finished cycle publishes a *snapshot* of it (a consistent copy made
with SQLite's backup API, then renamed into place).  The driver only ever reads snapshots,
which are never half-written, and merges them into the main store.

A unit is idempotent: it loads the data, opens its shard and continues from its last
committed step (a unit already done returns at once), exactly as ``--resume`` does, so a
preempted, requeued, retried or re-submitted unit ends with the results of an uninterrupted
one.
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from ..config import Settings
from ..device import performance
from ..errors import ActiveLossError
from ..store import Store
from .driver import Driver
from .output import open_store
from .plan import plan

SHARDS = "shards"
SNAPSHOT = "snapshot.sqlite"
STARTED = "started.json"


def shard_folder(out: Path, strategy: str, trial: int) -> Path:
    """The unit's own folder (strategy names may hold ``+``: kept readable, made safe)."""
    return Path(out) / SHARDS / f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', strategy)}-trial{trial}"


def run_shard(settings: dict[str, Any], out: str, strategy: str, trial: int) -> dict[str, Any]:
    """Run (or finish) the unit into its shard; returns its outcome as plain data.

    ``settings`` are the experiment's (as the main store holds them); the data is loaded on
    this machine, so its path must be the same here as on the driver (a shared filesystem).
    """
    folder = shard_folder(Path(out), strategy, trial)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / STARTED, {"host": socket.gethostname(), "pid": os.getpid()})
    try:
        return _run(settings, folder, strategy, trial)
    except ActiveLossError as exc:  # the user's to fix (data missing on this machine...): one line, not a traceback
        return {"status": "error", "message": str(exc)}


def _run(settings: dict[str, Any], folder: Path, strategy: str, trial: int) -> dict[str, Any]:
    the_plan = plan(Settings.from_dict(settings, origin="the experiment's settings").merged(
        {"out": str(folder), "parallel_trials": 1, "executor": "local"}))
    run = next(r for r in the_plan.runs if r.name == strategy)
    performance.set_threads(run.settings, the_plan.device)
    performance.configure(the_plan.device, run.settings.deterministic)
    store = open_store(the_plan, folder, Store.exists_in(folder), wal=False)
    try:
        driver = Driver(the_plan, folder, progress=False)
        driver.write_csv = False  # the driver of the experiment writes results.csv

        def publish() -> None:
            store.snapshot(folder / SNAPSHOT)

        driver.on_cycle = publish
        outcome = driver.run_unit(store, run, trial)
        publish()
    finally:
        store.close()
    return {"status": outcome.status, "metrics": outcome.metrics, "labeled": outcome.labeled}


class ShardUnit:
    """:func:`run_shard` as submitit calls it: a job stopped at its time limit or preempted is
    requeued (its ``checkpoint``) and continues from its shard's last committed step."""

    def __call__(self, settings: dict[str, Any], out: str, strategy: str, trial: int) -> dict[str, Any]:
        return run_shard(settings, out, strategy, trial)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
