"""What the pose readers share: square person crops with their keypoints, the split, the Dataset.

Every reader turns a person into a ``crop_size`` x ``crop_size`` image cut around a centre
with a side in source pixels (outside the photo: black), and its keypoints into that crop's
pixels (pixel j centred on j), with the reference length PCK measures against
(:mod:`activeloss.tasks.pose`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...tasks.pose import pose_targets
from ..dataset import Dataset
from .base import ReadOptions

#: side of the crops when the run names none (the Stacked Hourglass input)
DEFAULT_CROP = 256
#: a crop's side is this many times the person's box or height, as the hourglass code pads
PADDING = 1.25
#: the small protocol of the real pose sets when the run leaves it unset (CPU-sized; the paper's
#: protocol is the llal-mpii preset)
POSE_DEFAULTS: dict[str, Any] = {"cycles": 4, "initial": "20%", "budget": "10%", "subset": 0, "epochs": 30,
                                 "batch_size": 16, "lr": 0.01, "reinit": False}


def crop_size(options: ReadOptions) -> int:
    return int(options.crop_size or DEFAULT_CROP)


def crop_person(image_path: Path, centre: tuple[float, float], side: float, size: int, kind: str) -> np.ndarray:
    """A (3, size, size) uint8 crop of the square of ``side`` source pixels around ``centre``."""
    from PIL import Image

    try:
        with Image.open(image_path) as im:
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{kind}: image {image_path} is missing") from None
    except Exception as e:  # Pillow raises many types for corrupt files
        raise DataError(f"{kind}: cannot read image {image_path} ({e or type(e).__name__})") from None
    cx, cy = centre
    half = side / 2
    # source pixel j covers [j - 0.5, j + 0.5]: the box edges in Pillow's corner coordinates
    box = (cx - half + 0.5, cy - half + 0.5, cx + half + 0.5, cy + half + 0.5)
    crop = rgb.transform((size, size), Image.Transform.EXTENT, box, resample=Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1).copy()


def to_crop(xy: np.ndarray, centre: tuple[float, float], side: float, size: int) -> np.ndarray:
    """Source-pixel (x, y) (..., 2) -> crop pixels, for the crop of :func:`crop_person`."""
    c = np.asarray(centre, dtype=np.float64)
    return (xy - c + side / 2) * (size / side) - 0.5


def pose_dataset(kind: str, x: np.ndarray, keypoints: np.ndarray, reference: np.ndarray,
                 threshold: float | np.ndarray, joints: list[str], train: np.ndarray, source: str, split: str
                 ) -> Dataset:
    """The validated Dataset: ``x`` (N, 3, S, S) uint8, ``keypoints`` (N, K, 3) in crop pixels,
    ``reference`` (N,) lengths and their PCK ``threshold`` fractions, ``train`` a boolean mask of
    the training persons."""
    if not train.any() or train.all():
        raise DataError(f"{kind}: {source} gives {'no' if not train.any() else 'only'} training persons; "
                        "both a training and a test split are needed")
    targets = pose_targets(torch.from_numpy(keypoints.astype(np.float32)), torch.from_numpy(reference),
                           torch.as_tensor(np.asarray(threshold, dtype=np.float32)))
    xt = torch.from_numpy(np.ascontiguousarray(x))
    tr, te = torch.from_numpy(train), torch.from_numpy(~train)
    ds = Dataset(name=kind, x_train=xt[tr].contiguous(), y_train=targets[tr].contiguous(), x_test=xt[te].contiguous(),
                 y_test=targets[te].contiguous(), extras={"source": source, "test_split": split, "joints": joints},
                 task="pose")
    return ds.validate()


def split_groups(groups: list[str], seed: int, fraction: float) -> np.ndarray:
    """A seeded train mask that keeps the persons of one group (photo, video) on one side."""
    names = sorted(set(groups))
    if len(names) < 2:
        raise DataError(f"the data holds {len(names)} photo or video; a train/test split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = min(max(1, round(fraction * len(names))), len(names) - 1)
    test = {names[i] for i in order[:n_test]}
    return np.array([g not in test for g in groups], dtype=bool)


def split_text(seed: int, fraction: float, unit: str) -> str:
    return f"random {fraction:g} of the {unit}s (seed {seed}), every person of a {unit} on one side"
