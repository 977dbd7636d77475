"""Classification: cross-entropy per sample, accuracy, softmax probabilities."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError, PoolError
from ..scoring import entropy
from .base import CLASSES, ENTROPY, FLAT, PROBABILITIES, Metric, Task

if TYPE_CHECKING:
    from ..data import Dataset

#: edges of the confidence histograms: coarse where few items are, fine near 1, where a fitted model
#: puts almost every item and where the labeled and unlabeled items still differ
CONFIDENCE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0)
#: at most this many unlabeled items are scored per cycle for the confidence figure
UNLABELED_SAMPLE = 2000


class ClassificationTask(Task):
    """Targets are class indices 0..C-1 (int64); the model outputs C logits."""

    name = "classification"
    metrics = (Metric("accuracy", higher_is_better=True, percent=True,
                      description="share of test items classified right"),)
    offers = frozenset({PROBABILITIES, CLASSES, ENTROPY, FLAT})

    def validate_targets(self, data: Dataset) -> None:
        for split, y in (("train", data.y_train), ("test", data.y_test)):
            if y.dtype != torch.int64 or y.dim() != 1:
                raise DataError(f"{data.name}: {split} labels must be a 1-d integer array")
            bad = (y < 0) | (y >= data.num_classes)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise DataError(
                    f"{data.name}: {split} label {int(y[i])} at row {i} is out of range "
                    f"[0, {data.num_classes - 1}] for {data.num_classes} classes"
                )

    def output_size(self, data: Dataset) -> int:
        if data.num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, the dataset has {data.num_classes}")
        return data.num_classes

    def empty_targets(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((n,), -1, dtype=torch.long)

    def check_labels(self, labels: torch.Tensor, num_classes: int) -> None:
        bad = (labels < 0) | (labels >= num_classes)
        if bool(bad.any()):
            raise PoolError(f"label {int(labels[bad][0])} is out of range: the classes are 0..{num_classes - 1}")

    def decode(self, values: list[Any]) -> torch.Tensor:
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise PoolError("class labels must be integers 0..C-1") from None
        if any(not n.is_integer() for n in numbers):
            raise PoolError("class labels must be integers 0..C-1, not fractions")
        return torch.tensor([int(n) for n in numbers], dtype=torch.long)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, reduction="none")

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(dim=1)

    def evaluate(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"accuracy": float((self.predict(outputs) == targets).float().mean())}

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(outputs.float(), dim=-1)

    def entropy(self, outputs: torch.Tensor) -> torch.Tensor:
        return entropy(self.probabilities(outputs))

    def diagnostics(self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int,
                    pool_outputs: Callable[[torch.Tensor], torch.Tensor], labeled: torch.Tensor,
                    unlabeled: torch.Tensor, gen: torch.Generator) -> dict[str, list]:
        """Per-class test accuracy (free: from the evaluation) and confidence histograms of the
        labeled items vs a seeded sample of at most ``UNLABELED_SAMPLE`` unlabeled ones."""
        per_class = per_class_accuracy(self.predict(outputs), targets, num_classes)
        arrays: dict[str, list] = {"per_class_accuracy": per_class}
        if labeled.numel() == 0 and unlabeled.numel() == 0:  # the confidence figure is not wanted this cycle
            return arrays
        if unlabeled.numel() > UNLABELED_SAMPLE:
            unlabeled = unlabeled[torch.randperm(unlabeled.numel(), generator=gen)[:UNLABELED_SAMPLE]].sort().values
        return {**arrays, "confidence_edges": list(CONFIDENCE_EDGES),
                "confidence_labeled": histogram(confidence(pool_outputs(labeled))),
                "confidence_unlabeled": histogram(confidence(pool_outputs(unlabeled)))}


def per_class_accuracy(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy on the test items of each class (``None`` for a class without test items)."""
    predictions, targets = predictions.cpu(), targets.cpu()
    correct = torch.bincount(targets[predictions == targets], minlength=num_classes).double()
    total = torch.bincount(targets, minlength=num_classes).double()
    return [float(c / t) if t > 0 else None for c, t in zip(correct.tolist(), total.tolist())]


def confidence(outputs: torch.Tensor) -> torch.Tensor:
    """Top softmax probability of each row of logits."""
    if outputs.numel() == 0:
        return torch.zeros(0)
    return outputs.float().softmax(dim=1).amax(dim=1).cpu()


def histogram(values: torch.Tensor, edges: tuple[float, ...] = CONFIDENCE_EDGES) -> list[int]:
    """Counts of ``values`` in the bins ``[edges[i], edges[i+1])`` (a value of exactly 1 falls in the last)."""
    inner = torch.tensor(edges[1:-1], dtype=torch.float64)
    idx = torch.bucketize(values.double(), inner, right=True)
    return torch.bincount(idx, minlength=len(edges) - 1).tolist()
