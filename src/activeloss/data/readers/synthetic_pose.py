"""``synthetic-pose``: rendered stick figures with 7 keypoints, made in memory from a seed.

A figure faces the viewer, so its left hand is on the image's right, as in a photo of a
person; the two hands (and the two feet) have the same colour, so only the body's geometry
tells left from right, which keeps mirroring with left-right swapping truthful.  Each figure
has a random place, size, tilt and limb angles over a noisy background.  It is the pose
task's demo and test set: nothing is read from disk.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Dataset
from .base import READERS, Reader, ReadOptions
from .posecommon import pose_dataset

JOINTS = ["head", "neck", "pelvis", "left_hand", "right_hand", "left_foot", "right_foot"]
LIMBS = [(0, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6)]
COLOURS = np.array([[255, 255, 255], [255, 140, 0], [170, 60, 255], [40, 220, 40], [40, 220, 40],
                    [240, 240, 40], [240, 240, 40]], dtype=np.float32)
TRAIN, TEST = 1000, 250
SIDE = 64

DESCRIPTION = (f"synthetic-pose: {TRAIN:,} + {TEST} rendered stick figures with 7 keypoints, {SIDE}x{SIDE} "
               "(pose; made from the seed, no path)")

#: a small protocol, so a demo takes minutes on a CPU
DEFAULTS: dict[str, Any] = {"cycles": 4, "initial": 100, "budget": 100, "subset": 0, "epochs": 20, "batch_size": 32,
                            "lr": 0.2, "reinit": False}


def figures(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Keypoints (n, 7, 2) of random figures inside a ``size`` x ``size`` image."""
    u = size / SIDE
    h = rng.uniform(18, 30, n) * u
    body = np.zeros((n, 7, 2))
    body[:, 0, 1], body[:, 1, 1] = -0.75 * h, -0.5 * h
    for joint, sign in ((3, 1), (4, -1)):  # hands: the figure's left is the image's right
        body[:, joint, 0] = sign * rng.uniform(0.2, 0.45, n) * h
        body[:, joint, 1] = -0.5 * h + rng.uniform(-0.25, 0.3, n) * h
    for joint, sign in ((5, 1), (6, -1)):
        body[:, joint, 0] = sign * rng.uniform(0.05, 0.3, n) * h
        body[:, joint, 1] = rng.uniform(0.4, 0.55, n) * h
    angle = np.radians(rng.uniform(-25, 25, n))
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    body = np.einsum("nij,nkj->nki", rot, body)
    low, high = body.min(axis=1), body.max(axis=1)  # keep the figure 4 px inside the image
    margin = 4 * u
    shift = rng.uniform(margin - low, (size - 1 - margin) - high)
    return body + shift[:, None, :]


def _segment_distance(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (n, H, W) from each pixel ``px`` (H, W, 2) to the segments a-b (n, 2)."""
    ab = (b - a)[:, None, None, :]
    ap = px[None] - a[:, None, None, :]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    return np.linalg.norm(ap - t[..., None] * ab, axis=-1)


def render(points: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images (n, 3, size, size) uint8 of the figures at ``points`` (n, 7, 2)."""
    n, u = points.shape[0], size / SIDE
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    px = np.stack([xs, ys], axis=-1)
    image = rng.uniform(0, 70, (n, size, size, 3)).astype(np.float32)
    for i, j in LIMBS:
        line = _segment_distance(px, points[:, i], points[:, j]) <= 0.8 * u
        image[line] = 150
    for k in range(len(JOINTS)):
        radius = (3.2 if k == 0 else 2.3) * u
        disc = np.linalg.norm(px[None] - points[:, k, None, None, :], axis=-1) <= radius
        image[disc] = COLOURS[k]
    return np.clip(image, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).copy()


def read_synthetic_pose(kind: str, root: Path | None, options: ReadOptions) -> Dataset:
    size = int(options.crop_size or SIDE)
    rng = np.random.default_rng([options.seed, 1729])
    points = figures(TRAIN + TEST, size, rng)
    x = render(points, size, rng)
    keypoints = np.concatenate([points, np.ones((*points.shape[:2], 1))], axis=-1)
    reference = (points.max(axis=1) - points.min(axis=1)).max(axis=1).astype(np.float32)
    train = np.arange(TRAIN + TEST) < TRAIN
    return pose_dataset(kind, x, keypoints, reference, 0.2, JOINTS, train, "rendered stick figures",
                        f"the last {TEST} figures (seed {options.seed})")


READERS.register("synthetic-pose", Reader(read_synthetic_pose, DESCRIPTION, needs_path=False, defaults=DEFAULTS),
                 DESCRIPTION)
