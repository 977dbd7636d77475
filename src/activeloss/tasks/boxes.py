"""Box geometry for detection: IoU, SSD's offset encoding, default boxes, matching and NMS.

Pure tensor functions.  Boxes are ``(x1, y1, x2, y2)`` in continuous input-pixel coordinates
(the image spans ``[0, W] x [0, H]``); default boxes (SSD's priors) are ``(cx, cy, w, h)`` in
the same pixels.  The offset encoding is scale-free, so pixels serve as well as SSD's [0, 1]
units.  Every function works on whole batches: no Python loop over images or boxes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: SSD's variances of the centre and the size offsets
VARIANCES = (0.1, 0.2)


def area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas (...) of boxes (..., 4); zero for an inverted box."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (..., N, M) of boxes ``a`` (..., N, 4) and ``b`` (..., M, 4); 0 where both are empty."""
    # per axis, so the (N, M) temporaries have no trailing dimension
    w = torch.minimum(a[..., :, None, 2], b[..., None, :, 2]) - torch.maximum(a[..., :, None, 0], b[..., None, :, 0])
    h = torch.minimum(a[..., :, None, 3], b[..., None, :, 3]) - torch.maximum(a[..., :, None, 1], b[..., None, :, 1])
    inter = w.clamp_min_(0) * h.clamp_min_(0)
    union = area(a)[..., :, None] + area(b)[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def to_corners(centred: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    half = centred[..., 2:] / 2
    return torch.cat([centred[..., :2] - half, centred[..., :2] + half], dim=-1)


def to_centred(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def encode(boxes: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """SSD's regression targets (..., D, 4) of ``boxes`` (..., D, 4) matched to ``priors`` (D, 4)."""
    c = to_centred(boxes)
    centre = (c[..., :2] - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = torch.log(c[..., 2:].clamp_min(1e-6) / priors[:, 2:]) / variances[1]
    return torch.cat([centre, size], dim=-1)


def decode(offsets: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """The inverse of :func:`encode`: boxes (..., D, 4) from predicted offsets (..., D, 4)."""
    centre = priors[:, :2] + offsets[..., :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(offsets[..., 2:] * variances[1])
    return to_corners(torch.cat([centre, size], dim=-1))


def default_boxes(map_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int], min_sizes: Sequence[float],
                  max_sizes: Sequence[float], aspect_ratios: Sequence[Sequence[float]]) -> torch.Tensor:
    """SSD's default boxes (D, 4) = (cx, cy, w, h) in input pixels, map by map, row-major over
    each map's cells and, per cell, in the order: square ``min``, square ``sqrt(min * max)``,
    then ``min`` stretched by each ratio r as (w, h) = (sqrt r, 1 / sqrt r) and its transpose.
    Sizes are fractions of the image side (SSD300's 30 px is 0.1)."""
    height, width = image_size
    side = min(height, width)
    out = []
    for (h, w), lo, hi, ratios in zip(map_sizes, min_sizes, max_sizes, aspect_ratios, strict=True):
        shapes = [(lo, lo), (math.sqrt(lo * hi), math.sqrt(lo * hi))]
        for r in ratios:
            shapes += [(lo * math.sqrt(r), lo / math.sqrt(r)), (lo / math.sqrt(r), lo * math.sqrt(r))]
        wh = torch.tensor(shapes, dtype=torch.float32) * side  # (A, 2)
        ys, xs = torch.meshgrid((torch.arange(h, dtype=torch.float32) + 0.5) * (height / h),
                                (torch.arange(w, dtype=torch.float32) + 0.5) * (width / w), indexing="ij")
        centres = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2).expand(-1, wh.shape[0], 2)
        out.append(torch.cat([centres, wh.expand(h * w, -1, -1)], dim=-1).reshape(-1, 4))
    return torch.cat(out)


def match(truths: torch.Tensor, valid: torch.Tensor, priors: torch.Tensor, threshold: float = 0.5
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """SSD's matching for a batch: which ground truth each default box regresses to.

    ``truths`` (B, K, 4) boxes, ``valid`` (B, K) the real ones (padding and ignored boxes
    False), ``priors`` (D, 4).  Every valid truth claims its best default box (when two claim
    the same one the later truth wins, as in SSD's loop); every other default box takes its
    best truth when their IoU reaches ``threshold``.  Returns the index (B, D) of the matched
    truth and a mask (B, D) of the positives.
    """
    b, k = valid.shape
    if k == 0:
        zeros = torch.zeros(b, priors.shape[0], dtype=torch.long, device=priors.device)
        return zeros, zeros.bool()
    overlaps = iou(truths, to_corners(priors))  # (B, K, D)
    overlaps = torch.where(valid[..., None], overlaps, torch.full_like(overlaps, -1.0))
    best, index = overlaps.max(dim=1)  # (B, D): the best truth of each default box
    best_prior = overlaps.argmax(dim=2)  # (B, K): the best default box of each truth
    claim = torch.where(valid, torch.arange(k, device=valid.device).expand(b, k), torch.full_like(best_prior, -1))
    claimed = torch.full_like(index, -1).scatter_reduce(1, best_prior, claim, reduce="amax")
    forced = claimed >= 0
    index = torch.where(forced, claimed, index)
    positive = forced | (best >= threshold)
    return index, positive


def _keep_greedy(suppresses: torch.Tensor) -> torch.Tensor:
    """The boxes greedy NMS keeps, given ``suppresses`` (..., n, n): box i (earlier, higher score)
    would suppress box j > i.  ``keep[j] = not any(keep[i] and suppresses[i, j])`` is solved by
    fixed-point iteration from all-kept: after t rounds the first t entries are final, and the
    solution is unique, so it stops at the greedy answer after (longest suppression chain) rounds."""
    keep = torch.ones(suppresses.shape[:-1], dtype=torch.bool, device=suppresses.device)
    while True:
        new = ~(suppresses & keep[..., :, None]).any(dim=-2)
        if torch.equal(new, keep):
            return keep
        keep = new


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, groups: torch.Tensor | None = None,
        valid: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression over a batch: which boxes (B, n) survive.

    ``boxes`` (B, n, 4), ``scores`` (B, n); a box is suppressed by a kept box of the same image
    and the same ``groups`` value (the class) with a higher score (ties: the earlier) and an IoU
    above ``threshold``.  Boxes not ``valid`` are never kept and suppress nothing.
    """
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    order = torch.sort(torch.where(valid, scores, torch.full_like(scores, -math.inf)), dim=1, descending=True,
                       stable=True).indices
    sb = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    sv = valid.gather(1, order)
    n = scores.shape[1]
    upper = torch.ones(n, n, dtype=torch.bool, device=boxes.device).triu(1)
    suppresses = (iou(sb, sb) > threshold) & upper & sv[..., :, None]
    if groups is not None:
        sg = groups.gather(1, order)
        suppresses &= sg[..., :, None] == sg[..., None, :]
    kept = _keep_greedy(suppresses) & sv
    return torch.zeros_like(kept).scatter(1, order, kept)


__all__ = ["VARIANCES", "area", "decode", "default_boxes", "encode", "iou", "match", "nms", "to_centred",
           "to_corners"]
