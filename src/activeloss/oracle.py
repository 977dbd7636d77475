"""Where labels come from.  In simulation, the dataset's own labels."""
from __future__ import annotations

from typing import Protocol

import torch


class Oracle(Protocol):
    source: str

    def label(self, indices: torch.Tensor) -> torch.Tensor:
        """Labels for the training items ``indices``."""
        ...


class SimulatedOracle:
    """Answers with the true labels of the dataset (the usual research protocol)."""

    source = "simulated"

    def __init__(self, true_labels: torch.Tensor) -> None:
        self.true_labels = true_labels.cpu()

    def label(self, indices: torch.Tensor) -> torch.Tensor:
        return self.true_labels[indices.cpu()].clone()
