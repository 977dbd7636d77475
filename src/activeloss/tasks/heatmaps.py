"""Keypoints as Gaussian heatmaps and back, and the PCK metric: pure tensor functions.

Coordinates are continuous pixel positions with pixel ``j`` centred on ``j`` (the left edge of
an image is at -0.5).  A heatmap of ``h x w`` over an input of ``H x W`` has strides
``H / h`` and ``W / w``; :func:`to_heatmap` and :func:`to_input` convert between the two
frames so that a pixel centre maps to a pixel centre.
"""
from __future__ import annotations

import torch


def to_heatmap(xy: torch.Tensor, stride: tuple[float, float]) -> torch.Tensor:
    """Input-pixel (x, y) in the last dimension -> heatmap-pixel (x, y); ``stride`` is (x, y)."""
    s = xy.new_tensor(stride)
    return (xy + 0.5) / s - 0.5


def to_input(xy: torch.Tensor, stride: tuple[float, float]) -> torch.Tensor:
    """The inverse of :func:`to_heatmap`."""
    s = xy.new_tensor(stride)
    return (xy + 0.5) * s - 0.5


def render(xy: torch.Tensor, visible: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Gaussian heatmaps (..., K, h, w) with peak 1 at the heatmap-pixel positions ``xy``
    (..., K, 2); zero for joints that are not ``visible`` (..., K)."""
    h, w = size
    xy = torch.where(visible[..., None], xy, torch.zeros_like(xy))  # no NaN of an unlabeled joint leaks
    xs = torch.arange(w, device=xy.device, dtype=xy.dtype)
    ys = torch.arange(h, device=xy.device, dtype=xy.dtype)
    gx = torch.exp(-(xs - xy[..., 0:1]).pow(2) / (2 * sigma**2))  # (..., K, w)
    gy = torch.exp(-(ys - xy[..., 1:2]).pow(2) / (2 * sigma**2))  # (..., K, h)
    return gy[..., :, None] * gx[..., None, :] * visible[..., None, None].to(xy.dtype)


def _offset(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset of a peak from the parabola through the logs of three samples: exact for a
    Gaussian; neighbours floored at 1e-3 of the peak so a noisy prediction moves at most half a pixel."""
    floor = (centre.abs() * 1e-3).clamp_min(1e-12)
    lc = torch.log(centre.clamp_min(1e-12))
    ll, lr = torch.log(left.clamp_min(floor)), torch.log(right.clamp_min(floor))
    curve = ll - 2 * lc + lr
    ok = inside & (centre > 0) & (curve < 0)
    return torch.where(ok, (0.5 * (ll - lr) / torch.where(ok, curve, -1.0)).clamp(-0.5, 0.5), 0.0)


def decode(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max of each heatmap (..., K, h, w) refined to sub-pixel accuracy: heatmap-pixel (x, y)
    (..., K, 2) and the peak value (..., K)."""
    *lead, h, w = heatmaps.shape
    flat = heatmaps.float().reshape(-1, h, w)
    peak, index = flat.reshape(flat.shape[0], -1).max(dim=1)
    iy, ix = index // w, index % w
    rows = torch.arange(flat.shape[0], device=flat.device)

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat[rows, y.clamp(0, h - 1), x.clamp(0, w - 1)]

    dx = _offset(at(iy, ix - 1), peak, at(iy, ix + 1), (ix > 0) & (ix < w - 1))
    dy = _offset(at(iy - 1, ix), peak, at(iy + 1, ix), (iy > 0) & (iy < h - 1))
    xy = torch.stack([ix.float() + dx, iy.float() + dy], dim=-1)
    return xy.reshape(*lead, 2), peak.reshape(lead)


def pck(predicted: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor,
        threshold: torch.Tensor) -> torch.Tensor:
    """Share of the visible keypoints predicted within ``threshold`` (N,) pixels of the truth:
    ``predicted`` and ``keypoints`` (N, K, 2); NaN when nothing is visible."""
    distance = (predicted - keypoints).norm(dim=-1)
    correct = (distance <= threshold[:, None]) & visible
    return correct.sum() / visible.sum()


def heatmap_entropy(heatmaps: torch.Tensor) -> torch.Tensor:
    """Per item (N,): the entropy (nats) of the softmax over each joint's heatmap, averaged over
    the joints (Learning Loss's entropy baseline for pose); ``heatmaps`` (N, K, h, w)."""
    logp = torch.log_softmax(heatmaps.float().flatten(2), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1).mean(dim=-1)
