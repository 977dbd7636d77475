"""Uncertainty from one softmax: entropy, margin, least confidence (classification)."""
from __future__ import annotations

import torch

from .. import scoring
from ..tasks import PROBABILITIES
from .base import ACQUISITIONS, QueryContext, ScoreAcquisition


class EntropyAcquisition(ScoreAcquisition):
    """Top-k softmax entropy."""

    needs = frozenset({PROBABILITIES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return scoring.entropy(ctx.probs())


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


ACQUISITIONS.register("entropy", EntropyAcquisition, "highest softmax entropy")
ACQUISITIONS.register("margin", MarginAcquisition, "smallest gap between the two most likely classes")
ACQUISITIONS.register("least-confidence", LeastConfidenceAcquisition, "smallest top probability")
