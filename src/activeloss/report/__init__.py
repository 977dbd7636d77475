"""Reports: tables and figures computed from one or several stores alone, so that
``activeloss report DIR [DIR...]`` can redo them at any time.

``tables`` holds the statistics and the Markdown / LaTeX / CSV renderings, ``figures`` the
PNG plots, ``collect`` the reading and combining of folders (its docstring gives the rules).
Everything follows the task the store recorded: its primary metric is the default, and each
metric's direction (accuracy: higher is better, in %; RMSE: lower is better, in the target's
units) decides the best of a row, the reading of the AUBC and what reaching a target means.
A run's own ``results.csv`` is :meth:`activeloss.store.Store.write_results_csv`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store import (
    RESULT_FIRST_COLUMNS,
    RESULT_INTERNAL,
    RESULT_LAST_COLUMNS,
    write_rows_csv,
)
from .collect import Collection, open_collection
from .figures import (
    palette,
    plot_confidence,
    plot_curves,
    plot_loss_prediction,
    plot_per_class,
    plot_time,
    plot_tsne,
)
from .tables import (
    MetricInfo,
    Table,
    _write_text,
    aubc,
    aubc_per_trial,
    curves,
    labels_to_reach,
    mean_std,
    metric_info,
    metric_table,
    summary_csv_rows,
    table,
    timing_table,
    to_latex,
    to_markdown,
    write_summary_csv,
)

__all__ = [
    "MetricInfo",
    "Report",
    "aubc",
    "aubc_per_trial",
    "build_report",
    "curves",
    "entropies",
    "labels_to_reach",
    "loss_predictions",
    "mean_std",
    "metric_info",
    "plot_curves",
    "plot_loss_prediction",
    "plot_tsne",
    "report",
    "strategy_notes",
    "table",
    "timing_table",
    "tsne_at",
]

#: keys of a collection's rows that are not metrics
_NOT_METRICS = frozenset(RESULT_FIRST_COLUMNS) | frozenset(RESULT_LAST_COLUMNS) | frozenset(RESULT_INTERNAL)


@dataclass
class Report:
    """The text of a report and the files it wrote."""

    text: str
    files: list[Path] = field(default_factory=list)


def report(folders: str | Path | Sequence[str | Path], out: str | Path | None = None, **options: Any) -> str:
    """Rebuild ``results.csv`` and the figures from the store(s); return the tables as text.

    With one folder everything is written into it (or ``out``); with several, only when ``out``
    is given.  ``options`` are those of :func:`build_report`.
    """
    return build_report(folders, out, **options).text


def build_report(
    folders: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    metric: str | None = None,
    reach: Sequence[float] = (),
    cycle: int | None = None,
    markdown: str | Path | None = None,
    csv: str | Path | None = None,
    latex: str | Path | None = None,
) -> Report:
    """The report of ``folders`` (pooled, see :mod:`.collect`), written where asked.

    ``metric`` defaults to the task's primary metric (accuracy, or RMSE for regression); ``reach``
    targets are in its stored units (a fraction for accuracy, target units for RMSE).
    """
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    reach = list(reach)
    with open_collection(folders) as col:
        info = col.metric(metric or col.primary_metric)
        _check_reach(reach, info)
        rows = col.rows
        if out is None and len(folders) == 1:
            out = folders[0]
        if not rows:
            return Report(f"{', '.join(map(str, folders))}: no finished cycle yet")
        present = sorted({k for r in rows for k, v in r.items() if v is not None} - _NOT_METRICS)
        if info.name not in present:
            raise ConfigError(f"--metric {info.name}: the runs recorded {', '.join(present) or 'no metric'}")
        chosen = _choose_cycle(rows, cycle)
        tables = _tables(col, info, present, reach)
        header = _sources(col) if len(folders) > 1 else ""
        notes = strategy_notes(col.strategies)
        text = "\n\n".join(([header] if header else []) + [to_markdown(t) for t in tables]
                           + (["\n".join(notes)] if notes else []))
        result = Report(text)
        if out is not None:
            result.files = _write_outputs(col, Path(out), info, reach, chosen, combined=len(folders) > 1)
        if csv:
            write_summary_csv(summary_csv_rows(rows, col.pool_size, present, reach, info), csv)
            result.files.append(Path(csv))
        if latex:
            head = f"% activeloss report of {', '.join(map(str, folders))}; needs \\usepackage{{booktabs}}\n\n"
            _write_text(latex, head + "\n\n".join(to_latex(t) for t in tables) + "\n")
            result.files.append(Path(latex))
        if markdown:
            _write_text(markdown, _markdown_file(col, tables, [f for f in result.files if f.suffix == ".png"],
                                                 Path(markdown)))
            result.files.append(Path(markdown))
        return result


def _check_reach(reach: Sequence[float], info: MetricInfo) -> None:
    """A percent metric's target is a fraction (0.9 for 90%: a 90 would never be reached); any other
    metric's is a finite number in its units (``--reach 5.5`` for an RMSE)."""
    for target in reach:
        if info.percent and not 0 < target <= 1:
            raise ConfigError(f"--reach {target:g}: give the target {info.label} as a fraction in (0, 1], e.g. 0.9")
        if not math.isfinite(target):
            raise ConfigError(f"--reach {target:g}: give the target {info.label} as a finite number")


