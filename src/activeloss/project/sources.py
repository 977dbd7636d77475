"""What a labeling project is made from: a folder of images or a CSV of rows (no labels needed),
a file of labels already known, and an optional labeled validation set.

Images may have any size and mode: each is decoded once, at ``init``, and resized to a square
of ``size`` pixels (squashed, nothing cropped) into one uint8 array the project keeps; the
originals stay where they are and the labeling page shows them.  An item's *key* is its path
relative to the images folder (or ``row N`` / the ``id`` column of a CSV): what label files and
imports name it by.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data.images import is_image_file
from ..errors import DataError

#: columns of a CSV of rows that are not features
ID_COLUMN, LABEL_COLUMN = "id", "label"


@dataclass
class Items:
    """A set of items: their keys, inputs (uint8 images N,C,S,S or float32 rows N,D) and, for rows,
    their fields as read (what the page shows)."""

    keys: list[str]
    x: np.ndarray
    fields: list[dict[str, str]] | None = None
    labels: list[str] = field(default_factory=list)  # a labeled set's class names, one per item


def list_images(root: Path) -> list[str]:
    """Every image file under ``root`` (sub-folders too), as sorted posix paths relative to it."""
    if not root.is_dir():
        raise DataError(f"--images: {root} is not a folder")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if is_image_file(f)]
    if not found:
        raise DataError(f"--images: {root} holds no images (.jpg, .jpeg, .png, .bmp, .gif or .webp)")
    return sorted(found)


def decode_resized(path: Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8 RGB; a file Pillow cannot read is named in the error."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    except Exception as e:  # Pillow raises many types for corrupt files
        raise DataError(f"cannot read image {path} ({e or type(e).__name__})") from None


def read_images(root: Path, keys: list[str], size: int, progress: bool = True) -> np.ndarray:
    """The images as (N, C, size, size) uint8: one channel when every image is grey, else RGB."""
    out = np.empty((len(keys), size, size, 3), dtype=np.uint8)
    for i, key in enumerate(tqdm(keys, desc="reading images", unit="img", disable=not progress or len(keys) < 500)):
        out[i] = decode_resized(root / key, size)
    grey = bool((out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all())
    return np.ascontiguousarray(out[..., :1].transpose(0, 3, 1, 2) if grey else out.transpose(0, 3, 1, 2))


def image_items(root: Path, size: int) -> Items:
    keys = list_images(root)
    return Items(keys, read_images(root, keys, size))


def labeled_image_folder(root: Path, size: int, classes: list[str]) -> Items:
    """A labeled set laid out as ``root/<class>/<image>``: every sub-folder must be a class."""
    if not root.is_dir():
        raise DataError(f"--val: {root} is not a folder (expected {root}/<class>/<image>)")
    keys = list_images(root)
    labels = [k.split("/", 1)[0] if "/" in k else "" for k in keys]
    unknown = sorted({c for c in labels if c not in classes})
    if unknown:
        raise DataError(f"--val: {root} has images outside a class folder or in folders that are not classes: "
                        f"{', '.join(repr(c) for c in unknown[:5])} (the classes are {', '.join(classes)})")
    return Items(keys, read_images(root, keys, size), labels=labels)


def _read_table(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{what}: {path} line {reader.line_num} does not have as many fields as the header")
                if any(v.strip() for v in row.values()):
                    rows.append({k.strip(): v.strip() for k, v in row.items()})
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{what}: cannot read {path} ({e})") from None
    if not header:
        raise DataError(f"{what}: {path} has no header row")
    if not rows:
        raise DataError(f"{what}: {path} has no data rows")
    return header, rows


def row_items(path: Path, labeled: bool = False, what: str = "--csv") -> Items:
    """Rows of a CSV: numeric feature columns, an optional ``id`` column (the rows' keys, else
    ``row N``) and, in a labeled set (or ignored in the pool), a ``label`` column."""
    header, rows = _read_table(path, what)
    if labeled and LABEL_COLUMN not in header:
        raise DataError(f"{what}: {path} has no '{LABEL_COLUMN}' column")
    features = [h for h in header if h not in (ID_COLUMN, LABEL_COLUMN)]
    if not features:
        raise DataError(f"{what}: {path} has no feature columns")
    keys = [r[ID_COLUMN] if ID_COLUMN in r else f"row {i + 1}" for i, r in enumerate(rows)]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DataError(f"{what}: {path} names the row {dup!r} twice (the id column must be unique)")
    x = np.empty((len(rows), len(features)), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, col in enumerate(features):
            try:
                x[i, j] = float(r[col])
            except ValueError:
                raise DataError(f"{what}: {path} row {keys[i]!r}, column '{col}': {r[col]!r} is not a number") from None
    if not np.isfinite(x).all():
        raise DataError(f"{what}: {path} holds a value that is not finite")
    fields = [{k: v for k, v in r.items() if k != LABEL_COLUMN} for r in rows]
    return Items(keys, x, fields, labels=[r.get(LABEL_COLUMN, "") for r in rows] if labeled else [])


def read_known_labels(path: Path) -> list[tuple[str, str]]:
    """(item key, class name) pairs of a labels file: a CSV with columns ``item`` and ``label``."""
    header, rows = _read_table(path, "--labels")
    if "item" not in header or LABEL_COLUMN not in header:
        raise DataError(f"--labels: {path} needs the columns 'item' and 'label' (it has {', '.join(header)})")
    return [(r["item"], r[LABEL_COLUMN]) for r in rows]


def parse_classes(text: str) -> list[str]:
    """``a,b,c`` as class names: at least two, none empty or repeated."""
    classes = [c.strip() for c in text.split(",")]
    if any(not c for c in classes):
        raise DataError(f"--classes {text!r}: a class name is empty")
    if len(set(classes)) != len(classes):
        raise DataError(f"--classes {text!r}: a class is named twice")
    if len(classes) < 2:
        raise DataError(f"--classes {text!r}: name at least two classes")
    return classes
