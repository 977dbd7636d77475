"""Run settings: one dataclass read from the CLI, a TOML file, or Python.

Every field is a CLI option (``batch_size`` -> ``--batch-size``) and a TOML key of
the same name.  Values are layered, the first that sets a field wins: what the user
gives (command line, then ``--config`` file), a named **preset** (a complete protocol
of METHODS.md, see :mod:`activeloss.presets`), the strategy's defaults (e.g. DNAL
retrains from scratch), the dataset's defaults (the tiny protocol for ``digits``),
then the Learning Loss CIFAR-10 protocol.  ``initial``, ``budget`` and ``subset``
may be percentages of the training set (``"10%"``), turned into counts by
:func:`resolve_counts` once the dataset is loaded.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError


def _opt(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Settings:
    dataset: str = _opt("digits", "digits, or KIND:PATH with KIND mnist, cifar10, cifar100, svhn, folder, npz, csv")
    preset: str | None = _opt(None, "a named protocol (activeloss presets lists them); the options you give win over it")
    strategies: list[str] = _opt([], "comma list of strategies, or OBJECTIVE+ACQUISITION pairs (default: the main comparison)")
    trials: int = _opt(3, "trials; trial t uses the same initial set and subsets for every strategy")
    cycles: int | None = _opt(None, "train-and-evaluate rounds; round c trains on initial + c x budget labels")
    initial: int | str | None = _opt(None, "size of the random initial labeled set, or a percentage of the training set (10%%)", fraction=True)
    budget: int | str | None = _opt(None, "items labeled per query, or a percentage of the training set (5%%)", fraction=True)
    subset: int | str | None = _opt(None, "random candidate subset per query (0 = the whole unlabeled pool), or a percentage of the training set", fraction=True)
    epochs: int | None = _opt(None, "training epochs per cycle")
    batch_size: int | None = _opt(None, "training batch size")
    model: str | None = _opt(None, "resnet18, vgg16, cnn or mlp (default chosen per dataset)")
    seed: int = _opt(0, "seed of every random draw of the run")
    initial_classes: int | None = _opt(None, "draw the initial labeled set from this many randomly chosen classes only (seeded per trial; later queries are unrestricted)")
    label_noise: float = _opt(0.0, "rate at which the simulated oracle returns a wrong label (CIFAR-100: another fine class of the same superclass; else a uniform other class)")
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
    channels_last: bool | None = _opt(None, "channels_last memory format for convolutional models (default: on for CUDA, off on CPU)")
    compile: bool = _opt(False, "compile the model's forward pass with torch.compile (training, evaluation and queries); pays a warm-up for each new model")
    deterministic: bool = _opt(False, "bit-reproducible results on a GPU: deterministic kernels, no cuDNN autotuning (slower; CPU runs are deterministic anyway)")
    parallel_trials: int = _opt(1, "run up to N (strategy, trial) runs at once, each in its own process sharing the device; the results equal those of one at a time")
    test_fraction: float = _opt(0.2, "test share when a dataset has no test split")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "settings") -> "Settings":
        """Settings from the values a user gave; a ``preset`` among them fills what they leave out.

        This is the way to use a preset from Python too:
        ``Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:data"})``.
        """
        _check_names(values, origin)
        values = apply_preset({k: coerce(k, v, origin) for k, v in values.items()}, origin)
        return cls().merged(values)

    def merged(self, overrides: dict[str, Any]) -> "Settings":
        """A copy with ``overrides`` (already coerced) applied."""
        return dataclasses.replace(self, **overrides)


#: settings that say how a run is executed, not what it computes: a resumed run may change them
EXECUTION_FIELDS: tuple[str, ...] = ("out", "device", "parallel_trials")


def field_types() -> dict[str, str]:
    """Field name -> its type annotation as text (``"int | None"``)."""
    return {f.name: str(f.type) for f in fields(Settings)}


#: the fields that may be given as a percentage of the training set ("10%")
FRACTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Settings) if f.metadata.get("fraction"))


def _check_names(values: dict[str, Any], origin: str) -> None:
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown setting {unknown[0]!r}; known settings are {', '.join(sorted(known))}")


def _percent(name: str, value: str, origin: str) -> str:
    """``" 10 %"`` -> ``"10%"``: a percentage in (0, 100], kept as text until the dataset is known."""
    try:
        number = Decimal(value.strip()[:-1].strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or not 0 < number <= 100:
        raise ConfigError(f"{origin}: {name} expects a count or a percentage in (0%, 100%], got {value!r}")
    return f"{number.normalize():f}%"


def coerce(key: str, value: Any, origin: str = "settings") -> Any:
    """Turn a CLI string or a TOML value into the field's type, or raise a :class:`ConfigError`."""
    kind = field_types()[key]
    name = "--" + key.replace("_", "-")
    if value is None:
        return None
    if key in FRACTION_FIELDS and isinstance(value, str) and value.strip().endswith("%"):
        return _percent(name, value, origin)
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
        expected = "int or a percentage of the training set (10%)" if key in FRACTION_FIELDS else kind.split(" |")[0]
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
    if "per_strategy" in values:
        raise ConfigError(f"{path}: the per_strategy tables that --dry-run prints are a record, not settings; "
                          f"delete them (the strategies' own defaults give those values)")
    _check_names(values, str(path))
    return {k: coerce(k, v, str(path)) for k, v in values.items()}


