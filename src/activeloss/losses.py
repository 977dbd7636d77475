"""Losses of the loss-prediction module (Yoo and Kweon, Learning Loss for Active Learning, CVPR 2019).

``ranking_loss`` is the Learning Loss pairwise objective: the module only has to order
samples by their true loss, not regress it, which is why it beats the MSE ablation
``mse_loss_prediction`` ("llal-mse") kept for comparison.
"""
from __future__ import annotations

import torch


def _flat_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept (B,) or (B, 1): the LossNet outputs (B, 1), per-sample losses are (B,)."""
    pred, target = pred.reshape(-1), target.reshape(-1)
    if pred.numel() != target.numel():
        raise ValueError(f"pred has {pred.numel()} values but target has {target.numel()}")
    return pred, target.detach().to(pred.dtype)


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise margin ranking loss between predicted and true losses (Learning Loss).

    Sample i is paired with its mirror B-1-i (the batch against its flipped copy, first half
    kept; the sampler shuffles, so pairs are random).  Per pair
    ``max(0, margin - s * (pred_i - pred_j))`` with ``s = +1`` if ``target_i > target_j``
    else ``-1`` (ties give -1, as in the public code).  The target carries no gradient.
    An odd batch leaves its last sample out [project choice].  Returns the mean over pairs;
    fewer than two samples give a zero that is still connected to ``pred``'s graph, so a
    training step never has to special-case a tiny last batch.  ``weights`` (per sample, 0 or
    1) keep a pair only when both its items weigh 1, and the mean is over the kept pairs: the
    shapes stay fixed, so a recorded training step holds it (guarded-loss's held-out items).
    """
    pred, target = _flat_pair(pred, target)
    n = pred.numel()
    if n < 2:
        return pred.sum() * 0.0
    if n % 2:
        pred, target = pred[:-1], target[:-1]
        weights = weights[:-1] if weights is not None else None
    half = pred.numel() // 2
    diff_pred = (pred - pred.flip(0))[:half]
    diff_true = (target - target.flip(0))[:half]
    sign = 2 * torch.sign(torch.clamp(diff_true, min=0)) - 1
    per_pair = torch.clamp(margin - sign * diff_pred, min=0)
    if weights is None:
        return per_pair.mean()
    w = weights.reshape(-1).to(per_pair.dtype)
    kept = (w * w.flip(0))[:half]
    return (per_pair * kept).sum() / kept.sum().clamp_min(1.0)


def mse_loss_prediction(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error between predicted and (detached) true losses: the "llal-mse" ablation,
    which the Learning Loss paper shows ranks worse than :func:`ranking_loss`."""
    pred, target = _flat_pair(pred, target)
    if pred.numel() == 0:
        return pred.sum() * 0.0
    return (pred - target).pow(2).mean()
