"""Acquisitions of the loss-prediction family: predicted loss and entropy-gradient norm."""
from __future__ import annotations

import torch

from ..models import tapped
from ..scoring import gradient_norm_scores
from .base import QueryContext, ScoreAcquisition


@torch.no_grad()
def predicted_loss(ctx: QueryContext) -> torch.Tensor:
    """The objective's predicted loss for each candidate (model and module in eval mode)."""
    names = ctx.objective.tap_names
    out = []
    with tapped(ctx.model, names) as taps:
        for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
            with ctx.autocast():
                ctx.model(x)
                out.append(ctx.objective.predict_loss(taps.outputs).float())
    return torch.cat(out)


def entropy_gradient_norm(ctx: QueryContext) -> torch.Tensor:
    """Norm of the gradient of the softmax entropy w.r.t. every model parameter, per candidate.

    The loss-prediction module is not used; the norm is ``--gradnorm`` (sum of per-tensor
    L2 norms by default, as the published LPLgrad code).
    """
    norm = getattr(ctx.settings, "gradnorm", "tensor_sum")
    return torch.cat([
        gradient_norm_scores(ctx.model, x, norm=norm, batch_size=ctx.batch_size)
        for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size)
    ])


class PredictedLossAcquisition(ScoreAcquisition):
    """Top-k by predicted loss, highest first; needs an objective that predicts losses."""

    requires = "predicts_loss"

    def __init__(self) -> None:
        super().__init__("predicted-loss", predicted_loss)


class GradientNormAcquisition(ScoreAcquisition):
    """Top-k by the per-sample gradient norm of the entropy (LPLgrad, Ent-GradNorm)."""

    def __init__(self) -> None:
        super().__init__("gradnorm", entropy_gradient_norm)
