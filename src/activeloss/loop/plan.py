"""Turning what a user asked for into fully resolved runs, before anything is written.

A :class:`Run` is one strategy with every setting resolved (the run's own, counts of items,
its objective's and acquisition's options); :func:`plan` loads the data and resolves every
strategy of an experiment, so a bad option fails in one line before any training.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import models
from ..config import Settings, resolve, resolve_counts, validate
from ..config.plugins import load_plugins
from ..config.settings import CORE_NAMES, check_values
from ..data import Dataset, Inputs, load_dataset
from ..data.augment import parse_augment
from ..data.readers import Reader, reader_of
from ..device import distributed, performance
from ..device.graphs import check_cuda_graphs
from ..errors import ConfigError
from ..seeding import generator
from ..strategies import Strategy, get_strategy, main_comparison
from ..tasks import make_task, task_type
from .pool import class_mask, initial_classes


@dataclass(frozen=True)
class Run:
    """One strategy with everything resolved: what determines a (strategy, trial) run's results
    apart from the trial itself."""

    strategy: Strategy
    settings: Settings  # every field of the run filled; counts of items, not percentages
    objective_options: Any
    acquisition_options: Any
    options: dict[str, Any]  # the component options, flat (what the store and --dry-run show)

    @property
    def name(self) -> str:
        return self.strategy.name

    def record(self) -> dict[str, Any]:
        """The settings as stored with the run: the run's own and its components' options."""
        out = {k: v for k, v in self.settings.to_dict().items() if k not in self.settings.options}
        out.update(self.options)
        return out


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for, but no CUDA GPU is available")
    return device


def task_of(settings: Settings, data: Dataset) -> str:
    """The run's task: the one asked for, which must be the data's, or the data's."""
    if settings.task not in ("auto", data.task):
        raise ConfigError(f"--task {settings.task}: {data.name} holds {data.task} targets")
    return data.task


def resolve_run(settings: Settings, strategy: Strategy, data: Dataset, reader: Reader | None,
                layers: tuple[dict[str, Any], ...] = ()) -> Run:
    """``strategy`` on ``data`` with every setting resolved, the first that sets a value winning:
    the settings given (the strategy's ``per_strategy`` table over the common values), the
    strategy's defaults (those for the run's model first), ``layers``, the dataset's defaults,
    the strategy's own protocol, then the Learning Loss protocol."""
    given = dataclasses.replace(settings.merged(settings.per_strategy.get(strategy.name, {})), per_strategy={})
    dataset_defaults = reader.defaults if reader else {}
    if given.model is None:  # the strategy's defaults may depend on it
        chosen = [layer["model"] for layer in (strategy.defaults, *layers, dataset_defaults) if layer.get("model")]
        given.model = chosen[0] if chosen else models.default_model(data.input_shape, data.task)

    def core(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k in CORE_NAMES}

    chain = [core(strategy.defaults_for(given.model)), *layers, dataset_defaults, core(strategy.protocol)]
    s = resolve(given, chain, augment_default=reader.augment if reader else "none")
    s = resolve_counts(s, data.size)  # "10%" -> items of this dataset
    s.task = task_of(settings, data)
    check_values(s)
    strategy.check(task_type(s.task))
    if s.backbone_weights:  # read when the learner builds the model: say now what is wrong with it
        if "backbone_weights" not in models.MODELS.get(s.model or "").options:
            raise ConfigError(f"--backbone-weights starts SSD300's VGG-16 backbone; the model {s.model} takes none")
        if not Path(s.backbone_weights).expanduser().is_file():
            raise ConfigError(f"--backbone-weights: no file {s.backbone_weights}")
    if parse_augment(s.augment or "none") and not task_type(s.task).input_augment:
        own = {"detection": "--detection-augment"}.get(s.task, "--pose-rotate, --pose-scale, --pose-flip")
        raise ConfigError(f"--augment {s.augment} would move the images under their {s.task} targets; the {s.task} "
                          f"task augments whole batches itself ({own}): use --augment none")
    objective_options, acquisition_options, options = strategy.options(s)
    return Run(strategy, s, objective_options, acquisition_options, options)


