"""The query-time half of a strategy: how the next batch is chosen."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from .. import distributed
from ..inputs import Inputs
from ..objectives import Objective
from ..performance import autocast


@dataclass
class QueryContext:
    """Everything an acquisition may look at.  Models are in eval mode while it runs."""

    model: nn.Module
    objective: Objective
    inputs: Inputs
    candidates: torch.Tensor  # global indices of the unlabeled items it may choose from
    labeled: torch.Tensor  # global indices of the labeled items
    generator: torch.Generator  # seeded, for acquisitions that draw at random
    batch_size: int
    settings: object = None
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # calls model (compiled with --compile)
    _cache: dict = field(default_factory=dict)

    def autocast(self):
        """Mixed precision for the model's forward passes (bf16 on CUDA, nothing on CPU).  Only
        forward passes: the scores, distances and k-means that follow stay in fp32."""
        return autocast(self.inputs.device)

    @torch.no_grad()
    def logits(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the model for ``indices`` (default: the candidates), un-augmented inputs."""
        if indices is not None:
            forward = self.model if self.forward is None else self.forward
            with self.autocast():
                return torch.cat([forward(x).float() for x in self.inputs.batches(indices, self.batch_size)])
        if "logits" not in self._cache:  # several scores of one query share one pass over the candidates
            self._cache["logits"] = self.logits(self.candidates)
        return self._cache["logits"]

    def probs(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.logits(indices), dim=-1)

    @torch.no_grad()
    def features(self, indices: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (the input of the classifier)."""
        with self.autocast():
            return torch.cat([self.model.features(x).float() for x in self.inputs.batches(indices, self.batch_size)])


@dataclass
class Selection:
    """The chosen items (global indices, in order of preference) and, when there is one, their score."""

    indices: torch.Tensor
    scores: torch.Tensor | None = None


class Acquisition:
    """Chooses ``k`` items among ``ctx.candidates``."""

    name = "acquisition"
    #: an Objective class attribute that must be true for this acquisition to work
    #: (``"predicts_loss"``, ``"has_discriminator"``), checked when a strategy is named
    requires: str | None = None

    def select(self, ctx: QueryContext, k: int) -> Selection:
        raise NotImplementedError


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` highest scores, highest first; ties keep the lower position.

    A stable descending sort rather than ``topk`` so the order is reproducible everywhere.
    """
    return torch.sort(scores.float().cpu(), descending=True, stable=True).indices[:k]


class ScoreAcquisition(Acquisition):
    """Scores every candidate with ``score_fn(ctx, candidates)`` and takes the top-k (highest first).

    Under torchrun the candidates are split in whole ``ctx.batch_size`` batches, each rank
    scores its part and the scores are gathered in candidate order on every rank
    (:mod:`activeloss.distributed`): the same scores as one process, the same top-k on every
    rank.  This needs a score per candidate that depends on that candidate alone and draws
    nothing from ``ctx.generator``; a score that does not (MC-dropout masks drawn in sequence)
    sets ``shardable = False`` and is computed whole on every rank.
    """

    shardable = True

    def __init__(self, name: str, score_fn: Callable[[QueryContext], torch.Tensor]) -> None:
        self.name = name
        self.score_fn = score_fn

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        """The score of every candidate, in candidate order (on the CPU, float32)."""
        if not (self.shardable and distributed.active()):
            return self.score_fn(ctx).float().cpu()
        lo, hi = distributed.batch_range(ctx.candidates.numel(), ctx.batch_size)
        part = replace(ctx, candidates=ctx.candidates[lo:hi], _cache={})
        local = self.score_fn(part).float().cpu() if hi > lo else torch.zeros(0)
        return distributed.all_gather_cat(local.reshape(-1))

    def select(self, ctx: QueryContext, k: int) -> Selection:
        scores = self.scores(ctx)
        order = top_k(scores, k)
        return Selection(ctx.candidates.cpu()[order], scores[order])


class RandomAcquisition(Acquisition):
    """Uniform choice among the candidates."""

    name = "random"

    def select(self, ctx: QueryContext, k: int) -> Selection:
        order = torch.randperm(ctx.candidates.numel(), generator=ctx.generator)[:k]
        return Selection(ctx.candidates.cpu()[order], None)
