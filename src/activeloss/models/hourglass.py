"""Stacked Hourglass Networks (Newell, Yang and Deng, ECCV 2016) in plain PyTorch.

A stem brings the image to a quarter of its side (7x7 conv stride 2, a residual, a 2x2
max-pool, two residuals), then each of the ``stacks`` hourglasses pools down ``depth`` times
and back up with a skip branch at every scale.  After each hourglass a residual and a
1x1 conv-BN-ReLU give that stack's feature map (``post.i``: the taps of the loss-prediction
module, 256 x 64 x 64 for a 256 x 256 input) and a 1x1 conv its K heatmaps; between stacks
both are mapped back and added to the running features.  The output holds every stack's
heatmaps, (B, S, K, H/4, W/4), so the loss supervises all of them.  ``features(x)`` is the
last feature map averaged over space (what core-set and the t-SNE map use).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1 (out/2), BN-ReLU-3x3, BN-ReLU-1x1 (out), plus the
    input (through a 1x1 conv when the width changes)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = max(c_out // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, c_out, 1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: a skip residual at each scale, max-pool down,
    nearest-neighbour up."""

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.skip = Residual(width, width)
        self.down = Residual(width, width)
        self.inner: nn.Module = Hourglass(depth - 1, width) if depth > 1 else Residual(width, width)
        self.up = Residual(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """``stacks`` hourglasses of ``width`` features predicting ``num_joints`` heatmaps at a
    quarter of the input side; taps ``post.0`` .. ``post.{stacks-1}``."""

    def __init__(self, num_joints: int, in_channels: int = 3, stacks: int = 2, width: int = 256,
                 depth: int = 4) -> None:
        super().__init__()
        stem = max(width // 4, 8)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 7, stride=2, padding=3), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            Residual(stem, 2 * stem), nn.MaxPool2d(2), Residual(2 * stem, 2 * stem), Residual(2 * stem, width),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, width) for _ in range(stacks))
        self.post = nn.ModuleList(
            nn.Sequential(Residual(width, width), nn.Conv2d(width, width, 1), nn.BatchNorm2d(width),
                          nn.ReLU(inplace=True))
            for _ in range(stacks)
        )
        self.score = nn.ModuleList(nn.Conv2d(width, num_joints, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stacks - 1))
        self.merge_scores = nn.ModuleList(nn.Conv2d(num_joints, width, 1) for _ in range(stacks - 1))
        self.taps = tuple(f"post.{i}" for i in range(stacks))

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.stem(x)
        heatmaps = []
        feature = x
        for i, hourglass in enumerate(self.hourglasses):
            feature = self.post[i](hourglass(x))
            score = self.score[i](feature)
            heatmaps.append(score)
            if i < len(self.hourglasses) - 1:
                x = x + self.merge_features[i](feature) + self.merge_scores[i](score)
        return heatmaps, feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self._run(x)[0], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hourglass's feature map averaged over space (B, width)."""
        return self._run(x)[1].mean(dim=(-2, -1))


def hourglass(num_joints: int, in_channels: int = 3, stacks: int = 2) -> StackedHourglass:
    """The paper's network: 256 features, depth 4 (64 x 64 heatmaps from 256 x 256 crops)."""
    return StackedHourglass(num_joints, in_channels, stacks=stacks, width=256, depth=4)


def hourglass_small(num_joints: int, in_channels: int = 3, stacks: int = 2) -> StackedHourglass:
    """A small hourglass for CPU runs and tests: 32 features, depth 2 (16 x 16 heatmaps from 64 x 64)."""
    return StackedHourglass(num_joints, in_channels, stacks=stacks, width=32, depth=2)