@dataclass
class Plan:
    """A validated experiment: the data, and each strategy with its resolved settings."""

    settings: Settings
    data: Dataset
    runs: list[Run]
    device: torch.device

    @property
    def total_cycles(self) -> int:
        return sum(int(r.settings.cycles or 0) * r.settings.trials for r in self.runs)

    @property
    def task(self) -> str:
        return self.data.task


def inputs_for(data: Dataset, device: torch.device, s: Settings) -> Inputs:
    """The data on ``device`` as the run ``s`` feeds it to the model (augmentation, memory layout)."""
    return Inputs.from_dataset(data, device, parse_augment(s.augment or "none"), s.pad,
                               performance.memory_format(s.channels_last, device, data.is_image))


def initial_allowed(data: Dataset, s: Settings, trial: int) -> torch.Tensor | None:
    """Mask of the items the initial set may come from: those of the ``--initial-classes`` M
    classes drawn for this trial (the same for every strategy), or None for no restriction."""
    if s.initial_classes is None:
        return None
    if data.num_classes == 0:
        raise ConfigError("--initial-classes draws classes; this dataset has real-valued targets")
    classes = initial_classes(data.num_classes, s.initial_classes, generator(s.seed, "initial-classes", trial))
    return class_mask(data.y_train, classes)


def plan(settings: Settings) -> Plan:
    """Load the data and resolve and check every setting, before anything is written."""
    load_plugins(settings.plugins)
    device = distributed.local_device(choose_device(settings.device))
    distributed.check_sync_bn(settings.sync_bn, device)
    check_cuda_graphs(settings.cuda_graphs, settings.compile, device)
    if settings.parallel_trials > 1 and distributed.active():
        raise ConfigError("--parallel-trials runs several processes on one machine; under torchrun leave it at 1")
    if settings.executor != "local" and (settings.parallel_trials > 1 or distributed.active()):
        raise ConfigError(f"--executor {settings.executor} spreads the units over its own workers: leave "
                          "--parallel-trials at 1 and do not start it under torchrun")
    reader = reader_of(settings.dataset)
    data = load_dataset(settings.dataset, seed=settings.seed, test_fraction=settings.test_fraction,
                        split=settings.split, target=settings.target,
                        task=None if settings.task == "auto" else settings.task, crop_size=settings.crop_size,
                        image_size=settings.image_size, image_memory_gb=settings.image_memory_gb,
                        validation=settings.validation)
    task_of(settings, data)
    names = settings.strategies or main_comparison(data.task)
    if len(set(names)) != len(names):
        raise ConfigError("--strategies names a strategy twice")
    stray = sorted(set(settings.per_strategy) - {n.strip() for n in names})
    if stray:
        raise ConfigError(f"a [per_strategy.{stray[0]}] table is given, but the run's strategies are "
                          f"{', '.join(names)}")
    strategies = [get_strategy(n) for n in names]
    runs = []
    for strategy in strategies:
        run = resolve_run(settings, strategy, data, reader)
        s = run.settings
        validate(s, pool_size=data.size)
        if s.initial_classes is not None:  # every trial's class draw must hold the initial set
            for trial in range(s.trials):
                allowed = initial_allowed(data, s, trial)
                held = int(allowed.sum()) if allowed is not None else data.size
                if held < int(s.initial or 0):
                    raise ConfigError(f"--initial-classes {s.initial_classes}: the classes drawn for trial {trial} "
                                      f"hold {held} training items, fewer than --initial {s.initial}")
        outputs = make_task(s.task).output_size(data)
        # fails early on a bad pairing
        models.build(s.model or "", outputs, data.input_shape, task=s.task, stacks=s.stacks,
                     backbone_weights=None)  # the weights file is read when the learner builds the model
        runs.append(run)
    return Plan(settings, data, runs, device)
