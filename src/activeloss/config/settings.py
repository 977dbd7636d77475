"""The run's settings: what to learn from, the loop, the training and how it executes.

Every field is a CLI option (``batch_size`` -> ``--batch-size``) and a TOML key of the same
name; the options of objectives and acquisitions (``--loss-weight``...) are declared by
those components (:mod:`.options`) and kept in :attr:`Settings.options`.  Values are
layered, the first that sets a field wins: what the user gives (command line, then
``--config`` file), a named **preset** (a complete protocol, see :mod:`.presets`), the
strategy's defaults (e.g. DNAL retrains from scratch), the dataset's defaults (the small
protocol of the embedded ``digits``), then the Learning Loss CIFAR-10 protocol
(:data:`PROTOCOL_DEFAULTS`).  ``initial``, ``budget`` and ``subset`` may be percentages of
the training set (``"10%"``), turned into counts once the dataset is loaded.
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .options import DECLARED, Spec, check, coerce, option, relative, specs_of
from .plugins import load_plugins

DATA, LOOP, TRAINING, EXECUTION = "data", "loop", "training", "execution"


@dataclass
class Settings:
    # -- what to learn from
    dataset: str = option("digits", "digits, diabetes, or KIND:PATH (the kinds and their file layouts are listed "
                          "at the end of this help)", group=DATA)
    task: str = option("auto", "classification or regression (auto: what the dataset holds)",
                       choices=("auto", "classification", "regression"), group=DATA)
    target: str | None = option(None, "the target column of a csv table (default: the column named label)", group=DATA)
    split: int = option(0, "which fixed train/test split of a benchmark that ships several (UCI: 0..19)",
                        at_least=0, group=DATA)
    test_fraction: float = option(0.2, "test share when a dataset has no test split", above=0, below=1, group=DATA)
    # -- the loop
    preset: str | None = option(None, "a named protocol (activeloss presets lists them); the options you give win "
                                "over it", group=LOOP)
    strategies: list[str] = option([], "comma list of strategies, or OBJECTIVE+ACQUISITION pairs "
                                   "(default: the main comparison of the task)", group=LOOP)
    trials: int = option(3, "trials; trial t uses the same initial set and subsets for every strategy", at_least=1,
                         group=LOOP)
    cycles: int | None = option(None, "train-and-evaluate rounds; round c trains on initial + c x budget labels",
                                at_least=1, group=LOOP)
    initial: int | str | None = option(None, "size of the random initial labeled set, or a percentage of the "
                                       "training set (10%%)", at_least=1, percent_of="pool", group=LOOP)
    budget: int | str | None = option(None, "items labeled per query, or a percentage of the training set (5%%)",
                                      at_least=1, percent_of="pool", group=LOOP)
    subset: int | str | None = option(None, "random candidate subset per query (0 = the whole unlabeled pool), or "
                                      "a percentage of the training set", at_least=0, percent_of="pool", group=LOOP)
    seed: int = option(0, "seed of every random draw of the run", group=LOOP)
    initial_classes: int | None = option(None, "draw the initial labeled set from this many randomly chosen classes "
                                         "only (seeded per trial; later queries are unrestricted)", at_least=1,
                                         group=LOOP)
    label_noise: float = option(0.0, "rate at which the simulated oracle returns a wrong label (CIFAR-100: another "
                                "fine class of the same superclass; else a uniform other class)",
                                at_least=0, below=1, group=LOOP)
    out: str = option("results", "output folder (store, results.csv, plots)", group=LOOP)
    # -- training
    model: str | None = option(None, "resnet18, vgg16, cnn or mlp (default chosen per dataset)", group=TRAINING)
    taps: list[str] | None = option(None, "module names whose outputs feed the loss-prediction module "
                                    "(default per model)", group=TRAINING)
    epochs: int | None = option(None, "training epochs per cycle", at_least=1, group=TRAINING)
    batch_size: int | None = option(None, "training batch size", at_least=1, group=TRAINING)
    lr: float | None = option(None, "learning rate of the model (SGD)", above=0, group=TRAINING)
    momentum: float = option(0.9, "SGD momentum", at_least=0, below=1, group=TRAINING)
    weight_decay: float = option(5e-4, "SGD weight decay", at_least=0, group=TRAINING)
    milestones: list[int] | None = option(None, "epochs (or percentages of --epochs) at which the learning rate is "
                                          "multiplied by gamma (default: 80%% of the epochs)",
                                          at_least=1, percent_of="epochs", group=TRAINING)
    gamma: float = option(0.1, "learning-rate decay factor at each milestone", above=0, at_most=1, group=TRAINING)
    reinit: bool | None = option(None, "retrain from a fresh model every cycle instead of warm-starting",
                                 group=TRAINING)
    augment: str | None = option(None, "training augmentation: comma list of flip, crop, or none (default per dataset)",
                                 group=TRAINING)
    pad: int = option(4, "zero padding of the random crop (the papers: 4 in code, 2 in the text)", at_least=0,
                      group=TRAINING)
    # -- execution
    threads: int = option(0, "CPU threads (0 = auto: one for the small cnn/mlp models, whose tiny tensors only lose "
                          "from threading; PyTorch's default otherwise)", at_least=0, group=EXECUTION)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", group=EXECUTION)
    eval_batch_size: int = option(1024, "batch size for evaluation and queries", at_least=1, group=EXECUTION)
    channels_last: bool | None = option(None, "channels_last memory format for convolutional models (default: on for "
                                        "CUDA, off on CPU)", group=EXECUTION)
    compile: bool = option(False, "compile the model's forward pass with torch.compile (training, evaluation and "
                           "queries); pays a warm-up for each new model", group=EXECUTION)
    deterministic: bool = option(False, "bit-reproducible results on a GPU: deterministic kernels, no cuDNN "
                                 "autotuning (slower; CPU runs are deterministic anyway)", group=EXECUTION)
    parallel_trials: int = option(1, "run up to N (strategy, trial) runs at once, each in its own process sharing "
                                  "the device; the results equal those of one at a time", at_least=1, group=EXECUTION)
    diagnostics: str = option("last", "when to record the confidence histograms of confidence.png (a forward pass "
                              "over the labeled items and 2,000 unlabeled ones): every cycle, the last cycle, or "
                              "none; per-class accuracy is free and kept every cycle",
                              choices=("every", "last", "none"), group=EXECUTION)
    keep_models: str = option("last", "the models kept in OUT/checkpoints when a run ends: none, last (the final "
                              "model of every strategy and trial) or all (every cycle's)",
                              choices=("none", "last", "all"), group=EXECUTION)
    plugins: list[str] = option([], "Python files or modules to import first: your own acquisitions, objectives, "
                                "models, readers or tasks (they register themselves)", group=EXECUTION)
    #: the options of objectives and acquisitions that were given (``loss_weight``...), by name
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name, the component options beside the run's own."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        out.update(self.options)
        return out

    def get(self, name: str, default: Any = None) -> Any:
        """A setting by name, the run's own or a component option."""
        if name in CORE_NAMES:
            return getattr(self, name)
        return self.options.get(name, default)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "settings") -> Settings:
        """Settings from the values a user gave; a ``preset`` among them fills what they leave out.

        This is the way to use a preset from Python too:
        ``Settings.from_dict({"preset": "llal-cifar10", "dataset": "cifar10:data"})``.
        """
        values = {k.replace("-", "_"): v for k, v in values.items()}
        if values.get("plugins"):  # their options must be known before the names are checked
            load_plugins(coerce(spec_of("plugins"), values["plugins"], origin))
        check_names(values, origin)
        values = apply_preset({k: coerce(spec_of(k), v, origin) for k, v in values.items()}, origin)
        return cls().merged(values)

    def merged(self, overrides: dict[str, Any]) -> Settings:
        """A copy with ``overrides`` (already coerced, flat names) applied."""
        core = {k: v for k, v in overrides.items() if k in CORE_NAMES}
        extra = {k: v for k, v in overrides.items() if k not in CORE_NAMES}
        return dataclasses.replace(self, **core, options={**self.options, **extra})


