"""Training-time add-ons (the first half of every strategy), registered by name."""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from .base import Objective, ParamGroup, Step

OBJECTIVES: dict[str, tuple[Callable[[], Objective], str]] = {
    "none": (Objective, "the task loss alone"),
}


def register_objective(name: str, factory: Callable[[], Objective], description: str) -> None:
    OBJECTIVES[name] = (factory, description)


def make_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name][0]()


__all__ = ["OBJECTIVES", "Objective", "ParamGroup", "Step", "make_objective", "register_objective"]
