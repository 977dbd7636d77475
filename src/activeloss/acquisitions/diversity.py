"""Diversity acquisitions: Core-set (k-center greedy) and BADGE (k-means++ on gradient embeddings).

Both work on the model's pooled penultimate features (``model.features``, eval mode, no
gradient, un-augmented inputs) and never build an N x N matrix.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..objectives.dropout import split_classifier
from ..selection import k_center_greedy
from .base import Acquisition, QueryContext, Selection

_CHUNK = 4096


def _min_dist_at_pick(cand: torch.Tensor, labeled: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """For each pick i, its distance to the nearest of the labeled points and picks 0..i-1."""
    chosen = cand[picks].double()
    k = chosen.shape[0]
    best = torch.full((k,), float("inf"), dtype=torch.float64, device=cand.device)
    for j in range(0, labeled.shape[0], _CHUNK):
        best = torch.minimum(best, torch.cdist(chosen, labeled[j : j + _CHUNK].double()).amin(dim=1))
    for i in range(0, k, _CHUNK):
        block = torch.cdist(chosen[i : i + _CHUNK], chosen)  # (b, k); keep only earlier picks
        rows = torch.arange(i, min(i + _CHUNK, k), device=cand.device)[:, None]
        block = block.masked_fill(torch.arange(k, device=cand.device)[None, :] >= rows, float("inf"))
        best[i : i + _CHUNK] = torch.minimum(best[i : i + _CHUNK], block.amin(dim=1))
    return best.float()


class CoresetAcquisition(Acquisition):
    """Core-set (Sener and Savarese, ICLR 2018): k-center greedy over the penultimate features.

    The centres are all labeled items; each step picks the candidate farthest from its
    nearest centre and makes it a centre (:func:`~activeloss.selection.k_center_greedy`).
    ``Selection.scores`` is each pick's distance to its nearest centre when it was picked
    (non-increasing; infinite for the first pick when nothing is labeled).
    """

    name = "coreset"

    def select(self, ctx: QueryContext, k: int) -> Selection:
        cand = ctx.features(ctx.candidates)
        labeled = ctx.features(ctx.labeled) if ctx.labeled.numel() else cand.new_zeros(0, cand.shape[1])
        picks = k_center_greedy(cand, labeled, k)
        scores = _min_dist_at_pick(cand, labeled.to(cand.device), picks).cpu()
        return Selection(ctx.candidates.cpu()[picks.cpu()], scores)


# -- BADGE ------------------------------------------------------------------

@torch.no_grad()
def gradient_embedding_factors(ctx: QueryContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of BADGE's gradient embedding, for every candidate.

    For logits ``z = W h + b``, ``p = softmax(z)`` and ``yhat = argmax z``, the gradient of
    ``CE(z, yhat)`` w.r.t. ``W`` is ``(p - onehot(yhat)) h^T``.  Returns ``a = p - onehot``
    (N, C) and ``h`` (N, D), with a constant 1 appended to ``h`` when the classifier has a
    bias (then ``a outer [h, 1]`` holds the weight and the bias gradients).  ``h`` is the
    input of the final Linear (the penultimate features; an inserted dropout is the
    identity in eval mode).
    """
    head, linear = split_classifier(ctx.model)
    a_parts, h_parts = [], []
    for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
        with ctx.autocast():
            h = head(ctx.model.features(x)).float()
        p = torch.softmax(linear(h).float(), dim=-1)
        a = p - F.one_hot(p.argmax(dim=-1), p.shape[-1]).to(p.dtype)
        if linear.bias is not None:
            h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
        a_parts.append(a)
        h_parts.append(h)
    return torch.cat(a_parts), torch.cat(h_parts)


def gradient_embeddings(a: torch.Tensor, h: torch.Tensor, bias: bool) -> torch.Tensor:
    """Materialised embeddings (N, C*D [+ C]): the flattened weight gradient, then the bias
    gradient when ``bias`` (``h`` then ends with the constant 1).  For tests and small
    pools; the selection itself uses the factors and never builds this matrix."""
    if bias:
        w = (a[:, :, None] * h[:, None, :-1]).flatten(1)
        return torch.cat([w, a], dim=1)
    return (a[:, :, None] * h[:, None, :]).flatten(1)


def kmeans_pp_factored(a: torch.Tensor, h: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding over the embeddings ``g_i = a_i outer h_i`` without building them.

    ``||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 + ||a_j||^2 ||h_j||^2 - 2 (a_i.a_j)(h_i.h_j)``,
    so each step costs O(N (C + D)) and memory stays O(N).  As in the BADGE code, the first
    pick is the largest-norm embedding (ties -> lowest index); each next pick is drawn with
    probability proportional to the squared distance to the nearest pick (D^2 sampling,
    from ``gen``).  Picked items get weight 0, so nothing is picked twice; when every
    unpicked item is at distance 0 (duplicates, all-zero gradients) the draw is uniform
    over the unpicked ones.  Computed in float64; distances below 1e-10 of the norms are
    round-off and count as 0.  Returns k distinct positions in the order picked.
    """
    n = a.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick k={k} of {n} items")
    picks = torch.empty(k, dtype=torch.long)
    if k == 0:
        return picks
    a = a.double()
    h = h.double()
    sq = a.pow(2).sum(1) * h.pow(2).sum(1)  # ||g_i||^2
    picked = torch.zeros(n, dtype=torch.bool, device=a.device)
    dist = None
    idx = int(torch.argmax(sq))
    for step in range(k):
        if step > 0:
            weights = dist.masked_fill(picked, 0.0)
            total = float(weights.sum())
            if not (total > 0 and math.isfinite(total)):
                weights = (~picked).double()
            idx = int(torch.multinomial(weights.cpu(), 1, generator=gen))
        picks[step] = idx
        picked[idx] = True
        new = sq + sq[idx] - 2.0 * (a @ a[idx]) * (h @ h[idx])
        new = torch.where(new <= 1e-10 * (sq + sq[idx]), torch.zeros_like(new), new)
        dist = new if dist is None else torch.minimum(dist, new)
    return picks


class BadgeAcquisition(Acquisition):
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding over last-layer gradient embeddings at
    the predicted label.  ``Selection.scores`` is None (the picks are sampled, not ranked)."""

    name = "badge"

    def select(self, ctx: QueryContext, k: int) -> Selection:
        a, h = gradient_embedding_factors(ctx)
        picks = kmeans_pp_factored(a, h, k, ctx.generator)
        return Selection(ctx.candidates.cpu()[picks], None)
