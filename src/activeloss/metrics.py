"""Metrics of the loss-prediction module.

``ranking_accuracy`` is the figure the Learning Loss paper reports for its module (0.9074
on CIFAR-10): over all pairs of test samples, how often the predicted-loss order matches
the true-loss order.  A test set of 10,000 has 5e7 pairs, so pairs are counted in
O(n log^2 n) with vectorised numpy instead of a double loop.
"""
from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | list | tuple


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; a ranking is undefined")
    return arr


def _tied_pairs(keys: np.ndarray) -> int:
    """Number of pairs with equal keys (keys sorted, rows compared whole if 2-D)."""
    if keys.shape[0] == 0:
        return 0
    change = np.any(keys[1:] != keys[:-1], axis=1) if keys.ndim == 2 else keys[1:] != keys[:-1]
    bounds = np.flatnonzero(np.concatenate(([True], change, [True])))
    sizes = np.diff(bounds).astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def _strict_inversions(ranks: np.ndarray) -> int:
    """Pairs i < j with ranks[i] > ranks[j] (equal ranks are not inversions), counted by a
    bottom-up merge sort whose merges are vectorised with searchsorted."""
    n = ranks.shape[0]
    values = ranks.astype(np.int64)
    base = np.int64(n + 1)  # values lie in [0, n]; block * base + value keeps blocks apart
    total = 0
    width = 1
    idx = np.arange(n, dtype=np.int64)
    while width < n:
        # `values` is sorted inside each block of `width`; blocks 2p and 2p+1 are merged.
        block = idx // width
        pair = block // 2
        is_right = (block % 2).astype(bool)
        keys = pair * base + values
        left_keys = keys[~is_right]  # globally sorted: by pair, then by value
        right_keys = keys[is_right]
        # for each right element: left elements of the same pair with a larger value
        larger_start = np.searchsorted(left_keys, right_keys, side="right")
        pair_end = np.searchsorted(left_keys, (pair[is_right] + 1) * base, side="left")
        total += int((pair_end - larger_start).sum())
        values = np.sort(keys, kind="stable") - pair * base  # merged blocks of 2 * width
        width *= 2
    return total


def ranking_accuracy(pred: ArrayLike, true: ArrayLike) -> float:
    """Fraction of concordant pairs: pairs ordered the same way by ``pred`` and ``true``.

    A pair tied in ``pred`` or in ``true`` is excluded, so the result is C / (C + D) with C
    concordant and D discordant pairs; NaN when no pair is untied.  Accepts tensors, numpy
    arrays or sequences of equal length (shape (n,) or (n, 1)).
    """
    x, y = _as_1d(pred, "pred"), _as_1d(true, "true")
    if x.shape != y.shape:
        raise ValueError(f"pred has {x.size} values but true has {y.size}")
    n = x.size
    if n < 2:
        return float("nan")
    order = np.lexsort((y, x))  # by pred, ties in pred by true
    x, y = x[order], y[order]
    y_rank = np.unique(y, return_inverse=True)[1].reshape(-1)
    total = n * (n - 1) // 2
    tied_x = _tied_pairs(x)
    tied_y = _tied_pairs(np.sort(y))
    tied_xy = _tied_pairs(np.stack([x, y], axis=1))
    # pairs tied in pred are sorted by true, so every strict inversion is a discordant pair
    discordant = _strict_inversions(y_rank)
    untied = total - tied_x - tied_y + tied_xy
    concordant = untied - discordant
    if untied == 0:
        return float("nan")
    return concordant / untied
