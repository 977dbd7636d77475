"""Diversity acquisitions: Core-set (k-center greedy) and BADGE (k-means++ on gradient embeddings).

Both work on the model's embedding (its pooled penultimate features, eval mode, no gradient,
un-augmented inputs; see :func:`activeloss.models.features_of`) and never build an N x N matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.heads import features_of, split_classifier
from ..scoring import k_center_greedy, kmeans_pp_factored
from ..tasks import PROBABILITIES
from .base import ACQUISITIONS, Acquisition, QueryContext, Selection

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
    nearest centre and makes it a centre (:func:`~activeloss.scoring.k_center_greedy`).
    ``Selection.scores`` is each pick's distance to its nearest centre when it was picked
    (non-increasing; infinite for the first pick when nothing is labeled).
    """

    def select(self, ctx: QueryContext, k: int) -> Selection:
        cand = ctx.features(ctx.candidates)
        labeled = ctx.labeled_features(cand)
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
    embed = features_of(ctx.model)
    a_parts, h_parts = [], []
    for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
        with ctx.autocast():
            h = head(embed(x)).float()
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


class BadgeAcquisition(Acquisition):
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding over last-layer gradient embeddings at
    the predicted label.  ``Selection.scores`` is None (the picks are sampled, not ranked)."""

    needs = frozenset({PROBABILITIES})

    def select(self, ctx: QueryContext, k: int) -> Selection:
        a, h = gradient_embedding_factors(ctx)
        picks = kmeans_pp_factored(a, h, k, ctx.generator)
        return Selection(ctx.candidates.cpu()[picks], None)


ACQUISITIONS.register("coreset", CoresetAcquisition,
                      "k-center greedy over the penultimate features, labeled items as centres (Core-set)")
ACQUISITIONS.register("badge", BadgeAcquisition,
                      "k-means++ seeding over last-layer gradient embeddings at the predicted label (BADGE)")
