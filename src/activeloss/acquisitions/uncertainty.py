"""Uncertainty from one softmax: entropy (any task with one: classification, pose's heatmaps),
margin and least confidence (classification)."""
from __future__ import annotations

import torch

from .. import scoring
from ..tasks import ENTROPY, PROBABILITIES
from .base import ACQUISITIONS, QueryContext, ScoreAcquisition


class EntropyAcquisition(ScoreAcquisition):
    """Top-k entropy as the task defines it (the softmax's; pose: the mean over the joints of each
    heatmap's softmax entropy)."""

    needs = frozenset({ENTROPY})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return ctx.task.entropy(ctx.outputs())


class MarginAcquisition(ScoreAcquisition):
    """Smallest gap between the two most likely classes first."""

    needs = frozenset({PROBABILITIES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return scoring.margin(ctx.probs())


class LeastConfidenceAcquisition(ScoreAcquisition):
    """Smallest top probability first."""

    needs = frozenset({PROBABILITIES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return scoring.least_confidence(ctx.probs())


ACQUISITIONS.register("entropy", EntropyAcquisition, "highest softmax entropy (pose: mean per-joint heatmap entropy)")
ACQUISITIONS.register("margin", MarginAcquisition, "smallest gap between the two most likely classes")
ACQUISITIONS.register("least-confidence", LeastConfidenceAcquisition, "smallest top probability")
