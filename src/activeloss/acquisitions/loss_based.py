"""Acquisitions of the loss-prediction family: predicted loss and entropy-gradient norm."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config.options import option
from ..models import tapped
from ..scoring import gradient_norm_scores
from ..scoring.gradnorm import NORMS
from ..tasks import PROBABILITIES
from .base import ACQUISITIONS, QueryContext, ScoreAcquisition


class PredictedLossAcquisition(ScoreAcquisition):
    """Top-k by the objective's predicted loss, highest first (model and module in eval mode)."""

    requires = "predicts_loss"

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return predicted_losses(ctx, ctx.candidates)


@torch.no_grad()
def predicted_losses(ctx: QueryContext, indices: torch.Tensor) -> torch.Tensor:
    """The objective's predicted loss of each item of ``indices`` (float32)."""
    names = ctx.objective.tap_names  # type: ignore[attr-defined]  # objectives that predict losses tap
    out = []
    with tapped(ctx.model, names) as taps:
        for x in ctx.inputs.batches(indices, ctx.batch_size):
            with ctx.autocast():
                ctx.model(x)
                predicted = ctx.objective.predict_loss(taps.outputs)
                assert predicted is not None
                out.append(predicted.float())
    return torch.cat(out) if out else torch.zeros(0, device=ctx.inputs.device)


@dataclass(frozen=True)
class GradientNormOptions:
    gradnorm: str = option("tensor_sum", "gradient-norm score: tensor_sum (sum of per-tensor L2 norms, the published "
                           "code) or global", choices=NORMS)


class GradientNormAcquisition(ScoreAcquisition):
    """Top-k by the per-sample norm of the gradient of the softmax entropy w.r.t. every model
    parameter (LPLgrad, Ent-GradNorm); the loss-prediction module is not used."""

    Options = GradientNormOptions
    needs = frozenset({PROBABILITIES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return torch.cat([
            gradient_norm_scores(ctx.model, x, norm=self.options.gradnorm, batch_size=ctx.batch_size)
            for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size)
        ])


ACQUISITIONS.register("predicted-loss", PredictedLossAcquisition,
                      "highest loss predicted by the objective's loss-prediction module")
ACQUISITIONS.register("gradnorm", GradientNormAcquisition, "largest per-sample gradient norm of the softmax entropy")
