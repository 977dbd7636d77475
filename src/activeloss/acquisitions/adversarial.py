"""The discriminator acquisition of VAAL and SRAAL: the candidates that look least labeled.

The objective's VAE encodes each candidate (eval mode, un-augmented input) and its
discriminator scores the latent mean (VAAL: ``mu``; SRAAL: ``[mu_u, mu_s]``, its reconstruction
and supervised latents concatenated); the top-k **lowest** ``D(mu)`` are queried.  The
score is ``-logit D(mu)``: the same order as ``1 - D`` (or ``-D``) but without the ties a
saturated sigmoid would create in float32.
"""
from __future__ import annotations

import torch

from .base import ACQUISITIONS, QueryContext, ScoreAcquisition


class DiscriminatorAcquisition(ScoreAcquisition):
    """Top-k lowest discriminator output over the candidates (VAAL; SRAAL uses the same rule)."""

    requires = "has_discriminator"

    @torch.no_grad()
    def score(self, ctx: QueryContext) -> torch.Tensor:
        logits = ctx.objective.discriminator_logits  # type: ignore[attr-defined]  # objectives with a discriminator
        return torch.cat([-logits(x) for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size)])


class SRAALAcquisition(DiscriminatorAcquisition):
    """VAAL's rule on SRAAL's state-relabeled discriminator."""


ACQUISITIONS.register("vaal", DiscriminatorAcquisition,
                      "lowest discriminator score D(mu) of the objective's VAE latent (VAAL; needs vaal or sraal)")
ACQUISITIONS.register("sraal", SRAALAcquisition,
                      "lowest discriminator score D([mu_u, mu_s]) on SRAAL's two-part latent and state-relabeled "
                      "discriminator")
