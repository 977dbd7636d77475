"""Tasks, registered by name: ``classification``, ``regression``, ``pose`` and ``detection``.

Adding a task is one file with a :class:`Task` subclass plus one registry line here.
"""
from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry
from .base import CLASSES, ENTROPY, FLAT, PROBABILITIES, VALUES, Metric, Task, check_offers
from .classification import ClassificationTask
from .detection import DetectionTask
from .pose import PoseTask
from .regression import RegressionTask

TASKS: Registry[Callable[[], Task]] = Registry("task")
TASKS.register("classification", ClassificationTask, "class indices, cross-entropy, accuracy")
TASKS.register("regression", RegressionTask, "real-valued targets, squared error on the standardised target, RMSE")
TASKS.register("pose", PoseTask,
               "keypoints as heatmaps (Stacked Hourglass), per-sample heatmap MSE, PCKh@0.5 / PCK@0.2")
TASKS.register("detection", DetectionTask,
               "boxes per image (SSD), per-image MultiBox loss, mAP@0.5 by the VOC protocol")


def make_task(name: str) -> Task:
    """A fresh instance of task ``name``."""
    return TASKS.get(name)()


def task_type(name: str) -> type[Task]:
    """The class of task ``name`` (for checks that need no instance)."""
    factory = TASKS.get(name)
    return factory if isinstance(factory, type) else type(factory())


__all__ = ["CLASSES", "ENTROPY", "FLAT", "PROBABILITIES", "TASKS", "VALUES", "ClassificationTask", "DetectionTask",
           "Metric", "PoseTask", "RegressionTask", "Task",
           "check_offers", "make_task", "task_type"]
