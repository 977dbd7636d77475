"""Which items are labeled, when, with which label and from which source."""
from __future__ import annotations

import torch

from .errors import PoolError

UNLABELED = -1


class Pool:
    """Labeling state of the ``size`` training items.  Knows nothing about models.

    ``labels`` holds the label the oracle gave (which may differ from the truth under
    label noise) and ``label_cycle`` the first training cycle that used it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.labels = torch.full((size,), UNLABELED, dtype=torch.long)
        self.label_cycle = torch.full((size,), UNLABELED, dtype=torch.long)

    @property
    def labeled_mask(self) -> torch.Tensor:
        return self.label_cycle >= 0

    def labeled_indices(self) -> torch.Tensor:
        return self.labeled_mask.nonzero().flatten()

    def unlabeled_indices(self) -> torch.Tensor:
        return (~self.labeled_mask).nonzero().flatten()

    @property
    def num_labeled(self) -> int:
        return int(self.labeled_mask.sum())

    def add(self, indices: torch.Tensor, labels: torch.Tensor, cycle: int) -> None:
        """Record ``labels`` for ``indices``; labeling an item twice is an error, never a silent overwrite."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        if indices.numel() != labels.numel():
            raise PoolError(f"{indices.numel()} items but {labels.numel()} labels")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.size):
            raise PoolError(f"item index out of range for a pool of {self.size}")
        if indices.unique().numel() != indices.numel():
            raise PoolError("the same item appears twice in one labeling batch")
        already = self.labeled_mask[indices]
        if bool(already.any()):
            raise PoolError(f"item {int(indices[already][0])} is already labeled")
        self.labels[indices] = labels
        self.label_cycle[indices] = cycle

    def candidates(self, subset: int, gen: torch.Generator) -> torch.Tensor:
        """The unlabeled items a query may choose from, in ascending index order.

        ``subset == 0`` means the whole unlabeled pool; otherwise the first ``subset``
        unlabeled items of a random permutation of the *whole* pool drawn from ``gen``.
        Drawing the permutation over all items (not only the unlabeled ones) means two
        strategies given the same generator see the same random order, so their subsets
        differ only where their labeled sets differ.
        """
        unlabeled = ~self.labeled_mask
        if subset <= 0 or subset >= int(unlabeled.sum()):
            return unlabeled.nonzero().flatten()
        order = torch.randperm(self.size, generator=gen)
        chosen = order[unlabeled[order]][:subset]
        return chosen.sort().values

    def draw_initial(self, count: int, gen: torch.Generator) -> torch.Tensor:
        """``count`` random items for the initial labeled set (sorted)."""
        if count > self.size:
            raise PoolError(f"the initial labeled set ({count}) is larger than the pool ({self.size} items)")
        return torch.randperm(self.size, generator=gen)[:count].sort().values
