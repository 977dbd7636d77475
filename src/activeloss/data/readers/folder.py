"""Image folders: one sub-folder per class, optionally under DIR/train and DIR/test (or DIR/val)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..dataset import Dataset
from ..images import is_image_file, load_images
from ..streaming import ImageFiles, decoded_bytes, memory_cap_bytes
from .base import READERS, Reader, ReadOptions
from .common import make_dataset, need_dir, split_dataset

_log = logging.getLogger(__name__)

DESCRIPTION = ("folder:DIR of class sub-folders of images (DIR/<class>/<image>, all one size unless --image-size "
               "resizes them), or DIR/train and DIR/test (or DIR/val) of them")


def _class_dirs(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _list_images(kind: str, root: Path, classes: list[str], require_each: bool) -> tuple[list[str], list[int]]:
    """Image files under ROOT/<class>/, sorted, with their class index."""
    files: list[str] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        folder = root / name
        found = sorted(e.path for e in os.scandir(folder) if e.is_file() and is_image_file(e.name)) \
            if folder.is_dir() else []
        if require_each and not found:
            raise DataError(
                f"{kind}: class folder {folder} has no images (.jpg, .jpeg, .png, .bmp, .gif or .webp)"
            )
        files += found
        labels += [c] * len(found)
    return files, labels


def read_folder(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    """Class sub-folders of images; DIR/train and DIR/test (or DIR/val) give the split, else a seeded one."""
    root = need_dir(kind, root)
    test_dir = next((root / t for t in ("test", "val") if (root / t).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes = _class_dirs(root / "train")
        test_classes = _class_dirs(test_dir)
        if not classes:
            raise DataError(f"{kind}: {root / 'train'} has no class sub-folders (expected train/<class>/<image>)")
        extra = sorted(set(test_classes) - set(classes))
        missing = sorted(set(classes) - set(test_classes))
        if extra or missing:
            raise DataError(
                f"{kind}: the class folders of {root / 'train'} and {test_dir} differ "
                f"(only in train: {', '.join(missing) or '-'}; only in {test_dir.name}: {', '.join(extra) or '-'})"
            )
        tr_files, tr_labels = _list_images(kind, root / "train", classes, require_each=True)
        te_files, te_labels = _list_images(kind, test_dir, classes, require_each=False)
        if not te_files:
            raise DataError(f"{kind}: {test_dir} holds no images")
        if _streams(kind, tr_files + te_files, options):
            return make_dataset(kind, ImageFiles.of(tr_files, options.image_size), np.array(tr_labels),
                                ImageFiles.of(te_files, options.image_size), np.array(te_labels), classes,
                                str(root), "from the source")
        x = load_images(tr_files + te_files, options.image_size)
        n = len(tr_files)
        return make_dataset(kind, x[:n], np.array(tr_labels), x[n:], np.array(te_labels), classes,
                            str(root), "from the source")
    classes = _class_dirs(root)
    if not classes:
        raise DataError(f"{kind}: {root} has no class sub-folders (expected {root}/<class>/<image>)")
    files, labels = _list_images(kind, root, classes, require_each=True)
    y = np.array(labels, dtype=np.int64)
    if _streams(kind, files, options):
        return split_dataset(kind, ImageFiles.of(files, options.image_size), y, classes, str(root), options)
    return split_dataset(kind, load_images(files, options.image_size), y, classes, str(root), options)


def _streams(kind: str, files: list[str], options: ReadOptions) -> bool:
    """Whether the folder is streamed from disk: its decoded images exceed the memory cap."""
    size, cap = decoded_bytes(files, options.image_size), memory_cap_bytes(options.image_memory_gb)
    if size <= cap:
        return False
    _log.info("%s: %d images take %.2f GB decoded, more than --image-memory-gb %.2f: decoded from disk batch by "
              "batch", kind, len(files), size / 1e9, cap / 1e9)
    return True


READERS.register("folder", Reader(read_folder, DESCRIPTION, augment="flip,crop"), DESCRIPTION)
