"""Human (or animal) pose estimation: keypoints predicted as heatmaps, PCK, heatmap entropy.

Targets of N person crops are a float32 tensor (N, K+1, 3): rows 0..K-1 hold each joint's
(x, y, visible) in input pixels of the crop (pixel j centred on j; ``visible`` 1 for a
labeled joint, 0 otherwise, its x and y then ignored), row K holds (reference length in
pixels, threshold fraction, 0): the length PCK measures against, the head size of MPII with
0.5 (PCKh@0.5), the longer side of the person's box with 0.2 (PCK@0.2) elsewhere.  Keeping
the reference in the target keeps the metric per person without any side table.

The model outputs heatmaps (B, S, K, h, w) for S stacks (a Stacked Hourglass) or (B, K, h, w).
The per-sample loss is the mean squared error between each joint's predicted heatmap and a
Gaussian of ``sigma`` heatmap pixels at the labeled position, averaged over that sample's
visible joints and **summed over the stacks** (intermediate supervision, as the hourglass code
does); a sample with no visible joint has loss 0.  Predictions and metrics use the last stack.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError, DataError, PoolError
from .base import ENTROPY, Metric, Task
from .heatmaps import decode, heatmap_entropy, pck, render, to_heatmap, to_input
from .keypoint_augment import move_keypoints, random_transforms, warp

if TYPE_CHECKING:
    from ..config import Settings
    from ..data import Dataset

#: the paper's values: lambda 1e-4 for the ranking loss, "because the MSE is around 1e-3"
POSE_LOSS_WEIGHT = 1e-4


def mirror_name(name: str) -> str:
    """The name of the joint's mirror image: left <-> right (any case) or a lone l/r token
    (``l_hip``, ``hip_R``); names without a side are their own mirror."""
    def side(m: re.Match[str]) -> str:
        word = m.group(0)
        other = {"left": "right", "right": "left", "l": "r", "r": "l"}[word.lower()]
        return other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other
    swapped = re.sub(r"left|right", side, name, flags=re.IGNORECASE)
    if swapped != name:
        return swapped
    return re.sub(r"(?<![A-Za-z0-9])[lLrR](?![A-Za-z0-9])", side, name)


def flip_index(joints: list[str]) -> torch.Tensor:
    """Position of each joint's mirror (itself when it has none or the mirror is not a joint)."""
    where = {n: i for i, n in enumerate(joints)}
    return torch.tensor([where.get(mirror_name(n), i) for i, n in enumerate(joints)], dtype=torch.long)


