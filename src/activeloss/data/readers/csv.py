"""CSV tables: a header row, a target column (``label`` unless the run names another) and numeric
feature columns; the target holds classes, or real values for regression."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import encode_labels, need_file, not_whole, requested_task, split_dataset

DESCRIPTION = ("csv:FILE.csv with a header row, numeric feature columns and a target column (label, or the one "
               "--target names; real-valued targets are regression)")

#: the target column when the run names none
DEFAULT_TARGET = "label"


def _read_table(kind: str, root: Path, target: str) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the non-blank rows and their line numbers; every row as wide as the header."""
    try:
        with open(root, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if target not in header:
                cols = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
                raise DataError(f"{kind}: {root} has no column named '{target}' (columns: {cols or 'none'})")
            rows, lines = [], []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{kind}: {root} line {reader.line_num} has {len(row)} fields but the header has {len(header)}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{kind}: cannot read {root} ({e})") from None
    return header, rows, lines


def _numbers(values: np.ndarray) -> np.ndarray | None:
    """The cells as float64, or None when one is not a number."""
    try:
        return values.astype(np.float64)
    except ValueError:
        return None


def _first_bad_cell(kind: str, root: Path, cells: list[list[str]], names: list[str], lines: list[int]) -> DataError:
    """The error naming the first cell that is not a number (only called once numpy has found one)."""
    for r, line in zip(cells, lines):
        for value, col in zip(r, names):
            try:
                float(value)
            except ValueError:
                return DataError(f"{kind}: {root} line {line}, column '{col}': '{value}' is not a number")
    return DataError(f"{kind}: {root} holds a cell that is not a number")


def _regression_targets(kind: str, root: Path, values: np.ndarray, target: str, lines: list[int]) -> np.ndarray:
    """The target cells as float32; a cell that is no finite number is named by line and column."""
    numbers = _numbers(values)
    if numbers is None:
        raise _first_bad_cell(kind, root, [[v] for v in values.tolist()], [target], lines)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{kind}: {root} line {lines[i]}, column '{target}': '{values[i]}' is not a finite number")
    return numbers.astype(np.float32)


def _is_regression(task: str | None, values: np.ndarray) -> bool:
    """Regression when asked for, or (left to the values) when all are numbers and one is not whole."""
    if task is not None:
        return task == "regression"
    numbers = _numbers(values)
    return numbers is not None and bool(not_whole(numbers).any())


def read_csv(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """Rows become float32 features; the target column becomes classes or, for regression, float32 values."""
    root = need_file(kind, root)
    task = requested_task(kind, options)
    target = (options.target or "").strip() or DEFAULT_TARGET
    header, rows, lines = _read_table(kind, root, target)
    if not rows:
        raise DataError(f"{kind}: {root} has no data rows")
    if len(header) < 2:
        raise DataError(f"{kind}: {root} has no feature columns besides '{target}'")
    ti = header.index(target)
    values = np.array([r[ti].strip() for r in rows])
    regression = _is_regression(task, values)
    if not regression and (empty := np.flatnonzero(values == "")).size:
        raise DataError(f"{kind}: {root} line {lines[empty[0]]} has an empty label")
    y = _regression_targets(kind, root, values, target, lines) if regression else None
    feats = [r[:ti] + r[ti + 1:] for r in rows]
    try:
        x = np.array(feats, dtype=np.float64).astype(np.float32)
    except ValueError:  # find the first bad cell to name it
        raise _first_bad_cell(kind, root, feats, header[:ti] + header[ti + 1:], lines) from None
    if y is not None:
        return split_dataset(kind, x, y, [], str(root), options, task="regression")
    codes, class_names = encode_labels(f"{kind}: the labels in {root}", values)
    return split_dataset(kind, x, codes, class_names, str(root), options)


READERS.register("csv", Reader(read_csv, DESCRIPTION, augment="none"), DESCRIPTION)
