"""Strategies: named (objective, acquisition) pairs with their protocol defaults.

``llal`` is the loss-prediction objective with the predicted-loss acquisition,
``ent-gradnorm`` no objective with the gradient-norm acquisition, and so on.  Any pair also
works by name: ``lossnet+entropy`` trains a loss-prediction module and queries by entropy.
Whether a pair works for a task is decided by what each half needs (class probabilities,
a loss predictor...), so an impossible pair is refused with one line before a run starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .acquisitions import ACQUISITIONS, Acquisition
from .config import Settings
from .config.options import check, make, relative, specs_of
from .errors import ConfigError
from .objectives import OBJECTIVES, Objective
from .registry import Registry
from .tasks import Task, check_offers, task_type

CLASSIFICATION, REGRESSION, POSE, DETECTION = "classification", "regression", "pose", "detection"


@dataclass(frozen=True)
class Strategy:
    name: str
    objective: str
    acquisition: str
    description: str = ""
    reference: str = ""
    #: settings this strategy fills when the run leaves them unset (e.g. DNAL: reinit, whole pool);
    #: the run's own settings and its components' options alike; they beat the dataset's defaults
    defaults: dict[str, Any] = field(default_factory=dict)
    #: defaults for a given ``--model`` (DNAL: lr 0.1 on resnet18), over :attr:`defaults`
    model_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the strategy's paper protocol for what neither the run nor the dataset sets (DNAL: 150
    #: epochs): it stands in for the Learning Loss protocol under the dataset's defaults, so an
    #: embedded demo set keeps its own small protocol
    protocol: dict[str, Any] = field(default_factory=dict)
    #: said wherever its results are reported (DNAL: a reconstruction)
    note: str = ""
    #: the tasks whose default comparison (``activeloss run`` without --strategies) includes it
    main_for: tuple[str, ...] = (CLASSIFICATION,)

    @property
    def objective_type(self) -> type[Objective]:
        return OBJECTIVES.get(self.objective)

    def defaults_for(self, model: str | None) -> dict[str, Any]:
        """This strategy's defaults on ``model``: those for the model over the others."""
        return {**self.defaults, **self.model_defaults.get(model or "", {})}

    @property
    def acquisition_type(self) -> type[Acquisition]:
        return ACQUISITIONS.get(self.acquisition)

    def check(self, task: type[Task] | Task) -> None:
        """One ConfigError line when this pair cannot work on ``task``."""
        _check_pair(self.name, self)
        check_offers(task, self.objective_type.needs, f"{self.name!r}: the {self.objective} objective",
                     lambda: [o for o, cls in OBJECTIVES.items() if cls.needs <= task.offers])
        check_offers(task, self.acquisition_type.needs, f"{self.name!r}: the {self.acquisition} acquisition",
                     lambda: [a for a, cls in ACQUISITIONS.items() if cls.needs <= task.offers])

    def options(self, s: Settings) -> tuple[Any, Any, dict[str, Any]]:
        """The objective's and the acquisition's options for the resolved run ``s`` (given values,
        then this strategy's defaults for the run's model, its protocol, the task's defaults for
        the component (pose: lambda 1e-4), then each component's own; percentages of --epochs
        and --lr resolved), and all of them flat."""
        flat: dict[str, Any] = {}
        built = []
        own = {**self.protocol, **self.defaults_for(s.model)}
        task_defaults = task_type(s.task).option_defaults if s.task != "auto" else {}
        for cls in (self.objective_type, self.acquisition_type):
            values = {}
            mine = {**task_defaults.get(cls.name, {}), **own}
            for spec in specs_of(cls.Options):
                value = s.options.get(spec.name, mine.get(spec.name, spec.default))
                if spec.percent_of == "epochs":
                    value = relative(value, float(s.epochs or 0), integer=True)
                elif spec.percent_of == "lr":
                    value = relative(value, float(s.lr or 0), integer=False)
                check(spec, value)
                values[spec.name] = value
            flat.update(values)
            built.append(make(cls.Options, values))
        return built[0], built[1], flat

    def make_objective(self, options: Any = None) -> Objective:
        return self.objective_type(options)

    def make_acquisition(self, options: Any = None) -> Acquisition:
        return self.acquisition_type(options)


