"""The Task seam: everything that depends on what the model predicts.

A task turns model outputs into a **per-sample loss vector** (shape [B], never a batch
mean: the loss-prediction module learns to rank these), predictions, and metrics that
know their direction (higher or lower is better).  It also says how its targets are
stored (a JSON value per item) and which uncertainty signals its outputs offer to the
acquisitions (class probabilities, point predictions...).  Everything else (training,
queries, the store, the report) is task-agnostic, which is the whole claim of loss
prediction.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings
    from ..data import Dataset

#: what a task's outputs offer to acquisitions (see :attr:`Task.offers`)
PROBABILITIES = "probabilities"  # a softmax over classes (entropy, margin, BALD, BADGE, ...)
CLASSES = "classes"  # discrete classes (SRAAL's supervised head, per-class figures)
VALUES = "values"  # real-valued point predictions (MC-dropout predictive variance)
ENTROPY = "entropy"  # one entropy per item (softmax entropy; pose: the heatmaps' mean per-joint entropy)
FLAT = "flat"  # one output vector per item from a final linear layer (where MC-dropout puts its dropout)

CAPABILITY_TEXT = {PROBABILITIES: "class probabilities", CLASSES: "discrete classes", VALUES: "real-valued predictions",
                   ENTROPY: "an entropy per item", FLAT: "a model ending in a linear layer"}


@dataclass(frozen=True)
class Metric:
    """A metric and its direction; the first metric of a task is its primary one."""

    name: str
    higher_is_better: bool
    percent: bool = False  # shown x100 with "%" in tables and plots (accuracy)
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "higher_is_better": self.higher_is_better, "percent": self.percent,
                "description": self.description}


class Task:
    """Base class of tasks; one instance per learner (a task may hold state fitted to the
    run's first labels, e.g. the target standardisation of regression)."""

    name: ClassVar[str] = "task"
    metrics: ClassVar[tuple[Metric, ...]] = ()
    offers: ClassVar[frozenset[str]] = frozenset()
    #: whether the inputs' own augmentation (``--augment flip,crop``) may run: not where it would
    #: move the image under its targets (pose keypoints), which the task's :meth:`augment` moves
    input_augment: ClassVar[bool] = True
    #: defaults of component options on this task, by component (pose: the loss-prediction
    #: module's lambda 1e-4); the strategy's own defaults and the user's values beat them
    option_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def configure(self, data: Dataset, settings: Settings) -> None:
        """Take what the task needs from the run's data and settings (called once per learner)."""

    # -- data ------------------------------------------------------------------
    def validate_targets(self, data: Dataset) -> None:
        """Raise :class:`~activeloss.errors.DataError` naming the first bad target."""

    def output_size(self, data: Dataset) -> int:
        """Width of the model's output layer for ``data``."""
        raise NotImplementedError

    def empty_targets(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """Storage for ``n`` targets shaped and typed like ``like``, filled with "unknown"."""
        raise NotImplementedError

    def check_labels(self, labels: torch.Tensor, num_classes: int) -> None:
        """Raise :class:`~activeloss.errors.PoolError` naming the first label that is no target."""

    def calibrate(self, targets: torch.Tensor) -> None:
        """Fit task state to the targets known before the first training (called once per run)."""

    # -- the store -------------------------------------------------------------
    def encode(self, targets: torch.Tensor) -> list[Any]:
        """Targets as JSON values, one per item (what the store keeps)."""
        return targets.tolist()

    def decode(self, values: list[Any]) -> torch.Tensor:
        """The inverse of :meth:`encode`."""
        raise NotImplementedError

    # -- training and evaluation ---------------------------------------------
    def augment(self, x: torch.Tensor, targets: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a training batch together with its targets (geometry that moves the targets,
        e.g. keypoints under rotation and flips); after the inputs' own augmentation, with the
        same device generator.  Identity by default."""
        return x, targets

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample loss, shape [B]; differentiable w.r.t. ``outputs``."""
        raise NotImplementedError

    def evaluate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """The metrics of whole-set ``outputs`` (float32) against ``targets``."""
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predictions in the targets' own terms (class index, value in original units)."""
        raise NotImplementedError

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C); only for tasks that offer them."""
        raise ConfigError(f"the {self.name} task has no class probabilities")

    def entropy(self, outputs: torch.Tensor) -> torch.Tensor:
        """One entropy per item (N,); only for tasks that offer it."""
        raise ConfigError(f"the {self.name} task has no entropy")

    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Real-valued predictions (N, D) in standardised units; only for tasks that offer them."""
        raise ConfigError(f"the {self.name} task has no real-valued predictions")

    def diagnostics(self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int,
                    pool_outputs: Callable[[torch.Tensor], torch.Tensor], labeled: torch.Tensor,
                    unlabeled: torch.Tensor, gen: torch.Generator) -> dict[str, list]:
        """Small per-cycle arrays for the report's figures (none by default).

        ``outputs`` are the test outputs; ``pool_outputs(indices)`` runs the model (eval mode,
        un-augmented) on training items, for figures about the labeled and unlabeled pool.
        """
        return {}

    # -- description ------------------------------------------------------------
    @property
    def primary_metric(self) -> Metric:
        return self.metrics[0]

    def describe(self) -> dict[str, Any]:
        """What the store keeps about the task, so the report needs no model code."""
        return {"name": self.name, "metrics": [m.as_dict() for m in self.metrics]}


def check_offers(task: type[Task] | Task, needs: frozenset[str], who: str,
                 alternatives: Callable[[], list[str]]) -> None:
    """One clear line when ``who`` needs something the task's outputs do not offer."""
    missing = sorted(needs - task.offers)
    if missing:
        what = " and ".join(CAPABILITY_TEXT.get(m, m) for m in missing)
        able = ", ".join(alternatives())
        raise ConfigError(f"{who} needs {what}, which the {task.name} task does not give"
                          + (f"; for {task.name} use {able}" if able else ""))
