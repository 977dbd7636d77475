"""SSD's training augmentation on whole batches, boxes moved with their images.

``ssd``: photometric distortion, expand (zoom out: the image placed in a canvas up to 4x its
side, filled with the mean, half of the time), an IoU-constrained random crop (SSD's samplers:
keep the image, or a patch of 0.3-1 of the side with aspect 0.5-2 that overlaps some object by
IoU at least 0.1, 0.3, 0.7 or 0.9, or any patch; 50 tries, else the whole canvas; objects whose
centre leaves the patch are dropped) and a horizontal flip, the result resized back to the
input size.  ``light`` (the CPU variant): photometric distortion and the flip only.

The photometric part acts on normalised inputs: brightness (+-0.25, about SSD's +-32 of 255),
contrast (x0.5-1.5 around the image's mean) and saturation (x0.5-1.5 around each pixel's grey),
each half of the time; SSD's hue shift and channel swap are left out.  Geometry is one affine
map per image applied by one ``grid_sample`` over the batch; areas outside the image become 0,
the normalised mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .boxes import iou


@dataclass(frozen=True)
class BoxAugment:
    photometric: bool = True
    expand: bool = True
    crop: bool = True
    flip: bool = True


AUGMENTS = {"ssd": BoxAugment(), "light": BoxAugment(expand=False, crop=False)}
#: SSD's crop samplers: keep the image (NaN), a minimum IoU with some object, or any patch (-inf)
MIN_IOUS = (float("nan"), 0.1, 0.3, 0.7, 0.9, float("-inf"))
TRIES = 50


def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator, device: torch.device
             ) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def photometric(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation per image, each with probability 0.5."""
    b, device = x.shape[0], x.device
    on = torch.rand(b, 3, generator=gen, device=device) < 0.5
    shift = torch.where(on[:, 0], _uniform((b,), -0.25, 0.25, gen, device), torch.zeros(b, device=device))
    contrast = torch.where(on[:, 1], _uniform((b,), 0.5, 1.5, gen, device), torch.ones(b, device=device))
    saturation = torch.where(on[:, 2], _uniform((b,), 0.5, 1.5, gen, device), torch.ones(b, device=device))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(b, 1, 1, 1).to(x.dtype) + mean + shift.view(b, 1, 1, 1).to(x.dtype)
    if x.shape[1] == 3:
        grey = x.mean(dim=1, keepdim=True)
        x = grey + (x - grey) * saturation.view(b, 1, 1, 1).to(x.dtype)
    return x


def _crops(truths: torch.Tensor, valid: torch.Tensor, canvas: torch.Tensor, gen: torch.Generator
           ) -> torch.Tensor:
    """Per image a crop (B, 4) = (x, y, w, h) of its canvas (B, 2) = (w, h), by SSD's samplers."""
    b, device = truths.shape[0], truths.device
    mode = torch.randint(len(MIN_IOUS), (b,), generator=gen, device=device)
    min_iou = torch.tensor(MIN_IOUS, device=device)[mode]
    scale = _uniform((b, TRIES, 2), 0.3, 1.0, gen, device) * canvas[:, None, :]  # (B, T, 2): w, h
    aspect = scale[..., 1] / scale[..., 0]
    corner = torch.rand(b, TRIES, 2, generator=gen, device=device) * (canvas[:, None, :] - scale)
    patch = torch.cat([corner, corner + scale], dim=-1)  # (B, T, 4) corners
    overlap = iou(patch, truths).masked_fill(~valid[:, None, :], -1.0)  # (B, T, K)
    centre = (truths[..., :2] + truths[..., 2:]) / 2  # (B, K, 2)
    inside = ((centre[:, None] > patch[..., None, :2]) & (centre[:, None] < patch[..., None, 2:])).all(-1) \
        & valid[:, None, :]
    has = valid.any(dim=1)[:, None]
    ok = (aspect >= 0.5) & (aspect <= 2) & (~has | (inside.any(-1) & (overlap.amax(-1) >= min_iou[:, None])))
    ok &= ~torch.isnan(min_iou)[:, None]
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(mode, -1))
    chosen = torch.cat([corner, scale], dim=-1).gather(1, first.clamp_min(0)[:, None, None].expand(-1, 1, 4))[:, 0]
    whole = torch.cat([torch.zeros_like(canvas), canvas], dim=-1)
    return torch.where((first >= 0)[:, None], chosen, whole)


def augment_batch(x: torch.Tensor, targets: torch.Tensor, gen: torch.Generator, how: BoxAugment
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (B, C, H, W) normalised and ``targets`` (B, K, 6) augmented as ``how`` says."""
    b, _, h, w = x.shape
    device = x.device
    size = torch.tensor([w, h], dtype=torch.float32, device=device)
    if how.photometric:
        x = photometric(x, gen)
    valid = targets[..., 0] >= 0
    boxes = targets[..., 1:5].float()
    # expand: the image at ``offset`` in a canvas of ``ratio`` times its side
    ratio = torch.ones(b, device=device)
    offset = torch.zeros(b, 2, device=device)
    if how.expand:
        ratio = torch.where(torch.rand(b, generator=gen, device=device) < 0.5, _uniform((b,), 1.0, 4.0, gen, device),
                            ratio)
        offset = torch.rand(b, 2, generator=gen, device=device) * (ratio[:, None] - 1) * size
    canvas = ratio[:, None] * size
    on_canvas = boxes + offset.repeat(1, 2)[:, None, :]
    crop = _crops(on_canvas, valid, canvas, gen) if how.crop else torch.cat([torch.zeros_like(canvas), canvas], -1)
    flip = torch.rand(b, generator=gen, device=device) < 0.5 if how.flip else torch.zeros(b, dtype=torch.bool,
                                                                                          device=device)
    # output pixel u -> image pixel p = a * u + c per axis, after the flip (u -> W - u)
    a = crop[:, 2:] / size
    c = crop[:, :2] - offset
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = sign * a[:, 0]
    theta[:, 1, 1] = a[:, 1]
    theta[:, :, 2] = a + 2 * c / size - 1
    grid = F.affine_grid(theta.to(x.dtype), [b, x.shape[1], h, w], align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # boxes: keep those whose centre lies in the crop, clip, map back to output pixels
    centre = (on_canvas[..., :2] + on_canvas[..., 2:]) / 2
    inside = ((centre > crop[:, None, :2]) & (centre < crop[:, None, :2] + crop[:, None, 2:])).all(-1)
    keep = valid & inside
    lo = torch.maximum(on_canvas[..., :2], crop[:, None, :2]) - crop[:, None, :2]
    hi = torch.minimum(on_canvas[..., 2:], crop[:, None, :2] + crop[:, None, 2:]) - crop[:, None, :2]
    scale = (size / crop[:, 2:])[:, None, :]
    lo, hi = lo * scale, hi * scale
    x1 = torch.where(flip[:, None], w - hi[..., 0], lo[..., 0])
    x2 = torch.where(flip[:, None], w - lo[..., 0], hi[..., 0])
    keep &= (hi > lo).all(-1)
    new = torch.stack([targets[..., 0], x1, lo[..., 1], x2, hi[..., 1], targets[..., 5]], dim=-1).to(targets.dtype)
    padding = torch.tensor([-1.0, 0, 0, 0, 0, 0], dtype=targets.dtype, device=device)
    return moved.contiguous(), torch.where(keep[..., None], new, padding)


__all__ = ["AUGMENTS", "BoxAugment", "augment_batch", "photometric"]
