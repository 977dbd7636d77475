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
        need = ACQUISITIONS[acquisition][0]().requires
        if need and not getattr(OBJECTIVES[objective][0], need, False):
            able = ", ".join(n for n, (f, _) in OBJECTIVES.items() if getattr(f, need, False))
            what = {"predicts_loss": "a loss-prediction module", "has_discriminator": "a VAE and discriminator"}.get(need, need)
            raise ConfigError(f"{name!r}: the {acquisition} acquisition needs an objective with {what} ({able})")
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
register(Strategy(
    "llal", "lossnet", "predicted-loss",
    "Learning Loss: a module trained with the pairwise ranking loss predicts each item's loss; query the highest",
    "Yoo and Kweon, Learning Loss for Active Learning, CVPR 2019",
))
register(Strategy(
    "llal-mse", "lossnet-mse", "predicted-loss",
    "the Learning Loss ablation with an MSE module loss (lambda 0.1); worse than ranking in the paper",
    "Yoo and Kweon, CVPR 2019, section 4", defaults={"loss_weight": 0.1}, in_main=False,
))
register(Strategy(
    "lplgrad", "lossnet", "gradnorm",
    "trains the loss-prediction module as an auxiliary, queries by the gradient norm of the entropy",
    "LPLgrad (loss-prediction-loss auxiliary with entropy gradient-norm query)",
))
register(Strategy(
    "ent-gradnorm", "none", "gradnorm",
    "plain training, queries by the per-sample gradient norm of the softmax entropy",
    "Ent-GradNorm (gradient-norm based uncertainty)",
))
register(Strategy(
    "dnal", "double-branch", "predicted-loss",
    "double branch: the module learns a lagged target network's loss; query the whole pool, retrain each cycle",
    "Fang, Xu and Tang, DNAL, 2021 (reconstruction, METHODS.md section 5)",
    # the paper's VGG16 settings: lr 0.01 (module 0.001), batch 64; its ResNet-18 variant used --lr 0.1
    defaults={"reinit": True, "subset": 0, "lr": 0.01, "batch_size": 64, "lossnet_lr_ratio": 0.1,
              "stop_gradient_fraction": 0.8},
))
register(Strategy(
    "coreset", "none", "coreset",
    "k-center greedy over the penultimate features, with every labeled item as a centre",
    "Sener and Savarese, Active Learning for Convolutional Neural Networks: A Core-Set Approach, ICLR 2018",
))
register(Strategy(
    "bald", "mc-dropout", "bald",
    "dropout before the classifier; query the highest BALD mutual information over --mc-passes dropout passes",
    "Gal, Islam and Ghahramani, Deep Bayesian Active Learning with Image Data, ICML 2017 (BALD: Houlsby et al. 2011)",
))
register(Strategy(
    "mc-entropy", "mc-dropout", "mc-entropy",
    "dropout before the classifier; query the highest entropy of the mean of --mc-passes dropout passes",
    "Gal, Islam and Ghahramani, ICML 2017 (max-entropy acquisition)", in_main=False,
))
register(Strategy(
    "badge", "none", "badge",
    "k-means++ seeding over the last layer's gradient embeddings at the predicted label",
    "Ash et al., Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds (BADGE), ICLR 2020",
))
register(Strategy(
    "vaal", "vaal", "vaal",
    "a VAE and a discriminator trained adversarially on labeled and unlabeled items; query the lowest D(mu)",
    "Sinha, Ebrahimi and Darrell, Variational Adversarial Active Learning, ICCV 2019", in_main=False,
))
register(Strategy(
    "sraal", "sraal", "sraal",
    "VAAL with a supervised head and unlabeled discriminator targets 1 - OUI of the task model; query the lowest D(mu)",
    "Zhang et al., State-Relabeling Adversarial Active Learning, CVPR 2020 (random initial pool, not k-center)",
    in_main=False,
))
