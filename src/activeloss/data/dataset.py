"""The in-memory dataset every reader produces, and the ways to build one from Python."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..tasks import TASKS, make_task
from .streaming import ImageFiles, Images

#: images a streamed folder's normalisation statistics are estimated from (seeded sample)
STATS_SAMPLE = 10_000


@dataclass
class Dataset:
    """Train and test tensors plus the metadata the rest of the toolkit needs.

    Inputs are images (N, C, H, W) or rows (N, D).  Images are best kept as ``uint8`` so
    large sets stay small in memory (and on the GPU); they are converted to float and
    normalised batch by batch.  Float images and rows are ``float32``.  Targets are whatever
    the ``task`` defines: ``int64`` class indices in ``[0, num_classes)`` for classification,
    ``float32`` values for regression.
    """

    name: str
    x_train: Images  # a tensor, or a streamed folder's files (decoded per batch)
    y_train: torch.Tensor
    x_test: Images
    y_test: torch.Tensor
    class_names: list[str] = field(default_factory=list)
    #: coarse (super-class) label per fine class, e.g. CIFAR-100's 20 superclasses
    coarse_of_class: list[int] | None = None
    extras: dict = field(default_factory=dict)
    #: the registered task the targets are for (``activeloss.tasks.TASKS``)
    task: str = "classification"
    #: the training inputs' normalisation statistics once computed (:meth:`input_statistics`)
    _statistics: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def size(self) -> int:
        """Number of training items (the pool)."""
        return int(self.x_train.shape[0])

    def input_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the training inputs: per channel of images scaled to [0, 1] (a
        streamed folder's from a seeded sample), per feature of rows (a constant feature's std
        is 1).  Computed once and kept, also in the copies sent to worker processes: the parent
        computes them before it starts its workers, and no worker repeats the pass."""
        if self._statistics is None:
            x = self.x_train
            if isinstance(x, ImageFiles):  # too large to hold: the statistics of a seeded sample
                mean, std = x.channel_stats(STATS_SAMPLE, seed=0)
                std = std.clamp_min(1e-6)
            elif self.is_image:
                xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
                mean = xf.mean(dim=(0, 2, 3))
                std = xf.std(dim=(0, 2, 3)).clamp_min(1e-6)
            else:
                mean, std = x.mean(dim=0), x.std(dim=0)
                std = torch.where(std > 1e-8, std, torch.ones_like(std))
            self._statistics = (mean, std)
        return self._statistics

    def validate(self) -> Dataset:
        """Check shapes, dtypes and targets; raise :class:`DataError` naming the problem."""
        if self.task not in TASKS:
            raise DataError(f"{self.name}: unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name}: {split} has {x.shape[0]} inputs but {y.shape[0]} targets")
            if x.shape[0] == 0:
                raise DataError(f"{self.name}: the {split} split is empty")
            if x.dim() not in (2, 4):
                raise DataError(f"{self.name}: {split} inputs must be images (N,C,H,W) or rows (N,D), "
                                f"got shape {tuple(x.shape)}")
            if x.dim() == 4 and x.dtype not in (torch.uint8, torch.float32):
                raise DataError(f"{self.name}: {split} images must be uint8 (0..255) or float32")
            if x.dim() == 2 and x.dtype != torch.float32:
                raise DataError(f"{self.name}: {split} rows must be float32")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train inputs have shape {tuple(self.x_train.shape[1:])} "
                f"but test inputs {tuple(self.x_test.shape[1:])}"
            )
        for x in (self.x_train, self.x_test):  # uint8 images cannot hold NaN: only floats are checked
            if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise DataError(f"{self.name}: inputs contain NaN or infinite values")
        make_task(self.task).validate_targets(self)
        return self

    def validation_split(self, fraction: float, seed: int = 0) -> Dataset:
        """The training set split in two: a seeded ``fraction`` of it becomes the evaluation
        split and the rest the pool; the test split is dropped, so that settings chosen on the
        result never saw it.  The statistics are recomputed from the smaller pool."""
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"--validation must lie strictly between 0 and 1 (a share of the training set), "
                              f"got {fraction}")
        held = int(round(self.size * fraction))
        if held < 1 or held >= self.size:
            raise ConfigError(f"--validation {fraction} of {self.size} training items leaves "
                              f"{'no validation item' if held < 1 else 'no pool'}")
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed))
        pool, validation = order[held:].sort().values, order[:held].sort().values

        def take(x: Images, rows: torch.Tensor) -> Images:
            return x.subset(rows.numpy()) if isinstance(x, ImageFiles) else x[rows]

        extras = {**self.extras, "validation": {"fraction": fraction, "seed": seed}}
        extras.pop("test_split", None)
        return Dataset(f"{self.name}-validation", take(self.x_train, pool), self.y_train[pool],
                       take(self.x_train, validation), self.y_train[validation], list(self.class_names),
                       self.coarse_of_class, extras, self.task).validate()

    # -- building one from Python ------------------------------------------------
    @classmethod
    def from_tensors(cls, x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, task: str | None = None,
                     class_names: Sequence[str] | None = None, name: str = "tensors") -> Dataset:
        """A dataset from arrays or tensors (your own data).

        ``task`` defaults to classification for integer targets and regression for floats.
        Integer targets must already be class indices 0..C-1; ``class_names`` defaults to
        their string values.  Images may be uint8 (0..255) or float32; rows float32.
        """
        xs = [_as_input(x, f"x_{s}") for x, s in ((x_train, "train"), (x_test, "test"))]
        ys = [torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y) for y in (y_train, y_test)]
        if task is None:
            task = "regression" if ys[0].is_floating_point() else "classification"
        if task == "classification":
            ys = [y.long().reshape(-1) for y in ys]
            if class_names is None:
                top = max(int(ys[0].max()) if ys[0].numel() else -1, int(ys[1].max()) if ys[1].numel() else -1)
                class_names = [str(c) for c in range(top + 1)]
        elif task == "regression":
            ys = [y.float().reshape(-1) for y in ys]
        return cls(name, xs[0], ys[0], xs[1], ys[1], list(class_names or []), task=task).validate()

    @classmethod
    def from_torch(cls, train: torch.utils.data.Dataset, test: torch.utils.data.Dataset, *, task: str | None = None,
                   class_names: Sequence[str] | None = None, name: str = "torch") -> Dataset:
        """A dataset from two ``torch.utils.data.Dataset`` objects yielding ``(x, y)`` pairs.

        The items are read once and stacked in memory (fine for sets that fit in memory;
        image folders too large for that are for a streaming reader).
        """
        def stack(ds: torch.utils.data.Dataset, which: str) -> tuple[torch.Tensor, torch.Tensor]:
            try:
                pairs = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]
            except TypeError:
                raise DataError(f"{name}: the {which} dataset must have a length and yield (x, y) pairs") from None
            if not pairs:
                raise DataError(f"{name}: the {which} dataset is empty")
            try:
                xs = torch.stack([torch.as_tensor(p[0]) for p in pairs])
                ys = torch.stack([torch.as_tensor(p[1]) for p in pairs])
            except (TypeError, IndexError, RuntimeError) as exc:
                raise DataError(f"{name}: the {which} dataset must yield (x, y) pairs of equal shapes "
                                f"({exc})") from None
            return xs, ys

        (xtr, ytr), (xte, yte) = stack(train, "train"), stack(test, "test")
        names = class_names if class_names is not None else getattr(train, "classes", None)
        return cls.from_tensors(xtr, ytr, xte, yte, task=task, class_names=names, name=name)


def _as_input(x: Any, what: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() == 3:  # (N, H, W) grey images
        t = t[:, None]
    if t.dtype == torch.uint8 and t.dim() == 4:
        return t.contiguous()
    integers = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
    if not (t.is_floating_point() or t.dtype in integers):
        raise DataError(f"{what} must be numeric, got {t.dtype}")
    return t.float().contiguous()
