"""Uncertainty scores from class probabilities; higher means more uncertain."""
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
