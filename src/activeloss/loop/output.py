"""An experiment's output folder: its store, opened new (with what the run is) or resumed."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..data import Dataset
from ..errors import ConfigError
from ..store import SCHEMA_VERSION, Store
from ..tasks import make_task
from .plan import Plan


def dataset_fingerprint(data: Dataset) -> str:
    """A short hash of the targets and shapes: resuming on different data is refused."""
    h = hashlib.sha256()
    for t in (data.y_train, data.y_test):
        h.update(t.numpy().tobytes())
    h.update(str((tuple(data.x_train.shape), tuple(data.x_test.shape))).encode())
    return h.hexdigest()[:16]


def open_store(plan: Plan, out: Path, resume: bool, wal: bool | None = None) -> Store:
    """The experiment's store in ``out``: a new one with the settings, dataset and task recorded, or
    the one of the run being resumed (refused if the data changed or an older version wrote it)."""
    data = plan.data
    if resume:
        store = Store.in_folder(out, wal=wal)
        if store.get_meta("dataset_fingerprint") != dataset_fingerprint(data):
            store.close()
            raise ConfigError(f"{out}: the dataset has changed since this run started; cannot resume")
        if store.get_meta("schema_version") != SCHEMA_VERSION:
            store.close()
            raise ConfigError(f"{out} was written by an older activeloss; `activeloss report` reads it, "
                              "but it cannot be resumed")
        return store
    out.mkdir(parents=True, exist_ok=True)
    store = Store.in_folder(out, wal=wal)
    store.set_meta("schema_version", SCHEMA_VERSION)
    store.set_meta("settings", {k: v for k, v in plan.settings.to_dict().items() if v is not None})
    store.set_meta("dataset_fingerprint", dataset_fingerprint(data))
    store.set_meta("dataset", {
        "spec": plan.settings.dataset, "name": data.name, "train": data.size,
        "test": int(data.x_test.shape[0]), "classes": data.class_names,
    })
    store.set_meta("task", make_task(data.task).describe())
    store.set_meta("device", str(plan.device))
    return store
