"""``synthetic-shapes``: rectangles, discs and triangles on noise, made in memory from a seed.

Each image holds 1 to 3 objects, each in its own quadrant (so they never overlap), 10 to 28
pixels wide and high on a 64 x 64 image; each class has its own colour (with a random shade),
so the class is told by shape and colour and the work is in the boxes.  It is the detection
task's demo and test set: nothing is read from disk.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .boxcommon import Objects, detection_dataset

CLASSES = ["rectangle", "disc", "triangle"]
COLOURS = np.array([[230, 60, 50], [60, 210, 70], [70, 110, 240]], dtype=np.float32)
TRAIN, TEST = 1000, 250
SIDE = 64

DESCRIPTION = (f"synthetic-shapes: {TRAIN:,} + {TEST} images of 1-3 rectangles, discs and triangles on noise, "
               f"{SIDE}x{SIDE} (detection; made from the seed, no path)")

#: a small protocol, so a demo takes minutes on a CPU
DEFAULTS: dict[str, Any] = {"cycles": 4, "initial": 100, "budget": 100, "subset": 0, "epochs": 20, "batch_size": 32,
                            "lr": 0.05, "reinit": False, "detection_augment": "light"}


def layout(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 3, 4) in pixels and classes (n, 3), -1 for an empty slot."""
    half = size / 2
    u = size / SIDE
    count = rng.integers(1, 4, n)
    quadrant = np.argsort(rng.random((n, 4)), axis=1)[:, :3]  # three distinct quadrants per image
    wh = rng.uniform(10, 28, (n, 3, 2)) * u
    corner = np.stack([quadrant % 2, quadrant // 2], axis=-1) * half + rng.random((n, 3, 2)) * (half - wh)
    boxes = np.concatenate([corner, corner + wh], axis=-1)
    classes = rng.integers(0, len(CLASSES), (n, 3))
    classes[np.arange(3)[None, :] >= count[:, None]] = -1
    return boxes, classes


def render(boxes: np.ndarray, classes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images (n, 3, size, size) uint8 of the shapes; pixel (i, j) covers [j, j+1] x [i, i+1]."""
    n = boxes.shape[0]
    centre = np.arange(size, dtype=np.float64) + 0.5
    ys, xs = centre[:, None], centre[None, :]
    image = rng.uniform(0, 90, (n, size, size, 3)).astype(np.float32)
    shade = rng.uniform(0.75, 1.15, (n, 3, 1))
    for slot in range(boxes.shape[1]):  # at most three objects: a loop over slots, not images
        x1, y1, x2, y2 = (boxes[:, slot, i][:, None, None] for i in range(4))
        inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        disc = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
        triangle = inside & (np.abs(xs - cx) <= rx * (ys - y1) / (2 * ry))
        c = classes[:, slot][:, None, None]
        mask = np.where(c == 0, inside, np.where(c == 1, disc, triangle)) & (c >= 0)
        colour = COLOURS[np.clip(classes[:, slot], 0, None)] * shade[:, slot]
        image = np.where(mask[..., None], colour[:, None, None, :], image)
    return np.clip(image, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).copy()


def objects_of(boxes: np.ndarray, classes: np.ndarray) -> list[Objects]:
    return [[(int(c), float(b[0]), float(b[1]), float(b[2]), float(b[3]), 0) for b, c in zip(bs, cs) if c >= 0]
            for bs, cs in zip(boxes, classes)]


def read_synthetic_shapes(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    size = int(options.image_size or SIDE)
    rng = np.random.default_rng([options.seed, 4242])
    boxes, classes = layout(TRAIN + TEST, size, rng)
    x = render(boxes, classes, size, rng)
    train = np.arange(TRAIN + TEST) < TRAIN
    return detection_dataset(kind, x, objects_of(boxes.astype(np.float32), classes), CLASSES, train,
                             "rendered shapes", f"the last {TEST} images (seed {options.seed})")


READERS.register("synthetic-shapes", Reader(read_synthetic_shapes, DESCRIPTION, needs_path=False, defaults=DEFAULTS),
                 DESCRIPTION)
