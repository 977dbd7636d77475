"""Decoding folders of image files into one uint8 array, with an optional on-disk cache.

Kept apart from :mod:`readers` because it is the only slow part: tens of
thousands of small files are decoded in worker processes (Pillow's per-file
Python overhead dominates, so threads do not help) and the result can be
cached in ``$ACTIVELOSS_CACHE`` so a second run starts in a fraction of a second.
"""
from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import DataError

#: file name endings read as images (compared in lower case); anything else is ignored
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: environment variable naming a folder where decoded arrays are cached (unset: no cache)
CACHE_ENV = "ACTIVELOSS_CACHE"
#: above this many files, decoding uses a process pool and shows a progress bar
PARALLEL_MIN_FILES = 2000
_CHUNK = 500
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def is_image_file(name: str) -> bool:
    """True for a visible file whose name ends in a supported image suffix (any case)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def decode_image(path: str, size: int | None = None) -> np.ndarray:
    """One image as (H, W) grey or (H, W, 3) RGB uint8, resized to ``size`` x ``size`` when
    given (bilinear, the aspect ratio not kept, as the papers' Caltech loaders do); any decoder
    failure becomes a DataError."""
    try:
        with Image.open(path) as opened:
            grey = opened.mode in _GREY_MODES
            im = opened.convert("L" if grey else "RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im)
    except Exception as e:  # Pillow raises many types for corrupt files (OSError, SyntaxError, struct.error, ...)
        reason = "cannot identify image file" if isinstance(e, UnidentifiedImageError) else str(e)
        raise DataError(f"folder: cannot read image {path} ({reason or type(e).__name__})") from None


def _decode_chunk(paths: list[str], size: int | None = None) -> list[np.ndarray]:
    """Worker-process entry point: decode a chunk of files in order."""
    return [decode_image(p, size) for p in paths]


def _decoded(paths: list[str], size: int | None = None) -> Iterator[np.ndarray]:
    """Yield the decoded images in order, with a process pool and a progress bar for big sets."""
    big = len(paths) > PARALLEL_MIN_FILES
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with tqdm(total=len(paths), disable=not big, file=sys.stderr, desc="decoding images", unit="img") as bar:
        # Only "fork" avoids re-importing the caller's main module (spawn needs a __main__ guard);
        # the children run nothing but Pillow and numpy, as PyTorch's DataLoader workers do.
        # Linux only: fork is unsafe on macOS once system frameworks are loaded.
        if big and workers > 1 and sys.platform.startswith("linux"):
            chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
            ctx = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(min(workers, 8), mp_context=ctx)
            try:
                for images in pool.map(functools.partial(_decode_chunk, size=size), chunks):
                    yield from images
                    bar.update(len(images))
            finally:  # on a corrupt file (or Ctrl-C) do not decode the remaining chunks
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for p in paths:
                yield decode_image(p, size)
                bar.update(1)


def _stack(paths: list[str], images: Iterable[np.ndarray]) -> np.ndarray:
    """Check one common size and build (N, C, H, W); if any image is colour, grey ones become RGB."""
    arrays: list[np.ndarray] = []
    for p, a in zip(paths, images):
        if arrays and a.shape[:2] != arrays[0].shape[:2]:
            (h0, w0), (h, w) = arrays[0].shape[:2], a.shape[:2]
            raise DataError(
                f"folder: image {p} is {w}x{h} but {paths[0]} is {w0}x{h0}; all images must have the same size "
                "(or resize them on load with --image-size N)"
            )
        arrays.append(a)
    colour = any(a.ndim == 3 for a in arrays)
    n, (h, w) = len(arrays), arrays[0].shape[:2]
    out = np.empty((n, 3 if colour else 1, h, w), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = a.transpose(2, 0, 1) if a.ndim == 3 else a  # a grey (H, W) broadcasts over the 3 channels
    return out


def _cache_file(paths: list[str], size: int | None = None) -> Path | None:
    """Cache path for this exact file list (names, sizes and mtimes) and resize, or None when
    caching is off."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        return None
    h = hashlib.sha256()
    if size is not None:
        h.update(f"resize {size}\n".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return Path(folder).expanduser() / f"folder-{h.hexdigest()[:24]}.npy"


def load_images(paths: list[str], size: int | None = None) -> np.ndarray:
    """Decode the files (resized to ``size`` x ``size`` when given) into one uint8 array
    (N, C, H, W), using the cache in ``$ACTIVELOSS_CACHE`` if set."""
    if not paths:
        raise DataError("folder: no images to read")
    cache = _cache_file(paths, size)
    if cache is not None and cache.is_file():
        try:
            x = np.load(cache, allow_pickle=False)
            if x.ndim == 4 and x.shape[0] == len(paths) and x.dtype == np.uint8:
                return x
        except (OSError, ValueError):
            pass  # a damaged cache entry is simply rebuilt
    x = _stack(paths, _decoded(paths, size))
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, x)
            os.replace(tmp, cache)
        except OSError as e:
            warnings.warn(f"could not write the image cache {cache}: {e}", stacklevel=2)
    return x
