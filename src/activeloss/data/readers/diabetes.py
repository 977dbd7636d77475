"""scikit-learn's bundled diabetes set: a small regression demo, read without a path or a download."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import REGRESSION_DEFAULTS, split_dataset

DESCRIPTION = "scikit-learn's bundled diabetes regression set, 442 patients, 10 scaled features (no path)"

#: the regression protocol with the training length chosen on a validation split of diabetes' training
#: part (scripts/tune.py, 80 labels: 100 epochs at lr 0.001 beat longer or faster training, which overfits
#: this noisy target)
DIABETES_DEFAULTS = {**REGRESSION_DEFAULTS, "epochs": 100, "lr": 0.001}


def read_diabetes(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """The features as sklearn scales them; disease progression after a year is the target."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x, y = np.asarray(d.data, dtype=np.float32), np.asarray(d.target, dtype=np.float32)
    return split_dataset(kind, x, y, [], "sklearn.datasets.load_diabetes", options, task="regression")


READERS.register("diabetes", Reader(read_diabetes, DESCRIPTION, needs_path=False, defaults=DIABETES_DEFAULTS),
                 DESCRIPTION)
