"""Query-time choices (the second half of every strategy), registered by name in ``ACQUISITIONS``.

Adding one is one file in this package: an :class:`Acquisition` (usually a
:class:`ScoreAcquisition` with a ``score`` method, its ``needs`` and its own ``Options``) that
ends with ``ACQUISITIONS.register(NAME, Class, "what it picks")``; every module here is
imported below, so it registers itself.  From outside the package, decorate a class or a plain
score function with :func:`register_acquisition`.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import (
    ACQUISITIONS,
    Acquisition,
    QueryContext,
    RandomAcquisition,
    ScoreAcquisition,
    Selection,
    register_acquisition,
    score_acquisition,
    top_k,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def make_acquisition(name: str, options: object = None) -> Acquisition:
    """A new acquisition ``name`` with ``options`` (its defaults when None)."""
    return ACQUISITIONS.get(name)(options)


__all__ = [
    "ACQUISITIONS", "Acquisition", "QueryContext", "RandomAcquisition", "ScoreAcquisition", "Selection",
    "make_acquisition", "register_acquisition", "score_acquisition", "top_k",
]
