"""Run settings: one dataclass read from the CLI, a TOML file, or Python.

Every field is a CLI option (``batch_size`` -> ``--batch-size``) and a TOML key of
the same name.  A field left at ``None`` is filled, in this order, from the
strategy's defaults (e.g. DNAL retrains from scratch), then the dataset's defaults
(the tiny protocol for ``digits``), then the Learning Loss CIFAR-10 protocol.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _opt(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Settings:
    dataset: str = _opt("digits", "digits, or KIND:PATH with KIND mnist, cifar10, cifar100, folder, npz, csv")
    strategies: list[str] = _opt([], "comma list of strategies, or OBJECTIVE+ACQUISITION pairs (default: the main comparison)")
    trials: int = _opt(3, "trials; trial t uses the same initial set and subsets for every strategy")
    cycles: int | None = _opt(None, "train-and-evaluate rounds; round c trains on initial + c x budget labels")
    initial: int | None = _opt(None, "size of the random initial labeled set")
    budget: int | None = _opt(None, "items labeled per query")
    subset: int | None = _opt(None, "random candidate subset per query (0 = the whole unlabeled pool)")
    epochs: int | None = _opt(None, "training epochs per cycle")
    batch_size: int | None = _opt(None, "training batch size")
    model: str | None = _opt(None, "resnet18, vgg16, cnn or mlp (default chosen per dataset)")
    seed: int = _opt(0, "seed of every random draw of the run")
    out: str = _opt("results", "output folder (store, results.csv, plots)")
    lr: float | None = _opt(None, "learning rate of the model (SGD)")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(5e-4, "SGD weight decay")
    milestones: list[int] | None = _opt(None, "epochs at which the learning rate is multiplied by gamma (default: 80%% of the epochs)")
    gamma: float = _opt(0.1, "learning-rate decay factor at each milestone")
    reinit: bool | None = _opt(None, "retrain from a fresh model every cycle instead of warm-starting")
    augment: str | None = _opt(None, "training augmentation: comma list of flip, crop, or none (default per dataset)")
    pad: int = _opt(4, "zero padding of the random crop (the papers: 4 in code, 2 in the text)")
    taps: list[str] | None = _opt(None, "module names whose outputs feed the loss-prediction module (default per model)")
    loss_weight: float | None = _opt(None, "lambda, the weight of the loss-prediction term (default 1; 0.1 for llal-mse)")
    margin: float = _opt(1.0, "margin of the pairwise ranking loss")
    stop_gradient_epoch: int | None = _opt(None, "epoch from which the taps are detached from the loss-prediction module (default 60%% of the epochs, 120 of 200; DNAL 80%%, 120 of 150)")
    lossnet_lr: float | None = _opt(None, "learning rate of the loss-prediction module (default: --lr; DNAL --lr / 10)")
    lossnet_decay: bool = _opt(True, "apply the learning-rate milestones to the loss-prediction module too (LPLgrad's code: no)")
    target_update: str = _opt("epoch", "DNAL target network update: epoch (hard copy after each epoch) or ema (after each step)")
    ema_tau: float = _opt(0.99, "DNAL EMA factor: target = tau x target + (1 - tau) x network")
    module_loss: str = _opt("mse", "DNAL module loss against the target loss: mse or huber")
    gradnorm: str = _opt("tensor_sum", "gradient-norm score: tensor_sum (sum of per-tensor L2 norms, the published code) or global")
    mc_passes: int = _opt(10, "stochastic dropout passes of the MC-Dropout acquisitions (bald, mc-entropy)")
    dropout: float = _opt(0.5, "rate of the dropout MC-Dropout puts before the classifier (bald, mc-entropy; also the query-time fallback for models without dropout)")
    vae_latent: int = _opt(32, "latent size of the VAAL / SRAAL VAE")
    vae_width: int | None = _opt(None, "channels of the VAE's first conv, doubled per layer (VAAL: 128 -> 128/256/512/1024; MLP VAE: hidden 4w, 2w); default 128, or 16 for images of at most 16x16")
    vae_epochs: float = _opt(10.0, "VAAL / SRAAL training per cycle: ceil(vae_epochs x labeled / vae_batch_size) iterations of 2 VAE steps + 1 discriminator step")
    vae_batch_size: int = _opt(64, "labeled and unlabeled batch size of the VAAL / SRAAL VAE (each)")
    vae_lr: float = _opt(5e-4, "Adam learning rate of the VAAL / SRAAL VAE and discriminator")
    threads: int = _opt(0, "CPU threads (0 = auto: one for the small cnn/mlp models, whose tiny tensors only lose from threading; PyTorch's default otherwise)")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    eval_batch_size: int = _opt(1024, "batch size for evaluation and queries")
    test_fraction: float = _opt(0.2, "test share when a dataset has no test split")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "settings") -> "Settings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown setting {unknown[0]!r}; known settings are {', '.join(sorted(known))}")
        settings = cls()
        for key, value in values.items():
            setattr(settings, key, coerce(key, value, origin))
        return settings

    def merged(self, overrides: dict[str, Any]) -> "Settings":
        """A copy with ``overrides`` (already coerced) applied."""
        return dataclasses.replace(self, **overrides)


def field_types() -> dict[str, str]:
    """Field name -> its type annotation as text (``"int | None"``)."""
    return {f.name: str(f.type) for f in fields(Settings)}


def coerce(key: str, value: Any, origin: str = "settings") -> Any:
    """Turn a CLI string or a TOML value into the field's type, or raise a :class:`ConfigError`."""
    kind = field_types()[key]
    name = "--" + key.replace("_", "-")
    if value is None:
        return None
    try:
        if kind.startswith("list[str]"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(v).strip() for v in items if str(v).strip()]
        if kind.startswith("list[int]"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return [int(v) for v in items if str(v).strip()]
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        expected = kind.split(" |")[0]
        raise ConfigError(f"{origin}: {name} expects {expected}, got {value!r}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file (keys named like the CLI options, with underscores or dashes)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values = {k.replace("-", "_"): v for k, v in raw.items()}
    Settings.from_dict(values, origin=str(path))  # validates names and types
    return {k: coerce(k, v, str(path)) for k, v in values.items()}


#: The Learning Loss CIFAR-10 protocol (METHODS.md section 3), the default for any dataset.
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "cycles": 10, "initial": 1000, "budget": 1000, "subset": 10000,
    "epochs": 200, "batch_size": 128, "lr": 0.1, "reinit": False,
}

#: Small settings for the embedded digits set, so the main job runs in minutes on a laptop.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"cycles": 8, "initial": 40, "budget": 40, "subset": 0, "epochs": 40, "batch_size": 32, "lr": 0.05},
}

