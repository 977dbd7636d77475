"""scikit-learn's bundled 8x8 digits: the demo set, read without a path or a download."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import split_dataset

DESCRIPTION = "scikit-learn's bundled 8x8 digits, 1,797 images, 10 classes (no path)"

#: a small protocol, so a demo on digits takes minutes
DEFAULTS: dict[str, Any] = {"cycles": 8, "initial": 40, "budget": 40, "subset": 0, "epochs": 40, "batch_size": 32,
                            "lr": 0.05}


def read_digits(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """0..16 grey levels scaled to 0..255, split by a seeded stratified shuffle."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * 255.0 / 16.0).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    return split_dataset(kind, x, y, [str(i) for i in range(10)], "sklearn.datasets.load_digits", options)


READERS.register("digits", Reader(read_digits, DESCRIPTION, needs_path=False, defaults=DEFAULTS), DESCRIPTION)
