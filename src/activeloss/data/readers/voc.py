"""``voc:PATH``: PASCAL VOC detection data, or a flat folder of images with VOC XML annotations.

A root in the VOC layout has ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``: its
``trainval.txt`` images join the training pool and its ``test.txt`` images the test set (a root
with neither gives all its annotated images to the pool).  Several roots joined with ``+``
combine, e.g. ``voc:VOC2007+VOC2012`` is the papers' trainval'07+12 pool with test'07.  A flat
folder (``annotations/`` or ``Annotations/`` beside ``images/`` or ``JPEGImages/``, as the
raccoon set) gives all its images to the pool.  When no root has a test split, a seeded
``--test-fraction`` of the images is the test set.

Each image is resized to the square model input (``--image-size``, default 300) and its boxes
scaled with it; VOC's 1-based pixel boxes become continuous ones (``xmin - 1, ymin - 1, xmax,
ymax``) clipped to the image, and boxes with no area left (zero-area or outside the image) are
dropped, their count logged.  ``difficult`` objects are kept and flagged: ignored by the mAP
and left out of the training loss, as SSD trains on VOC.  The classes are VOC's 20 when every
name is one of them, else the names found, sorted.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .boxcommon import DEFAULT_SIDE, DETECTION_DEFAULTS, Objects, detection_dataset
from .common import need_path

_log = logging.getLogger(__name__)

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]

DESCRIPTION = ("voc:DIR[+DIR...] in the PASCAL VOC layout (Annotations/, JPEGImages/, ImageSets/Main/trainval.txt "
               "and test.txt; VOC2007+VOC2012 combine) or a flat folder of images/ and VOC XML annotations/ "
               "(detection; images resized to --image-size, default 300)")


@dataclass(frozen=True)
class _Item:
    image: Path
    annotation: Path
    train: bool | None  # None: no split of its own


@dataclass(frozen=True)
class _Object:
    name: str
    box: tuple[float, float, float, float]  # VOC pixel coordinates, 1-based and inclusive
    difficult: int


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _items(kind: str, root: Path) -> list[_Item]:
    """The annotated images of one root, each with its split (None: the root has none)."""
    if not root.is_dir():
        raise DataError(f"{kind}: {root} is not a folder")
    annotations = _first_dir(root, ("Annotations", "annotations"))
    if annotations is None:
        raise DataError(f"{kind}: {root} has no Annotations/ (VOC layout) or annotations/ folder of XML files")
    images = _first_dir(root, ("JPEGImages", "images")) or root
    main = root / "ImageSets" / "Main"
    splits = {name: main / f"{name}.txt" for name in ("trainval", "test")}
    if any(p.is_file() for p in splits.values()):
        out = []
        for name, path in splits.items():
            if path.is_file():
                out += [_Item(images / f"{i}.jpg", annotations / f"{i}.xml", name == "trainval") for i in _ids(path)]
        return out
    files = sorted(annotations.glob("*.xml"))
    if not files:
        raise DataError(f"{kind}: {annotations} holds no .xml annotation")
    return [_Item(images / f"{f.stem}.jpg", f, None) for f in files]


def _parse(kind: str, item: _Item) -> tuple[Path, list[_Object]]:
    """The image file an annotation names and its objects."""
    try:
        tree = ET.parse(item.annotation)
    except FileNotFoundError:
        raise DataError(f"{kind}: annotation {item.annotation} is missing") from None
    except ET.ParseError as e:
        raise DataError(f"{kind}: cannot parse {item.annotation} as XML ({e})") from None
    root = tree.getroot()
    name = (root.findtext("filename") or "").strip()
    image = item.image.parent / name if name and (item.image.parent / name).is_file() else item.image
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        label = (obj.findtext("name") or "").strip()
        try:
            coords = tuple(float(box.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
            difficult = int(float(obj.findtext("difficult") or 0))
        except (AttributeError, ValueError):
            raise DataError(f"{kind}: {item.annotation}: an object without a numeric bndbox") from None
        if not label:
            raise DataError(f"{kind}: {item.annotation}: an object without a name")
        objects.append(_Object(label, coords, 1 if difficult else 0))  # type: ignore[arg-type]
    return image, objects


def _load_image(kind: str, path: Path, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, side, side) uint8 and the original (width, height)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            size = im.size
            im.draft("RGB", (side, side))  # JPEG: decode at a reduced scale when that is enough
            rgb = im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise DataError(f"{kind}: image {path} is missing") from None
    except Exception as e:  # Pillow raises many types for corrupt files
        raise DataError(f"{kind}: cannot read image {path} ({e or type(e).__name__})") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy(), size


def scale_boxes(objects: list[_Object], classes: dict[str, int], size: tuple[int, int], side: int
                ) -> tuple[Objects, int]:
    """The objects in input pixels of the resized image, and how many were dropped."""
    width, height = size
    sx, sy = side / width, side / height
    out: Objects = []
    for o in objects:
        x1, y1, x2, y2 = max(o.box[0] - 1, 0.0), max(o.box[1] - 1, 0.0), min(o.box[2], width), min(o.box[3], height)
        if not (x2 > x1 and y2 > y1):  # zero area, inverted, outside the image, or NaN
            continue
        out.append((classes[o.name], x1 * sx, y1 * sy, x2 * sx, y2 * sy, o.difficult))
    return out, len(objects) - len(out)


def read_voc(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    spec = str(need_path(kind, root))
    roots = [spec_root] if (spec_root := Path(spec)).exists() else [Path(p).expanduser() for p in spec.split("+") if p]
    side = int(options.image_size or DEFAULT_SIDE)
    items = [item for r in roots for item in _items(kind, r)]
    parsed = [_parse(kind, item) for item in items]
    names = sorted({o.name for _, objects in parsed for o in objects})
    if not names:
        raise DataError(f"{kind}: {spec} holds no annotated object")
    class_names = VOC_CLASSES if set(names) <= set(VOC_CLASSES) else names
    classes = {n: i for i, n in enumerate(class_names)}
    pixels, objects, dropped = [], [], 0
    for image, objs in parsed:  # one file each: decoding is the work
        x, size = _load_image(kind, image, side)
        boxes, lost = scale_boxes(objs, classes, size, side)
        pixels.append(x)
        objects.append(boxes)
        dropped += lost
    if dropped:
        _log.warning("%s: dropped %d zero-area or out-of-image boxes of %d", kind, dropped,
                     sum(len(o) for _, o in parsed))
    splits = np.array([item.train for item in items], dtype=object)
    if any(s is False for s in splits):
        train = np.array([s is not False for s in splits], dtype=bool)
        split = "the roots' ImageSets/Main/test.txt"
    else:
        rng = np.random.default_rng([options.seed, 15])
        n_test = min(max(1, round(options.test_fraction * len(items))), len(items) - 1)
        train = np.ones(len(items), dtype=bool)
        train[rng.permutation(len(items))[:n_test]] = False
        split = f"random {options.test_fraction:g} of the images (seed {options.seed})"
    ds = detection_dataset(kind, np.stack(pixels), objects, class_names, train, spec, split)
    ds.extras["dropped_boxes"] = dropped
    return ds


READERS.register("voc", Reader(read_voc, DESCRIPTION, defaults=DETECTION_DEFAULTS), DESCRIPTION)