def pose_targets(keypoints: torch.Tensor, reference: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Targets (N, K+1, 3) from keypoints (N, K, 3) = x, y, visible and reference lengths (N,)."""
    n = keypoints.shape[0]
    last = torch.zeros(n, 1, 3, dtype=torch.float32)
    last[:, 0, 0] = torch.as_tensor(reference, dtype=torch.float32)
    last[:, 0, 1] = torch.as_tensor(threshold, dtype=torch.float32)
    return torch.cat([keypoints.float(), last], dim=1)


class PoseTask(Task):
    """Keypoints per person crop; see the module docstring for the targets and the loss."""

    name = "pose"
    metrics = (Metric("pck", higher_is_better=True, percent=True,
                      description="share of visible test keypoints within the threshold: PCKh@0.5 (half the head "
                                  "size) on MPII, PCK@0.2 of the box's longer side elsewhere"),)
    offers = frozenset({ENTROPY})
    input_augment = False
    option_defaults = {"lossnet": {"loss_weight": POSE_LOSS_WEIGHT}}

    def __init__(self, input_size: tuple[int, int] | None = None, joints: list[str] | None = None,
                 sigma: float = 1.0, rotate: float = 30.0, scale: float = 0.25, flip: float = 0.5) -> None:
        self.input_size = input_size
        self.joints = joints
        self.sigma, self.rotate, self.scale, self.flip = sigma, rotate, scale, flip

    # -- configuration -----------------------------------------------------------
    def configure(self, data: Dataset, settings: Settings) -> None:
        self.input_size = (int(data.input_shape[1]), int(data.input_shape[2]))
        self.joints = joint_names(data)
        self.sigma = settings.heatmap_sigma
        self.rotate, self.scale = settings.pose_rotate, settings.pose_scale
        self.flip = 0.5 if settings.pose_flip else 0.0

    def _size(self, what: str) -> tuple[int, int]:
        if self.input_size is None:
            raise ConfigError(f"the pose task needs the input size to {what}: PoseTask(input_size=(H, W))")
        return self.input_size

    # -- data ----------------------------------------------------------------------
    def validate_targets(self, data: Dataset) -> None:
        if not data.is_image:
            raise DataError(f"{data.name}: pose needs images (N, C, H, W), got rows")
        for split, y in (("train", data.y_train), ("test", data.y_test)):
            if not y.is_floating_point() or y.dim() != 3 or y.shape[-1] != 3 or y.shape[1] < 2:
                raise DataError(f"{data.name}: {split} pose targets must be float (N, K+1, 3): K joints (x, y, "
                                f"visible) and a (reference, threshold, 0) row; got {tuple(y.shape)}")
            problem = _first_problem(y)
            if problem is not None:
                raise DataError(f"{data.name}: {split} {problem}")
        if data.y_train.shape[1] != data.y_test.shape[1]:
            raise DataError(f"{data.name}: train has {data.y_train.shape[1] - 1} joints, test "
                            f"{data.y_test.shape[1] - 1}")

    def output_size(self, data: Dataset) -> int:
        return int(data.y_train.shape[1]) - 1

    def empty_targets(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((n, *like.shape[1:]), float("nan"), dtype=torch.float32)

    def check_labels(self, labels: torch.Tensor, num_classes: int) -> None:
        if labels.dim() != 3 or labels.shape[-1] != 3:
            raise PoolError("pose labels must be K joints (x, y, visible) and a (reference, threshold, 0) row")
        problem = _first_problem(labels)
        if problem is not None:
            raise PoolError(problem)

    # -- the store -------------------------------------------------------------------
    def encode(self, targets: torch.Tensor) -> list[Any]:
        """``{"keypoints": [[x, y, visible], ...], "reference": r, "threshold": t}`` per item
        (float32 values become Python floats exactly, so JSON keeps them bit for bit)."""
        t = targets.detach().float().cpu()
        return [{"keypoints": row[:-1].tolist(), "reference": float(row[-1, 0]), "threshold": float(row[-1, 1])}
                for row in t]

    def decode(self, values: list[Any]) -> torch.Tensor:
        """Each value as :meth:`encode` writes it, or as the rows of a target tensor (``tolist()``)."""
        rows = []
        for v in values:
            try:
                if isinstance(v, dict):
                    joints = [[float(a) for a in j] for j in v["keypoints"]]
                    rows.append(joints + [[float(v["reference"]), float(v["threshold"]), 0.0]])
                else:
                    rows.append([[float(a) for a in j] for j in v])
            except (TypeError, KeyError, ValueError):
                raise PoolError('pose labels are {"keypoints": [[x, y, visible], ...], "reference": length, '
                                '"threshold": fraction}') from None
        if not rows:
            return torch.zeros(0, 0, 3)
        if any(len(r) != len(rows[0]) or any(len(j) != 3 for j in r) for r in rows):
            raise PoolError("every pose label must have the same number of joints, each [x, y, visible]")
        return torch.tensor(rows, dtype=torch.float32)

    # -- training and evaluation -----------------------------------------------------
    def _strides(self, outputs: torch.Tensor) -> tuple[float, float]:
        height, width = self._size("map heatmaps to pixels")
        return width / outputs.shape[-1], height / outputs.shape[-2]

    def _stacks(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs if outputs.dim() == 5 else outputs[:, None]

    def heatmaps(self, outputs: torch.Tensor) -> torch.Tensor:
        """The last stack's heatmaps (N, K, h, w): what predictions and entropy use."""
        return self._stacks(outputs)[:, -1]

    def target_heatmaps(self, targets: torch.Tensor, size: tuple[int, int],
                        stride: tuple[float, float]) -> torch.Tensor:
        visible = targets[:, :-1, 2] > 0
        return render(to_heatmap(targets[:, :-1, :2].float(), stride), visible, size, self.sigma)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        stacks = self._stacks(outputs).float()
        visible = (targets[:, :-1, 2] > 0).float()
        truth = self.target_heatmaps(targets, (stacks.shape[-2], stacks.shape[-1]), self._strides(outputs))
        per_joint = (stacks - truth[:, None]).pow(2).mean(dim=(-2, -1)).sum(dim=1)  # (B, K): stacks summed
        return (per_joint * visible).sum(dim=1) / visible.sum(dim=1).clamp_min(1.0)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, K, 3): each joint's (x, y) in input pixels and its heatmap's peak value."""
        xy, peak = decode(self.heatmaps(outputs))
        return torch.cat([to_input(xy, self._strides(outputs)), peak[..., None]], dim=-1)

    def evaluate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        predicted = self.predict(outputs)[..., :2]
        t = targets.to(predicted.device).float()
        threshold = t[:, -1, 0] * t[:, -1, 1]
        return {"pck": float(pck(predicted, t[:, :-1, :2], t[:, :-1, 2] > 0, threshold))}

    def entropy(self, outputs: torch.Tensor) -> torch.Tensor:
        return heatmap_entropy(self.heatmaps(outputs))

    def augment(self, x: torch.Tensor, targets: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation, scale and flip (left and right joints swapped) of the whole batch."""
        if x.dim() != 4 or (self.rotate == 0 and self.scale == 0 and self.flip == 0):
            return x, targets
        joints = self.joints or [str(i) for i in range(targets.shape[1] - 1)]
        forward, mirrored = random_transforms(x.shape[0], self.rotate, self.scale, self.flip, gen, x.device)
        moved = move_keypoints(targets, forward, mirrored, flip_index(joints), (x.shape[-2], x.shape[-1]))
        return warp(x, forward).contiguous(memory_format=_format_of(x)), moved


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format


