"""Query-time choices (the second half of every strategy), registered by name."""
from __future__ import annotations

from typing import Callable

from .. import scoring
from ..errors import ConfigError
from .base import Acquisition, QueryContext, RandomAcquisition, ScoreAcquisition, Selection, top_k

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
register_acquisition("entropy", _probability_score("entropy", scoring.entropy), "highest softmax entropy")
register_acquisition("margin", _probability_score("margin", scoring.margin), "smallest gap between the two most likely classes")
register_acquisition(
    "least-confidence", _probability_score("least-confidence", scoring.least_confidence), "smallest top probability"
)

__all__ = [
    "ACQUISITIONS", "Acquisition", "QueryContext", "RandomAcquisition", "ScoreAcquisition", "Selection",
    "make_acquisition", "register_acquisition", "top_k",
]
