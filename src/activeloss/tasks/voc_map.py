"""Mean average precision by the PASCAL VOC protocol, on padded tensors.

Detections (N, T, 6) = (class, score, x1, y1, x2, y2) and ground truths (N, K, 6) = (class,
x1, y1, x2, y2, difficult) of N images, both padded with class -1.  As VOC's devkit does: the
detections of a class are taken in descending score order; each goes to the ground truth of
its image and class with the highest IoU; above the threshold it is a true positive if that
ground truth is not yet taken, a false positive if it is, and neither if the ground truth is
``difficult``; every other detection is a false positive.  Recall counts the non-difficult
ground truths.  Boxes are continuous coordinates, so there is no devkit "+1" in the areas.
Classes without a non-difficult ground truth in the set are left out of the mean.

AP interpolates precision at the 11 recall points 0, 0.1, ..., 1 (VOC2007, what the SSD code
reports) or, with ``use_07=False``, over every recall point (VOC2010 on).
"""
from __future__ import annotations

import torch

from .boxes import iou


def average_precision(recall: torch.Tensor, precision: torch.Tensor, use_07: bool = True) -> float:
    """AP of one class from its recall and precision (M,) in descending score order."""
    if recall.numel() == 0:
        return 0.0
    if use_07:
        points = torch.linspace(0, 1, 11, dtype=recall.dtype, device=recall.device)
        reached = recall[None, :] >= points[:, None] - 1e-12  # (11, M)
        best = torch.where(reached, precision[None, :], torch.zeros_like(precision)[None, :]).amax(dim=1)
        return float(best.mean())
    zero, one = recall.new_zeros(1), recall.new_ones(1)
    r = torch.cat([zero, recall, one])
    p = torch.cat([zero, precision, zero])
    envelope = torch.flip(torch.cummax(torch.flip(p, [0]), dim=0).values, [0])
    steps = r[1:] != r[:-1]
    return float(((r[1:] - r[:-1]) * envelope[1:])[steps].sum())


def true_positives(detections: torch.Tensor, truths: torch.Tensor, iou_threshold: float = 0.5
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every detection slot (N, T): whether it is a true positive, a false positive, or
    ignored (neither: it found a difficult object); padding slots are none of these."""
    n, t = detections.shape[:2]
    k = truths.shape[1]
    real = detections[..., 0] >= 0
    if k == 0:
        return torch.zeros_like(real), real, torch.zeros_like(real)
    same = detections[..., 0, None] == truths[..., None, :, 0]  # (N, T, K)
    overlaps = torch.where(same & (truths[..., None, :, 0] >= 0), iou(detections[..., 2:6], truths[..., 1:5]),
                           torch.full(same.shape, -1.0, dtype=detections.dtype, device=detections.device))
    best, which = overlaps.max(dim=-1)
    hit = real & (best > iou_threshold)
    difficult = truths[..., 5].gather(1, which) > 0
    ignored = hit & difficult
    candidate = hit & ~difficult
    # among the candidates for one ground truth, the highest score (ties: the earlier slot) wins
    scores = torch.where(real, detections[..., 1], torch.full_like(detections[..., 1], -torch.inf)).flatten()
    order = torch.sort(scores, descending=True, stable=True).indices
    key = (torch.arange(n, device=detections.device)[:, None] * k + which).flatten()
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
    big = torch.full((n * k,), order.numel(), dtype=torch.long, device=order.device)
    first = big.scatter_reduce(0, key[candidate.flatten()], rank[candidate.flatten()], reduce="amin")
    tp = candidate.flatten() & (rank == first[key])
    tp = tp.reshape(n, t)
    return tp, real & ~tp & ~ignored, ignored


def voc_map(detections: torch.Tensor, truths: torch.Tensor, num_classes: int, iou_threshold: float = 0.5,
            use_07: bool = True) -> tuple[float, list[float]]:
    """mAP and the AP of each class (NaN for a class without a non-difficult ground truth)."""
    detections, truths = detections.double(), truths.double()
    tp, fp, _ = true_positives(detections, truths, iou_threshold)
    classes, scores = detections[..., 0].flatten(), detections[..., 1].flatten()
    tp, fp = tp.flatten(), fp.flatten()
    aps = []
    for c in range(num_classes):
        positives = int(((truths[..., 0] == c) & (truths[..., 5] <= 0)).sum())
        if positives == 0:
            aps.append(float("nan"))
            continue
        mine = (classes == c).nonzero().flatten()
        order = mine[torch.sort(scores[mine], descending=True, stable=True).indices]
        tps, fps = tp[order].double().cumsum(0), fp[order].double().cumsum(0)
        recall = tps / positives
        precision = tps / (tps + fps).clamp_min(1e-12)
        aps.append(average_precision(recall, precision, use_07))
    present = [a for a in aps if a == a]
    return (sum(present) / len(present) if present else 0.0), aps


__all__ = ["average_precision", "true_positives", "voc_map"]
