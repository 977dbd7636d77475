"""MC-Dropout as a training objective: a dropout layer in front of the classifier.

The CIFAR ResNet-18 and VGG16 of the papers (and the small models here) have no
dropout, so BALD / MC-entropy would have nothing stochastic to sample.  Our choice: the
``mc-dropout`` objective replaces ``model.classifier``
by ``nn.Sequential(SeededDropout(p), old_classifier)`` - the same ``nn.Linear`` object,
so its weights are kept - and the model is trained with that dropout active.  A model
that already contains dropout modules is left exactly as it is.

The inserted dropout draws its training masks from its own generator (seed and call
counter kept in the module's state dict), not from torch's global RNG, so a run resumed
from a checkpoint trains with the same masks as an uninterrupted one.

"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config.options import option
from ..errors import ConfigError
from ..models.heads import split_classifier
from ..seeding import derive_seed
from ..tasks import FLAT
from .base import OBJECTIVES, ModelInfo, Objective


@dataclass(frozen=True)
class DropoutOptions:
    dropout: float = option(0.5, "rate of the dropout MC-Dropout puts before the classifier (also the query-time "
                            "fallback of the MC-Dropout acquisitions for models without dropout)", at_least=0, below=1)


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` whose *training* masks come from a private, checkpointed generator.

    While gradients are enabled (a training step) each call draws its mask from a generator
    seeded with ``(seed, call number)``; the call counter lives in the module's extra state,
    so it is saved and restored with the model.  Under ``torch.no_grad`` in train mode (MC
    inference by a generic path) it behaves as plain ``nn.Dropout`` on the global RNG, which
    the caller seeds; in eval mode it is the identity.
    """

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        super().__init__(p)
        self.seed = int(seed)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if not torch.is_grad_enabled():
            return F.dropout(x, self.p, True)
        g = torch.Generator(device=x.device)
        g.manual_seed(derive_seed(self.seed, "dropout", self.calls))
        self.calls += 1
        if self.p >= 1:
            return x * 0
        keep = torch.rand(x.shape, generator=g, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)

    def get_extra_state(self) -> dict:
        return {"seed": self.seed, "calls": self.calls}

    def set_extra_state(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.calls = int(state["calls"])


DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """Every dropout module of ``model`` (any ``nn.Dropout*``, including :class:`SeededDropout`)."""
    return [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]


def inserted_dropout(model: nn.Module) -> nn.modules.dropout._DropoutNd | None:
    """The dropout the ``mc-dropout`` objective put before the classifier, when it is the
    model's only dropout (so MC passes only need the classifier: the BALD fast path)."""
    clf = getattr(model, "classifier", None)
    drops = dropout_modules(model)
    if (isinstance(clf, nn.Sequential) and len(clf) == 2 and isinstance(clf[0], DROPOUT_TYPES)
            and isinstance(clf[1], nn.Linear) and len(drops) == 1 and drops[0] is clf[0]):
        return clf[0]
    return None


class MCDropoutObjective(Objective):
    """Train with dropout (rate ``--dropout``, default 0.5) before the classifier, for MC-Dropout queries.

    ``setup`` wraps ``model.classifier`` as ``nn.Sequential(SeededDropout(p), classifier)``
    (same Linear, same weights; the state-dict keys become ``classifier.0`` / ``classifier.1``)
    unless the model already has dropout modules, which are then used as they are.
    """

    name = "mc-dropout"
    Options = DropoutOptions
    #: a classifier to put the dropout before: not a heatmap model's (pose)
    needs = frozenset({FLAT})

    def setup(self, model: nn.Module, info: ModelInfo) -> None:
        self.inserted = False
        if dropout_modules(model):
            return
        _, linear = split_classifier(model)
        if model.classifier is not linear:
            raise ConfigError("mc-dropout: model.classifier must be a bare nn.Linear to insert dropout before it")
        p = float(self.options.dropout)
        # The mask seed comes from the global RNG, which the loop seeds per trial before
        # building the model, so trials differ and a replay draws the same seed.
        seed = int(torch.randint(2**62, (1,)))
        model.classifier = nn.Sequential(SeededDropout(p, seed), linear)
        self.inserted = True


OBJECTIVES.register("mc-dropout", MCDropoutObjective,
                    "dropout (--dropout, 0.5) before the classifier, trained with it, for MC-Dropout queries")
