"""Training-time add-ons (the first half of every strategy), registered by name."""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from .base import Objective, ParamGroup, Step
from .double_branch import DoubleBranchObjective
from .dropout import MCDropoutObjective
from .vae import SRAALObjective, VAALObjective
from .lossnet import LossNet, LossPredictionObjective, MSELossPredictionObjective

OBJECTIVES: dict[str, tuple[Callable[[], Objective], str]] = {
    "none": (Objective, "the task loss alone"),
    "lossnet": (LossPredictionObjective, "loss-prediction module on the taps, pairwise ranking loss (Learning Loss)"),
    "lossnet-mse": (MSELossPredictionObjective, "loss-prediction module regressed with MSE (the Learning Loss ablation)"),
    "double-branch": (DoubleBranchObjective, "loss-prediction module learning a lagged target network's loss (DNAL)"),
}


def register_objective(name: str, factory: Callable[[], Objective], description: str) -> None:
    OBJECTIVES[name] = (factory, description)


register_objective("mc-dropout", MCDropoutObjective, "dropout (--dropout, 0.5) before the classifier, trained with it, for MC-Dropout queries")
register_objective("vaal", VAALObjective, "VAE + discriminator on its latent, trained adversarially on labeled and unlabeled items (VAAL)")
register_objective("sraal", SRAALObjective, "VAAL's networks + a supervised head; unlabeled discriminator targets 1 - OUI (SRAAL)")


def make_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name][0]()


__all__ = ["OBJECTIVES", "DoubleBranchObjective", "LossNet", "LossPredictionObjective", "MSELossPredictionObjective", "Objective", "ParamGroup", "Step", "make_objective", "register_objective"]
