"""Query-time choices (the second half of every strategy), registered by name."""
from __future__ import annotations

from typing import Callable

from .. import scoring
from ..errors import ConfigError
from .base import Acquisition, QueryContext, RandomAcquisition, ScoreAcquisition, Selection, top_k
from .loss_based import GradientNormAcquisition, PredictedLossAcquisition
from .adversarial import DiscriminatorAcquisition
from .bayesian import BALDAcquisition, MCEntropyAcquisition
from .diversity import BadgeAcquisition, CoresetAcquisition

ACQUISITIONS: dict[str, tuple[Callable[[], Acquisition], str]] = {}


def register_acquisition(name: str, factory: Callable[[], Acquisition], description: str) -> None:
    ACQUISITIONS[name] = (factory, description)


def make_acquisition(name: str) -> Acquisition:
    if name not in ACQUISITIONS:
        raise ConfigError(f"unknown acquisition {name!r}; choose one of {', '.join(ACQUISITIONS)}")
    return ACQUISITIONS[name][0]()


def _probability_score(name: str, fn: Callable) -> Callable[[], Acquisition]:
    return lambda: ScoreAcquisition(name, lambda ctx: fn(ctx.probs()))


register_acquisition("random", RandomAcquisition, "uniform over the candidates")
register_acquisition("predicted-loss", PredictedLossAcquisition, "highest loss predicted by the objective's loss-prediction module")
register_acquisition("gradnorm", GradientNormAcquisition, "largest per-sample gradient norm of the softmax entropy")
register_acquisition("entropy", _probability_score("entropy", scoring.entropy), "highest softmax entropy")
register_acquisition("margin", _probability_score("margin", scoring.margin), "smallest gap between the two most likely classes")
register_acquisition(
    "least-confidence", _probability_score("least-confidence", scoring.least_confidence), "smallest top probability"
)
register_acquisition("coreset", CoresetAcquisition, "k-center greedy over the penultimate features, labeled items as centres (Core-set)")
register_acquisition("bald", BALDAcquisition, "highest BALD mutual information over --mc-passes dropout passes (MC-Dropout)")
register_acquisition("mc-entropy", MCEntropyAcquisition, "highest entropy of the mean prediction over --mc-passes dropout passes")
register_acquisition("badge", BadgeAcquisition, "k-means++ seeding over last-layer gradient embeddings at the predicted label (BADGE)")
register_acquisition("vaal", lambda: DiscriminatorAcquisition("vaal"), "lowest discriminator score D(mu) of the objective's VAE latent (VAAL; needs vaal or sraal)")
register_acquisition("sraal", lambda: DiscriminatorAcquisition("sraal"), "lowest discriminator score D(mu), as vaal, on SRAAL's state-relabeled discriminator")

__all__ = [
    "ACQUISITIONS", "Acquisition", "QueryContext", "RandomAcquisition", "ScoreAcquisition", "Selection",
    "make_acquisition", "register_acquisition", "top_k",
]