def _check_pair(name: str, strategy: Strategy) -> None:
    need = strategy.acquisition_type.requires
    if need and not getattr(strategy.objective_type, need, False):
        able = ", ".join(n for n, cls in OBJECTIVES.items() if getattr(cls, need, False))
        words = {"predicts_loss": "a loss-prediction module", "has_discriminator": "a VAE and discriminator"}
        what = words.get(need, need)
        raise ConfigError(f"{name!r}: the {strategy.acquisition} acquisition needs an objective with {what} ({able})")


def _check_registered(name: str, strategy: Strategy) -> None:
    for kind, registry, part in (("objective", OBJECTIVES, strategy.objective),
                                 ("acquisition", ACQUISITIONS, strategy.acquisition)):
        if part not in registry:
            raise ConfigError(f"strategy {name!r}: unknown {kind} {part!r}")
    _check_pair(name, strategy)


STRATEGIES: Registry[Strategy] = Registry("strategy", on_register=_check_registered)


def register(strategy: Strategy) -> Strategy:
    STRATEGIES.register(strategy.name, strategy, strategy.description)
    return strategy


def get_strategy(name: str) -> Strategy:
    """A registered strategy, or an ``OBJECTIVE+ACQUISITION`` pair built on the fly."""
    name = name.strip()
    if name in STRATEGIES:
        return STRATEGIES.get(name)
    if "+" in name:
        objective, acquisition = (part.strip() for part in name.split("+", 1))
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r} in {name!r}; choose one of {', '.join(OBJECTIVES)}")
        if acquisition not in ACQUISITIONS:
            raise ConfigError(f"unknown acquisition {acquisition!r} in {name!r}; "
                              f"choose one of {', '.join(ACQUISITIONS)}")
        strategy = Strategy(name, objective, acquisition, f"{objective} objective with {acquisition} acquisition")
        _check_pair(name, strategy)
        return strategy
    raise ConfigError(
        f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}, or OBJECTIVE+ACQUISITION "
        f"(objectives: {', '.join(OBJECTIVES)}; acquisitions: {', '.join(ACQUISITIONS)})"
    )


def main_comparison(task: str = CLASSIFICATION) -> list[str]:
    """The strategies ``activeloss run`` compares on ``task`` when none are named."""
    return [name for name, s in STRATEGIES.items() if task in s.main_for]


def named_for(task: type[Task] | Task) -> list[str]:
    """The registered strategies that work on ``task``, in registration order."""
    out = []
    for name, strategy in STRATEGIES.items():
        try:
            strategy.check(task)
        except ConfigError:
            continue
        out.append(name)
    return out


def valid_pairs(task: type[Task] | Task) -> list[str]:
    """Every ``OBJECTIVE+ACQUISITION`` pair that works on ``task`` (for contract tests and listings)."""
    out = []
    for objective in OBJECTIVES:
        for acquisition in ACQUISITIONS:
            strategy = Strategy(f"{objective}+{acquisition}", objective, acquisition)
            try:
                strategy.check(task)
            except ConfigError:
                continue
            out.append(strategy.name)
    return out


BOTH = (CLASSIFICATION, REGRESSION)

register(Strategy("random", "none", "random", "uniform random choice: the baseline every method must beat",
                  main_for=(*BOTH, POSE, DETECTION)))
register(Strategy("entropy", "none", "entropy", "highest predictive entropy (pose: mean per-joint heatmap entropy; "
                  "detection: mean softmax entropy of an image's detections)",
                  main_for=(CLASSIFICATION, POSE, DETECTION)))