CORE_SPECS: list[Spec] = specs_of(Settings)
CORE_NAMES: frozenset[str] = frozenset(s.name for s in CORE_SPECS)

#: settings that say how a run is executed, not what it computes: a resumed run may change them
EXECUTION_FIELDS: tuple[str, ...] = ("out", "device", "parallel_trials", "keep_models", "diagnostics")


def spec_of(name: str) -> Spec:
    """The declaration of setting ``name`` (the run's own or a registered component's)."""
    for spec in CORE_SPECS:
        if spec.name == name:
            return spec
    if name in DECLARED:
        return DECLARED[name].spec
    raise ConfigError(f"unknown setting {name!r}")


def known_names() -> list[str]:
    return sorted(CORE_NAMES | set(DECLARED))


def check_names(values: dict[str, Any], origin: str) -> None:
    unknown = sorted(set(values) - CORE_NAMES - set(DECLARED))
    if unknown:
        raise ConfigError(f"{origin}: unknown setting {unknown[0]!r}; known settings are {', '.join(known_names())}")


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
    if values.get("plugins"):
        load_plugins(coerce(spec_of("plugins"), values["plugins"], str(path)))
    if "per_strategy" in values:
        raise ConfigError(f"{path}: the per_strategy tables that --dry-run prints are a record, not settings; "
                          f"delete them (the strategies' own defaults give those values)")
    check_names(values, str(path))
    return {k: coerce(spec_of(k), v, str(path)) for k, v in values.items()}


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
    check_names(values, origin)
    if "preset" in values or "dataset" in values:
        raise ConfigError(f"{origin}: a preset may not set 'preset' or 'dataset'")
    return {k: coerce(spec_of(k), v, origin) for k, v in values.items()}


def _scaled(key: str, value: Any, old: Any, new: Any) -> Any:
    if key == "milestones":
        return [m if isinstance(m, str) else max(1, round(m * new / old)) for m in value]
    if isinstance(value, str):  # a percentage follows its base by itself
        return value
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


