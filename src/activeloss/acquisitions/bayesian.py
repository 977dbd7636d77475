"""MC-Dropout acquisitions: BALD and the entropy of the mean prediction (METHODS.md section 7).

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


import torch
from torch import nn

from .. import scoring
from ..models.modes import eval_mode
from ..seeding import forked
from ..objectives.dropout import dropout_modules, inserted_dropout, split_classifier
from .base import QueryContext, ScoreAcquisition

DEFAULT_PASSES = 10
DEFAULT_DROPOUT = 0.5


def dropout_only_train(model: nn.Module):
    """Eval mode everywhere except the dropout modules (train mode); modes restored on exit."""
    return eval_mode(model, keep_training=dropout_modules(model))


@torch.no_grad()
def mc_probs(ctx: QueryContext, passes: int | None = None) -> torch.Tensor:
    """Softmax of T stochastic passes over the candidates, shape (T, N, C)."""
    if passes is None:
        passes = int(getattr(ctx.settings, "mc_passes", None) or DEFAULT_PASSES)
    key = ("mc_probs", passes)
    if key in ctx._cache:
        return ctx._cache[key]
    model = ctx.model
    device = ctx.inputs.device
    drop = inserted_dropout(model)
    out = []
    if drop is not None or not dropout_modules(model):
        fallback = getattr(ctx.settings, "dropout", None)
        p = drop.p if drop is not None else float(DEFAULT_DROPOUT if fallback is None else fallback)
        _, linear = split_classifier(model)
        scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        g = forked(ctx.generator, device)
        with dropout_only_train(model):
            for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
                with ctx.autocast():
                    h = model.features(x).float()  # deterministic part, once per batch
                keep = torch.rand((passes, *h.shape), generator=g, device=h.device) >= p
                logits = linear(h.unsqueeze(0) * keep.to(h.dtype) * scale)
                out.append(torch.softmax(logits.float(), dim=-1))
    else:
        seed = int(torch.randint(2**62, (1,), generator=ctx.generator))
        devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        chunk = max(1, ctx.batch_size // passes)  # T copies of `chunk` items per forward
        with dropout_only_train(model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for x in ctx.inputs.batches(ctx.candidates, ctx.batch_size):
                for part in x.split(chunk):
                    reps = part.repeat(passes, *([1] * (part.dim() - 1)))
                    with ctx.autocast():
                        logits = model(reps).float().view(passes, part.shape[0], -1)
                    out.append(torch.softmax(logits, dim=-1))
    probs = torch.cat(out, dim=1)
    ctx._cache[key] = probs
    return probs


class BALDAcquisition(ScoreAcquisition):
    """Top-k BALD mutual information H[mean_t p_t] - mean_t H[p_t] over T dropout passes."""

    shardable = False  # the dropout masks are drawn in sequence over all candidates

    def __init__(self) -> None:
        super().__init__("bald", lambda ctx: scoring.bald(mc_probs(ctx)))


class MCEntropyAcquisition(ScoreAcquisition):
    """Top-k entropy of the mean prediction over T dropout passes (max-entropy MC-Dropout)."""

    shardable = False  # the dropout masks are drawn in sequence over all candidates

    def __init__(self) -> None:
        super().__init__("mc-entropy", lambda ctx: scoring.mc_entropy(mc_probs(ctx)))