def _tables(col: Collection, info: MetricInfo, present: list[str], reach: Sequence[float]) -> list[Table]:
    """The chosen metric (with ``reach``); when it is one of the task's, the task's other recorded metrics
    (an RMSE table is followed by the MAE); the ranking accuracy of a loss-prediction module; the time."""
    rows, pool = col.rows, col.pool_size
    task_metrics = [str(m["name"]) for m in col.task.get("metrics", [])]
    others = [m for m in task_metrics if m != info.name and m in present] if info.name in task_metrics else []
    tables = [metric_table(rows, pool, info, reach=reach)]
    tables += [metric_table(rows, pool, col.metric(name)) for name in others]
    if info.name != "ranking_accuracy" and "ranking_accuracy" in present:
        tables.append(metric_table(rows, pool, col.metric("ranking_accuracy"), with_aubc=False))
    tables.append(timing_table(rows))
    return [t for t in tables if t is not None]


def _sources(col: Collection) -> str:
    parts = []
    for folder in col.folders:
        runs = [r for r in col.runs if r.folder == folder]
        names = ", ".join(dict.fromkeys(r.strategy for r in runs))
        seeds = ", ".join(map(str, sorted({r.seed for r in runs})))
        parts.append(f"{folder} ({names or 'no runs'}; seed {seeds or '-'})")
    return "combined: " + "; ".join(parts)


def strategy_notes(strategies: Sequence[str]) -> list[str]:
    """What must be said beside the results of some strategies (DNAL: a reconstruction), one
    line each."""
    from ..strategies import STRATEGIES

    return [f"Note: {name} is {STRATEGIES.get(name).note}." for name in strategies
            if name in STRATEGIES and STRATEGIES.get(name).note]


def _choose_cycle(rows: list[dict[str, Any]], requested: int | None) -> int:
    """The cycle of the per-class, confidence and t-SNE figures: ``requested``, or the last cycle
    every strategy reached."""
    per: dict[str, set[int]] = {}
    for row in rows:
        per.setdefault(row["strategy"], set()).add(row["cycle"])
    every = sorted(set().union(*per.values()))
    if requested is None:
        return min(max(c) for c in per.values())
    if requested not in every:
        raise ConfigError(f"--cycle {requested}: the runs have cycles {every[0]} to {every[-1]}")
    return requested


def _write_outputs(col: Collection, out: Path, info: MetricInfo, reach: Sequence[float], cycle: int,
                   combined: bool) -> list[Path]:
    """results.csv (the task's primary metric first) and the figures whose data the stores hold."""
    out.mkdir(parents=True, exist_ok=True)
    rows = col.rows
    files = [out / "results.csv"]
    write_rows_csv(rows, files[0], extra=("seed", "folder") if combined else (), primary=(col.primary_metric,))
    spec = dataset_title(col.dataset)
    colors = palette(col.strategies)
    plot_curves(rows, out / "curves.png", metric=info, reach=reach, colors=colors,
                title=f"{spec}: test {info.label} vs labels (mean ± std over trials)".lstrip(": "))
    plot_time(rows, out / "time.png", colors=colors,
              title=f"{spec}: train and query time per cycle (mean ± std over trials)".lstrip(": "))
    files += [out / "curves.png", out / "time.png"]
    pairs, entropy = loss_predictions(col), entropies(col)
    if pairs or entropy:
        plot_loss_prediction(pairs, out / "loss_prediction.png", colors, entropy=entropy)
        files.append(out / "loss_prediction.png")
    labels = {r["strategy"]: r["labeled"] for r in rows if r["cycle"] == cycle}
    maps = tsne_at(col, cycle, labels)
    if maps:
        plot_tsne(maps, out / "tsne.png", cycle, spec)
        files.append(out / "tsne.png")
    hists = confidence_at(col, cycle, labels)
    if hists:
        plot_confidence(hists, out / "confidence.png", cycle)
        files.append(out / "confidence.png")
    per_class = per_class_at(col, cycle)
    if per_class:
        plot_per_class(per_class, col.class_names, out / "per_class.png", cycle, labels, colors)
        files.append(out / "per_class.png")
    return files


