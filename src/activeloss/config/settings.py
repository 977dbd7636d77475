"""The run's settings: what to learn from, the loop, the training and how it executes.

Every field is a CLI option (``batch_size`` -> ``--batch-size``) and a TOML key of the same
name; the options of objectives and acquisitions (``--loss-weight``...) are declared by
those components (:mod:`.options`) and kept in :attr:`Settings.options`.  Values are
layered, the first that sets a field wins, for each strategy of the run:

1. the command line;
2. the ``--config`` file's ``[per_strategy."NAME"]`` table for the strategy, then its
   common values (a value the command line gives replaces the tables' values of it);
3. the preset's table for the strategy, then the preset's common values (a named protocol,
   see :mod:`.presets`; a value the user gives, common or in a table, replaces the preset's);
4. the strategy's own defaults, those for the run's model first (DNAL: whole pool,
   retrained each cycle, batch 64, lr 0.01 on VGG16 and 0.1 on ResNet-18);
5. the dataset's defaults (the small protocol of the embedded ``digits``);
6. the strategy's own protocol (DNAL: 150 epochs), else the Learning Loss CIFAR-10 protocol
   (:data:`PROTOCOL_DEFAULTS`).

Levels 1 to 3 are held by :class:`Settings` (common values, and :attr:`Settings.per_strategy`,
see :func:`overlay`), levels 4 to 6 are applied per strategy by
:func:`activeloss.loop.plan.resolve_run`.  ``initial``, ``budget`` and ``subset`` may be
percentages of the training set (``"10%"``), turned into counts once the dataset is loaded.
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

DATA, LOOP, TRAINING, EXECUTION, CLUSTER = "data", "loop", "training", "execution", "cluster"


@dataclass
class Settings:
    # -- what to learn from
    dataset: str = option("digits", "digits, diabetes, or KIND:PATH (the kinds and their file layouts are listed "
                          "at the end of this help)", group=DATA)
    task: str = option("auto", "classification, regression, pose or detection (auto: what the dataset holds)",
                       choices=("auto", "classification", "regression", "pose", "detection"), group=DATA)
    target: str | None = option(None, "the target column of a csv table (default: the column named label)", group=DATA)
    split: int = option(0, "which fixed train/test split of a benchmark that ships several (UCI: 0..19)",
                        at_least=0, group=DATA)
    test_fraction: float = option(0.2, "test share when a dataset has no test split", above=0, below=1, group=DATA)
    validation: float = option(0.0, "evaluate on this share of the training set (drawn with --seed) instead of the "
                               "test split, which the run then never uses: for choosing settings (0: the test split)",
                               at_least=0, below=1, group=DATA)
    image_memory_gb: float | None = option(None, "folder: data: the most memory (GB) its decoded images may take; a "
                                           "larger folder stays on disk and each batch is decoded when taken, in "
                                           "worker processes (default: a quarter of this machine's memory)",
                                           at_least=0, group=DATA)
    crop_size: int | None = option(None, "pose readers: side in pixels of the square person crops (default 256; "
                                   "synthetic-pose: 64)", at_least=8, group=DATA)
    image_size: int | None = option(None, "side in pixels of square images: folder: data resized on load (images of "
                                    "mixed sizes such as Caltech-101's; default: as they are, all one size); "
                                    "detection readers (voc:, synthetic-shapes): the model inputs images and boxes "
                                    "are scaled to (default: the reader's)", at_least=8, group=DATA)
    # -- the loop
    preset: str | None = option(None, "a named protocol (activeloss presets lists them); the options you give win "
                                "over it", group=LOOP)
    strategies: list[str] = option([], "comma list of strategies, or OBJECTIVE+ACQUISITION pairs "
                                   "(default: the main comparison of the task)", group=LOOP)
    trials: int = option(3, "trials; trial t uses the same initial set and subsets for every strategy", at_least=1,
                         group=LOOP)
    cycles: int | None = option(None, "train-and-evaluate rounds; round c trains on initial + c x budget labels",
                                at_least=1, group=LOOP)
    initial: int | str | None = option(None, "size of the initial labeled set (see --initial-method), or a "
                                       "percentage of the training set (10%%)", at_least=1, percent_of="pool",
                                       group=LOOP)
    budget: int | str | None = option(None, "items labeled per query, or a percentage of the training set (5%%)",
                                      at_least=1, percent_of="pool", group=LOOP)
    subset: int | str | None = option(None, "random candidate subset per query (0 = the whole unlabeled pool), or "
                                      "a percentage of the training set", at_least=0, percent_of="pool", group=LOOP)
    seed: int = option(0, "seed of every random draw of the run", group=LOOP)
    initial_classes: int | None = option(None, "draw the initial labeled set from this many randomly chosen classes "
                                         "only (seeded per trial; later queries are unrestricted)", at_least=1,
                                         group=LOOP)
    initial_method: str = option("random", "how the initial labeled set is chosen: random, or kcenter (k-center greedy "
                                 "over the training inputs normalised and average-pooled to at most 8x8 per channel, "
                                 "rows standardised, the first centre random; the same set for every strategy of a "
                                 "trial)", choices=("random", "kcenter"), group=LOOP)
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
    optimizer: str = option("sgd", "the optimiser: sgd (the classification and detection papers) or rmsprop (the "
                            "Stacked Hourglass code's, for pose)", choices=("sgd", "rmsprop"), group=TRAINING)
    momentum: float = option(0.9, "momentum (SGD; RMSprop's too, where it is 0 in the hourglass code)", at_least=0,
                             below=1, group=TRAINING)
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
    stacks: int = option(2, "Stacked Hourglass models (pose): number of hourglasses (the Learning Loss paper: 2)",
                         at_least=1, group=TRAINING)
    heatmap_sigma: float = option(1.0, "pose: standard deviation of the Gaussian target heatmaps, in heatmap pixels",
                                  above=0, group=TRAINING)
    pose_rotate: float = option(30.0, "pose: training batches turn by up to +-this many degrees (0: off)",
                                at_least=0, at_most=180, group=TRAINING)
    pose_scale: float = option(0.25, "pose: training batches are scaled by a factor in [1-s, 1+s] (0: off)",
                               at_least=0, below=1, group=TRAINING)
    pose_flip: bool = option(True, "pose: mirror half the training items, left and right joints swapped",
                             group=TRAINING)
    detection_augment: str | None = option(None, "detection: ssd, SSD's batch augmentation (photometric, expand, "
                                           "IoU-constrained crop, flip), light (photometric and flip: the CPU "
                                           "variant) or none (default: ssd; the CPU defaults of the detection "
                                           "readers: light)", choices=("ssd", "light", "none"), group=TRAINING)
    detection_ap: str = option("voc07", "detection: AP interpolation of the mAP, voc07 (11 points, what the SSD code "
                               "reports) or all-point (VOC2010 on)", choices=("voc07", "all-point"), group=TRAINING)
    backbone_weights: str | None = option(None, "ssd300: a local VGG-16 ImageNet state_dict to start the backbone "
                                          "from (torchvision's features.N keys; nothing is downloaded)",
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
    cuda_graphs: bool | None = option(None, "record each training step as a CUDA graph and replay it: one launch "
                                      "instead of hundreds per step, the same kernels (default: on for CUDA with "
                                      "the built-in models and objectives, unless --compile; refused on the CPU)",
                                      group=EXECUTION)
    deterministic: bool = option(False, "bit-reproducible results on a GPU: deterministic kernels, no cuDNN "
                                 "autotuning (slower; CPU runs are deterministic anyway)", group=EXECUTION)
    sync_bn: bool = option(False, "under torchrun on GPUs, BatchNorm with the statistics of the whole global batch "
                           "(SyncBatchNorm), as in one process; refused on the CPU, nothing to do in one process",
                           group=EXECUTION)
    parallel_trials: int = option(1, "run up to N (strategy, trial) runs at once, each in its own process sharing "
                                  "the device; the results equal those of one at a time", at_least=1, group=EXECUTION)
    diagnostics: str = option("last", "when to record the confidence histograms of confidence.png (a forward pass "
                              "over the labeled items and 2,000 unlabeled ones) and the t-SNE map of tsne.png "
                              "(first trial, from cycle 1): every cycle, the last cycle, or none; per-class "
                              "accuracy is free and kept every cycle",
                              choices=("every", "last", "none"), group=EXECUTION)
    keep_models: str = option("last", "the models kept in OUT/checkpoints when a run ends: none, last (the final "
                              "model of every strategy and trial) or all (every cycle's)",
                              choices=("none", "last", "all"), group=EXECUTION)
    plugins: list[str] = option([], "Python files or modules to import first: your own acquisitions, objectives, "
                                "models, readers or tasks (they register themselves)", group=EXECUTION)
    # -- where the (strategy, trial) units run
    executor: str = option("local", "where the (strategy, trial) units run: local (this machine: one at a time, or "
                           "--parallel-trials), submitit (a Slurm job array; submitit's local executor where there "
                           "is no Slurm) or ray (a Ray cluster, or a local Ray); each unit writes its own store in "
                           "OUT/shards, merged into OUT's as its cycles finish", choices=("local", "submitit", "ray"),
                           group=CLUSTER)
    gpus_per_unit: int = option(0, "GPUs per unit (submitit, ray)", at_least=0, group=CLUSTER)
    cpus_per_unit: int = option(1, "CPU cores per unit (submitit, ray)", at_least=1, group=CLUSTER)
    mem_gb: float | None = option(None, "memory per unit in GB (submitit; default: the partition's)", above=0,
                                  group=CLUSTER)
    time_limit: int = option(1440, "minutes a unit may run before Slurm stops it; it is requeued and continues from "
                             "its last committed step (submitit)", at_least=1, group=CLUSTER)
    partition: str | None = option(None, "the Slurm partition (submitit; default: the cluster's)", group=CLUSTER)
    max_running: int = option(0, "at most this many units at once (0: as many as the cluster gives)", at_least=0,
                              group=CLUSTER)
    ray_address: str | None = option(None, "the Ray cluster to join (auto, or ray://HOST:10001; default: start a "
                                     "local Ray on this machine)", group=CLUSTER)
    retries: int = option(2, "times a unit whose process dies or is preempted is started again (it continues "
                          "from its last committed step)", at_least=0, group=CLUSTER)
    #: the options of objectives and acquisitions that were given (``loss_weight``...), by name
    options: dict[str, Any] = field(default_factory=dict)
    #: what a strategy gets instead of the common values (``[per_strategy."NAME"]`` tables of a
    #: preset or a config file, already layered: see :func:`overlay`), strategy -> settings
    per_strategy: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name, the component options beside the run's own, and the
        ``per_strategy`` tables when there are any."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("options", "per_strategy")}
        out.update(self.options)
        if self.per_strategy:
            out["per_strategy"] = {name: dict(table) for name, table in self.per_strategy.items()}
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
        tables = values.pop("per_strategy", None)
        check_names(values, origin)
        given = {k: coerce(spec_of(k), v, origin) for k, v in values.items()}
        if tables:
            given["per_strategy"] = strategy_tables(tables, origin)
        return cls().merged(apply_preset(given, origin))

    def merged(self, overrides: dict[str, Any]) -> Settings:
        """A copy with ``overrides`` (already coerced, flat names) applied; a ``per_strategy``
        among them replaces the tables."""
        tables = overrides.get("per_strategy")
        core = {k: v for k, v in overrides.items() if k in CORE_NAMES}
        extra = {k: v for k, v in overrides.items() if k not in CORE_NAMES and k != "per_strategy"}
        if tables is not None:
            core["per_strategy"] = {name: dict(table) for name, table in tables.items()}
        return dataclasses.replace(self, **core, options={**self.options, **extra})


CORE_SPECS: list[Spec] = specs_of(Settings)
CORE_NAMES: frozenset[str] = frozenset(s.name for s in CORE_SPECS)

#: settings that say how a run is executed, not what it computes: a resumed run may change them
EXECUTION_FIELDS: tuple[str, ...] = ("out", "device", "parallel_trials", "keep_models", "diagnostics", "executor",
                                     "gpus_per_unit", "cpus_per_unit", "mem_gb", "time_limit", "partition",
                                     "max_running", "ray_address", "retries")


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
    tables = values.pop("per_strategy", None)
    check_names(values, str(path))
    out = {k: coerce(spec_of(k), v, str(path)) for k, v in values.items()}
    if tables is not None:
        out["per_strategy"] = strategy_tables(tables, str(path))
    return out


# ---------------------------------------------------------------- per-strategy tables

#: settings that are one for every strategy of a run, never in a ``per_strategy`` table: the data,
#: how the run executes, and what makes the strategies of a trial comparable (the same seed,
#: initial classes and oracle)
RUN_WIDE: frozenset[str] = frozenset(s.name for s in CORE_SPECS if s.group not in (LOOP, TRAINING)) | {
    "preset", "strategies", "seed", "out", "initial_classes", "initial_method", "label_noise"}


def strategy_tables(tables: Any, origin: str) -> dict[str, dict[str, Any]]:
    """The ``[per_strategy."NAME"]`` tables of a config file, a preset or stored settings, checked
    and coerced: strategy -> the settings it gets instead of the common ones."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{origin}: per_strategy holds one table of settings per strategy, "
                          f"e.g. [per_strategy.llal] with lossnet_decay = true")
    out: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        where = f"{origin} [per_strategy.{toml_key(str(name))}]"
        values = {k.replace("-", "_"): v for k, v in table.items()}
        check_names(values, where)
        shared = sorted(set(values) & RUN_WIDE)
        if shared:
            raise ConfigError(f"{where}: {spec_of(shared[0]).flag} is one setting for every strategy of a run; "
                              f"give it outside the per_strategy tables")
        out[str(name).strip()] = {k: coerce(spec_of(k), v, where) for k, v in values.items()}
    return out