#: Augmentation per dataset kind: digits are not mirror-symmetric, natural images are.
AUGMENT_DEFAULTS: dict[str, str] = {"digits": "none", "mnist": "none", "cifar10": "flip,crop", "cifar100": "flip,crop", "folder": "flip,crop"}


def dataset_kind(spec: str) -> str:
    return spec.split(":", 1)[0].strip().lower()


def resolve(settings: Settings, strategy_defaults: dict[str, Any] | None = None) -> Settings:
    """Fill every ``None`` field: strategy defaults, then dataset defaults, then the protocol."""
    kind = dataset_kind(settings.dataset)
    layers = [strategy_defaults or {}, DATASET_DEFAULTS.get(kind, {}), PROTOCOL_DEFAULTS]
    filled: dict[str, Any] = {}
    for f in fields(Settings):
        if getattr(settings, f.name) is None:
            for layer in layers:
                if layer.get(f.name) is not None:
                    filled[f.name] = layer[f.name]
                    break
    out = settings.merged(filled)
    extra = strategy_defaults or {}
    if out.loss_weight is None:
        out.loss_weight = extra.get("loss_weight", 1.0)
    if out.stop_gradient_epoch is None:
        out.stop_gradient_epoch = round(extra.get("stop_gradient_fraction", 0.6) * out.epochs)
    if out.lossnet_lr is None:
        out.lossnet_lr = out.lr * extra.get("lossnet_lr_ratio", 1.0)
    if out.milestones is None:
        out.milestones = [max(1, round(0.8 * out.epochs))]
    if out.augment is None:
        out.augment = AUGMENT_DEFAULTS.get(kind, "none")
    return out


def validate(s: Settings, pool_size: int) -> None:
    """Check a resolved ``Settings`` against itself and the training-pool size."""
    checks = [
        (s.trials >= 1, "--trials must be at least 1"),
        (s.cycles >= 1, "--cycles must be at least 1"),
        (s.initial >= 1, "--initial must be at least 1"),
        (s.budget >= 1, "--budget must be at least 1"),
        (s.subset >= 0, "--subset must be 0 (the whole pool) or positive"),
        (s.epochs >= 1, "--epochs must be at least 1"),
        (s.batch_size >= 1, "--batch-size must be at least 1"),
        (s.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
        (s.lr > 0, "--lr must be positive"),
        (0 <= s.momentum < 1, "--momentum must be in [0, 1)"),
        (s.weight_decay >= 0, "--weight-decay must be non-negative"),
        (0 < s.gamma <= 1, "--gamma must be in (0, 1]"),
        (s.pad >= 0, "--pad must be non-negative"),
        (s.threads >= 0, "--threads must be 0 (auto) or positive"),
        (0 < s.test_fraction < 1, "--test-fraction must be between 0 and 1"),
        (all(m >= 1 for m in s.milestones), "--milestones must be positive epochs"),
        (s.loss_weight >= 0, "--loss-weight must be non-negative"),
        (s.margin >= 0, "--margin must be non-negative"),
        (s.stop_gradient_epoch >= 0, "--stop-gradient-epoch must be non-negative"),
        (s.lossnet_lr > 0, "--lossnet-lr must be positive"),
        (0 < s.ema_tau < 1, "--ema-tau must be in (0, 1)"),
        (s.target_update in ("epoch", "ema"), f"--target-update must be epoch or ema, not {s.target_update!r}"),
        (s.module_loss in ("mse", "huber"), f"--module-loss must be mse or huber, not {s.module_loss!r}"),
        (s.gradnorm in ("tensor_sum", "global"), f"--gradnorm must be tensor_sum or global, not {s.gradnorm!r}"),
        (s.mc_passes >= 1, "--mc-passes must be at least 1"),
        (0 <= s.dropout < 1, "--dropout must be in [0, 1)"),
        (s.vae_latent >= 1, "--vae-latent must be at least 1"),
        (s.vae_width is None or s.vae_width >= 1, "--vae-width must be at least 1"),
        (s.vae_epochs > 0, "--vae-epochs must be positive"),
        (s.vae_batch_size >= 1, "--vae-batch-size must be at least 1"),
        (s.vae_lr > 0, "--vae-lr must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if s.initial > pool_size:
        raise ConfigError(f"--initial {s.initial} is larger than the training pool ({pool_size} items)")
    final = s.initial + (s.cycles - 1) * s.budget
    if final > pool_size:
        raise ConfigError(
            f"--initial {s.initial} + ({s.cycles} - 1) cycles x --budget {s.budget} = {final} labels, "
            f"more than the training pool ({pool_size} items)"
        )
    if s.cycles > 1 and 0 < s.subset < s.budget:
        raise ConfigError(f"--subset {s.subset} is smaller than --budget {s.budget}")
