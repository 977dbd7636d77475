"""The reader registry and the shared spec parsing (each format lives in its own module)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DataError
from ...registry import Registry
from ..dataset import Dataset


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may need beyond the path (most use only some of it)."""

    seed: int = 0  # seeds the train/test split of sources without one
    test_fraction: float = 0.2  # test share of sources without their own split
    split: int = 0  # which of a benchmark's fixed train/test splits (UCI: 0..19)
    target: str | None = None  # the target column of a table (csv); None: the reader's default
    task: str | None = None  # classification or regression; None: the reader decides
    crop_size: int | None = None  # pose readers: side of the square person crops; None: the reader's default
    image_size: int | None = None  # folder: images resized to this square side on load (None: as they are);
    # detection readers: the side of the square model inputs (None: the reader's default)
    image_memory_gb: float | None = None  # folder: decoded size above which it streams; None: a quarter of RAM


@dataclass(frozen=True)
class Reader:
    """A dataset format: how to read it and what a run on it gets by default."""

    read: Callable[[str, Path | None, ReadOptions], Dataset]
    description: str
    needs_path: bool = True
    #: training augmentation when the run names none (natural images: flip,crop)
    augment: str = "none"
    #: protocol settings for this dataset when the run leaves them unset (the embedded sets'
    #: small protocols, so their demos take minutes)
    defaults: dict[str, Any] = field(default_factory=dict)


READERS: Registry[Reader] = Registry("dataset kind")
#: the dataset kinds whose images --image-size resizes on load
RESIZING_KINDS = ("folder", "voc", "synthetic-shapes")


def parse_spec(spec: str) -> tuple[str, str]:
    """``"KIND:PATH"`` -> (kind in lower case, path); ``"digits"`` -> ("digits", "")."""
    kind, _, path = spec.strip().partition(":")
    return kind.strip().lower(), path.strip()


def reader_of(spec: str) -> Reader:
    kind, _ = parse_spec(spec)
    if kind not in READERS:
        raise DataError(f"unknown dataset kind '{kind}' in '{spec}'; choose one of {', '.join(READERS)}")
    return READERS.get(kind)


def load_dataset(spec: str, seed: int = 0, test_fraction: float = 0.2, *, split: int = 0,
                 target: str | None = None, task: str | None = None, crop_size: int | None = None,
                 image_size: int | None = None, image_memory_gb: float | None = None,
                 validation: float = 0.0) -> Dataset:
    """Read the dataset named by ``spec`` (``digits`` or ``KIND:PATH``); see :class:`ReadOptions`.
    With ``validation`` > 0 a share of the training set, drawn with ``seed``, replaces the test
    split (:meth:`Dataset.validation_split`)."""
    data = _read(spec, seed, test_fraction, split, target, task, crop_size, image_size, image_memory_gb)
    return data.validation_split(validation, seed) if validation > 0 else data


def _read(spec: str, seed: int, test_fraction: float, split: int, target: str | None, task: str | None,
          crop_size: int | None, image_size: int | None, image_memory_gb: float | None) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"the test fraction must lie strictly between 0 and 1, got {test_fraction}")
    kind, path = parse_spec(spec)
    reader = reader_of(spec)
    if image_size is not None and kind not in RESIZING_KINDS:
        raise ConfigError(f"--image-size resizes the images of {', '.join(RESIZING_KINDS)} data on load; "
                          f"the {kind} dataset has its own size")
    options = ReadOptions(seed, test_fraction, split, target, task, crop_size, image_size, image_memory_gb)
    if not reader.needs_path:
        if path:
            where = "made in memory" if kind.startswith("synthetic-") else "bundled with scikit-learn"
            raise DataError(f"the {kind} dataset is {where} and takes no path: use '{kind}'")
        return reader.read(kind, None, options)
    if not path:
        raise DataError(f"a dataset spec needs a path: {kind}:PATH")
    root = Path(path).expanduser()
    # several roots joined with "+" (voc:VOC2007+VOC2012): each must exist
    parts = [Path(p).expanduser() for p in path.split("+") if p] if "+" in path and not root.exists() else [root]
    missing = next((p for p in parts if not p.exists()), None)
    if missing is not None:
        raise DataError(f"{kind}: {missing} does not exist")
    try:
        return reader.read(kind, root, options)
    except OSError as e:  # e.g. a permission denied while listing or reading: still the user's to fix
        raise DataError(f"{kind}: cannot read {e.filename or root} ({e.strerror or e})") from None