def loss_predictions(col: Collection) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """strategy -> (real, predicted) test losses at the last cycle of its first trial that has them."""
    return _last_cycle_pairs(col, "predicted_loss")


def entropies(col: Collection) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """strategy -> (real loss, softmax entropy) of each test item at the last cycle of its first
    trial that has them (a task with class probabilities: never regression)."""
    return _last_cycle_pairs(col, "test_entropy")


def _last_cycle_pairs(col: Collection, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """strategy -> (``test_loss``, array ``name``) at the last cycle of its first trial that has both."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for run in sorted(col.runs, key=lambda r: (col.strategies.index(r.strategy), r.seed, r.trial)):
        if run.strategy in out:
            continue
        cycles = col.finished_cycles(run)
        if not cycles:
            continue
        real = col.array(run, cycles[-1], "test_loss")
        other = col.array(run, cycles[-1], name)
        if real is not None and other is not None:
            out[run.strategy] = (np.asarray(real, dtype=float), np.asarray(other, dtype=float))
    return out


def tsne_at(col: Collection, cycle: int, labels: dict[str, int]) -> dict[str, dict[str, Any]]:
    """strategy -> the t-SNE map at ``cycle`` of its first trial that has one (``x``, ``y``,
    ``group``, ``total``, ``labels``)."""
    out: dict[str, dict[str, Any]] = {}
    for run in sorted(col.runs, key=lambda r: (col.strategies.index(r.strategy), r.seed, r.trial)):
        if run.strategy in out:
            continue
        x, y, group = (col.array(run, cycle, f"tsne_{k}") for k in ("x", "y", "group"))
        if x is not None and y is not None and group is not None:
            out[run.strategy] = {"x": x, "y": y, "group": group, "total": col.array(run, cycle, "tsne_total"),
                                 "labels": labels.get(run.strategy, "?")}
    return out


def confidence_at(col: Collection, cycle: int, labels: dict[str, int]) -> dict[str, dict[str, Any]]:
    """strategy -> confidence histograms at ``cycle``, counts summed over the trials that stored them."""
    out: dict[str, dict[str, Any]] = {}
    for run in col.runs:
        lab = col.array(run, cycle, "confidence_labeled")
        unl = col.array(run, cycle, "confidence_unlabeled")
        if lab is None or unl is None:
            continue
        edges = col.array(run, cycle, "confidence_edges") or list(np.linspace(0, 1, len(lab) + 1))  # older stores
        h = out.setdefault(run.strategy, {"labeled": np.zeros(len(lab)), "unlabeled": np.zeros(len(unl)),
                                          "trials": 0, "labels": labels.get(run.strategy, "?"), "edges": edges})
        h["labeled"] = h["labeled"] + np.asarray(lab, dtype=float)
        h["unlabeled"] = h["unlabeled"] + np.asarray(unl, dtype=float)
        h["trials"] += 1
    return {s: out[s] for s in col.strategies if s in out}


def per_class_at(col: Collection, cycle: int) -> dict[str, np.ndarray]:
    """strategy -> (trials x classes) test accuracy at ``cycle`` (NaN for a class without test items)."""
    out: dict[str, list[list[float]]] = {}
    for run in col.runs:
        values = col.array(run, cycle, "per_class_accuracy")
        if values is not None:
            out.setdefault(run.strategy, []).append([np.nan if v is None else float(v) for v in values])
    return {s: np.asarray(out[s], dtype=float) for s in col.strategies if s in out}


def _markdown_file(col: Collection, tables: list[Table], figures: list[Path], path: Path) -> str:
    lines = ["# activeloss report", "", "Runs: " + ", ".join(f"`{f}`" for f in col.folders)
             + (f" ({col.dataset['spec']})" if col.dataset.get("spec") else "") + ".", ""]
    if len(col.folders) > 1:
        lines += [_sources(col), ""]
    for t in tables:
        lines += [to_markdown(t, heading="## "), ""]
    notes = strategy_notes(col.strategies)
    if notes:
        lines += [*notes, ""]
    for fig in figures:
        rel = os.path.relpath(fig.resolve(), path.resolve().parent)
        lines += [f"![{fig.stem}]({rel})", ""]
    return "\n".join(lines)


def dataset_title(meta: dict[str, Any]) -> str:
    """The dataset's name for a figure's title, never a full path: ``digits``, ``mnist``, ``concrete``
    (``uci:.../concrete``), ``cifar10-jpg`` (``folder:/data/cifar10-jpg``), ``train`` (``csv:train.csv``)."""
    kind, _, path = str(meta.get("spec", "")).partition(":")
    return Path(path.strip()).stem if path.strip() else kind.strip()
