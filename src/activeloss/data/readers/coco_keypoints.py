"""COCO person keypoints: ``annotations/person_keypoints_<split>.json`` and the ``<split>/`` images.

Every annotated, non-crowd person with at least one labeled keypoint becomes one item: a
square crop around its box (1.25 x the box's longer side) and its 17 keypoints (labeled
when COCO's v is 1 or 2); PCK@0.2 of the box's longer side.  With a ``val`` file beside the
``train`` one, they are the split; with one file, a seeded share of the photos is the test set.
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
from .posecommon import PADDING, POSE_DEFAULTS, crop_person, crop_size, pose_dataset, split_groups, split_text, to_crop

DESCRIPTION = ("coco-keypoints:DIR with annotations/person_keypoints_<split>.json and the photos in DIR/<split>/ "
               "(pose: persons cropped from their boxes; a val file beside the train one is the test split)")


def _annotation_files(kind: str, root: Path) -> list[Path]:
    folder = root / "annotations"
    files = sorted(folder.glob("person_keypoints_*.json")) if folder.is_dir() else []
    if not files:
        raise DataError(f"{kind}: no {folder}/person_keypoints_*.json (COCO person keypoints) found")
    train = [f for f in files if "train" in f.stem]
    val = [f for f in files if "val" in f.stem or "test" in f.stem]
    return [train[0], val[0]] if train and val else files[:1]


def _load(kind: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{kind}: {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise DataError(f"{kind}: {path} lacks the COCO keys images, annotations and categories")
    return data


def _persons(kind: str, path: Path, root: Path, size: int) -> tuple[list[np.ndarray], list[np.ndarray], list[float],
                                                                    list[str], list[str]]:
    """Crops, keypoints (K, 3) in crop pixels, reference lengths, image names and joint names of one file."""
    data = _load(kind, path)
    person = next((c for c in data["categories"] if c.get("name") == "person" and c.get("keypoints")), None)
    if person is None:
        raise DataError(f"{kind}: {path} has no 'person' category with keypoint names")
    joints = [str(n) for n in person["keypoints"]]
    images = {im["id"]: im for im in data["images"]}
    folder = root / path.stem.removeprefix("person_keypoints_")
    if not folder.is_dir():
        folder = root / "images"
    crops, keypoints, reference, groups = [], [], [], []
    for a in data["annotations"]:
        if a.get("category_id") != person["id"] or a.get("iscrowd", 0) or a.get("num_keypoints", 0) < 1:
            continue
        if a["image_id"] not in images:
            raise DataError(f"{kind}: {path}: annotation {a.get('id')} names image {a['image_id']}, "
                            "which is not listed")
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        if kp.shape[0] != len(joints):
            raise DataError(f"{kind}: {path}: annotation {a.get('id')} has {kp.shape[0]} keypoints, "
                            f"the category names {len(joints)}")
        x, y, w, h = (float(v) for v in a["bbox"])
        side = max(w, h) * PADDING
        if side <= 0:
            continue
        centre = (x + w / 2, y + h / 2)
        name = images[a["image_id"]]["file_name"]
        crops.append(crop_person(folder / name, centre, side, size, kind))
        labeled = kp[:, 2] > 0
        xy = np.where(labeled[:, None], to_crop(kp[:, :2], centre, side, size), 0.0)
        keypoints.append(np.concatenate([xy, labeled[:, None].astype(np.float64)], axis=1))
        reference.append(max(w, h) * size / side)
        groups.append(name)
    if not crops:
        raise DataError(f"{kind}: {path} holds no person with a labeled keypoint")
    return crops, keypoints, reference, groups, joints


def read_coco_keypoints(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    root = need_dir(kind, root)
    size = crop_size(options)
    files = _annotation_files(kind, root)
    parts = [_persons(kind, f, root, size) for f in files]
    if len(parts) > 1 and parts[0][4] != parts[1][4]:
        raise DataError(f"{kind}: {files[0].name} and {files[1].name} name different keypoints")
    crops = [c for p in parts for c in p[0]]
    keypoints = np.stack([k for p in parts for k in p[1]])
    reference = np.array([r for p in parts for r in p[2]], dtype=np.float32)
    if len(parts) > 1:
        train = np.arange(len(crops)) < len(parts[0][0])
        split = f"{files[0].name} / {files[1].name}"
    else:
        train = split_groups(parts[0][3], options.seed, options.test_fraction)
        split = split_text(options.seed, options.test_fraction, "photo")
    return pose_dataset(kind, np.stack(crops), keypoints, reference, 0.2, parts[0][4], train, str(root), split)


READERS.register("coco-keypoints", Reader(read_coco_keypoints, DESCRIPTION, defaults=POSE_DEFAULTS), DESCRIPTION)
