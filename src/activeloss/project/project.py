"""A labeling project: a folder whose ``store.sqlite`` is the single source of truth for real,
unlabeled data labeled by people, round after round.

    project = Project.create("pets", images="photos/", classes=["cat", "dog"])
    batch = project.query(50, "llal")          # a pending, ranked batch (cold start: see coldstart)
    project.answer(batch.items[0], "ann", "label", label=1)   # what the labeling page does
    project.fit()                              # model version 1, on every label so far
    project.predict_folder("new_photos/")      # class, confidence and probabilities per image

It drives the same :class:`~activeloss.Learner` as an experiment, as the run ``project``
(trial 0), with one difference: the labels come from annotators' answers
(:mod:`.answers`), which are synchronised into the learner's labels before every fit and
query.  Each fit is one *model version* (the learner's cycle + 1), saved and kept.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..errors import ConfigError, DataError, PoolError
from ..loop.learner import Learner
from ..models.modes import eval_mode
from ..scoring.typical import cold_start
from ..store import Store
from ..strategies import get_strategy
from . import sources
from .answers import Answer, Derived, Kind, agreement, derive, latest_in_force
from .records import Records

#: the learner's run in a project's store
RUN_NAME = "project"
#: the strategy a project queries with when none was ever named: margin sampling needs no extra
#: module, costs one forward pass, and is a strong baseline in every comparison we ran
DEFAULT_STRATEGY = "margin"
#: training settings of a project unless init or fit name others: labels are few, so a small
#: batch and a model retrained from scratch each round (its version does not depend on history)
PROJECT_SETTINGS: dict[str, Any] = {"epochs": 30, "batch_size": 32, "lr": 0.05, "reinit": True, "subset": 0,
                                    "keep_models": "all", "seed": 0}
#: the settings a project accepts (init and fit options)
TRAINING_KEYS = ("epochs", "batch_size", "lr", "model", "augment", "seed", "device", "weight_decay", "subset")
DEFAULT_ANNOTATOR = "default"
LOCK_NAME = "learner.lock"


@dataclass(frozen=True)
class BatchItem:
    """An item of the batch on the page: where it ranks, why, and where its labeling stands."""

    item: int
    rank: int
    score: float | None
    round: int  # the model version that chose it (0: cold start)


@dataclass(frozen=True)
class QueryResult:
    items: list[int]
    scores: list[float | None]
    version: int  # the model version that chose them (0: cold start, no model)
    strategy: str


@dataclass(frozen=True)
class FitResult:
    version: int
    labeled: int
    seconds: float
    metric: str | None  # None without a validation set
    value: float | None


class Project:
    """See the module docstring; open one with :meth:`open`, make one with :meth:`create`."""

    def __init__(self, folder: Path, store: Store) -> None:
        self.folder = folder
        self.store = store
        self.records = Records(store)
        meta = store.get_meta("project")
        if meta is None:
            raise ConfigError(f"{folder} is not a labeling project (make one with activeloss init)")
        self.meta: dict[str, Any] = meta
        self._dataset: Dataset | None = None

    # -- making and opening --------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path) -> Project:
        folder = Path(folder)
        if not Store.exists_in(folder):
            raise ConfigError(f"{folder} is not a labeling project (no store.sqlite; make one with activeloss init)")
        return cls(folder, Store.in_folder(folder))

    @classmethod
    def create(cls, folder: str | Path, classes: Sequence[str], *, images: str | Path | None = None,
               csv: str | Path | None = None, labels: str | Path | None = None, val: str | Path | None = None,
               size: int = 32, strategy: str = DEFAULT_STRATEGY, annotator: str = "init",
               **settings: Any) -> Project:
        """A new project folder from ``images`` (a folder, sub-folders too) or ``csv`` (rows), with
        ``labels`` already known (a CSV of item,label) and a labeled ``val`` set (a folder of class
        sub-folders, or a CSV with a label column).  Everything is checked before the folder is made."""
        folder = Path(folder)
        if (images is None) == (csv is None):
            raise ConfigError("a project is made from --images DIR or --csv FILE (one of them)")
        if Store.exists_in(folder):
            raise ConfigError(f"{folder} already holds a project; open it, or choose another folder")
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ConfigError(f"{folder} exists and is not an empty folder")
        if not 8 <= size <= 512:
            raise ConfigError(f"--size {size}: choose 8..512 pixels")
        get_strategy(strategy)
        unknown = sorted(set(settings) - set(TRAINING_KEYS))
        if unknown:
            raise ConfigError(f"unknown project setting {unknown[0]!r}; settings: {', '.join(TRAINING_KEYS)}")
        classes = list(classes)
        if images is not None:
            root = Path(images).resolve()
            pool = sources.image_items(root, size)
            kind = "images"
        else:
            root = Path(str(csv)).resolve()
            if not root.is_file():
                raise DataError(f"--csv: {root} is not a file")
            pool = sources.row_items(root)
            kind = "rows"
        valset = None
        if val is not None:
            vroot = Path(val).resolve()
            valset = (sources.labeled_image_folder(vroot, size, classes) if kind == "images"
                      else sources.row_items(vroot, labeled=True, what="--val"))
            bad = sorted({c for c in valset.labels if c not in classes})
            if bad:
                raise DataError(f"--val: unknown class {bad[0]!r} (the classes are {', '.join(classes)})")
            if valset.x.shape[1:] != pool.x.shape[1:]:
                if kind == "rows":
                    raise DataError(f"--val: its rows have {valset.x.shape[1]} features, the pool's "
                                    f"{pool.x.shape[1]}")
                valset.x = _match_channels(valset.x, pool.x.shape[1])
        known = _known(sources.read_known_labels(Path(labels)), pool.keys, classes) if labels is not None else []
        folder.mkdir(parents=True, exist_ok=True)
        _save_array(folder / "pool.npy", pool.x)
        if valset is not None:
            _save_array(folder / "val.npy", valset.x)
        store = Store.in_folder(folder)
        records = Records(store)
        records.add_items(pool.keys, pool.fields)
        if valset is not None:
            records.add_val_items(valset.keys, [classes.index(c) for c in valset.labels])
        if known:
            records.add_answers((item, annotator, "label", label, None, None) for item, label in known)
        meta = {"kind": kind, "root": str(root), "classes": classes, "size": size, "strategy": strategy,
                "settings": {**settings}, "val": str(Path(val).resolve()) if val is not None else None,
                "created": time.time()}
        store.set_meta("project", meta)  # last: a folder without it is not a project
        return cls(folder, store)

    # -- what it holds ---------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def kind(self) -> str:
        """``images`` or ``rows``."""
        return str(self.meta["kind"])

    @property
    def root(self) -> Path:
        """The images folder, or the CSV file, the items come from."""
        return Path(self.meta["root"])

    @property
    def has_val(self) -> bool:
        return (self.folder / "val.npy").is_file()

    @property
    def size(self) -> int:
        return self.records.count_items()

    @property
    def strategy(self) -> str:
        """The strategy of the latest query (the next fit trains its objective)."""
        return str(self.meta.get("strategy") or DEFAULT_STRATEGY)

    def _set_meta(self, **changes: Any) -> None:
        self.meta.update(changes)
        self.store.set_meta("project", self.meta)

    def dataset(self) -> Dataset:
        """The pool (targets unknown: -1) and the validation set (empty without one) as a Dataset."""
        if self._dataset is None:
            x = _load_array(self.folder / "pool.npy")
            if self.has_val:
                xv = _load_array(self.folder / "val.npy")
                yv = torch.tensor(self.records.val_labels(), dtype=torch.long)
            else:
                xv, yv = x[:0], torch.zeros(0, dtype=torch.long)
            self._dataset = Dataset(self.folder.name, x, torch.full((x.shape[0],), -1, dtype=torch.long), xv, yv,
                                    self.classes, extras={"project": str(self.folder)})
        return self._dataset

    def item_of(self, key: str) -> int | None:
        return self.records.item_of(key)

    def labels_per_class(self, derived: Derived) -> list[int]:
        """How many items each class holds (by their derived labels)."""
        counts = [0] * len(self.classes)
        for y in derived.labels.values():
            counts[y] += 1
        return counts

    # -- answers -----------------------------------------------------------------------
    def answers(self) -> list[Answer]:
        return self.records.answers()

    def derived(self) -> Derived:
        return derive(self.records.answers())

    def answer(self, item: int, annotator: str, kind: Kind, label: int | None = None,
               request: str | None = None) -> Answer:
        """Record a label or a skip and return it (committed before this returns).  A ``request``
        seen before returns its first event unchanged; an answer equal to the annotator's answer in
        force is not recorded again."""
        if request is not None and (seen := self.records.by_request(request)) is not None:
            return seen
        self._check_annotator(annotator)
        if not 0 <= item < self.size:
            raise PoolError(f"no item {item}: the project has items 0..{self.size - 1}")
        if kind == "label":
            if label is None or not 0 <= label < len(self.classes):
                raise PoolError(f"label {label} is not a class index 0..{len(self.classes) - 1}")
        elif kind == "skip":
            label = None
        else:
            raise PoolError(f"unknown answer kind {kind!r}: label or skip (undo() takes an answer back)")
        mine = derive(self.records.answers()).current.get((annotator, item))
        if mine is not None and mine.kind == kind and mine.label == label:
            return mine
        (new_id,) = self.records.add_answers([(item, annotator, kind, label, None, request)])
        return Answer(new_id, item, annotator, kind, label, None, time.time())

    def undo(self, annotator: str, request: str | None = None) -> Answer | None:
        """Take back the annotator's latest answer in force: an undo event naming it (its ``item``
        is the item it was about), or None when there is nothing to undo."""
        if request is not None and (seen := self.records.by_request(request)) is not None:
            return seen
        self._check_annotator(annotator)
        last = latest_in_force(self.records.answers(), annotator)
        if last is None:
            return None
        (new_id,) = self.records.add_answers([(last.item, annotator, "undo", None, last.id, request)])
        return Answer(new_id, last.item, annotator, "undo", None, last.id, time.time())

    @staticmethod
    def _check_annotator(annotator: str) -> None:
        if not annotator or len(annotator) > 64:
            raise PoolError("an annotator's name must be 1 to 64 characters")

    # -- the batch on the page ------------------------------------------------------------
    def batch(self, derived: Derived | None = None) -> list[BatchItem]:
        """The latest query round's items in rank order, then older queried items still open
        (neither labeled nor skipped)."""
        derived = derived or self.derived()
        run = self._run_id()
        if run is None:
            return []
        rows = self.store.conn.execute("SELECT cycle, rank, item, score FROM queries WHERE run_id = ? "
                                       "ORDER BY cycle DESC, rank", (run,)).fetchall()
        if not rows:
            return []
        latest = rows[0][0]
        out: list[BatchItem] = []
        seen: set[int] = set()
        for cycle, rank, item, score in rows:
            if item in seen:
                continue
            if cycle == latest or (item not in derived.labels and item not in derived.skipped):
                seen.add(item)
                out.append(BatchItem(item, rank, score, cycle + 1))
        return out

    def progress(self, annotator: str, derived: Derived | None = None) -> tuple[int, int, int]:
        """(answered by ``annotator``, settled by anyone (labeled or skipped), batch size)."""
        derived = derived or self.derived()
        items = [b.item for b in self.batch(derived)]
        mine = sum((annotator, i) in derived.current for i in items)
        settled = sum(i in derived.labels or i in derived.skipped for i in items)
        return mine, settled, len(items)

    def queryable(self) -> int:
        """How many items a query may still choose: neither labeled, skipped nor waiting in a batch."""
        derived = self.derived()
        waiting = {b.item for b in self.batch(derived)}
        return self.size - len(set(derived.labels) | derived.skipped | waiting)

    # -- learning --------------------------------------------------------------------------
    def _run_id(self) -> int | None:
        row = self.store.conn.execute("SELECT id FROM runs WHERE strategy = ? AND trial = 0", (RUN_NAME,)).fetchone()
        return int(row[0]) if row else None

    def training_settings(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**PROJECT_SETTINGS, **({"augment": "flip,crop"} if self.kind == "images" else {}),
                **self.meta.get("settings", {}), **(overrides or {})}

    def learner(self, strategy: str | None = None, acquisition: str | None = None,
                overrides: dict[str, Any] | None = None) -> Learner:
        """The project's learner with the annotators' labels as they stand (synchronised first)."""
        learner = self._learner(strategy or self.strategy, acquisition, overrides)
        learner.truth_known = False
        derived = self.derived()
        sources_of = {i: f"annotator:{a.annotator}" for i, a in derived.deciding.items()}
        self.store.sync_labels(learner.run_id, learner.cycle + 1,
                               {i: (y, sources_of[i]) for i, y in derived.labels.items()})
        learner.reload()
        return learner

    def _learner(self, strategy: str, acquisition: str | None = None,
                 overrides: dict[str, Any] | None = None) -> Learner:
        settings = self.training_settings(overrides)
        model = settings.pop("model", None)
        return Learner(model, self.dataset(), strategy, acquisition=acquisition, store=self.store, name=RUN_NAME,
                       **settings)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One process at a time trains or queries (answers never wait for it)."""
        path = self.folder / LOCK_NAME
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"{self.folder}: a training or query is running in another process; "
                                  "wait for it to finish (activeloss status shows it)") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def latest_version(self) -> int:
        versions = self.records.versions()
        return versions[-1].version if versions else 0

    def fit(self, strategy: str | None = None, progress: Callable[[int, int], None] | None = None,
            overrides: dict[str, Any] | None = None) -> FitResult:
        """Train the next model version on every label so far (and measure it on the validation set)."""
        with self.exclusive():
            return self._fit(strategy, progress, overrides)

    def _fit(self, strategy: str | None, progress: Callable[[int, int], None] | None,
             overrides: dict[str, Any] | None) -> FitResult:
        name = strategy or self.strategy
        learner = self.learner(name, overrides=overrides)
        if learner.num_labeled == 0:
            raise PoolError("nothing is labeled yet: label some items first (activeloss label), or give "
                            "init --labels FILE")
        learner.progress = progress
        seconds = learner.fit()
        metric = value = None
        if self.has_val:
            metrics = learner.evaluate(figures=False)
            metric = learner.task.metrics[0].name
            value = metrics[metric]
        version = learner.cycle + 1
        self.records.add_version(version, name, learner.num_labeled, metric, value)
        self._guess(learner, version, [b.item for b in self.batch()])
        learner.finish()
        return FitResult(version, learner.num_labeled, seconds, metric, value)

    def _guess(self, learner: Learner, version: int, items: list[int]) -> None:
        """Store the model's class and confidence for ``items`` (what the page shows)."""
        if not items or learner.cycle < 0:
            return
        learner.model_at()  # the latest model, in memory
        probs = learner.task.probabilities(learner.outputs(torch.tensor(items, dtype=torch.long))).cpu()
        conf, label = probs.max(dim=1)
        self.records.set_guesses(version, zip(items, label.tolist(), conf.tolist(), probs.tolist()))

    def query(self, k: int, strategy: str | None = None, include_skipped: bool = False,
              say: Callable[[str], None] = lambda _: None) -> QueryResult:
        """A pending, ranked batch of ``k`` items chosen by ``strategy`` with the latest model.

        With no labels and no model (a cold start) the batch is :func:`cold_start`'s; with labels
        but no model, or a model trained for another objective, a model is trained first.
        Items already pending, and skipped ones unless ``include_skipped``, are not chosen again.
        """
        name = strategy or self.strategy
        wanted = get_strategy(name)
        if k < 1:
            raise PoolError(f"--budget {k}: query at least one item")
        with self.exclusive():
            versions = self.records.versions()
            trained = versions[-1].strategy if versions else None
            derived = self.derived()
            if trained is None and not derived.labels:
                result = self._cold_start(k, name, include_skipped, derived)
                self._set_meta(strategy=name, budget=k)  # the next rounds' (once the query is made)
                return result
            if trained is None or get_strategy(trained).objective != wanted.objective:
                why = ("no model yet" if trained is None else
                       f"the latest model was trained for {get_strategy(trained).objective}, {name} needs "
                       f"{wanted.objective}")
                say(f"{why}: training one on the {len(derived.labels)} labels first")
                self._fit(name, None, None)
                trained = name
            learner = self.learner(trained, acquisition=wanted.acquisition if trained != name else None)
            exclude = self._waiting(learner, derived, include_skipped)
            batch = learner.query(k, exclude=exclude)
            version = learner.cycle + 1
            self._guess(learner, version, batch.items.tolist())
            learner.finish()
            self._set_meta(strategy=name, budget=k)
        scores = batch.scores.tolist() if batch.scores is not None else [None] * len(batch)
        return QueryResult(batch.items.tolist(), scores, version, name)

    def _waiting(self, learner: Learner, derived: Derived, include_skipped: bool) -> torch.Tensor:
        """Items a query must not choose: pending ones, and skipped ones unless asked."""
        pending = learner.pending()
        items = set(pending.items.tolist()) if pending is not None else set()
        if include_skipped:
            items -= derived.skipped
        else:
            items |= derived.skipped
        return torch.tensor(sorted(items), dtype=torch.long)

    def _cold_start(self, k: int, name: str, include_skipped: bool, derived: Derived) -> QueryResult:
        learner = self.learner(name)
        exclude = self._waiting(learner, derived, include_skipped)
        allowed = torch.ones(self.size, dtype=torch.bool)
        allowed[exclude] = False
        candidates = allowed.nonzero().flatten()
        if not 1 <= k <= candidates.numel():
            raise PoolError(f"cannot query {k} items: {candidates.numel()} unlabeled items are not pending")
        t0 = time.perf_counter()
        picks, scores = cold_start(learner.inputs, candidates, k, learner.seed)
        assert learner.store is not None
        learner.store.record_query(learner.run_id, -1, list(zip(picks, scores)), time.perf_counter() - t0)
        learner.finish()
        return QueryResult(picks, list(scores), 0, "cold-start")

    # -- using the model -----------------------------------------------------------------
    def predict(self, x: np.ndarray, version: int | None = None) -> tuple[torch.Tensor, int]:
        """Per-class probabilities of new inputs (shaped like the pool's) and the version used."""
        versions = self.records.versions()
        if not versions:
            raise PoolError("no model yet: train one first (activeloss fit)")
        chosen = next((v for v in versions if v.version == version), None) if version else versions[-1]
        if chosen is None:
            raise ConfigError(f"no model version {version}; there are 1..{versions[-1].version}")
        learner = self._learner(chosen.strategy)
        model = learner.model_at(chosen.version - 1)
        xt = torch.as_tensor(x)
        out = []
        size = learner.settings.eval_batch_size
        with torch.no_grad(), eval_mode(model):
            for start in range(0, xt.shape[0], size):
                batch = learner.inputs.normalise(xt[start:start + size].to(learner.device))
                out.append(learner.task.probabilities(model(batch)).float().cpu())
        learner.finish()
        return torch.cat(out), chosen.version

    def read_images(self, folder: str | Path) -> tuple[list[str], np.ndarray]:
        """New images as the pool's inputs (same size and channels): for :meth:`predict`."""
        root = Path(folder).resolve()
        keys = sources.list_images(root)
        x = sources.read_images(root, keys, int(self.meta["size"]))
        return keys, _match_channels(x, int(self.dataset().x_train.shape[1]))

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Where the project stands (what ``activeloss status`` prints), as plain data."""
        answers = self.records.answers()
        derived = derive(answers)
        annotators: dict[str, dict[str, int]] = {}
        for a in answers:
            counts = annotators.setdefault(a.annotator, {"label": 0, "skip": 0, "undo": 0, "in_force": 0})
            counts[a.kind] += 1
        for (who, _item), _a in derived.current.items():
            annotators[who]["in_force"] += 1
        batch = self.batch(derived)
        settled = sum(b.item in derived.labels or b.item in derived.skipped for b in batch)
        job = self.records.job()
        return {
            "project": str(self.folder), "kind": self.kind, "items": self.size, "classes": self.classes,
            "strategy": self.strategy, "labeled": len(derived.labels), "skipped": len(derived.skipped),
            "per_class": dict(zip(self.classes, self.labels_per_class(derived))), "annotators": annotators,
            "agreement": [{"annotators": [g.first, g.second], "items": g.items, "agreed": g.agreed,
                           "rate": g.rate} for g in agreement(derived)],
            "batch": {"size": len(batch), "settled": settled, "open": len(batch) - settled},
            "versions": [v.__dict__ for v in self.records.versions()],
            "validation": len(self.records.val_labels()) if self.has_val else None,
            "job": job.__dict__ if job is not None else None,
        }


def _known(pairs: list[tuple[str, str]], keys: list[str], classes: list[str]) -> list[tuple[int, int]]:
    """Labels file rows as (item, class index); an unknown item or class, or an item given twice, is refused."""
    index = {k: i for i, k in enumerate(keys)}
    out: dict[int, int] = {}
    for key, label in pairs:
        if key not in index:
            raise DataError(f"--labels: no item {key!r} in the pool (items are named by their path under the "
                            "images folder, or the csv's id column / 'row N')")
        if label not in classes:
            raise DataError(f"--labels: item {key!r} has the unknown class {label!r} "
                            f"(the classes are {', '.join(classes)})")
        if index[key] in out:
            raise DataError(f"--labels: item {key!r} is labeled twice")
        out[index[key]] = classes.index(label)
    return sorted(out.items())


def _match_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Images with the pool's number of channels (grey <-> RGB)."""
    if x.ndim != 4 or x.shape[1] == channels:
        return x
    if channels == 1:
        return np.rint(x.astype(np.float32).mean(axis=1, keepdims=True)).astype(np.uint8)
    return np.repeat(x, channels, axis=1)


def _save_array(path: Path, x: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)


def _load_array(path: Path) -> torch.Tensor:
    try:
        return torch.from_numpy(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} ({e}); the project's inputs are damaged") from None


__all__ = ["DEFAULT_ANNOTATOR", "BatchItem", "FitResult", "Project", "QueryResult"]
