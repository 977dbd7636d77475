"""Helpers every reader shares: seeded splits, label encoding, and one place that builds and
validates the :class:`Dataset`, so all formats check the same invariants."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError, DataError
from ..dataset import Dataset
from ..streaming import ImageFiles, Images
from .base import ReadOptions

#: protocol of the small regression sets (diabetes, the UCI benchmarks) when the run leaves it unset;
#: epochs and lr: a compromise between the UCI sets tuned in docs/regression-study.md
REGRESSION_DEFAULTS: dict[str, Any] = {
    # retrained from scratch each cycle: a warm-started MLP keeps training on a few hundred rows
    # cycle after cycle and overfits (diabetes' RMSE rose with every cycle when warm-started)
    "cycles": 8, "initial": 20, "budget": 20, "subset": 0, "epochs": 200, "batch_size": 16, "lr": 0.01,
    "reinit": True,
}

#: the tasks a table (csv, npz) can be read for
TABLE_TASKS = ("classification", "regression")


def random_split(kind: str, n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices of a plain shuffle (regression targets have no classes to stratify by)."""
    # imported here: the import cost only for sources that need a split
    from sklearn.model_selection import train_test_split

    try:
        tr, te = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed % 2**32)
    except ValueError:
        raise DataError(
            f"{kind}: {n} samples are too few to split into train and test (test fraction {test_fraction:g})"
        ) from None
    return np.sort(tr), np.sort(te)


def stratified_split(kind: str, y: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices, stratified by label; a plain shuffle if a class is too small to stratify."""
    from sklearn.model_selection import train_test_split

    try:
        tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed % 2**32, stratify=y)
    except ValueError:
        return random_split(kind, len(y), seed, test_fraction)
    return np.sort(tr), np.sort(te)


def stratified_split_text(seed: int, test_fraction: float) -> str:
    return f"random {test_fraction:g} of the data, stratified by class where possible (seed {seed})"


def random_split_text(seed: int, test_fraction: float) -> str:
    return f"random {test_fraction:g} of the data (seed {seed})"


def encode_labels(what: str, values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Map labels to 0..C-1 by sorted unique value; the original values become the class names.

    Integer labels that already are 0..C-1 keep their codes (names "0".."C-1").
    Strings that all look like integers are sorted numerically, so "10" comes after "9".
    """
    if values.dtype.kind in "US":
        strings = np.char.strip(values.astype(str))
        try:
            values = np.array([int(s) for s in strings], dtype=np.int64)
        except ValueError:
            uniq, codes = np.unique(strings, return_inverse=True)
            return codes.astype(np.int64).ravel(), [str(u) for u in uniq]
    elif values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            bad = values[~(np.isfinite(values) & (values == np.round(values)))][0]
            raise DataError(f"{what} must be integers or strings, found {bad}")
        values = values.astype(np.int64)
    elif values.dtype.kind not in "iub":
        raise DataError(f"{what} must be integers or strings, found dtype {values.dtype}")
    uniq, codes = np.unique(values.astype(np.int64), return_inverse=True)
    return codes.astype(np.int64).ravel(), [str(int(u)) for u in uniq]


def not_whole(values: np.ndarray) -> np.ndarray:
    """Mask of the float values that are not whole numbers (NaN and infinities included)."""
    return ~(np.isfinite(values) & (values == np.round(values)))


def requested_task(kind: str, options: ReadOptions) -> str | None:
    """The task the run asks a table to be read for, or None to let the values decide."""
    if options.task is None or options.task in TABLE_TASKS:
        return options.task
    raise ConfigError(
        f"{kind}: cannot read a table for the task {options.task!r}; choose one of {', '.join(TABLE_TASKS)}"
    )


def to_tensor(a: np.ndarray | ImageFiles) -> Images:
    """A torch tensor owning a writable, contiguous copy when needed (frombuffer arrays are
    read-only); streamed image files stay as they are."""
    if isinstance(a, ImageFiles):
        return a
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def make_dataset(kind: str, x_train: np.ndarray | ImageFiles, y_train: np.ndarray, x_test: np.ndarray | ImageFiles,
                 y_test: np.ndarray,
                 class_names: list[str], source: str, split: str, *, task: str = "classification",
                 name: str | None = None, **kw: Any) -> Dataset:
    """Build and validate the Dataset (named ``name``, else ``kind``), so every reader checks the same invariants.

    Targets become int64 class indices for classification and float32 values for regression.
    """
    target_dtype = np.float32 if task == "regression" else np.int64
    ds = Dataset(
        name=name or kind,
        x_train=to_tensor(x_train),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train.astype(target_dtype))),
        x_test=to_tensor(x_test),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test.astype(target_dtype))),
        class_names=class_names,
        extras={"source": source, "test_split": split},
        task=task,
        **kw,
    )
    return ds.validate()


def split_dataset(kind: str, x: np.ndarray | ImageFiles, y: np.ndarray, class_names: list[str], source: str,
                  options: ReadOptions, *, task: str = "classification") -> Dataset:
    """The Dataset of a source without a test set of its own: a seeded split of ``x, y``,
    stratified by class for classification, a plain shuffle for regression."""
    seed, fraction = options.seed, options.test_fraction
    if task == "regression":
        tr, te = random_split(kind, len(y), seed, fraction)
        split = random_split_text(seed, fraction)
    else:
        tr, te = stratified_split(kind, y, seed, fraction)
        split = stratified_split_text(seed, fraction)
    if isinstance(x, ImageFiles):  # a split of the files, none decoded
        return make_dataset(kind, x.subset(tr), y[tr], x.subset(te), y[te], class_names, source, split, task=task)
    return make_dataset(kind, x[tr], y[tr], x[te], y[te], class_names, source, split, task=task)


def need_path(kind: str, root: Path | None) -> Path:
    """The path of a format that needs one (``load_dataset`` never passes None to those)."""
    if root is None:
        raise DataError(f"a dataset spec needs a path: {kind}:PATH")
    return root


def need_dir(kind: str, root: Path | None) -> Path:
    root = need_path(kind, root)
    if not root.is_dir():
        raise DataError(f"{kind}: {root} is not a folder")
    return root


def need_file(kind: str, root: Path | None) -> Path:
    root = need_path(kind, root)
    if not root.is_file():
        raise DataError(f"{kind}: {root} is not a file")
    return root
