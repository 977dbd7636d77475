"""Image folders too large for memory: decoded from disk batch by batch.

A folder whose decoded images would exceed ``--image-memory-gb`` is not stacked into one
uint8 array.  Its files become an :class:`ImageFiles`: it has the array's shape and dtype, and
indexing it with item indices (what :class:`~activeloss.data.Inputs` does for every training,
test or query batch) decodes just those files, in worker processes for large batches.  The
images are always RGB (a streamed folder cannot be scanned for colour first) and must share one
size unless ``--image-size`` resizes them.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .images import decode_image

#: batches of at least this many files are decoded by the worker processes
PARALLEL_MIN_FILES = 64
#: files decoded at a time for the normalisation statistics
STATS_BATCH = 256
_pool: ProcessPoolExecutor | None = None


def _workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8)


def _decode_rgb(paths: list[str], size: int | None) -> list[np.ndarray]:
    """Worker entry point: decode files in order as (H, W, 3) RGB uint8."""
    out = []
    for p in paths:
        a = decode_image(p, size)
        out.append(np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a)
    return out


def _decoded(paths: list[str], size: int | None) -> list[np.ndarray]:
    """The files decoded in order: in a persistent pool of forked workers for large batches
    (Linux), in this process otherwise."""
    global _pool
    workers = _workers()
    if len(paths) < PARALLEL_MIN_FILES or workers < 2 or not sys.platform.startswith("linux"):
        return _decode_rgb(paths, size)
    if _pool is None:
        # fork: the children run Pillow and numpy only, as the folder reader's decoding pool does
        _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    step = -(-len(paths) // workers)
    chunks = [paths[i:i + step] for i in range(0, len(paths), step)]
    return [a for part in _pool.map(functools.partial(_decode_rgb, size=size), chunks) for a in part]


class ImageFiles:
    """Image files read like a uint8 tensor (N, 3, H, W): ``files[indices]`` decodes them."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, paths: list[str], size: int | None, height: int, width: int) -> None:
        self.paths = list(paths)
        self.size = size
        self.shape = torch.Size((len(self.paths), 3, height, width))

    @classmethod
    def of(cls, paths: list[str], size: int | None) -> ImageFiles:
        """The files, their common size read from the first one (or ``size``)."""
        if not paths:
            raise DataError("folder: no images to read")
        if size is not None:
            return cls(paths, size, size, size)
        h, w = decode_image(paths[0]).shape[:2]
        return cls(paths, None, h, w)

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.paths)

    def is_floating_point(self) -> bool:
        return False

    def to(self, *args: Any, **kwargs: Any) -> ImageFiles:
        """Itself: the files stay on disk; each decoded batch goes to the device."""
        return self

    def __getitem__(self, index: Any) -> torch.Tensor:
        """Decode the files at ``index`` (a slice, an int or a tensor/array/list of indices) into
        one (B, 3, H, W) uint8 tensor on the CPU."""
        if isinstance(index, slice):
            positions = list(range(len(self.paths)))[index]
        elif isinstance(index, int):
            positions = [index]
        else:
            positions = torch.as_tensor(index).reshape(-1).cpu().tolist()
        files = [self.paths[i] for i in positions]
        arrays = _decoded(files, self.size)
        out = np.empty((len(files), *self.shape[1:]), dtype=np.uint8)
        for i, (path, a) in enumerate(zip(files, arrays)):
            if a.shape[:2] != tuple(self.shape[2:]):
                (h, w), (h0, w0) = a.shape[:2], self.shape[2:]
                raise DataError(f"folder: image {path} is {w}x{h} but the others are {w0}x{h0}; all images "
                                "must have the same size (or resize them on load with --image-size N)")
            out[i] = a.transpose(2, 0, 1)
        return torch.from_numpy(out)

    def subset(self, positions: np.ndarray) -> ImageFiles:
        """The files at ``positions`` (no decoding): a split of the folder."""
        return ImageFiles([self.paths[i] for i in positions.tolist()], self.size, *self.shape[2:])

    def channel_stats(self, sample: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the images scaled to [0, 1], over a seeded sample of at
        most ``sample`` files (every file when fewer), accumulated in float64 batch by batch."""
        n = len(self.paths)
        chosen = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        count = 0
        for start in range(0, len(chosen), STATS_BATCH):
            x = self[chosen[start:start + STATS_BATCH]].double().div_(255.0)
            total += x.sum(dim=(0, 2, 3))
            squares += x.pow(2).sum(dim=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        var = (squares / count - mean.pow(2)).clamp_min(0.0) * count / max(count - 1, 1)
        return mean.float(), var.sqrt().float()


def decoded_bytes(paths: list[str], size: int | None) -> int:
    """What the folder would take decoded as one uint8 array (RGB, the first image's size)."""
    if not paths:
        return 0
    h, w = (size, size) if size is not None else decode_image(paths[0]).shape[:2]
    return len(paths) * 3 * int(h) * int(w)


def memory_cap_bytes(gigabytes: float | None) -> int:
    """``--image-memory-gb`` in bytes; by default a quarter of this machine's memory."""
    if gigabytes is not None:
        return int(gigabytes * 1e9)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 10**9
    return int(total // 4)


#: what a dataset's inputs are: a tensor, or image files decoded per batch
Images = torch.Tensor | ImageFiles
