"""Training-time add-ons (the first half of every strategy), registered by name in ``OBJECTIVES``.

Adding one is one file in this package: a subclass of :class:`Objective` (with its own
``Options``) that ends with ``OBJECTIVES.register(NAME, Class, "what it trains")``; every
module here is imported below, so it registers itself.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import OBJECTIVES, ModelInfo, Objective, ParamGroup, Step

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .double_branch import DoubleBranchObjective  # noqa: E402  (after discovery: every module is loaded)
from .dropout import MCDropoutObjective, SeededDropout, dropout_modules, inserted_dropout  # noqa: E402
from .generative import BayesianGenerativeObjective  # noqa: E402
from .lossnet import LossNet, LossPredictionObjective, MSELossPredictionObjective  # noqa: E402
from .vae import SRAALObjective, VAALObjective  # noqa: E402


def make_objective(name: str, options: object = None) -> Objective:
    """A new objective ``name`` with ``options`` (its defaults when None)."""
    return OBJECTIVES.get(name)(options)


__all__ = [
    "OBJECTIVES", "BayesianGenerativeObjective", "DoubleBranchObjective", "LossNet", "LossPredictionObjective",
    "MCDropoutObjective", "MSELossPredictionObjective", "ModelInfo", "Objective", "ParamGroup", "SRAALObjective",
    "SeededDropout", "Step", "VAALObjective", "dropout_modules", "inserted_dropout", "make_objective",
]
