"""The in-memory dataset every reader produces."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import DataError


@dataclass
class Dataset:
    """Train and test tensors plus the metadata the rest of the toolkit needs.

    Images are kept as ``uint8`` tensors of shape (N, C, H, W) so that large
    sets stay small in memory (and on the GPU); they are converted to float and
    normalised batch by batch.  Tabular data is ``float32`` of shape (N, D).
    Labels are ``int64`` in ``[0, num_classes)``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    #: coarse (super-class) label per fine class, e.g. CIFAR-100's 20 superclasses
    coarse_of_class: list[int] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def validate(self) -> "Dataset":
        """Check shapes, dtypes and label ranges; raise :class:`DataError` naming the problem."""
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name}: {split} has {x.shape[0]} inputs but {y.shape[0]} labels")
            if x.shape[0] == 0:
                raise DataError(f"{self.name}: the {split} split is empty")
            if y.dtype != torch.int64 or y.dim() != 1:
                raise DataError(f"{self.name}: {split} labels must be a 1-d integer array")
            if x.dim() not in (2, 4):
                raise DataError(f"{self.name}: {split} inputs must be images (N,C,H,W) or rows (N,D), got shape {tuple(x.shape)}")
            if x.dim() == 4 and x.dtype != torch.uint8:
                raise DataError(f"{self.name}: {split} images must be uint8")
            if x.dim() == 2 and x.dtype != torch.float32:
                raise DataError(f"{self.name}: {split} rows must be float32")
            bad = (y < 0) | (y >= self.num_classes)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise DataError(
                    f"{self.name}: {split} label {int(y[i])} at row {i} is out of range "
                    f"[0, {self.num_classes - 1}] for {self.num_classes} classes"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train inputs have shape {tuple(self.x_train.shape[1:])} "
                f"but test inputs {tuple(self.x_test.shape[1:])}"
            )
        for x in (self.x_train, self.x_test):  # uint8 images cannot hold NaN: only rows are checked
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise DataError(f"{self.name}: inputs contain NaN or infinite values")
        return self
