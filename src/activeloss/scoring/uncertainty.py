"""Uncertainty scores from class probabilities; higher means more uncertain (OUI: see its docstring)."""
from __future__ import annotations

import torch


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (natural log) of each row of ``probs`` (N, C)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)


def margin(probs: torch.Tensor) -> torch.Tensor:
    """Negative gap between the two most likely classes: a small gap scores high."""
    top2 = probs.topk(2, dim=-1).values
    return -(top2[:, 0] - top2[:, 1])


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """One minus the top probability: the least confident prediction scores high."""
    return 1.0 - probs.max(dim=-1).values


def oui(probs: torch.Tensor) -> torch.Tensor:
    """SRAAL's one-hot-like uncertainty indicator of softmax rows ``probs`` (N, C), in [0, 1).

    ``minVar = (1/C)[(max V - 1/C)^2 + (C-1)((1 - max V)/(C-1) - 1/C)^2]`` is the smallest
    variance a distribution with that top probability can have (the rest spread evenly);
    ``OUI = 1 - (minVar / var(V)) x max V`` with the population variance over the C classes.
    A one-hot V gives 0 (var = minVar = (C-1)/C^2); a V whose rest is spread evenly gives
    ``1 - max V``.  When ``var(V) = 0`` (V uniform) the ratio is taken as 1 (V is then its own
    minimal-variance distribution), so OUI = 1 - 1/C, the limit along that family.
    Computed in float64.
    """
    v = probs.double()
    c = v.shape[-1]
    top = v.max(dim=-1).values
    min_var = ((top - 1 / c) ** 2 + (c - 1) * ((1 - top) / (c - 1) - 1 / c) ** 2) / c
    var = v.var(dim=-1, unbiased=False)
    ratio = torch.where(var > 1e-12, min_var / var.clamp_min(1e-300), torch.ones_like(var)).clamp(0.0, 1.0)
    return (1 - ratio * top).to(probs.dtype)

