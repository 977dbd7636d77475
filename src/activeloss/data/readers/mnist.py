"""The MNIST release: four idx files, plain or gzipped (also fits Fashion-MNIST and KMNIST)."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import make_dataset, need_dir

DESCRIPTION = "mnist:DIR with the four MNIST idx files, plain or .gz"

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_mnist_file(root: Path, name: str) -> Path:
    """The file, plain or gzipped; also looks in torchvision's MNIST/raw layout."""
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"mnist: expected the file {name}(.gz) in {root}, not found")


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse an idx file (big-endian header: magic, then NDIM sizes; then uint8 data) and check its length."""
    what = "images" if ndim == 3 else "labels"
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"mnist: cannot read {path} ({e})") from None
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"mnist: {path} is truncated: {len(raw)} bytes, shorter than the idx header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"mnist: {path} is not an idx {what} file (magic number {found}, expected {magic})")
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)]
    need = header + int(np.prod(dims))
    if len(raw) != need:
        state = "truncated" if len(raw) < need else "longer than its header says"
        raise DataError(
            f"mnist: {path} is {state}: the header promises {'x'.join(map(str, dims))} {what} "
            f"({need} bytes) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_mnist(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """The release's own train/test split; the images stay uint8."""
    root = need_dir(kind, root)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (img_name, lab_name) in _MNIST_FILES.items():
        img_path, lab_path = _find_mnist_file(root, img_name), _find_mnist_file(root, lab_name)
        x = read_idx(img_path, 2051, 3)[:, None]
        y = read_idx(lab_path, 2049, 1)
        if len(x) != len(y):
            raise DataError(f"mnist: {img_path} has {len(x)} images but {lab_path} has {len(y)} labels")
        arrays[split] = (x, y)
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    return make_dataset(kind, xtr, ytr, xte, yte, [str(i) for i in range(10)], str(root), "from the source")


READERS.register("mnist", Reader(read_mnist, DESCRIPTION, augment="none"), DESCRIPTION)
