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


def draw(n: int, ops: tuple[str, ...], pad: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """The random parameters of ``n`` images' augmentation, drawn from ``gen`` in the order
    :func:`augment` uses (crop rows, crop columns, flips): drawing them first and applying them
    with :func:`apply` gives exactly :func:`augment`'s result.  The CUDA-graph training step
    draws them outside the graph and applies them inside it."""
    drawn: dict[str, torch.Tensor] = {}
    if "crop" in ops and pad > 0:
        drawn["crop_y"] = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=device)
        drawn["crop_x"] = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=device)
    if "flip" in ops:
        drawn["flip"] = torch.rand(n, generator=gen, device=device) < 0.5
    return drawn


def apply(x: torch.Tensor, pad: int, drawn: dict[str, torch.Tensor]) -> torch.Tensor:
    """Augment a float (B, C, H, W) batch with parameters from :func:`draw`: a random crop of
    the zero-padded image (one offset per image), then a horizontal flip."""
    if "crop_y" in drawn:
        b, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = (drawn["crop_y"][:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (drawn["crop_x"][:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if "flip" in drawn:
        x = torch.where(drawn["flip"][:, None, None, None], x.flip(-1), x)
    return x


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each image of the (B, C, H, W) batch horizontally with probability 1/2."""
    return apply(x, 0, draw(x.shape[0], ("flip",), 0, gen, x.device))


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random HxW crop of each zero-padded image (pad on every side), one offset per image."""
    return apply(x, pad, draw(x.shape[0], ("crop",), pad, gen, x.device))


def augment(x: torch.Tensor, ops: tuple[str, ...], pad: int, gen: torch.Generator) -> torch.Tensor:
    """Apply the augmentations ``ops`` (in the canonical order crop, then flip) to a float batch."""
    return apply(x, pad, draw(x.shape[0], ops, pad, gen, x.device))
