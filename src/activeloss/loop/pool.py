"""Which items are labeled, when, with which label and from which source."""
from __future__ import annotations

import torch

from ..errors import ConfigError, PoolError

UNLABELED = -1


class Pool:
    """Labeling state of the ``size`` training items.  Knows nothing about models.

    ``labels`` holds the target the oracle gave (which may differ from the truth under
    label noise; a class index, a real value...) and ``label_cycle`` the first training
    cycle that used it.  ``labels`` starts as ``empty`` (the task's "unknown" targets;
    class indices of -1 by default).
    """

    def __init__(self, size: int, empty: torch.Tensor | None = None) -> None:
        self.size = size
        self.labels = torch.full((size,), UNLABELED, dtype=torch.long) if empty is None else empty.clone()
        self.label_cycle = torch.full((size,), UNLABELED, dtype=torch.long)

    def copy(self) -> Pool:
        """An independent copy (to try an :meth:`add` before it counts)."""
        other = Pool(self.size, self.labels)
        other.label_cycle = self.label_cycle.clone()
        return other

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
        labels = torch.as_tensor(labels).to(self.labels.dtype).cpu()
        if indices.numel() != (labels.shape[0] if labels.dim() else 1):  # a pose label is a (K+1, 3) row
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

    def candidates(self, subset: int, gen: torch.Generator, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """The unlabeled items a query may choose from, in ascending index order.

        ``subset == 0`` means the whole unlabeled pool; otherwise the first ``subset``
        unlabeled items of a random permutation of the *whole* pool drawn from ``gen``.
        Drawing the permutation over all items (not only the unlabeled ones) means two
        strategies given the same generator see the same random order, so their subsets
        differ only where their labeled sets differ.  ``exclude`` (item indices) are left out
        too: items already queried and waiting for their labels.
        """
        unlabeled = ~self.labeled_mask
        if exclude is not None and exclude.numel():
            unlabeled = unlabeled.clone()
            unlabeled[exclude.cpu().long()] = False
        if subset <= 0 or subset >= int(unlabeled.sum()):
            return unlabeled.nonzero().flatten()
        order = torch.randperm(self.size, generator=gen)
        chosen = order[unlabeled[order]][:subset]
        return chosen.sort().values

    def draw_initial(self, count: int, gen: torch.Generator, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """``count`` random items for the initial labeled set (sorted).

        ``allowed`` (a boolean mask over the pool) restricts the draw, e.g. to a few
        classes; the random order is the same permutation of the whole pool either way.
        """
        if count > self.size:
            raise PoolError(f"the initial labeled set ({count}) is larger than the pool ({self.size} items)")
        order = torch.randperm(self.size, generator=gen)
        if allowed is not None:
            allowed = torch.as_tensor(allowed, dtype=torch.bool).cpu()
            if allowed.shape != (self.size,):
                raise PoolError(f"the mask of allowed items has shape {tuple(allowed.shape)}, not ({self.size},)")
            if int(allowed.sum()) < count:
                raise PoolError(f"the initial labeled set ({count}) is larger than the allowed items "
                                f"({int(allowed.sum())})")
            order = order[allowed[order]]
        return order[:count].sort().values


def initial_classes(num_classes: int, m: int, gen: torch.Generator) -> list[int]:
    """``m`` of the ``num_classes`` classes, chosen at random (sorted): the classes a biased
    initial pool may come from (DNAL's robustness protocol)."""
    if not 1 <= m <= num_classes:
        raise ConfigError(f"--initial-classes {m} is out of range: the dataset has {num_classes} classes")
    return sorted(torch.randperm(num_classes, generator=gen)[:m].tolist())


def class_mask(labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """True for the items whose label is one of ``classes``."""
    return torch.isin(labels.cpu(), torch.tensor(classes, dtype=labels.dtype))