# ---------------------------------------------------------------- resolution

#: The Learning Loss CIFAR-10 protocol (the default for any dataset without its own).
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "cycles": 10, "initial": 1000, "budget": 1000, "subset": 10000,
    "epochs": 200, "batch_size": 128, "lr": 0.1, "reinit": False, "milestones": ["80%"],
}


def resolve(settings: Settings, layers: Sequence[dict[str, Any]], augment_default: str = "none") -> Settings:
    """Fill every unset (``None``) field of the run from ``layers`` (first wins), then the
    protocol; milestones given relative to the epochs become epochs."""
    filled: dict[str, Any] = {}
    for spec in CORE_SPECS:
        if getattr(settings, spec.name) is None:
            for layer in [*layers, PROTOCOL_DEFAULTS]:
                if layer.get(spec.name) is not None:
                    filled[spec.name] = layer[spec.name]
                    break
    out = settings.merged(filled)
    if out.milestones is not None and out.epochs is not None:
        out.milestones = [max(1, int(relative(m, out.epochs, integer=True))) for m in out.milestones]
    if out.augment is None:
        out.augment = augment_default
    return out


def percent_count(text: str, pool_size: int) -> int:
    """``"10%"`` of ``pool_size`` items, rounded down (exact decimal arithmetic: 10% of 50,000 is 5,000)."""
    return int(Decimal(text.strip()[:-1]) * pool_size // 100)


def resolve_counts(s: Settings, pool_size: int) -> Settings:
    """Turn the percentages among ``initial``, ``budget`` and ``subset`` into item counts.

    Rounding down keeps ``initial + (cycles - 1) x budget`` inside the pool whenever the
    percentages add up to at most 100%.
    """
    filled: dict[str, int] = {}
    for spec in CORE_SPECS:
        value = getattr(s, spec.name)
        if spec.percent_of == "pool" and isinstance(value, str):
            count = percent_count(value, pool_size)
            if count < 1:
                raise ConfigError(f"{spec.flag} {value} of the training pool ({pool_size} items) is less than one item")
            filled[spec.name] = count
    return s.merged(filled)


def check_values(s: Settings) -> None:
    """Each set value of the run against its declaration (range, choices)."""
    for spec in CORE_SPECS:
        value = getattr(s, spec.name)
        if value is not None:
            check(spec, value)


def validate(s: Settings, pool_size: int) -> None:
    """Check a resolved ``Settings`` (counts resolved too) against itself and the training-pool size."""
    for spec in CORE_SPECS:
        value = getattr(s, spec.name)
        if spec.percent_of == "pool" and isinstance(value, str):
            raise ConfigError(f"{spec.flag} {value} is not resolved to a count; call resolve_counts first")
    check_values(s)
    for name in ("cycles", "initial", "budget", "subset", "epochs", "batch_size", "lr"):
        if getattr(s, name) is None:
            raise ConfigError(f"--{name.replace('_', '-')} is not resolved; call resolve first")
    initial, cycles, budget, subset = (int(getattr(s, n)) for n in ("initial", "cycles", "budget", "subset"))
    if initial > pool_size:
        raise ConfigError(f"--initial {initial} is larger than the training pool ({pool_size} items)")
    final = initial + (cycles - 1) * budget
    if final > pool_size:
        raise ConfigError(
            f"--initial {initial} + ({cycles} - 1) cycles x --budget {budget} = {final} labels, "
            f"more than the training pool ({pool_size} items)"
        )
    if cycles > 1 and 0 < subset < budget:
        raise ConfigError(f"--subset {subset} is smaller than --budget {budget}")


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


def settings_toml(runs: Sequence[tuple[str, dict[str, Any]]], comments: Sequence[str] = ()) -> str:
    """The resolved settings of each strategy as TOML: the values they share at the top, then
    a ``[per_strategy."NAME"]`` table with what differs, for the strategies where something does.

    ``runs`` holds (strategy name, flat settings); ``None`` (unset) values are left out.
    """
    dicts = [(name, {k: v for k, v in values.items() if v is not None}) for name, values in runs]
    names = [name for name, _ in runs]
    order = [s.name for s in CORE_SPECS] + sorted({k for _, d in dicts for k in d} - CORE_NAMES)
    lines = [f"# {c}" for c in comments]
    common: dict[str, Any] = {}
    for key in order:
        if key == "strategies":
            common[key] = names
            continue
        vals = [d.get(key) for _, d in dicts]
        if vals and vals[0] is not None and all(v == vals[0] for v in vals):
            common[key] = vals[0]
    lines += [f"{k} = {toml_value(v)}" for k, v in common.items()]
    for name, d in dicts:
        diff = {k: d[k] for k in order if k in d and k not in common}
        if diff:
            lines += ["", f"[per_strategy.{toml_key(name)}]"] + [f"{k} = {toml_value(v)}" for k, v in diff.items()]
    return "\n".join(lines) + "\n"
