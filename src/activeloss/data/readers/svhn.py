"""SVHN, the cropped-digits release (Format 2): two MATLAB v5 files; label 10 is the digit 0."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import make_dataset, need_dir

DESCRIPTION = (
    "svhn:DIR with the cropped-digits SVHN files train_32x32.mat and test_32x32.mat (extra_32x32.mat is ignored)"
)

_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _svhn_split(kind: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels 0..9 from one SVHN .mat file (X: 32x32x3xN, y: Nx1, 10 = digit 0)."""
    from scipy.io import loadmat  # imported here: only SVHN needs it

    if not path.is_file():
        raise DataError(f"{kind}: expected the file {path.name} in {path.parent}, not found")
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise DataError(
            f"{kind}: {path} is a MATLAB v7.3 (HDF5) file; expected the original SVHN release (MATLAB v5)"
        ) from None
    except Exception as e:  # noqa: BLE001 - a corrupt or non-MATLAB file can raise nearly anything in scipy
        raise DataError(f"{kind}: cannot read {path} ({type(e).__name__}: {e})") from None
    for need in ("X", "y"):
        if need not in mat:
            raise DataError(f"{kind}: {path} has no variable '{need}'")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{kind}: 'X' in {path} has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise DataError(f"{kind}: 'X' in {path} must hold bytes 0..255, found dtype {x.dtype}")
    y = y.ravel()
    if y.shape[0] != x.shape[3]:
        raise DataError(f"{kind}: {path} has {x.shape[3]} images but {y.shape[0]} labels")
    if y.dtype.kind not in "iuf":
        raise DataError(f"{kind}: labels 'y' in {path} must be numbers 1..10, found dtype {y.dtype}")
    ok = (y >= 1) & (y <= 10) & (y == np.round(y))
    if not np.all(ok):
        raise DataError(f"{kind}: label {y[~ok][0]} in {path} is not 1..10 (10 stands for the digit 0)")
    y = y.astype(np.int64) % 10
    return x.transpose(3, 2, 0, 1), y


def read_svhn(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """The release's own train/test split (extra_32x32.mat is not read)."""
    root = need_dir(kind, root)
    x_train, y_train = _svhn_split(kind, root / _SVHN_FILES["train"])
    x_test, y_test = _svhn_split(kind, root / _SVHN_FILES["test"])
    return make_dataset(kind, x_train, y_train, x_test, y_test, [str(i) for i in range(10)], str(root),
                        "from the source")


# crop only: a mirrored digit is no digit
READERS.register("svhn", Reader(read_svhn, DESCRIPTION, augment="crop"), DESCRIPTION)
