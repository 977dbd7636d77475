"""Rotation, scale and horizontal flip of a batch of images with their keypoints, in one
``affine_grid`` + ``grid_sample`` call for the whole batch (no loop over samples).

Each image turns about its centre by an angle drawn uniformly in [-rotate, rotate] degrees,
is scaled by a factor drawn uniformly in [1 - scale, 1 + scale] and mirrored with probability
``flip``; a mirrored item's left and right joints swap places (``flip_index``), so "left
wrist" still names the left wrist.  A keypoint pushed outside the image becomes invisible.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_transforms(n: int, rotate: float, scale: float, flip: float, gen: torch.Generator,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: the 2x2 forward map in centred pixel units (image -> augmented image) and
    whether it is mirrored; drawn from ``gen`` in a fixed order (angle, scale, flip)."""
    angle = (torch.rand(n, generator=gen, device=device) * 2 - 1) * math.radians(rotate)
    factor = 1 + (torch.rand(n, generator=gen, device=device) * 2 - 1) * scale
    mirrored = torch.rand(n, generator=gen, device=device) < flip
    cos, sin = torch.cos(angle) * factor, torch.sin(angle) * factor
    sign = torch.where(mirrored, -1.0, 1.0).to(cos.dtype)
    forward = torch.stack([torch.stack([cos * sign, -sin], -1), torch.stack([sin * sign, cos], -1)], -2)
    return forward, mirrored


def warp(x: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) under the forward maps (B, 2, 2) about their centres (zeros outside)."""
    b, _, h, w = x.shape
    to_norm = x.new_tensor([2.0 / w, 2.0 / h])
    inverse = torch.linalg.inv(forward.to(x.dtype))
    # affine_grid maps output to input in normalised units: D M^-1 D^-1 with D = diag(2/W, 2/H)
    theta = to_norm[None, :, None] * inverse / to_norm[None, None, :]
    theta = torch.cat([theta, x.new_zeros(b, 2, 1)], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def move_keypoints(keypoints: torch.Tensor, forward: torch.Tensor, mirrored: torch.Tensor,
                   flip_index: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Targets (B, K+1, 3): rows 0..K-1 (x, y, visible) mapped like the image and, for mirrored
    items, reordered by ``flip_index``; row K (reference length, threshold, 0) with its length
    scaled.  ``size`` is the image's (H, W)."""
    h, w = size
    k = keypoints.shape[1] - 1
    centre = keypoints.new_tensor([(w - 1) / 2, (h - 1) / 2])
    xy, vis = keypoints[:, :k, :2], keypoints[:, :k, 2]
    moved = torch.einsum("bij,bkj->bki", forward.to(xy.dtype), xy - centre) + centre
    inside = (moved[..., 0] >= -0.5) & (moved[..., 0] <= w - 0.5) & (moved[..., 1] >= -0.5) & (moved[..., 1] <= h - 0.5)
    vis = torch.where(inside, vis, torch.zeros_like(vis))
    joints = torch.cat([moved, vis[..., None]], dim=-1)
    joints = torch.where(mirrored[:, None, None], joints[:, flip_index.to(joints.device)], joints)
    factor = torch.linalg.det(forward.to(xy.dtype)).abs().sqrt()  # the scale of each map
    reference = keypoints[:, k:].clone()
    reference[:, 0, 0] = reference[:, 0, 0] * factor
    return torch.cat([joints, reference], dim=1)
