"""MPII Human Pose in the JSON form of the common Stacked Hourglass / Simple Baselines code.

Layout: ``DIR/annot/train.json`` and ``DIR/annot/valid.json`` (lists of persons) and the photos
in ``DIR/images/``.  A person is ``{"image": "015601864.jpg", "center": [x, y], "scale": s,
"joints": [[x, y] x 16], "joints_vis": [0/1 x 16]}``, in MPII's 1-based Matlab pixels (made
0-based here, as that code does); ``scale`` is the person's height / 200.  A record's
``"isValidation"`` flag, when present, puts it in the test split whatever file holds it.

The crop is the square of 1.25 x 200 x scale around the centre.  PCKh@0.5 needs each person's
head size: ``"headbox": [x1, y1, x2, y2]`` gives 0.6 x its diagonal (the official MPII
evaluation's SC_BIAS; the JSON files of that code leave the boxes in ``gt_valid.mat``, so add
them to the records), else ``"head_size"`` in pixels, else the distance from the upper neck to
the head top when both are labeled (the head segment); a person with none of these is scored
by PCK@0.2 of its height (200 x scale).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import need_dir
from .posecommon import PADDING, POSE_DEFAULTS, crop_person, crop_size, pose_dataset, to_crop

JOINTS = ["r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck", "head_top",
          "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist"]
UPPER_NECK, HEAD_TOP = 8, 9
#: the official evaluation's head size: this times the head box's diagonal
SC_BIAS = 0.6

DESCRIPTION = ("mpii:DIR with annot/train.json and annot/valid.json (the Stacked Hourglass JSON: image, center, "
               "scale, joints, joints_vis; a headbox or head_size per person for PCKh) and the photos in DIR/images/")


def _records(kind: str, path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{kind}: {path} is missing (expected annot/train.json and annot/valid.json)")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{kind}: {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(records, list):
        raise DataError(f"{kind}: {path} must hold a list of person records")
    return records


def _head(record: dict[str, Any], joints: np.ndarray, visible: np.ndarray) -> float | None:
    """The person's head size in source pixels, or None (see the module docstring)."""
    if "headbox" in record:
        x1, y1, x2, y2 = (float(v) for v in record["headbox"])
        return SC_BIAS * float(np.hypot(x2 - x1, y2 - y1))
    if "head_size" in record:
        return float(record["head_size"])
    if visible[UPPER_NECK] and visible[HEAD_TOP]:
        return float(np.linalg.norm(joints[HEAD_TOP] - joints[UPPER_NECK]))
    return None


def read_mpii(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    root = need_dir(kind, root)
    size = crop_size(options)
    crops, keypoints, reference, threshold, train = [], [], [], [], []
    for name, is_train in (("train.json", True), ("valid.json", False)):
        path = root / "annot" / name
        for i, r in enumerate(_records(kind, path)):
            try:
                joints = np.asarray(r["joints"], dtype=np.float64).reshape(-1, 2) - 1.0
                visible = np.asarray(r["joints_vis"], dtype=np.float64).reshape(-1) > 0
                centre = (float(r["center"][0]) - 1.0, float(r["center"][1]) - 1.0)
                height = 200.0 * float(r["scale"])
                image = str(r["image"])
            except (KeyError, TypeError, ValueError, IndexError):
                raise DataError(f"{kind}: {path} record {i} needs image, center, scale, joints and "
                                "joints_vis") from None
            if joints.shape[0] != len(JOINTS) or visible.shape[0] != len(JOINTS):
                raise DataError(f"{kind}: {path} record {i} has {joints.shape[0]} joints; MPII has {len(JOINTS)}")
            side = height * PADDING
            crops.append(crop_person(root / "images" / image, centre, side, size, kind))
            xy = np.where(visible[:, None], to_crop(joints, centre, side, size), 0.0)
            keypoints.append(np.concatenate([xy, visible[:, None].astype(np.float64)], axis=1))
            head = _head(r, joints, visible)
            reference.append((head if head is not None else height) * size / side)
            threshold.append(0.5 if head is not None else 0.2)
            train.append(is_train and not r.get("isValidation", False))
    if not crops:
        raise DataError(f"{kind}: {root / 'annot'} holds no person records")
    return pose_dataset(kind, np.stack(crops), np.stack(keypoints), np.array(reference, dtype=np.float32),
                        np.array(threshold, dtype=np.float32), JOINTS, np.array(train), str(root),
                        "annot/train.json / annot/valid.json")


READERS.register("mpii", Reader(read_mpii, DESCRIPTION, defaults=POSE_DEFAULTS), DESCRIPTION)
