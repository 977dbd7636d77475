"""DeepLabCut labeled frames: ``CollectedData_<scorer>.csv`` files (single animal).

The CSV has three header rows (``scorer``, ``bodyparts``, ``coords``: x and y per body part),
then one row per frame: its path (one column ``labeled-data/<video>/<frame>.png``, or three
columns that DeepLabCut 2.2+ writes), then the coordinates, empty where a part was not
labeled.  ``dlc:PATH`` takes one CSV or a folder searched for them (a project's
``labeled-data``).  A frame's image is found beside its CSV by file name, else at its path
under the folders above the CSV.

Each frame becomes one item: the whole frame padded to a square and resized to the crop size;
PCK@0.2 of the longer side of the box around the frame's labeled parts.  Frames of one video
stay on one side of the seeded split (when there are several videos).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .common import need_path
from .posecommon import POSE_DEFAULTS, crop_person, crop_size, pose_dataset, split_groups, split_text, to_crop

DESCRIPTION = ("dlc:PATH a DeepLabCut CollectedData_*.csv (header rows scorer/bodyparts/coords) or a folder of them, "
               "frames found beside each CSV (pose: whole frames, PCK@0.2 of the labeled parts' box)")


def _csv_files(kind: str, root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(root.rglob("CollectedData_*.csv"))
    if not files:
        raise DataError(f"{kind}: no CollectedData_*.csv under {root}")
    return files


def _frame_path(kind: str, csv_path: Path, parts: list[str]) -> Path:
    rel = Path(*parts)
    candidates = [csv_path.parent / rel.name] + [a / rel for a in list(csv_path.parents)[:4]]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"{kind}: frame {rel} of {csv_path} is missing (looked beside the CSV and above it)")


def _read_csv(kind: str, path: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Body parts, frame paths and coordinates (N, K, 2; NaN where unlabeled) of one CSV."""
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f)]
    if len(rows) < 4 or not rows[0] or rows[0][0].strip().lower() != "scorer":
        raise DataError(f"{kind}: {path} is not a DeepLabCut CSV (expected header rows scorer, bodyparts, coords)")
    if rows[1] and rows[1][0].strip().lower() == "individuals":
        raise DataError(f"{kind}: {path} is a multi-animal DeepLabCut CSV; only single-animal projects are read")
    coords = [c.strip().lower() for c in rows[2]]
    first = next((i for i, c in enumerate(coords) if c in ("x", "y")), None)
    if first is None or (len(coords) - first) % 2 or coords[first::2] != ["x"] * ((len(coords) - first) // 2):
        raise DataError(f"{kind}: {path}: the coords row must give x, y for each body part")
    parts = [rows[1][i].strip() for i in range(first, len(coords), 2)]
    frames, values = [], []
    for n, row in enumerate(rows[3:], start=4):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(coords):
            raise DataError(f"{kind}: {path} line {n} has {len(row)} cells, the header {len(coords)}")
        try:
            values.append([float(c) if c.strip() else np.nan for c in row[first:len(coords)]])
        except ValueError:
            raise DataError(f"{kind}: {path} line {n} has a coordinate that is not a number") from None
        frames.append(_frame_path(kind, path, [c.strip() for c in row[:first] if c.strip()]))
    if not frames:
        raise DataError(f"{kind}: {path} labels no frame")
    return parts, frames, np.asarray(values, dtype=np.float64).reshape(len(frames), len(parts), 2)


def read_dlc(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    from PIL import Image

    root = need_path(kind, root)
    size = crop_size(options)
    crops, keypoints, reference, groups = [], [], [], []
    joints: list[str] | None = None
    for path in _csv_files(kind, root):
        parts, frames, xy = _read_csv(kind, path)
        if joints is not None and parts != joints:
            raise DataError(f"{kind}: {path} labels other body parts than the first CSV")
        joints = parts
        for frame, points in zip(frames, xy):
            try:
                with Image.open(frame) as im:
                    width, height = im.size
            except Exception as e:  # Pillow raises many types for corrupt files
                raise DataError(f"{kind}: cannot read frame {frame} ({e or type(e).__name__})") from None
            side = float(max(width, height))
            centre = ((width - 1) / 2, (height - 1) / 2)
            crops.append(crop_person(frame, centre, side, size, kind))
            labeled = np.isfinite(points).all(axis=1)
            moved = np.where(labeled[:, None], to_crop(np.nan_to_num(points), centre, side, size), 0.0)
            keypoints.append(np.concatenate([moved, labeled[:, None].astype(np.float64)], axis=1))
            box = moved[labeled].max(axis=0) - moved[labeled].min(axis=0) if labeled.sum() >= 2 else None
            reference.append(float(box.max()) if box is not None and box.max() > 0 else float(size))
            groups.append(str(frame.parent))
    assert joints is not None
    unit = "video" if len(set(groups)) > 1 else "frame"
    if unit == "frame":
        groups = [str(i) for i in range(len(crops))]
    train = split_groups(groups, options.seed, options.test_fraction)
    return pose_dataset(kind, np.stack(crops), np.stack(keypoints), np.array(reference, dtype=np.float32), 0.2,
                        joints, train, str(root), split_text(options.seed, options.test_fraction, unit))


READERS.register("dlc", Reader(read_dlc, DESCRIPTION, defaults=POSE_DEFAULTS), DESCRIPTION)
