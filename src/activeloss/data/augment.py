"""Batch augmentation on tensors: whole batches at once, on whatever device holds them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

AUGMENTATIONS = ("flip", "crop")


def parse_augment(text: str) -> tuple[str, ...]:
    """``"flip,crop"`` -> ("flip", "crop"); ``"none"`` or ``""`` -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    for p in parts:
        if p not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {p!r}; use a comma list of {', '.join(AUGMENTATIONS)}, or none")
    return parts


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each image of the (B, C, H, W) batch horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random HxW crop of each zero-padded image (pad on every side), one offset per image."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def augment(x: torch.Tensor, ops: tuple[str, ...], pad: int, gen: torch.Generator) -> torch.Tensor:
    """Apply the augmentations ``ops`` (in the canonical order crop, then flip) to a float batch."""
    if "crop" in ops:
        x = random_crop(x, pad, gen)
    if "flip" in ops:
        x = random_flip(x, gen)
    return x
