"""CIFAR-10 and CIFAR-100, the python-pickle releases (CIFAR-100: fine labels are the targets,
the coarse super-classes are kept for the label-noise experiments)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import make_dataset, need_dir

DESCRIPTIONS = {
    "cifar10": "cifar10:DIR, the python-pickle CIFAR-10 release (cifar-10-batches-py)",
    "cifar100": "cifar100:DIR, the python-pickle CIFAR-100 release (cifar-100-python); fine labels, coarse kept",
}

_CIFAR = {
    # kind: (sub-folder of the release, train files, test file, meta file)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta"),
}


def _unpickle(kind: str, path: Path) -> dict:
    """Load one file of the python release (pickled by Python 2, hence encoding="bytes")."""
    if not path.is_file():
        other = "cifar100" if kind == "cifar10" else "cifar10"
        hint = ""
        if (path.parent / _CIFAR[other][3]).is_file():
            hint = f" (this looks like the {other} release: use {other}:PATH)"
        raise DataError(f"{kind}: expected the file {path.name} in {path.parent}, not found{hint}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - unpickling corrupt data can raise nearly anything
        raise DataError(f"{kind}: cannot read {path} ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{kind}: {path} does not hold a dictionary, is it a CIFAR batch file?")
    return d


def _entry(kind: str, d: dict, key: str, path: Path) -> Any:
    """A field of a CIFAR dictionary; the release uses bytes keys, re-pickled copies may use str."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{kind}: {path} has no entry '{key}'")


def _names(kind: str, d: dict, key: str, path: Path) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in _entry(kind, d, key, path)]


def _cifar_batch(kind: str, path: Path, label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images (N, 3, 32, 32) and the label arrays named by LABEL_KEYS from one batch file."""
    d = _unpickle(kind, path)
    try:
        data = np.asarray(_entry(kind, d, "data", path))
        labels = [np.asarray(_entry(kind, d, k, path), dtype=np.int64).ravel() for k in label_keys]
    except (ValueError, TypeError) as e:
        raise DataError(f"{kind}: {path} holds malformed arrays ({e})") from None
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{kind}: 'data' in {path} has shape {data.shape}, expected (N, 3072)")
    wide = data.dtype != np.uint8
    if wide and (data.dtype.kind not in "iu" or data.size and (data.min() < 0 or data.max() > 255)):
        raise DataError(f"{kind}: 'data' in {path} must hold bytes 0..255, found dtype {data.dtype}")
    for k, lab in zip(label_keys, labels):
        if len(lab) != len(data):
            raise DataError(f"{kind}: {path} has {len(data)} images but {len(lab)} '{k}'")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def _coarse_of_class(kind: str, fine: np.ndarray, coarse: np.ndarray, n_fine: int, n_coarse: int) -> list[int]:
    """The coarse label of each fine class, read off the (fine, coarse) pairs; they must agree."""
    result: list[int] = []
    for c in range(n_fine):
        seen = np.unique(coarse[fine == c])
        if len(seen) == 0:
            raise DataError(f"{kind}: fine class {c} never occurs, so its coarse class is unknown")
        if len(seen) > 1:
            raise DataError(f"{kind}: fine class {c} is filed under several coarse classes {seen.tolist()}")
        if not 0 <= seen[0] < n_coarse:
            raise DataError(f"{kind}: coarse label {seen[0]} is out of range for {n_coarse} coarse classes")
        result.append(int(seen[0]))
    return result


def read_cifar(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """CIFAR-10 / CIFAR-100 python release; PATH may also be the folder that contains it."""
    root = need_dir(kind, root)
    sub, train_files, test_file, meta_file = _CIFAR[kind]
    if not (root / meta_file).is_file() and (root / sub).is_dir():
        root = root / sub
    keys = ("labels",) if kind == "cifar10" else ("fine_labels", "coarse_labels")
    meta_path = root / meta_file
    meta = _unpickle(kind, meta_path)
    parts = [_cifar_batch(kind, root / f, keys) for f in train_files]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = [np.concatenate([p[1][i] for p in parts]) for i in range(len(keys))]
    x_test, y_test = _cifar_batch(kind, root / test_file, keys)
    if kind == "cifar10":
        names = _names(kind, meta, "label_names", meta_path)
        return make_dataset(kind, x_train, y_train[0], x_test, y_test[0], names, str(root), "from the source")
    names = _names(kind, meta, "fine_label_names", meta_path)
    coarse_names = _names(kind, meta, "coarse_label_names", meta_path)
    ds = make_dataset(kind, x_train, y_train[0], x_test, y_test[0], names, str(root), "from the source")
    # read off the train arrays, plus the test arrays (they must agree) for fine classes absent from train
    fine = np.concatenate([y_train[0], y_test[0]])
    coarse = np.concatenate([y_train[1], y_test[1]])
    ds.coarse_of_class = _coarse_of_class(kind, fine, coarse, len(names), len(coarse_names))
    ds.extras["coarse_names"] = coarse_names
    return ds


for _kind, _text in DESCRIPTIONS.items():
    READERS.register(_kind, Reader(read_cifar, _text, augment="flip,crop"), _text)