register(Strategy("margin", "none", "margin", "smallest margin between the two most likely classes"))
register(Strategy("least-confidence", "none", "least-confidence", "lowest top-class probability"))
register(Strategy(
    "llal", "lossnet", "predicted-loss",
    "Learning Loss: a module trained with the pairwise ranking loss predicts each item's loss; query the highest",
    "Yoo and Kweon, Learning Loss for Active Learning, CVPR 2019", main_for=(*BOTH, POSE, DETECTION),
))
register(Strategy(
    "llal-mse", "lossnet-mse", "predicted-loss",
    "the Learning Loss ablation with an MSE module loss (lambda 0.1); worse than ranking in the paper",
    "Yoo and Kweon, CVPR 2019, section 4", main_for=(REGRESSION,),
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
    "Fang, Xu and Tang, DNAL, 2021 (a reconstruction)",
    # the paper's own settings (METHODS.md section 5): whole pool, retrained each cycle, batch 64; lr 0.01 on
    # VGG16 and 0.1 on ResNet-18 (the module's: the objective's 10%, so 0.001 / 0.01), 0.01 on other models;
    # 150 epochs, x0.1 at 80% (120), stop-gradient at 80% (the objective's default) unless the dataset has
    # its own small protocol (digits)
    defaults={"reinit": True, "subset": 0, "lr": 0.01, "batch_size": 64},
    model_defaults={"vgg16": {"lr": 0.01}, "resnet18": {"lr": 0.1}},
    protocol={"epochs": 150, "milestones": ["80%"]},
    note="a reconstruction of DNAL (Fang, Xu and Tang, 2021): the paper's equations were lost, every choice is "
         "an option",
))
register(Strategy(
    "guarded-loss", "lossnet", "guarded-loss",
    "ours: a module on detached features (never touches the backbone) predicts losses; picks are diverse among "
    "the highest predicted losses once the module ranks held-out labeled items well, core-set's before",
    "activeloss's own (docs/loss-diagnosis.md); builds on Learning Loss (Yoo and Kweon, CVPR 2019)",
    defaults={"stop_gradient_epoch": 0, "module_holdout": 0.2},
    note="activeloss's own strategy, not a paper's",
    main_for=(),
))
register(Strategy(
    "coreset", "none", "coreset",
    "k-center greedy over the penultimate features, with every labeled item as a centre",
    "Sener and Savarese, Active Learning for Convolutional Neural Networks: A Core-Set Approach, ICLR 2018",
    main_for=(*BOTH, POSE, DETECTION),
))
register(Strategy(
    "bald", "mc-dropout", "bald",
    "dropout before the classifier; query the highest BALD mutual information over --mc-passes dropout passes",
    "Gal, Islam and Ghahramani, Deep Bayesian Active Learning with Image Data, ICML 2017 (BALD: Houlsby et al. 2011)",
))
register(Strategy(
    "mc-entropy", "mc-dropout", "mc-entropy",
    "dropout before the classifier; query the highest entropy of the mean of --mc-passes dropout passes",
    "Gal, Islam and Ghahramani, ICML 2017 (max-entropy acquisition)", main_for=(),
))
register(Strategy(
    "mc-variance", "mc-dropout", "mc-variance",
    "dropout before the last layer; query the highest predictive variance over --mc-passes dropout passes",
    "Gal and Ghahramani, Dropout as a Bayesian Approximation, ICML 2016 (MC-dropout for regression)",
    main_for=(REGRESSION,),
))
register(Strategy(
    "badge", "none", "badge",
    "k-means++ seeding over the last layer's gradient embeddings at the predicted label",
    "Ash et al., Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds (BADGE), ICLR 2020",
))
register(Strategy(
    "vaal", "vaal", "vaal",
    "a VAE and a discriminator trained adversarially on labeled and unlabeled items; query the lowest D(mu)",
    "Sinha, Ebrahimi and Darrell, Variational Adversarial Active Learning, ICCV 2019", main_for=(),
))
register(Strategy(
    "sraal", "sraal", "sraal",
    "a VAE and a supervised target learner whose latents, concatenated, feed the discriminator; unlabeled "
    "discriminator targets 1 - OUI of the task model; query the lowest D",
    "Zhang et al., State-Relabeling Adversarial Active Learning, CVPR 2020 (its k-center initial pool: "
    "--initial-method kcenter)",
    main_for=(),
))
register(Strategy(
    "bgadl", "vae-acgan", "bald",
    "BALD picks the items; a VAE-ACGAN trained on the labeled set adds a synthetic x' = g(e(x)) per labeled query, "
    "with its label, to the training data (never to the labels)",
    "Tran et al., Bayesian Generative Active Deep Learning, ICML 2019 (a reconstruction from a survey)",
    # the synthetic items are kept by the objective across cycles: a fresh one each cycle (--reinit) has none
    defaults={"reinit": False},
    note="a reconstruction of BGADL (Tran et al., 2019) from a survey's description: no architecture or numbers "
         "given, every size an option; synthetic items are training data only, never counted as labels",
    main_for=(),
))
