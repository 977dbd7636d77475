"""The UCI regression benchmarks in the layout of the "UCI_Datasets" collection (Hernandez-Lobato &
Adams 2015, reused by Gal & Ghahramani's dropout experiments): a whitespace table plus index files
for its features, its target and fixed train/test splits, so results compare with the literature.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import REGRESSION_DEFAULTS, make_dataset, need_dir, not_whole

DESCRIPTION = "uci:DIR, a UCI regression benchmark folder (e.g. UCI_Datasets/concrete) with data/ and its fixed splits"


def _folders(root: Path) -> tuple[Path, Path]:
    """(the dataset folder, the folder with data.txt): PATH may be either."""
    if (root / "data").is_dir():
        return root, root / "data"
    if Path(os.path.abspath(root)).name == "data":
        return Path(os.path.abspath(root)).parent, root
    return root, root


def _read_table(kind: str, path: Path) -> np.ndarray:
    """data.txt as float64 rows; blank lines are skipped (as np.loadtxt did when the splits were made)."""
    if not path.is_file():
        raise DataError(f"{kind}: expected the file data.txt in {path.parent}, not found "
                        f"(PATH must be a UCI dataset folder holding data/, or that data/ folder)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            data = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise _table_error(kind, path, e) from None
    if data.shape[0] == 0:
        raise DataError(f"{kind}: {path} has no data rows")
    return data


def _table_error(kind: str, path: Path, error: Exception) -> DataError:
    """The error naming the first bad line of data.txt (only called once numpy has failed on it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return DataError(f"{kind}: cannot read {path}: it is not a text file")
    width, first = 0, 0
    for number, line in enumerate(text.splitlines(), 1):
        cells = line.split()
        if not cells:
            continue
        for col, cell in enumerate(cells):
            try:
                float(cell)
            except ValueError:
                return DataError(f"{kind}: {path} line {number}, column {col} (from 0): '{cell}' is not a number")
        if not width:
            width, first = len(cells), number
        elif len(cells) != width:
            return DataError(f"{kind}: {path} line {number} has {len(cells)} numbers but line {first} has {width}")
    return DataError(f"{kind}: cannot read {path} ({error})")


def _whole_numbers(kind: str, path: Path, unit: str) -> tuple[np.ndarray, list[str]]:
    """The whole numbers in an index file (as float64, with the tokens they came from)."""
    if not path.is_file():
        raise DataError(f"{kind}: expected the file {path.name} in {path.parent}, not found")
    try:
        tokens = path.read_text(encoding="utf-8").split()
    except UnicodeDecodeError:
        raise DataError(f"{kind}: cannot read {path}: it is not a text file") from None
    if not tokens:
        raise DataError(f"{kind}: {path} lists no {unit}s")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = np.array([_float_or_nan(t) for t in tokens])
    bad = np.flatnonzero(not_whole(values))
    if bad.size:
        raise DataError(f"{kind}: {path}: '{tokens[bad[0]]}' is not a whole number")
    return values, tokens


def _float_or_nan(token: str) -> float:
    try:
        return float(token)
    except ValueError:
        return float("nan")


def _read_indices(kind: str, path: Path, limit: int, unit: str) -> np.ndarray:
    """The indices listed in an index file, each checked to lie in 0..limit-1."""
    values, tokens = _whole_numbers(kind, path, unit)
    out = np.flatnonzero((values < 0) | (values >= limit))
    if out.size:
        raise DataError(f"{kind}: {path} lists {unit} {tokens[out[0]]}, but data.txt has {limit} {unit}s "
                        f"(0..{limit - 1})")
    return values.astype(np.int64)


def _n_splits(kind: str, data_dir: Path) -> int:
    """From n_splits.txt, else the number of index_train_{i}.txt files numbered 0, 1, ... without a gap."""
    path = data_dir / "n_splits.txt"
    if path.is_file():
        values, tokens = _whole_numbers(kind, path, "split count")
        if len(values) != 1 or not 1 <= values[0] < 2**31:
            raise DataError(f"{kind}: {path} must hold one positive whole number, found {' '.join(tokens[:3])}")
        return int(values[0])
    n = 0
    while (data_dir / f"index_train_{n}.txt").is_file():
        n += 1
    if not n:
        raise DataError(f"{kind}: expected the file index_train_0.txt in {data_dir}, not found")
    return n


def read_uci(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """Split ``options.split`` as published; train and test rows keep the order of their index files."""
    root = need_dir(kind, root)
    folder, data_dir = _folders(root)
    data = _read_table(kind, data_dir / "data.txt")
    rows, cols = data.shape
    features = _read_indices(kind, data_dir / "index_features.txt", cols, "column")
    target_index = _read_indices(kind, data_dir / "index_target.txt", cols, "column")
    if len(target_index) != 1:
        raise DataError(f"{kind}: {data_dir / 'index_target.txt'} must hold one column index, "
                        f"found {len(target_index)}")
    target = int(target_index[0])
    if target in features:
        raise DataError(f"{kind}: {data_dir / 'index_features.txt'} lists the target column {target} as a feature")
    used = np.append(features, target)
    bad = np.argwhere(~np.isfinite(data[:, used]))
    if bad.size:
        r, c = int(bad[0, 0]), int(used[bad[0, 1]])
        raise DataError(f"{kind}: {data_dir / 'data.txt'} row {r}, column {c} (both from 0) is {data[r, c]}, "
                        f"not a finite number")

    n, split = _n_splits(kind, data_dir), options.split
    if not 0 <= split < n:
        have = f"has splits 0..{n - 1}" if n > 1 else "has split 0 only"
        raise DataError(f"{kind}: split {split} does not exist: {root} {have}")
    train_path, test_path = data_dir / f"index_train_{split}.txt", data_dir / f"index_test_{split}.txt"
    tr = _read_indices(kind, train_path, rows, "row")
    te = _read_indices(kind, test_path, rows, "row")
    shared = np.intersect1d(tr, te)
    if shared.size:
        raise DataError(f"{kind}: {train_path.name} and {test_path.name} in {data_dir} share {shared.size} rows "
                        f"(e.g. row {shared[0]}); a row cannot be both for training and for testing")
    x, y = data[:, features].astype(np.float32), data[:, target].astype(np.float32)
    name = Path(os.path.abspath(folder)).name or kind
    return make_dataset(kind, x[tr], y[tr], x[te], y[te], [], str(folder), f"fixed split {split} of {n}",
                        task="regression", name=name)


READERS.register("uci", Reader(read_uci, DESCRIPTION, augment="none", defaults=REGRESSION_DEFAULTS), DESCRIPTION)