# ---------------------------------------------------------------- presets

#: keys of a preset file that describe it rather than set something
PRESET_INFO_KEYS = ("description", "reference", "for_dataset", "notes")

#: preset settings measured against another one (epochs, the learning rate): when the user
#: overrides only the base, the preset's value scales with it (160 of 200 epochs -> 8 of 10)
DERIVED_FROM: dict[str, str] = {"milestones": "epochs", "stop_gradient_epoch": "epochs", "lossnet_lr": "lr"}


def preset_values(name: str) -> dict[str, Any]:
    """The settings of the preset ``name`` (coerced, without its description keys)."""
    from . import presets

    raw = presets.read(name)
    origin = f"preset {name}"
    values = {k.replace("-", "_"): v for k, v in raw.items() if k not in PRESET_INFO_KEYS}
    _check_names(values, origin)
    if "preset" in values or "dataset" in values:
        raise ConfigError(f"{origin}: a preset may not set 'preset' or 'dataset'")
    return {k: coerce(k, v, origin) for k, v in values.items()}


def _scaled(key: str, value: Any, old: Any, new: Any) -> Any:
    if key == "milestones":
        return [max(1, round(m * new / old)) for m in value]
    if key == "stop_gradient_epoch":
        return round(value * new / old)
    return float(f"{value / old * new:.12g}")  # lossnet_lr: keep the preset's ratio to --lr


def apply_preset(values: dict[str, Any], origin: str = "settings") -> dict[str, Any]:
    """``values`` (what the user gave, coerced) over the preset they name, if any.

    A preset is a complete protocol, so it sits above the strategies' defaults; what the
    user gives sits above the preset.  The preset's milestones and stop-gradient epoch
    follow an overridden ``epochs``, its ``lossnet_lr`` an overridden ``lr``, unless they
    are given too.
    """
    given = {k: v for k, v in values.items() if v is not None}
    name = given.get("preset")
    if not name:
        return values
    base = preset_values(name)
    if "dataset" not in given:
        from . import presets

        meant = presets.read(name).get("for_dataset", "KIND:PATH")
        raise ConfigError(f"{origin}: --preset {name} needs --dataset; it was written for {meant}")
    merged = {**base, **given}
    for key, anchor in DERIVED_FROM.items():
        if key in base and key not in given and anchor in base and anchor in given and given[anchor] != base[anchor]:
            merged[key] = _scaled(key, base[key], base[anchor], given[anchor])
    return merged


