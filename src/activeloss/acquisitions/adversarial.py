"""The discriminator acquisition of VAAL and SRAAL: the candidates that look least labeled.

The objective's VAE encodes each candidate (eval mode, un-augmented input) and its
discriminator scores the latent mean; the top-k **lowest** ``D(mu)`` are queried.  The
score is ``-logit D(mu)``: the same order as ``1 - D`` (or ``-D``) but without the ties a
saturated sigmoid would create in float32.
"""
from __future__ import annotations

import torch

from .base import QueryContext, ScoreAcquisition


@torch.no_grad()
def discriminator_score(ctx: QueryContext) -> torch.Tensor:
    objective = ctx.objective
    return torch.cat([-objective.discriminator_logits(x) for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size)])


class DiscriminatorAcquisition(ScoreAcquisition):
    """Top-k lowest discriminator output over the candidates (VAAL; SRAAL uses the same rule)."""

    requires = "has_discriminator"

    def __init__(self, name: str = "vaal") -> None:
        super().__init__(name, discriminator_score)
