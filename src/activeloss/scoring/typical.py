"""Typical and diverse items without a model: the first batch of a labeling project, and the
cold start of the guarded-loss strategy.

No model means no uncertainty and no predicted loss, and a random first batch can miss whole
regions of the data or spend labels on outliers.  So the inputs (normalised, images pooled to
at most 16 x 16 so the distance is about shapes rather than pixels) are clustered into ``k``
groups with k-means, and each group gives the item nearest its centre: every pick is typical
of its group (dense) and the groups cover the data (diverse).  The batch is ranked by group
size, largest first, so labeling the top of the batch covers the most data.  Its score is the
share of the candidates the item's group holds.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Inputs

#: images are average-pooled to at most this side before clustering
POOLED_SIDE = 16


def features(inputs: Inputs, items: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Normalised, pooled, flattened inputs of ``items`` as float32 rows."""
    out = []
    for x in inputs.batches(items, batch_size):
        if x.dim() == 4 and x.shape[-1] > POOLED_SIDE:
            x = F.adaptive_avg_pool2d(x.float(), POOLED_SIDE)
        out.append(x.float().flatten(1).cpu())
    return torch.cat(out).numpy()


def cold_start(inputs: Inputs, candidates: torch.Tensor, k: int, seed: int) -> tuple[list[int], list[float]]:
    """``k`` distinct items of ``candidates``: the medoid-like item of each k-means group, largest group first."""
    from sklearn.cluster import KMeans  # imported here: only a cold start pays for it

    x = features(inputs, candidates)
    if k >= len(x):
        order = list(range(len(x)))
        return [int(candidates[i]) for i in order], [1.0 / len(x)] * len(x)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed % 2**32).fit(x)
    sizes = np.bincount(km.labels_, minlength=k)
    distance = ((x - km.cluster_centers_[km.labels_]) ** 2).sum(axis=1)
    picks: list[tuple[int, int]] = []  # (group, row)
    for group in range(k):
        members = np.flatnonzero(km.labels_ == group)
        if members.size:
            picks.append((group, int(members[np.argmin(distance[members])])))
    taken = {row for _, row in picks}
    if len(picks) < k:  # k-means left a group empty (duplicate inputs): fill with the farthest items
        for row in np.argsort(-distance):
            if len(picks) == k:
                break
            if int(row) not in taken:
                picks.append((int(km.labels_[row]), int(row)))
                taken.add(int(row))
    picks.sort(key=lambda p: (-sizes[p[0]], p[1]))
    n = len(x)
    return [int(candidates[row]) for _, row in picks], [float(sizes[g]) / n for g, _ in picks]
