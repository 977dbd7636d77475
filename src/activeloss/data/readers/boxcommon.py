"""What the detection readers share: the validated Dataset from images and per-image boxes, and
the small CPU protocol of the real detection sets."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...tasks.detection import box_targets
from ..dataset import Dataset

#: side of the square inputs when the run names none (SSD300's)
DEFAULT_SIDE = 300
#: the small protocol of the real detection sets when the run leaves it unset (CPU-sized; the
#: papers' protocol is the llal-voc and dnal-voc presets)
DETECTION_DEFAULTS: dict[str, Any] = {"cycles": 4, "initial": "20%", "budget": "10%", "subset": 0, "epochs": 30,
                                      "batch_size": 16, "lr": 0.01, "reinit": False, "detection_augment": "light"}

Objects = list[tuple[int, float, float, float, float, int]]


def detection_dataset(kind: str, x: np.ndarray | torch.Tensor, objects: list[Objects], class_names: list[str],
                      train: np.ndarray, source: str, split: str) -> Dataset:
    """The validated Dataset: ``x`` (N, 3, S, S) uint8, ``objects`` per image (class, x1, y1,
    x2, y2, difficult) in input pixels, ``train`` a boolean mask of the training images."""
    if not train.any() or train.all():
        raise DataError(f"{kind}: {source} gives {'no' if not train.any() else 'only'} training images; "
                        "both a training and a test split are needed")
    targets = box_targets(objects)
    xt = torch.as_tensor(np.ascontiguousarray(x)) if not isinstance(x, torch.Tensor) else x
    tr, te = torch.from_numpy(train), torch.from_numpy(~train)
    ds = Dataset(name=kind, x_train=xt[tr].contiguous(), y_train=targets[tr].contiguous(), x_test=xt[te].contiguous(),
                 y_test=targets[te].contiguous(), class_names=list(class_names),
                 extras={"source": source, "test_split": split}, task="detection")
    return ds.validate()
