"""The t-SNE map of ``tsne.png`` (LPLgrad's figure): where the labeled items, a sample of the
unlabeled pool and the batch the last query bought lie in the model's feature space.

The learner computes it at evaluation, for the cycles whose figures are recorded (the report
never runs a model), and stores 2-D coordinates with each point's group: about 30 kB per map,
where the features themselves (512 numbers per item for a ResNet-18) would not be small.
The batch is the one bought for the cycle (the previous cycle's query), shown in the features
of the model trained on it: the last cycle has no query of its own.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: the groups of the map, in the order their points are stored (and drawn: the batch on top)
GROUPS = ("labeled", "unlabeled", "queried")
#: at most this many items of each group are mapped, drawn with the map's own generator (1,000
#: points: about 2 s of one CPU core)
SAMPLE = {"labeled": 300, "unlabeled": 400, "queried": 300}
#: fewer points than this make no map
MIN_POINTS = 5
#: gradient steps of the t-SNE (250 of them with early exaggeration): scikit-learn's default 1,000
#: halves the divergence left after 500 by about 3% on 1,000 points, for twice the time
ITERATIONS = 500


def sample_groups(groups: dict[str, torch.Tensor], gen: torch.Generator,
                  caps: dict[str, int] | None = None) -> tuple[torch.Tensor, list[str]]:
    """The items of each group (indices), at most ``caps[group]`` of them drawn from ``gen``
    (sorted), concatenated in :data:`GROUPS` order, with each item's group name."""
    caps = SAMPLE if caps is None else caps
    items: list[torch.Tensor] = []
    names: list[str] = []
    for name in GROUPS:
        group = groups.get(name, torch.zeros(0, dtype=torch.long)).reshape(-1).cpu().long()
        if group.numel() > caps[name]:
            group = group[torch.randperm(group.numel(), generator=gen)[:caps[name]]].sort().values
        items.append(group)
        names += [name] * group.numel()
    return torch.cat(items), names


def tsne_2d(features: np.ndarray, seed: int, threads: int = 1) -> np.ndarray:
    """(n, 2) coordinates of the rows of ``features``: scikit-learn's Barnes-Hut t-SNE, PCA
    initialisation, automatic learning rate, perplexity 30 (a third of the points below 91),
    :data:`ITERATIONS` steps, seeded with ``seed``; on ``threads`` OpenMP threads (the result
    does not depend on them)."""
    import inspect

    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = features.shape[0]
    perplexity = min(30.0, max(1.0, (n - 1) / 3))
    steps = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"  # before 1.5
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed % 2**32, **{steps: ITERATIONS})
    with threadpool_limits(limits=max(1, threads), user_api="openmp"):
        return np.asarray(tsne.fit_transform(np.asarray(features, dtype=np.float32)), dtype=np.float64)


def tsne_arrays(features: Callable[[torch.Tensor], torch.Tensor], groups: dict[str, torch.Tensor],
                gen: torch.Generator, seed: int, caps: dict[str, int] | None = None,
                threads: int = 1) -> dict[str, list]:
    """The store's arrays of one map: ``tsne_x``, ``tsne_y`` (coordinates, 3 decimals),
    ``tsne_group`` (each point's group), ``tsne_item`` (its training item) and ``tsne_total`` (the
    size of each group before sampling, in :data:`GROUPS` order); nothing when fewer than
    :data:`MIN_POINTS` items have finite features.  ``features(items)`` gives the items' (n, d)
    features; ``gen`` draws the sample, ``seed`` seeds the t-SNE."""
    items, names = sample_groups(groups, gen, caps)
    if items.numel() < MIN_POINTS:
        return {}
    values = features(items).float().cpu().reshape(items.numel(), -1).numpy()
    finite = np.isfinite(values).all(axis=1)  # a diverged model's features
    if finite.sum() < MIN_POINTS:
        return {}
    keep = np.flatnonzero(finite)
    xy = tsne_2d(values[keep], seed, threads)
    return {"tsne_x": [round(float(v), 3) for v in xy[:, 0]], "tsne_y": [round(float(v), 3) for v in xy[:, 1]],
            "tsne_group": [names[i] for i in keep], "tsne_item": [int(items[i]) for i in keep],
            "tsne_total": [int(groups.get(g, torch.zeros(0)).numel()) for g in GROUPS]}
