"""Small per-cycle diagnostics kept in the store for the report's figures.

Two things per cycle, both a few dozen numbers:

* the per-class test accuracy, from the predictions the evaluation already made (free);
* histograms of the model's confidence (top softmax probability) on the labeled items
  and on a sample of the unlabeled pool, in ``BINS`` fixed bins on [0, 1].

Scoring the whole unlabeled pool every cycle would cost an inference pass over it
(60,000 MNIST images on a CPU), so the unlabeled side is a random sample of at most
``UNLABELED_SAMPLE`` items, drawn from a generator of its own (``seeding.generator(seed,
"confidence", trial, cycle)``): the extra pass never touches a generator that training,
subsets or queries use, and it runs in eval mode under ``no_grad`` (no BatchNorm update,
no dropout draw), so a run's results are the same with or without it.
"""
from __future__ import annotations

import torch
from torch import nn

from .inputs import Inputs
from .performance import autocast

#: Fixed bins of the confidence histograms: ``BINS`` equal bins on [0, 1].
BINS = 20
#: At most this many unlabeled items are scored per cycle.
UNLABELED_SAMPLE = 2000


def per_class_accuracy(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy on the test items of each class (``None`` for a class without test items)."""
    predictions, targets = predictions.cpu(), targets.cpu()
    correct = torch.bincount(targets[predictions == targets], minlength=num_classes).double()
    total = torch.bincount(targets, minlength=num_classes).double()
    return [float(c / t) if t > 0 else None for c, t in zip(correct.tolist(), total.tolist())]


@torch.no_grad()
def confidences(model: nn.Module, inputs: Inputs, indices: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Top softmax probability of each training item ``indices`` (eval mode, un-augmented inputs)."""
    model.eval()
    out = []
    for x in inputs.batches(indices, batch_size):
        with autocast(inputs.device):
            logits = model(x).float()
        out.append(logits.softmax(dim=1).amax(dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def histogram(values: torch.Tensor, bins: int = BINS) -> list[int]:
    """Counts in ``bins`` equal bins on [0, 1] (a confidence of exactly 1 falls in the last bin)."""
    idx = (values.double() * bins).floor().long().clamp_(0, bins - 1)
    return torch.bincount(idx, minlength=bins).tolist()


def confidence_histograms(
    model: nn.Module, inputs: Inputs, labeled: torch.Tensor, unlabeled: torch.Tensor,
    gen: torch.Generator, batch_size: int, sample: int = UNLABELED_SAMPLE,
) -> dict[str, list[int]]:
    """Confidence histograms of every labeled item and of at most ``sample`` unlabeled items."""
    if unlabeled.numel() > sample:
        unlabeled = unlabeled[torch.randperm(unlabeled.numel(), generator=gen)[:sample]].sort().values
    return {
        "confidence_labeled": histogram(confidences(model, inputs, labeled, batch_size)),
        "confidence_unlabeled": histogram(confidences(model, inputs, unlabeled, batch_size)),
    }
