"""Strategies: named (objective, acquisition) pairs with their protocol defaults.

``llal`` is the loss-prediction objective with the predicted-loss acquisition,
``ent-gradnorm`` no objective with the gradient-norm acquisition, and so on.  Any
pair also works by name: ``lossnet+entropy`` trains a loss-prediction module and
queries by entropy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .acquisitions import ACQUISITIONS, Acquisition, make_acquisition
from .errors import ConfigError
from .objectives import OBJECTIVES, Objective, make_objective


@dataclass(frozen=True)
class Strategy:
    name: str
    objective: str
    acquisition: str
    description: str = ""
    reference: str = ""
    #: settings this strategy fills when the run leaves them unset (e.g. DNAL: reinit, whole pool)
    defaults: dict[str, Any] = field(default_factory=dict)
    #: part of the default comparison of ``activeloss run``
    in_main: bool = True

    def make_objective(self) -> Objective:
        return make_objective(self.objective)

    def make_acquisition(self) -> Acquisition:
        return make_acquisition(self.acquisition)


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> Strategy:
    """A registered strategy, or an ``OBJECTIVE+ACQUISITION`` pair built on the fly."""
    name = name.strip()
    if name in STRATEGIES:
        return STRATEGIES[name]
    if "+" in name:
        objective, acquisition = (part.strip() for part in name.split("+", 1))
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r} in {name!r}; choose one of {', '.join(OBJECTIVES)}")
        if acquisition not in ACQUISITIONS:
            raise ConfigError(f"unknown acquisition {acquisition!r} in {name!r}; choose one of {', '.join(ACQUISITIONS)}")
        return Strategy(name, objective, acquisition, f"{objective} objective with {acquisition} acquisition")
    raise ConfigError(
        f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}, or OBJECTIVE+ACQUISITION "
        f"(objectives: {', '.join(OBJECTIVES)}; acquisitions: {', '.join(ACQUISITIONS)})"
    )


def main_comparison() -> list[str]:
    """The strategies ``activeloss run`` compares when none are named."""
    return [s.name for s in STRATEGIES.values() if s.in_main]


register(Strategy("random", "none", "random", "uniform random choice: the baseline every method must beat"))
register(Strategy("entropy", "none", "entropy", "highest predictive entropy"))
register(Strategy("margin", "none", "margin", "smallest margin between the two most likely classes"))
register(Strategy("least-confidence", "none", "least-confidence", "lowest top-class probability"))