def joint_names(data: Dataset) -> list[str]:
    """The dataset's joint names (``extras["joints"]``), else ``joint0``..``jointK-1``."""
    k = int(data.y_train.shape[1]) - 1
    names = list(data.extras.get("joints") or [])
    return names if len(names) == k else [f"joint{i}" for i in range(k)]


def _first_problem(y: torch.Tensor) -> str | None:
    """A description of the first malformed pose target, or None."""
    joints, last = y[:, :-1], y[:, -1]
    vis = joints[..., 2]
    bad_vis = ~((vis == 0) | (vis == 1))
    if bool(bad_vis.any()):
        i = int(bad_vis.nonzero()[0, 0])
        return f"target {i}: visibility must be 0 or 1"
    bad_xy = (vis == 1) & ~torch.isfinite(joints[..., :2]).all(dim=-1)
    if bool(bad_xy.any()):
        i = int(bad_xy.nonzero()[0, 0])
        return f"target {i}: a visible joint has no finite x, y"
    bad_ref = ~(torch.isfinite(last[:, :2]).all(dim=-1) & (last[:, 0] > 0) & (last[:, 1] > 0))
    if bool(bad_ref.any()):
        i = int(bad_ref.nonzero()[0, 0])
        return f"target {i}: the reference length and threshold must be positive numbers"
    return None


__all__ = ["POSE_LOSS_WEIGHT", "PoseTask", "flip_index", "joint_names", "mirror_name", "pose_targets"]
