"""Read one or several output folders into one collection of runs.

A user typically splits an experiment over folders (one strategy per process or
machine, or more trials under another ``--seed``) and combines them in the report.
The rules, so that a combined table never mixes protocols silently:

* every folder must hold a store of the same task (a regression RMSE and a classification
  accuracy cannot share a table; a store written before tasks were recorded is classification);
* every folder must hold runs on the same dataset (same kind, sizes and
  classes; with the same ``--seed`` also the same data fingerprint, since a seeded
  split legitimately differs between seeds);
* a strategy found in several folders must have run with the same settings there,
  apart from ``trials``, ``seed`` and where or how it ran (``out``, ``device``,
  ``threads``, ``eval_batch_size``, ``strategies``, the dataset path, the preset's name);
  its trials are then pooled;
* a trial is identified by ``(seed, trial)``: the same strategy, seed and trial in
  two folders is the same run twice, and an error.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..config import EXECUTION_FIELDS
from ..errors import ConfigError
from ..store import Store
from .tables import MetricInfo, metric_info

#: Settings that may differ between folders whose trials are pooled: besides these, how a run was
#: executed (``EXECUTION_FIELDS``: a run resumed with another --parallel-trials is one protocol).
POOLABLE = frozenset({"trials", "seed", "out", "device", "threads", "eval_batch_size", "strategies", "dataset",
                      "preset"}) | frozenset(EXECUTION_FIELDS)  # a preset's values are in the other settings


@dataclass(frozen=True)
class RunRef:
    """One (strategy, seed, trial) run and where it is stored."""

    folder: Path
    run_id: int
    strategy: str
    seed: int
    trial: int
    settings: dict = field(hash=False, compare=False)


@dataclass
class Collection:
    """The runs and per-cycle rows of one or several folders, with their stores open for arrays."""

    folders: list[Path]
    stores: dict[Path, Store]
    runs: list[RunRef]
    rows: list[dict[str, Any]]
    dataset: dict[str, Any]
    task: dict[str, Any]  # name and metrics (with their direction), from the first folder's store

    @property
    def pool_size(self) -> int:
        return int(self.dataset.get("train") or 1)

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.dataset.get("classes") or []]

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(r.strategy for r in self.runs))

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    @property
    def primary_metric(self) -> str:
        """The task's first metric: what the report shows when no ``--metric`` is asked for."""
        metrics = self.task.get("metrics") or [{"name": "accuracy"}]
        return str(metrics[0]["name"])

    def metric(self, name: str) -> MetricInfo:
        """How to read ``name`` in these runs (direction, percent), from the task's description."""
        return metric_info(name, self.task)

    def array(self, run: RunRef, cycle: int, name: str) -> list | None:
        return self.stores[run.folder].array(run.run_id, cycle, name)

    def finished_cycles(self, run: RunRef) -> list[int]:
        return self.stores[run.folder].finished_cycles(run.run_id)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(meta: dict[str, Any]) -> str:
    return f"{meta.get('spec', '?')}, {meta.get('train', '?')} train / {meta.get('test', '?')} test items"


def _same_dataset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(m: dict[str, Any]) -> tuple[Any, ...]:
        return str(m.get("spec", "")).split(":", 1)[0].strip().lower(), m.get("train"), m.get("test"), m.get("classes")

    return key(a) == key(b)


def _check_same_task(paths: list[Path], stores: dict[Path, Store]) -> dict[str, Any]:
    """The task of the first folder, once every other folder is known to hold the same task."""
    first = paths[0]
    task = stores[first].task()
    for p in paths[1:]:
        other = stores[p].task()
        if other.get("name") != task.get("name"):
            raise ConfigError(
                f"{first} and {p} hold runs of different tasks ({task.get('name')} vs {other.get('name')}); "
                "combine only folders of the same task"
            )
    return task


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Settings (present in both) that differ, ignoring the poolable ones."""
    return [k for k in sorted(set(a) & set(b) - POOLABLE) if a[k] != b[k]]


def open_collection(folders: Sequence[str | Path]) -> Collection:
    """Open the stores of ``folders`` and check that they can be combined (see the module text)."""
    paths = [Path(f) for f in folders]
    if not paths:
        raise ConfigError("report needs at least one folder")
    seen: dict[Path, Path] = {}
    for p in paths:
        if not Store.exists_in(p):
            raise ConfigError(f"{p} holds no run (no store.sqlite)")
        key = p.resolve()
        if key in seen:
            raise ConfigError(f"{p} is given twice")
        seen[key] = p
    stores: dict[Path, Store] = {}
    try:
        for p in paths:
            stores[p] = Store.in_folder(p)
        return _combine(paths, stores)
    except BaseException:
        for store in stores.values():
            store.close()
        raise


def _combine(paths: list[Path], stores: dict[Path, Store]) -> Collection:
    first = paths[0]
    task = _check_same_task(paths, stores)
    dataset = stores[first].get_meta("dataset", {}) or {}
    seed_of = {p: int((stores[p].get_meta("settings", {}) or {}).get("seed", 0)) for p in paths}
    print_of = {p: stores[p].get_meta("dataset_fingerprint") for p in paths}
    for p in paths[1:]:
        other = stores[p].get_meta("dataset", {}) or {}
        same = _same_dataset(dataset, other)
        if same and seed_of[p] == seed_of[first] and print_of[p] != print_of[first]:
            same = False
        if not same:
            raise ConfigError(
                f"{first} and {p} hold runs on different datasets ({_describe(dataset)} vs {_describe(other)}); "
                "combine only folders of the same dataset"
            )
    runs: list[RunRef] = []
    owner: dict[tuple[str, int, int], RunRef] = {}
    protocol: dict[str, RunRef] = {}
    for p in paths:
        for r in stores[p].runs():
            seed = int(r["settings"].get("seed", seed_of[p]))
            ref = RunRef(p, r["id"], r["strategy"], seed, r["trial"], r["settings"])
            key = (ref.strategy, seed, ref.trial)
            if key in owner:
                raise ConfigError(
                    f"strategy {ref.strategy!r} trial {ref.trial} (seed {seed}) is in both {owner[key].folder} "
                    f"and {p}; a trial may come from one folder only (run extra trials with another --seed)"
                )
            owner[key] = ref
            base = protocol.setdefault(ref.strategy, ref)
            diff = _differences(base.settings, ref.settings)
            if diff:
                k = diff[0]
                raise ConfigError(
                    f"strategy {ref.strategy!r} ran with different settings in {base.folder} "
                    f"({k}={base.settings[k]!r}) and {p} ({k}={ref.settings[k]!r}); "
                    "only trials of the same protocol can be pooled"
                )
            runs.append(ref)
    rows = []
    by_key = {(r.folder, r.strategy, r.trial): r for r in runs}
    for p in paths:
        results = stores[p].results()
        last: dict[tuple[str, int], int] = {}
        for row in results:
            last[(row["strategy"], row["trial"])] = max(last.get((row["strategy"], row["trial"]), -1), row["cycle"])
        for row in results:
            ref = by_key[(p, row["strategy"], row["trial"])]
            planned = ref.settings.get("cycles")
            final = planned - 1 if isinstance(planned, int) else last[(row["strategy"], row["trial"])]
            row.update(seed=ref.seed, folder=str(p), queried=row["cycle"] < final)
            rows.append(row)
    return Collection(paths, stores, runs, rows, dataset, task)
