"""MC-Dropout acquisitions: BALD and the entropy of the mean prediction (classification), the
predictive variance (regression).

T = ``--mc-passes`` (default 10) stochastic passes with **only the dropout modules** in
train mode; BatchNorm and everything else stay in eval mode (one public implementation
switches the whole model to train, which makes BatchNorm use batch statistics and
update its running averages during a query).

Two ways to get the T passes, same distribution:

* **fast path** - the model's only dropout is the one the ``mc-dropout`` objective put
  before the classifier, or the model has no dropout at all (then dropout with rate
  ``--dropout``, default 0.5, is applied to the features before the classifier at query
  time only: the documented fallback that makes ``none+bald`` work).  The deterministic
  part (``model.features``) runs once per batch and the T masks are applied to the
  features in one batched op: (T, B, D) -> Linear -> (T, B, C).
* **generic path** - any other model with dropout modules: each batch is repeated T times
  along the batch dimension and run in one forward (in eval-mode BatchNorm items do not
  interact, so the T copies are T independent passes).

Masks come from ``ctx.generator`` (fast path: drawn directly; generic path: torch's RNG
forked and seeded from it), so a query is reproducible and leaves the global RNG alone.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import scoring
from ..config.options import option
from ..models.heads import features_of, split_classifier
from ..models.modes import eval_mode
from ..objectives.dropout import DropoutOptions, dropout_modules, inserted_dropout
from ..seeding import forked
from ..tasks import PROBABILITIES, VALUES
from .base import ACQUISITIONS, QueryContext, ScoreAcquisition


@dataclass(frozen=True)
class MCDropoutOptions(DropoutOptions):
    mc_passes: int = option(10, "stochastic dropout passes of the MC-Dropout acquisitions (bald, mc-entropy, "
                            "mc-variance)", at_least=1)


def dropout_only_train(model: nn.Module) -> Any:
    """Eval mode everywhere except the dropout modules (train mode); modes restored on exit."""
    return eval_mode(model, keep_training=dropout_modules(model))


@torch.no_grad()
def mc_outputs(ctx: QueryContext, passes: int, fallback_p: float, kind: str,
               transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``transform`` of T stochastic passes over the candidates, shape (T, N, ...); cached per
    ``kind`` (``"probs"``, ``"values"``) so several scores of one query share the passes."""
    key = ("mc", kind, passes)
    if key in ctx._cache:
        return ctx._cache[key]
    model = ctx.model
    device = ctx.inputs.device
    drop = inserted_dropout(model)
    out = []
    if drop is not None or not dropout_modules(model):
        p = float(drop.p) if drop is not None else fallback_p
        _, linear = split_classifier(model)
        embed = features_of(model)
        scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        g = forked(ctx.generator, device)
        with dropout_only_train(model):
            for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
                with ctx.autocast():
                    h = embed(x).float()  # deterministic part, once per batch
                keep = torch.rand((passes, *h.shape), generator=g, device=h.device) >= p
                logits = linear(h.unsqueeze(0) * keep.to(h.dtype) * scale)
                out.append(transform(logits.float()))
    else:
        seed = int(torch.randint(2**62, (1,), generator=ctx.generator))
        devices = ([device.index if device.index is not None else torch.cuda.current_device()]
                   if device.type == "cuda" else [])
        chunk = max(1, ctx.batch_size // passes)  # T copies of `chunk` items per forward
        with dropout_only_train(model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
                for part in x.split(chunk):
                    reps = part.repeat(passes, *([1] * (part.dim() - 1)))
                    with ctx.autocast():
                        logits = model(reps).float().view(passes, part.shape[0], -1)
                    out.append(transform(logits))
    result = torch.cat(out, dim=1)
    ctx._cache[key] = result
    return result


class MCDropoutAcquisition(ScoreAcquisition):
    """Base of the MC-Dropout scores: T = ``--mc-passes`` passes, dropout ``--dropout`` as fallback."""

    Options = MCDropoutOptions
    shardable = False  # the dropout masks are drawn in sequence over all candidates

    def mc_probs(self, ctx: QueryContext) -> torch.Tensor:
        """Softmax of T stochastic passes over the candidates, shape (T, N, C)."""
        return mc_outputs(ctx, self.options.mc_passes, self.options.dropout, "probs",
                          lambda logits: torch.softmax(logits, dim=-1))

    def mc_values(self, ctx: QueryContext) -> torch.Tensor:
        """The task's real-valued predictions of T stochastic passes, shape (T, N, D)."""
        def values(out: torch.Tensor) -> torch.Tensor:
            t, n = out.shape[:2]
            return ctx.task.values(out.reshape(t * n, -1)).reshape(t, n, -1)

        return mc_outputs(ctx, self.options.mc_passes, self.options.dropout, "values", values)


class BALDAcquisition(MCDropoutAcquisition):
    """Top-k BALD mutual information H[mean_t p_t] - mean_t H[p_t] over T dropout passes."""

    needs = frozenset({PROBABILITIES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return scoring.bald(self.mc_probs(ctx))


class MCEntropyAcquisition(MCDropoutAcquisition):
    """Top-k entropy of the mean prediction over T dropout passes (max-entropy MC-Dropout)."""

    needs = frozenset({PROBABILITIES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return scoring.mc_entropy(self.mc_probs(ctx))


class MCVarianceAcquisition(MCDropoutAcquisition):
    """Top-k predictive variance over T dropout passes (regression's MC-Dropout uncertainty)."""

    needs = frozenset({VALUES})

    def score(self, ctx: QueryContext) -> torch.Tensor:
        return scoring.predictive_variance(self.mc_values(ctx))


ACQUISITIONS.register("bald", BALDAcquisition,
                      "highest BALD mutual information over --mc-passes dropout passes (MC-Dropout)")
ACQUISITIONS.register("mc-entropy", MCEntropyAcquisition,
                      "highest entropy of the mean prediction over --mc-passes dropout passes")
ACQUISITIONS.register("mc-variance", MCVarianceAcquisition,
                      "highest predictive variance over --mc-passes dropout passes (regression)")