#: The Learning Loss CIFAR-10 protocol (METHODS.md section 3), the default for any dataset.
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "cycles": 10, "initial": 1000, "budget": 1000, "subset": 10000,
    "epochs": 200, "batch_size": 128, "lr": 0.1, "reinit": False,
}

#: Small settings for the embedded digits set, so the main job runs in minutes on a laptop.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"cycles": 8, "initial": 40, "budget": 40, "subset": 0, "epochs": 40, "batch_size": 32, "lr": 0.05},
}

#: Augmentation per dataset kind: digits are not mirror-symmetric, natural images are.  SVHN's
#: house numbers are digits too (a mirrored 2 or 7 is no digit), so they get the crop only.
AUGMENT_DEFAULTS: dict[str, str] = {
    "digits": "none", "mnist": "none", "svhn": "crop",
    "cifar10": "flip,crop", "cifar100": "flip,crop", "folder": "flip,crop",
}


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


def percent_count(text: str, pool_size: int) -> int:
    """``"10%"`` of ``pool_size`` items, rounded down (exact decimal arithmetic: 10% of 50,000 is 5,000)."""
    return int(Decimal(text[:-1]) * pool_size // 100)


def resolve_counts(s: Settings, pool_size: int) -> Settings:
    """Turn the percentages among ``initial``, ``budget`` and ``subset`` into item counts.

    Rounding down keeps ``initial + (cycles - 1) x budget`` inside the pool whenever the
    percentages add up to at most 100%.
    """
    filled: dict[str, int] = {}
    for name in FRACTION_FIELDS:
        value = getattr(s, name)
        if isinstance(value, str):
            count = percent_count(value, pool_size)
            if count < 1:
                raise ConfigError(f"--{name} {value} of the training pool ({pool_size} items) is less than one item")
            filled[name] = count
    return s.merged(filled)


def validate(s: Settings, pool_size: int) -> None:
    """Check a resolved ``Settings`` (counts resolved too) against itself and the training-pool size."""
    for name in FRACTION_FIELDS:
        if not isinstance(getattr(s, name), int):
            raise ConfigError(f"--{name} {getattr(s, name)} is not resolved to a count; call resolve_counts first")
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
        (s.parallel_trials >= 1, "--parallel-trials must be at least 1"),
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
        (0 <= s.label_noise < 1, f"--label-noise must be in [0, 1), not {s.label_noise:g}"),
        (s.initial_classes is None or s.initial_classes >= 1, "--initial-classes must be at least 1"),
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


# ---------------------------------------------------------------- TOML output

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)


def toml_value(value: Any) -> str:
    """A scalar, string or list as TOML (the stdlib reads TOML but cannot write it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # Python's float repr ("0.0005", "1e-05", "inf") is valid TOML
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def settings_toml(runs: Sequence[tuple[str, Settings]], comments: Sequence[str] = ()) -> str:
    """The resolved settings of each strategy as TOML: the values they share at the top, then
    a ``[per_strategy."NAME"]`` table with what differs, for the strategies where something does.

    Keys are the Settings field names; ``None`` (unset) values are left out.
    """
    dicts = [(name, {k: v for k, v in s.to_dict().items() if v is not None}) for name, s in runs]
    names = [name for name, _ in runs]
    lines = [f"# {c}" for c in comments]
    common: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "strategies":
            common[f.name] = names
            continue
        vals = [d.get(f.name) for _, d in dicts]
        if vals and vals[0] is not None and all(v == vals[0] for v in vals):
            common[f.name] = vals[0]
    lines += [f"{k} = {toml_value(v)}" for k, v in common.items()]
    for name, d in dicts:
        diff = {k: v for k, v in d.items() if k not in common}
        if diff:
            lines += ["", f"[per_strategy.{toml_key(name)}]"] + [f"{k} = {toml_value(v)}" for k, v in diff.items()]
    return "\n".join(lines) + "\n"
