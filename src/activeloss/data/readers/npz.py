"""NumPy archives: arrays x, y and optionally x_test, y_test, class_names; classes or real-valued targets."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import encode_labels, make_dataset, need_file, not_whole, requested_task, split_dataset

DESCRIPTION = ("npz:FILE.npz with arrays x (images N,C,H,W or N,H,W(,C) uint8 or floats in [0, 1]; or rows N,D), y, "
               "and optionally x_test, y_test, class_names")

_TARGET_NAMES = ("y", "y_test")


def _npz_inputs(kind: str, a: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Images (N,C,H,W) uint8 from 3-d/4-d arrays (NHWC transposed), or float32 rows from 2-d arrays."""
    if a.dtype.kind not in "iufb":
        raise DataError(f"{kind}: array '{name}' in {path} must be numeric, found dtype {a.dtype}")
    if a.ndim == 2:
        return a.astype(np.float32)
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim != 4:
        raise DataError(
            f"{kind}: array '{name}' in {path} has shape {a.shape}; expected (N, D) rows or "
            f"(N, H, W), (N, C, H, W) or (N, H, W, C) images"
        )
    if a.dtype == np.uint8 or a.size == 0:
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if a.dtype.kind == "f" and np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)  # float images scaled to [0, 1]
    if 0 <= lo and hi <= 255 and (a.dtype.kind in "iub" or bool(np.all(a == np.round(a)))):
        return a.astype(np.uint8)  # whole numbers 0..255 stored in a wider type
    raise DataError(
        f"{kind}: image array '{name}' in {path} has values in [{lo:g}, {hi:g}]; "
        f"expected uint8 0..255 or floats in [0, 1]"
    )


def _load_arrays(kind: str, root: Path) -> dict[str, np.ndarray]:
    """The archive's arrays this format knows, with x and y (and x_test and y_test together) required."""
    try:
        z = np.load(root, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{kind}: cannot read {root} ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{kind}: {root} is a single .npy array, not a .npz archive with arrays x and y")
    with z:
        for need in ("x", "y"):
            if need not in z.files:
                raise DataError(f"{kind}: {root} has no array '{need}' (it has: {', '.join(z.files) or 'none'})")
        if ("x_test" in z.files) != ("y_test" in z.files):
            raise DataError(f"{kind}: {root} must have both 'x_test' and 'y_test' or neither")
        try:
            return {k: z[k] for k in ("x", "y", "x_test", "y_test", "class_names") if k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(f"{kind}: cannot read {root} ({e})") from None


def _is_regression(kind: str, root: Path, task: str | None, ys: list[np.ndarray], has_names: bool) -> bool:
    """Regression when asked for, or (left to the values) for float targets that are not all whole numbers."""
    if task == "regression" and has_names:
        raise DataError(f"{kind}: {root} has 'class_names', so its labels are classes, not regression targets")
    if task is not None:
        return task == "regression"
    y = np.concatenate(ys)
    return not has_names and y.dtype.kind == "f" and bool(not_whole(y).any())


def _regression_targets(kind: str, root: Path, ys: list[np.ndarray]) -> list[np.ndarray]:
    """The targets as float32, after checking they are finite numbers."""
    for y, name in zip(ys, _TARGET_NAMES):
        if y.dtype.kind not in "iuf":
            raise DataError(f"{kind}: targets '{name}' in {root} must be numbers for regression, found dtype {y.dtype}")
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DataError(f"{kind}: target {bad[0]} of '{name}' in {root} is {y[bad[0]]}, not a finite number")
    return [y.astype(np.float32) for y in ys]


def read_npz(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """Arrays x, y (and optional x_test, y_test, class_names) from a .npz archive."""
    root = need_file(kind, root)
    task = requested_task(kind, options)
    arrays = _load_arrays(kind, root)
    has_test = "x_test" in arrays
    xs = [_npz_inputs(kind, arrays["x"], "x", root)]
    ys = [arrays["y"]]
    if has_test:
        xs.append(_npz_inputs(kind, arrays["x_test"], "x_test", root))
        ys.append(arrays["y_test"])
    for x, y, (xn, yn) in zip(xs, ys, (("x", "y"), ("x_test", "y_test"))):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise DataError(f"{kind}: labels '{yn}' in {root} must be 1-d, got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{kind}: {root} has {len(x)} rows in '{xn}' but {len(y)} labels in '{yn}'")
    ys = [y.ravel() for y in ys]
    if _is_regression(kind, root, task, ys, "class_names" in arrays):
        values = _regression_targets(kind, root, ys)
        if has_test:
            return make_dataset(kind, xs[0], values[0], xs[1], values[1], [], str(root), "from the source",
                                task="regression")
        return split_dataset(kind, xs[0], values[0], [], str(root), options, task="regression")
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].ravel()]
        if any(y.dtype.kind not in "iu" for y in ys):
            raise DataError(f"{kind}: with 'class_names', the labels in {root} must be integer class indices")
        codes = [y.astype(np.int64) for y in ys]  # range checked by Dataset.validate
    else:
        all_codes, names = encode_labels(f"{kind}: the labels in {root}", np.concatenate(ys))
        codes = [all_codes[: len(ys[0])], all_codes[len(ys[0]):]]
    if has_test:
        return make_dataset(kind, xs[0], codes[0], xs[1], codes[1], names, str(root), "from the source")
    return split_dataset(kind, xs[0], codes[0], names, str(root), options)


READERS.register("npz", Reader(read_npz, DESCRIPTION, augment="none"), DESCRIPTION)
