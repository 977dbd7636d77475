"""SSD's MultiBox loss, per image: what a loss-prediction module learns to rank for detection.

The usual SSD loss sums the smooth-L1 localisation loss of the positive default boxes and the
softmax cross-entropy of the positives and of 3x as many hard negatives (the negatives with the
highest confidence loss, per image), and divides the batch's sum by the batch's number of
positives.  Here each image keeps its own sum divided by its own number of positives (0 for an
image without any), so ``per_image * positives`` summed over the batch, divided by the batch's
positives, is exactly the usual batch loss (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .boxes import VARIANCES, encode, match


@dataclass(frozen=True)
class MultiBoxParts:
    """One batch's loss parts, per image: sums (B,) and the number of positives (B,)."""

    localisation: torch.Tensor
    confidence: torch.Tensor
    positives: torch.Tensor

    @property
    def per_image(self) -> torch.Tensor:
        """Each image's loss normalised by its own positives; 0 where it has none."""
        total = self.localisation + self.confidence
        return torch.where(self.positives > 0, total / self.positives.clamp_min(1), torch.zeros_like(total))

    @property
    def batch(self) -> torch.Tensor:
        """SSD's batch loss: the sums over the batch divided by the batch's positives."""
        return (self.localisation + self.confidence).sum() / self.positives.sum().clamp_min(1)


def hard_negatives(confidence_loss: torch.Tensor, positive: torch.Tensor, ratio: float = 3.0) -> torch.Tensor:
    """The negatives (B, D) kept per image: the ``ratio`` x positives with the highest
    confidence loss (ties: the earlier default box), at most every negative."""
    negatives = (~positive).sum(dim=1, keepdim=True)
    wanted = torch.minimum((ratio * positive.sum(dim=1, keepdim=True)).long(), negatives)
    ranked = torch.where(positive, torch.full_like(confidence_loss, -1.0), confidence_loss.detach())
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                            .expand_as(order))
    return (rank < wanted) & ~positive


def multibox_parts(loc: torch.Tensor, conf: torch.Tensor, targets: torch.Tensor, priors: torch.Tensor,
                   threshold: float = 0.5, negative_ratio: float = 3.0,
                   variances: tuple[float, float] = VARIANCES) -> MultiBoxParts:
    """The MultiBox loss parts of a batch: ``loc`` (B, D, 4) offsets, ``conf`` (B, D, C+1) logits
    (class 0 the background), ``targets`` (B, K, 6) = (class, x1, y1, x2, y2, difficult) with
    class -1 padding.  Difficult objects are left out of the matching, as SSD trains on VOC."""
    valid = (targets[..., 0] >= 0) & (targets[..., 5] <= 0)
    truths = targets[..., 1:5].float()
    index, positive = match(truths, valid, priors, threshold)
    matched = truths.gather(1, index[..., None].expand(-1, -1, 4))
    labels = torch.where(positive, targets[..., 0].gather(1, index).long() + 1, torch.zeros_like(index))
    loc_loss = F.smooth_l1_loss(loc.float(), encode(matched, priors, variances), reduction="none").sum(dim=-1)
    loc_sum = (loc_loss * positive).sum(dim=1)
    conf_loss = F.cross_entropy(conf.float().transpose(1, 2), labels, reduction="none")  # (B, D)
    used = positive | hard_negatives(conf_loss, positive, negative_ratio)
    return MultiBoxParts(loc_sum, (conf_loss * used).sum(dim=1), positive.sum(dim=1).to(loc_sum.dtype))


def multibox_loss(loc: torch.Tensor, conf: torch.Tensor, targets: torch.Tensor, priors: torch.Tensor,
                  threshold: float = 0.5, negative_ratio: float = 3.0) -> torch.Tensor:
    """Per-image MultiBox loss (B,); see :func:`multibox_parts`."""
    return multibox_parts(loc, conf, targets, priors, threshold, negative_ratio).per_image


__all__ = ["MultiBoxParts", "hard_negatives", "multibox_loss", "multibox_parts"]
