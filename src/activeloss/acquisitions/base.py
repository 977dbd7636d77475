"""The query-time half of a strategy: how the next batch is chosen.

An acquisition gets a :class:`QueryContext` (the trained model and objective in eval mode,
the candidates, the labeled items, a seeded generator, the task) and returns a
:class:`Selection` of ``k`` distinct candidates in order of preference.  Most acquisitions
score every candidate and take the highest (:class:`ScoreAcquisition`); the score functions
themselves are pure tensor functions in :mod:`activeloss.scoring`.  Each acquisition says
what it needs: from the task's outputs (``needs``: class probabilities, real values) and from
the objective (``requires``: a loss predictor, a discriminator), so an impossible pair is
refused with one line before anything runs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from ..config.options import NoOptions, declare_component
from ..data import Inputs
from ..device import distributed
from ..device.performance import autocast
from ..models.heads import features_of
from ..objectives import Objective
from ..registry import Registry
from ..tasks import Task


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
    task: Task
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # calls model (compiled with --compile)
    labels: torch.Tensor | None = None  # the labels of ``labeled`` as the pool holds them (the oracle's answers)
    _cache: dict = field(default_factory=dict)

    def autocast(self) -> Any:
        """Mixed precision for the model's forward passes (bf16 on CUDA, nothing on CPU).  Only
        forward passes: the scores, distances and k-means that follow stay in fp32."""
        return autocast(self.inputs.device)

    @torch.no_grad()
    def outputs(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The model's outputs (float32) for ``indices`` (default: the candidates), un-augmented inputs."""
        if indices is not None:
            forward = self.model if self.forward is None else self.forward
            with self.autocast():
                return torch.cat([forward(x).float() for x in self.inputs.batches(indices, self.batch_size)])
        if "outputs" not in self._cache:  # several scores of one query share one pass over the candidates
            self._cache["outputs"] = self.outputs(self.candidates)
        return self._cache["outputs"]

    def probs(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities (N, C) from the task (classification: softmax of the logits)."""
        return self.task.probabilities(self.outputs(indices))

    def values(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Real-valued predictions (N, D) from the task (regression)."""
        return self.task.values(self.outputs(indices))

    @torch.no_grad()
    def features(self, indices: torch.Tensor) -> torch.Tensor:
        """The model's embedding: its pooled penultimate features (the input of the classifier)."""
        embed = features_of(self.model)
        with self.autocast():
            return torch.cat([embed(x).float() for x in self.inputs.batches(indices, self.batch_size)])

    def labeled_features(self, like: torch.Tensor) -> torch.Tensor:
        """The labeled items' features, or an empty (0, d) block shaped after ``like`` (candidates'
        features) when nothing is labeled yet: the centres of a k-center query."""
        return self.features(self.labeled) if self.labeled.numel() else like.new_zeros(0, like.shape[1])


@dataclass
class Selection:
    """The chosen items (global indices, in order of preference) and, when there is one, their score."""

    indices: torch.Tensor
    scores: torch.Tensor | None = None


class Acquisition:
    """Chooses ``k`` items among ``ctx.candidates``."""

    name: ClassVar[str] = "acquisition"
    Options: ClassVar[type] = NoOptions
    #: what the task's outputs must offer (``activeloss.tasks.PROBABILITIES``, ``VALUES``...)
    needs: ClassVar[frozenset[str]] = frozenset()
    #: an Objective class attribute that must be true for this acquisition to work
    #: (``"predicts_loss"``, ``"has_discriminator"``), checked when a strategy is named
    requires: ClassVar[str | None] = None

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def select(self, ctx: QueryContext, k: int) -> Selection:
        raise NotImplementedError


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` highest scores, highest first; ties keep the lower position.

    A stable descending sort rather than ``topk`` so the order is reproducible everywhere.
    """
    return torch.sort(scores.float().cpu(), descending=True, stable=True).indices[:k]


class ScoreAcquisition(Acquisition):
    """Scores every candidate with :meth:`score` and takes the top-k (highest first).

    Under torchrun the candidates are split in whole ``ctx.batch_size`` batches, each rank
    scores its part and the scores are gathered in candidate order on every rank
    (:mod:`activeloss.device.distributed`): the same scores as one process, the same top-k on
    every rank.  This needs a score per candidate that depends on that candidate alone and
    draws nothing from ``ctx.generator``; a score that does not (MC-dropout masks drawn in
    sequence) sets ``shardable = False`` and is computed whole on every rank.
    """

    shardable: ClassVar[bool] = True

    def score(self, ctx: QueryContext) -> torch.Tensor:
        """One score per candidate, higher = more worth labeling."""
        raise NotImplementedError

    def scores(self, ctx: QueryContext) -> torch.Tensor:
        """The score of every candidate, in candidate order (on the CPU, float32)."""
        if not (self.shardable and distributed.active()):
            return self.score(ctx).float().cpu()
        lo, hi = distributed.batch_range(ctx.candidates.numel(), ctx.batch_size)
        part = replace(ctx, candidates=ctx.candidates[lo:hi], _cache={})
        local = self.score(part).float().cpu() if hi > lo else torch.zeros(0)
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


#: the acquisitions by name; registering one declares its options
ACQUISITIONS: Registry[type[Acquisition]] = Registry("acquisition", on_register=declare_component)
ACQUISITIONS.register("random", RandomAcquisition, "uniform over the candidates")


def score_acquisition(fn: Callable[[QueryContext], torch.Tensor], *, needs: frozenset[str] = frozenset(),
                      requires: str | None = None, shardable: bool = True) -> type[ScoreAcquisition]:
    """A :class:`ScoreAcquisition` class from a plain function ``fn(ctx) -> scores`` (higher first)."""
    attrs = {"score": lambda self, ctx: fn(ctx), "needs": frozenset(needs), "requires": requires,
             "shardable": shardable, "__doc__": fn.__doc__}
    return type(f"{getattr(fn, '__name__', 'Score').title().replace('_', '')}Acquisition", (ScoreAcquisition,), attrs)


def register_acquisition(name: str, description: str = "", *, needs: frozenset[str] | set[str] = frozenset(),
                         requires: str | None = None) -> Callable[[Any], Any]:
    """Decorator: register an :class:`Acquisition` subclass, or a plain score function
    ``fn(ctx) -> one score per candidate`` (higher is picked first), under ``name``."""
    def add(obj: Any) -> Any:
        cls = obj if isinstance(obj, type) else score_acquisition(obj, needs=frozenset(needs), requires=requires)
        ACQUISITIONS.register(name, cls, description or (obj.__doc__ or "").strip().split("\n")[0])
        return obj

    return add