def overlay(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """The settings ``upper`` gives over those of ``lower`` (both coerced, flat, with optional
    ``per_strategy`` tables): a strategy's table in ``upper`` beats its table in ``lower`` key by
    key, and a value ``upper`` gives for every strategy also replaces the values ``lower``'s
    tables hold for it.  So the command line beats a config file's tables, and what the user
    gives (common or per strategy) beats the preset's tables."""
    given = {k: v for k, v in upper.items() if v is not None}
    out = {k: v for k, v in {**lower, **given}.items() if k != "per_strategy"}
    tables: dict[str, dict[str, Any]] = {}
    for name, table in (lower.get("per_strategy") or {}).items():
        kept = {k: v for k, v in table.items() if k not in given}
        if kept:
            tables[name] = kept
    for name, table in (given.get("per_strategy") or {}).items():
        tables[name] = {**tables.get(name, {}), **table}
    if tables:
        out["per_strategy"] = tables
    return out


# ---------------------------------------------------------------- presets

#: keys of a preset file that describe it rather than set something
PRESET_INFO_KEYS = ("description", "reference", "for_dataset", "notes")

#: preset settings measured against another one (epochs, the learning rate): when the user
#: overrides only the base, the preset's value scales with it (160 of 200 epochs -> 8 of 10;
#: VAAL's iterations per cycle follow the task model's training length)
DERIVED_FROM: dict[str, str] = {"milestones": "epochs", "stop_gradient_epoch": "epochs", "lossnet_lr": "lr",
                                "vae_iterations": "epochs"}


def preset_values(name: str) -> dict[str, Any]:
    """The settings of the preset ``name`` (coerced, without its description keys)."""
    from . import presets

    raw = presets.read(name)
    origin = f"preset {name}"
    values = {k.replace("-", "_"): v for k, v in raw.items() if k not in PRESET_INFO_KEYS}
    tables = values.pop("per_strategy", None)
    check_names(values, origin)
    if "preset" in values or "dataset" in values:
        raise ConfigError(f"{origin}: a preset may not set 'preset' or 'dataset'")
    out = {k: coerce(spec_of(k), v, origin) for k, v in values.items()}
    if tables is not None:
        out["per_strategy"] = strategy_tables(tables, origin)
    return out


def _scaled(key: str, value: Any, old: Any, new: Any) -> Any:
    if key == "milestones":
        return [m if isinstance(m, str) else max(1, round(m * new / old)) for m in value]
    if isinstance(value, str):  # a percentage follows its base by itself
        return value
    if key == "stop_gradient_epoch":
        return round(value * new / old)
    if key == "vae_iterations":
        return max(1, round(value * new / old))
    return float(f"{value / old * new:.12g}")  # lossnet_lr: keep the preset's ratio to --lr


def apply_preset(values: dict[str, Any], origin: str = "settings") -> dict[str, Any]:
    """``values`` (what the user gave, coerced) over the preset they name, if any.

    A preset is a complete protocol, so it sits above the strategies' defaults; what the
    user gives sits above the preset, its per-strategy tables included (:func:`overlay`).
    The preset's milestones, stop-gradient epoch and VAAL iterations follow an overridden
    ``epochs``, its ``lossnet_lr`` an overridden ``lr``, unless they are given too; in a
    strategy's table as well.  The preset's tables for strategies the run leaves out are
    dropped.
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
    merged = overlay(base, given)
    for key, anchor in DERIVED_FROM.items():
        if key in base and key not in given and anchor in base and anchor in given and given[anchor] != base[anchor]:
            merged[key] = _scaled(key, base[key], base[anchor], given[anchor])
    preset_tables, user_tables = base.get("per_strategy", {}), given.get("per_strategy", {})
    tables = merged.get("per_strategy", {})
    for strategy in sorted(set(preset_tables) | set(user_tables)):
        theirs, mine = preset_tables.get(strategy, {}), user_tables.get(strategy, {})
        for key, anchor in DERIVED_FROM.items():
            if key in given or key in mine or (key not in theirs and anchor not in mine):
                continue  # given by the user, or the same for every strategy (scaled above)
            if key in theirs:
                value, old = theirs[key], theirs.get(anchor, base.get(anchor))
            elif key in base:
                value, old = base[key], base.get(anchor)
            else:
                continue
            new = mine.get(anchor, given.get(anchor))
            if old is not None and new is not None and new != old:
                tables.setdefault(strategy, {})[key] = _scaled(key, value, old, new)
    run = merged.get("strategies") or []
    tables = {s: t for s, t in tables.items() if s in user_tables or not run or s in run}
    merged.pop("per_strategy", None)
    if tables:
        merged["per_strategy"] = tables
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
    a ``[per_strategy."NAME"]`` table with what differs, for the strategies where something does
    (a ``--config`` file that gives the same settings: its tables beat its common values).

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
