"""Tables and plots computed from the store alone (so ``activeloss report`` can redo them)."""
from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .store import Store

FIRST_COLUMNS = ["strategy", "trial", "cycle", "labeled"]
LAST_COLUMNS = ["train_seconds", "query_seconds"]


def write_results_csv(store: Store, path: str | Path) -> None:
    """One row per (strategy, trial, cycle); written to a temporary file and renamed, never half-written."""
    rows = store.results()
    metric_names: list[str] = []
    for row in rows:
        for key in row:
            if key not in FIRST_COLUMNS + LAST_COLUMNS and key not in metric_names:
                metric_names.append(key)
    metric_names.sort(key=lambda k: (k != "accuracy", k))
    columns = FIRST_COLUMNS + metric_names + LAST_COLUMNS
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
    os.replace(tmp, path)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def curves(rows: list[dict[str, Any]], metric: str = "accuracy") -> dict[str, dict[int, dict[str, Any]]]:
    """strategy -> cycle -> {labeled, values (one per trial)}; strategies in order of first appearance."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        if row.get(metric) is None:
            continue
        cell = out.setdefault(row["strategy"], {}).setdefault(row["cycle"], {"labeled": row["labeled"], "values": {}})
        cell["values"][row["trial"]] = row[metric]
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def aubc(labeled: list[int], accuracy: list[float], pool_size: int) -> float:
    """Area under the budget curve: trapezoid of accuracy over the labeled fraction, divided by the
    fraction's range so that it reads as an average accuracy (1.0 is perfect)."""
    if len(labeled) == 1:
        return float(accuracy[0])
    x = np.asarray(labeled, dtype=float) / pool_size
    y = np.asarray(accuracy, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def aubc_per_trial(per_cycle: dict[int, dict[str, Any]], pool_size: int) -> list[float]:
    """AUBC of each trial that finished every cycle."""
    cycles = sorted(per_cycle)
    trials = set.intersection(*(set(per_cycle[c]["values"]) for c in cycles)) if cycles else set()
    labeled = [per_cycle[c]["labeled"] for c in cycles]
    return [aubc(labeled, [per_cycle[c]["values"][t] for c in cycles], pool_size) for t in sorted(trials)]


def table(rows: list[dict[str, Any]], pool_size: int, metric: str = "accuracy", percent: bool = True) -> str:
    """A Markdown table (reads in a terminal, pastes into a README): the metric per cycle as
    mean +- std over trials, one column per strategy, and the AUBC as the last row."""
    data = curves(rows, metric)
    if not data:
        return ""
    strategies = list(data)
    cycles = sorted({c for per in data.values() for c in per})
    scale = 100.0 if percent else 1.0
    header = ["cycle", "labeled"] + strategies
    body = []
    for c in cycles:
        labeled = next(per[c]["labeled"] for per in data.values() if c in per)
        line = [str(c), str(labeled)]
        for s in strategies:
            cell = data[s].get(c)
            if cell is None:
                line.append("")
                continue
            m, sd = mean_std(list(cell["values"].values()))
            line.append(f"{m * scale:.2f} ± {sd * scale:.2f}")
        body.append(line)
    if metric == "accuracy":
        line = ["AUBC", ""]
        for s in strategies:
            values = aubc_per_trial(data[s], pool_size)
            m, sd = mean_std(values) if values else (math.nan, math.nan)
            line.append(f"{m * scale:.2f} ± {sd * scale:.2f}" if values else "")
        body.append(line)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(v.rjust(w) for v, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    trials = max(len(cell["values"]) for per in data.values() for cell in per.values())
    title = f"{metric.replace('_', ' ')}{' (%)' if percent else ''}, mean ± std over {trials} trial{'s' if trials != 1 else ''}"
    return "\n".join([title, "", fmt(header), sep, *map(fmt, body)])


def plot_curves(rows: list[dict[str, Any]], path: str | Path, title: str = "", metric: str = "accuracy") -> None:
    """Learning curves (mean over trials) with a +-1 std band, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(rows, metric)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=150)
    for i, (strategy, per) in enumerate(data.items()):
        cycles = sorted(per)
        x = np.array([per[c]["labeled"] for c in cycles])
        stats = np.array([mean_std(list(per[c]["values"].values())) for c in cycles]) * 100
        color = plt.cm.tab10(i % 10)
        ax.plot(x, stats[:, 0], marker="o", ms=3.5, lw=1.8, color=color, label=strategy)
        ax.fill_between(x, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=color, alpha=0.15, lw=0)
    ax.set_xlabel("labeled items")
    ax.set_ylabel(f"test {metric.replace('_', ' ')} (%)")
    ax.set_title(title or f"Learning curves (mean ± std over trials)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str | Path) -> None:
    """Save through a temporary file so a plot on disk is always whole."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def loss_predictions(store: Store) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """strategy -> (real, predicted) test losses at the last cycle of its first trial that has them."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for run in store.runs():
        if run["strategy"] in out:
            continue
        cycles = store.finished_cycles(run["id"])
        if not cycles:
            continue
        real = store.array(run["id"], cycles[-1], "test_loss")
        predicted = store.array(run["id"], cycles[-1], "predicted_loss")
        if real is not None and predicted is not None:
            out[run["strategy"]] = (np.asarray(real), np.asarray(predicted))
    return out


def plot_loss_prediction(pairs: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> None:
    """Predicted vs real test loss, one panel per strategy, with Pearson r, Spearman rho and
    the ranking accuracy (the module only has to order losses, not match their scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    from .metrics import ranking_accuracy

    n = len(pairs)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), dpi=150, squeeze=False)
    for ax, (strategy, (real, predicted)) in zip(axes[0], pairs.items()):
        ax.scatter(real, predicted, s=6, alpha=0.35, lw=0)
        ax.set_xscale("symlog", linthresh=0.01)
        r = stats.pearsonr(real, predicted)[0] if real.std() > 0 and predicted.std() > 0 else float("nan")
        rho = stats.spearmanr(real, predicted)[0] if real.std() > 0 and predicted.std() > 0 else float("nan")
        ax.set_title(f"{strategy}: r = {r:.2f}, rho = {rho:.2f}\nranking accuracy {ranking_accuracy(predicted, real):.3f}", fontsize=10)
        ax.set_xlabel("real test loss (symlog)")
        ax.set_ylabel("predicted loss")
        ax.grid(alpha=0.3)
    fig.suptitle("Loss prediction at the last cycle (test set, first trial)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def report(folder: str | Path) -> str:
    """Rebuild ``results.csv`` and the plots of ``folder`` from its store; return the tables as text."""
    folder = Path(folder)
    store = Store.in_folder(folder)
    try:
        rows = store.results()
        meta = store.get_meta("dataset", {})
        pool_size = int(meta.get("train", 1))
        write_results_csv(store, folder / "results.csv")
        title = f"{meta.get('spec', '')}: test accuracy vs labels (mean ± std over trials)"
        plot_curves(rows, folder / "curves.png", title=title)
        parts = [table(rows, pool_size)]
        if any(r.get("ranking_accuracy") is not None for r in rows):
            parts.append(table(rows, pool_size, metric="ranking_accuracy", percent=False))
        pairs = loss_predictions(store)
        if pairs:
            plot_loss_prediction(pairs, folder / "loss_prediction.png")
        parts.append(timing_table(rows))
        return "\n\n".join(p for p in parts if p)
    finally:
        store.close()


def timing_table(rows: list[dict[str, Any]]) -> str:
    """Mean train and query seconds per cycle, per strategy."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        per[row["strategy"]]["train"].append(row["train_seconds"])
        per[row["strategy"]]["query"].append(row["query_seconds"])
    if not per:
        return ""
    lines = ["mean seconds per cycle", "", "| strategy | train | query |", "|---|---:|---:|"]
    for strategy, t in per.items():
        lines.append(f"| {strategy} | {np.mean(t['train']):.2f} | {np.mean(t['query']):.3f} |")
    return "\n".join(lines)
