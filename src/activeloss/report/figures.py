"""Figures (PNG, matplotlib Agg), each drawn from data the store holds, so ``activeloss report`` redraws them.

Every figure has a title, axis labels, a legend where lines or bars need one, and a light grid;
files are written to a temporary name and renamed, so a figure on disk is always whole.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .tables import MetricInfo, curves, mean_std, metric_info, timing


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def palette(strategies: Sequence[str]) -> dict[str, Any]:
    """One colour per strategy, the same in every figure of a report (tab10, then tab20b)."""
    plt = _plt()
    return {s: plt.cm.tab10(i) if i < 10 else plt.cm.tab20b((i - 10) % 20) for i, s in enumerate(strategies)}


def _save(fig, path: str | Path) -> None:
    """Save through a temporary file so a plot on disk is always whole."""
    plt = _plt()
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _grid(n: int, width: float, height: float, max_cols: int = 4, **kw):
    plt = _plt()
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.6), dpi=150, squeeze=False, **kw)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def curves_ylabel(metric: str | MetricInfo) -> str:
    """The y label of the learning curves: the metric, its unit and its direction, e.g.
    ``test accuracy (%)`` or ``test RMSE (lower is better)`` (a falling curve is then good news)."""
    return f"test {metric_info(metric).heading}"


def plot_curves(rows: list[dict[str, Any]], path: str | Path, title: str = "", metric: str | MetricInfo = "accuracy",
                reach: Sequence[float] = (), colors: dict[str, Any] | None = None) -> Any:
    """Learning curves (mean over trials) with a ±1 std band, one line per strategy, in the metric's
    units (x100 for a percent metric); dashed lines at the ``reach`` targets.  Returns the axes."""
    plt = _plt()
    info = metric_info(metric)
    data = curves(rows, info.name)
    colors = colors or palette(list(data))
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=150)
    for strategy, per in data.items():
        cycles = sorted(per)
        x = np.array([per[c]["labeled"] for c in cycles])
        stats = np.array([mean_std(per[c]["values"].values()) for c in cycles]) * info.scale
        color = colors[strategy]
        ax.plot(x, stats[:, 0], marker="o", ms=3.5, lw=1.8, color=color, label=strategy)
        ax.fill_between(x, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=color, alpha=0.15, lw=0)
    for target in reach:
        ax.axhline(target * info.scale, color="0.35", ls="--", lw=1)
        ax.annotate(f"target {info.target_text(target)}", (0.005, target * info.scale),
                    xycoords=("axes fraction", "data"), xytext=(2, 3), textcoords="offset points", fontsize=8,
                    color="0.3")
    ax.set_xlabel("labeled items")
    ax.set_ylabel(curves_ylabel(info))
    ax.set_title(title or "Learning curves (mean ± std over trials)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9, ncol=2 if len(data) > 6 else 1)
    fig.tight_layout()
    _save(fig, path)
    return ax


def plot_time(rows: list[dict[str, Any]], path: str | Path, title: str = "",
              colors: dict[str, Any] | None = None) -> None:
    """Train and query seconds per cycle against labels, mean ± std over trials; log scale when the
    strategies differ by orders of magnitude (queries often do)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=150)
    strategies = list(timing(rows))
    colors = colors or palette(strategies)
    for panel, (ax, key, label) in enumerate(zip(axes, ("train_seconds", "query_seconds"), ("training", "query"))):
        positive = []
        for strategy in strategies:
            per: dict[int, dict[str, Any]] = {}
            for row in rows:
                if row["strategy"] != strategy or (key == "query_seconds" and not row.get("queried", True)):
                    continue
                cell = per.setdefault(row["cycle"], {"labeled": row["labeled"], "values": []})
                cell["values"].append(row[key])
            if not per:
                continue
            cycles = sorted(per)
            x = np.array([per[c]["labeled"] for c in cycles])
            stats = np.array([mean_std(per[c]["values"]) for c in cycles])
            positive += [v for v in stats[:, 0] if v > 0]
            color = colors[strategy]
            ax.plot(x, stats[:, 0], marker="o", ms=3.5, lw=1.6, color=color, label=strategy)
            lo = np.maximum(stats[:, 0] - stats[:, 1], stats[:, 0] * 0.05)
            ax.fill_between(x, lo, stats[:, 0] + stats[:, 1], color=color, alpha=0.15, lw=0)
        if positive and max(positive) / max(min(positive), 1e-9) > 10:
            ax.set_yscale("log")
        ax.set_xlabel("labeled items (at the cycle)")
        ax.set_ylabel("seconds per cycle" + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.set_title(f"{label} time per cycle" + (" (cycles with a query)" if panel else ""))
        ax.grid(alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False, fontsize=9)
    fig.suptitle(title or "Time per cycle (mean ± std over trials)", fontsize=12)
    rows_of_legend = math.ceil(len(labels) / 6) if labels else 0
    fig.tight_layout(rect=(0, 0.05 * rows_of_legend + 0.02, 1, 1))
    _save(fig, path)


def plot_loss_prediction(pairs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                         colors: dict[str, Any] | None = None,
                         entropy: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[tuple[str, str]]:
    """Each test item's real loss against what ranks it, one panel each, with Pearson r, Spearman
    rho and the ranking accuracy (a ranker only has to order losses, not match their scale): the
    loss-prediction module's predicted loss (``pairs``: strategy -> (real, predicted)) and, for
    every task with an entropy, the entropy of the model's softmax output (``entropy``: strategy ->
    (real, entropy); pose: each heatmap's softmax entropy averaged over the joints; Learning
    Loss's Fig. 8, bottom, which is the pose experiment), the two panels of a strategy side
    by side.  Any task's per-item losses will do (cross-entropy, squared error).  Returns the
    panels drawn, in order, as (strategy, ``"predicted"`` or ``"entropy"``)."""
    entropy = entropy or {}
    strategies = list(dict.fromkeys([*pairs, *entropy]))
    colors = colors or palette(strategies)
    strategies.sort(key=lambda s: list(colors).index(s) if s in colors else len(colors))  # the report's order
    cols = 4 if any(s in pairs and s in entropy for s in strategies) else 3
    slots: list[tuple[str, str] | None] = []
    for strategy in strategies:
        kinds = [kind for kind, data in (("predicted", pairs), ("entropy", entropy)) if strategy in data]
        if len(kinds) == 2 and len(slots) % cols == cols - 1:
            slots.append(None)  # a strategy's two panels stay on one row
        slots += [(strategy, kind) for kind in kinds]
    fig, axes = _grid(len(slots), 4.6, 4.2, max_cols=cols)
    for ax, slot in zip(axes, slots):
        if slot is None:
            ax.set_visible(False)
            continue
        strategy, kind = slot
        real, score = (pairs if kind == "predicted" else entropy)[strategy]
        _loss_panel(ax, strategy, kind, real, score, colors[strategy])
    what = ("Loss prediction and softmax entropy against the real loss" if pairs and entropy else
            "Loss prediction" if pairs else "Softmax entropy against the real loss")
    fig.suptitle(f"{what} at the last cycle (each test item; first trial)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return [slot for slot in slots if slot is not None]


def _loss_panel(ax: Any, strategy: str, kind: str, real: np.ndarray, score: np.ndarray, color: Any) -> None:
    """One panel of :func:`plot_loss_prediction`: ``score`` (``kind``: a predicted loss, or an
    entropy) against the real loss of each test item."""
    from scipy import stats

    from ..metrics import ranking_accuracy

    finite = np.isfinite(real) & np.isfinite(score)  # a diverged module predicts NaN
    if finite.sum() < 2:
        ax.set_title(f"{strategy}: no finite {'predictions (the module diverged)' if kind == 'predicted' else kind}",
                     fontsize=10)
        ax.set_axis_off()
        return
    real, score = real[finite], score[finite]
    ax.scatter(real, score, s=8, alpha=0.6, lw=0, color=color)
    # losses span decades once a model fits; a barely trained one has them all near log(C)
    wide = real.size > 0 and real.max() > 20 * max(real.min(), 0.01)
    if wide:
        ax.set_xscale("symlog", linthresh=0.01)
    varied = real.std() > 0 and score.std() > 0
    r = stats.pearsonr(real, score)[0] if varied else float("nan")
    rho = stats.spearmanr(real, score)[0] if varied else float("nan")
    name = {"predicted": "predicted loss", "entropy": "entropy"}[kind]
    ax.set_title(f"{strategy}: {name}, ranking accuracy {ranking_accuracy(score, real):.3f}\n"
                 f"Pearson r = {r:.2f}, Spearman ρ = {rho:.2f}", fontsize=10)
    ax.set_xlabel("real test loss" + (" (symlog scale)" if wide else ""))
    ax.set_ylabel("predicted loss" if kind == "predicted" else "entropy of the softmax output (nats)")
    ax.grid(alpha=0.3)


def plot_confidence(hists: dict[str, dict[str, Any]], path: str | Path, cycle: int) -> None:
    """Confidence (top softmax probability) of the labeled items vs a sample of the unlabeled pool,
    one panel per strategy, as the share of items per bin (counts pooled over trials).

    The bins are drawn side by side, equally wide, whatever their span: a fitted model puts
    almost every item above 0.95, so the fine bins up there (0.99, 0.999...) are what tells the
    labeled items from the unlabeled ones.  The share is on a log scale, the unlabeled items
    filled and the labeled ones a line on top, so both show where they overlap.
    """
    floor = 0.05  # % of items: the bottom of the log axis
    fig, axes = _grid(len(hists), 3.9, 3.1, max_cols=4)
    for ax, (strategy, h) in zip(axes, hists.items()):
        edges = np.asarray(h.get("edges") or np.linspace(0, 1, len(h["labeled"]) + 1), dtype=float)
        slots = np.arange(edges.size)
        centers = (edges[:-1] + edges[1:]) / 2
        for key, color, name, filled in (("unlabeled", "tab:orange", "unlabeled (sample)", True),
                                         ("labeled", "tab:blue", "labeled", False)):
            counts = np.asarray(h[key], dtype=float)
            if counts.sum() == 0:
                continue
            share = np.maximum(counts / counts.sum() * 100, floor)
            mean = float((centers * counts).sum() / counts.sum())
            if filled:
                ax.stairs(share, slots, baseline=floor, fill=True, alpha=0.35, color=color)
            ax.stairs(share, slots, color=color, lw=1.2 if filled else 2.0, zorder=3 if not filled else 2,
                      label=f"{name}: n={int(counts.sum())}, mean {mean:.3f}")
        ax.set_title(f"{strategy} ({h['labels']} labels, {h['trials']} trial{'s' if h['trials'] != 1 else ''})",
                     fontsize=10)
        ax.set_xlim(0, edges.size - 1)
        ticks = slots if edges.size <= 12 else slots[::max(1, edges.size // 6)]
        ax.set_xticks(ticks, [f"{edges[i]:g}" for i in ticks], fontsize=7, rotation=45)
        ax.set_yscale("log")
        ax.set_ylim(floor, 1000)  # headroom above 100% for the legend
        ax.set_yticks([0.1, 1, 10, 100], ["0.1", "1", "10", "100"])
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7.5, loc="upper left")
        ax.set_xlabel("confidence (top softmax probability), bin edges", fontsize=9)
        ax.set_ylabel("% of items (log scale)", fontsize=9)
    fig.suptitle(f"Model confidence at cycle {cycle}: the labeled items vs a seeded random sample of the "
                 f"unlabeled pool (counts pooled over trials)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_per_class(per_class: dict[str, np.ndarray], class_names: Sequence[str], path: str | Path, cycle: int,
                   labels: dict[str, int], colors: dict[str, Any] | None = None) -> None:
    """Per-class test accuracy at ``cycle``: grouped bars per strategy (mean over trials, ±1 std
    whiskers) up to 20 classes; a strategies x classes heat map beyond."""
    plt = _plt()
    strategies = list(per_class)
    colors = colors or palette(strategies)
    num_classes = next(iter(per_class.values())).shape[1]
    names = list(class_names) if len(class_names) == num_classes else [str(c) for c in range(num_classes)]
    with warnings.catch_warnings():  # a class without test items is NaN in every trial: no bar
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.array([np.nanmean(per_class[s], axis=0) for s in strategies]) * 100
        stds = np.array([np.nanstd(per_class[s], axis=0, ddof=1) if per_class[s].shape[0] > 1
                         else np.zeros(num_classes) for s in strategies]) * 100
    counts = {s: per_class[s].shape[0] for s in strategies}
    trials = max(counts.values())
    uneven = len(set(counts.values())) > 1
    title = (f"Per-class test accuracy at cycle {cycle} (mean{' ± std' if trials > 1 else ''} over "
             + ("trials)" if uneven else f"{trials} trial{'s' if trials != 1 else ''})"))
    same_labels = len({labels[s] for s in strategies}) == 1
    if same_labels:  # said once in the title rather than in every legend entry
        title = title.replace(f"at cycle {cycle} ", f"at cycle {cycle} ({labels[strategies[0]]} labels) ")
    legend = {s: s + (f" ({labels[s]} labels" if not same_labels else "")
              + ((", " if not same_labels else " (") + f"{counts[s]} trials)" if uneven else
                 (")" if not same_labels else "")) for s in strategies}
    if num_classes <= 20:
        width = max(8.0, min(22.0, 1.0 + num_classes * (0.25 + 0.09 * len(strategies))))
        fig, ax = plt.subplots(figsize=(width, 5.2), dpi=150)
        x = np.arange(num_classes)
        bar = 0.84 / len(strategies)
        for i, s in enumerate(strategies):
            ax.bar(x - 0.42 + bar * (i + 0.5), means[i], bar, yerr=stds[i] if trials > 1 else None,
                   color=colors[s], label=legend[s], error_kw={"lw": 0.7, "capsize": 0, "ecolor": "0.3"})
        ax.set_xticks(x, names, rotation=30 if max(len(n) for n in names) > 3 else 0,
                      ha="right" if max(len(n) for n in names) > 3 else "center")
        ax.set_xlim(-0.6, num_classes - 0.4)
        low = np.nanmin(means - stds) if np.isfinite(means).any() else 0
        ax.set_ylim(max(0, min(low - 5, 90)), 100.5)
        ax.set_xlabel("class")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(frameon=False, fontsize=8, ncol=min(len(strategies), 4), loc="upper center",
                  bbox_to_anchor=(0.5, -0.14 if max(len(n) for n in names) <= 3 else -0.22))
    else:
        title = title.replace("mean ± std", "mean")  # a heat map shows the mean only
        fig, ax = plt.subplots(figsize=(min(18, 3 + 0.14 * num_classes), 2.4 + 0.45 * len(strategies)), dpi=150)
        im = ax.imshow(means, aspect="auto", cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
        ax.set_yticks(range(len(strategies)), [legend[s] for s in strategies], fontsize=8)
        step = max(1, num_classes // 50)
        ax.set_xticks(range(0, num_classes, step), names[::step], rotation=90, fontsize=6)
        ax.set_xlabel("class")
        fig.colorbar(im, ax=ax, label="test accuracy (%)", fraction=0.03, pad=0.01)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


#: the groups of a t-SNE map as the store names them (see ``activeloss.loop.tsne``), drawn in this
#: order (the batch on top), with their colour, marker size and legend text
TSNE_GROUPS = (("unlabeled", "0.72", 5, "unlabeled (a seeded sample)"),
               ("labeled", "tab:blue", 8, "labeled before the cycle"),
               ("queried", "tab:red", 16, "queried: the batch bought for the cycle"))


def plot_tsne(maps: dict[str, dict[str, Any]], path: str | Path, cycle: int, dataset: str = "") -> None:
    """LPLgrad's t-SNE figure: one panel per strategy, the labeled items, a sample of the unlabeled
    pool and the batch bought for ``cycle`` (queried by the previous cycle's model) in the t-SNE map
    of the model's penultimate features at ``cycle``.  ``maps``: strategy -> ``x``, ``y``, ``group``
    (one entry per point), ``total`` (each group's size before sampling: labeled, unlabeled,
    queried), ``labels`` (labeled items at the cycle)."""
    plt = _plt()
    fig, axes = _grid(len(maps), 4.3, 4.1, max_cols=4)
    for ax, (strategy, m) in zip(axes, maps.items()):
        x, y, group = np.asarray(m["x"], dtype=float), np.asarray(m["y"], dtype=float), np.asarray(m["group"])
        total = dict(zip(("labeled", "unlabeled", "queried"), m.get("total") or (0, 0, 0)))
        shown = []
        for name, color, size, _ in TSNE_GROUPS:
            mask = group == name
            if mask.any():
                ax.scatter(x[mask], y[mask], s=size, color=color, lw=0, alpha=0.55 if name == "unlabeled" else 0.85,
                           zorder={"unlabeled": 1, "labeled": 2, "queried": 3}[name])
            count = int(mask.sum())
            shown.append(f"{count:,}" + (f" of {total[name]:,}" if total.get(name, 0) > count else "") + f" {name}")
        ax.set_title(f"{strategy}: cycle {cycle}, {m['labels']} labels\n{', '.join(shown)}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("t-SNE 1", fontsize=8)
        ax.set_ylabel("t-SNE 2", fontsize=8)
    handles = [plt.Line2D([], [], ls="", marker="o", ms=math.sqrt(size) + 2, color=color, label=text)
               for _, color, size, text in TSNE_GROUPS]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=9)
    head = f"{dataset}: t-SNE" if dataset else "t-SNE"
    fig.suptitle(f"{head} of the penultimate features at cycle {cycle} (first trial): where the previous cycle's "
                 "query landed", fontsize=11)
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))  # 0.4 inch for the legend
    _save(fig, path)
