"""Regression: squared error on the standardised target, RMSE (lower is better).

The target is standardised with the mean and std of the targets labeled before the first
training of the run (the initial set), then kept fixed: the loss scale stays the same across
cycles, and no unlabeled target leaks into training (standardising with the whole training
set, as many UCI scripts do, would use answers nobody has paid for).  The model predicts the
standardised value; RMSE and MAE are reported in the target's own units.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ..errors import DataError, PoolError
from .base import FLAT, VALUES, Metric, Task

if TYPE_CHECKING:
    from ..data import Dataset


class RegressionTask(Task):
    """Targets are real numbers (float32, shape (N,)); the model outputs one value per item."""

    name = "regression"
    metrics = (
        Metric("rmse", higher_is_better=False, description="root mean squared error on the test set, target units"),
        Metric("mae", higher_is_better=False, description="mean absolute error on the test set, target units"),
    )
    offers = frozenset({VALUES, FLAT})

    def __init__(self) -> None:
        self.mean = 0.0
        self.std = 1.0

    def validate_targets(self, data: Dataset) -> None:
        for split, y in (("train", data.y_train), ("test", data.y_test)):
            if not y.is_floating_point() or y.dim() != 1:
                raise DataError(f"{data.name}: {split} targets must be a 1-d float array for regression")
            bad = ~torch.isfinite(y)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise DataError(f"{data.name}: {split} target at row {i} is {float(y[i])}, not a finite number")

    def output_size(self, data: Dataset) -> int:
        return 1

    def empty_targets(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((n,), float("nan"), dtype=torch.float32)

    def calibrate(self, targets: torch.Tensor) -> None:
        """Mean and std of the first labeled targets (std 1 when fewer than two or all equal)."""
        t = targets.double().cpu()
        self.mean = float(t.mean()) if t.numel() else 0.0
        std = float(t.std()) if t.numel() > 1 else 0.0
        self.std = std if std > 1e-12 and math.isfinite(std) else 1.0

    def check_labels(self, labels: torch.Tensor, num_classes: int) -> None:
        bad = ~torch.isfinite(labels)
        if bool(bad.any()):
            raise PoolError(f"target {float(labels[bad][0])} is not a finite number")

    def decode(self, values: list[Any]) -> torch.Tensor:
        try:
            return torch.tensor([float(v) for v in values], dtype=torch.float32)
        except (TypeError, ValueError):
            raise PoolError("regression targets must be numbers") from None

    def standardise(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets.float() - self.mean) / self.std

    def _flat(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().reshape(outputs.shape[0], -1)[:, 0]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (self._flat(outputs) - self.standardise(targets)).pow(2)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return self._flat(outputs) * self.std + self.mean

    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        return self._flat(outputs)[:, None]

    def evaluate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        error = (self.predict(outputs).double() - targets.double().to(outputs.device))
        return {"rmse": float(error.pow(2).mean().sqrt()), "mae": float(error.abs().mean())}
