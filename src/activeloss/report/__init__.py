"""Reports: tables and figures computed from one or several stores alone, so that
``activeloss report DIR [DIR...]`` can redo them at any time.

``tables`` holds the statistics and the Markdown / LaTeX / CSV renderings, ``figures`` the
PNG plots, ``collect`` the reading and combining of folders (its docstring gives the rules).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .collect import Collection, open_collection
from .figures import palette, plot_confidence, plot_curves, plot_loss_prediction, plot_per_class, plot_time
from .tables import (
    Table, aubc, aubc_per_trial, curves, labels_to_reach, mean_std, metric_table, summary_csv_rows, table,
    timing_table, to_latex, to_markdown, write_results_csv, write_rows_csv, write_summary_csv, _write_text,
)

__all__ = [
    "report", "build_report", "Report", "write_results_csv", "curves", "mean_std", "aubc", "aubc_per_trial",
    "labels_to_reach", "table", "timing_table", "plot_curves", "plot_loss_prediction", "loss_predictions",
]


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
    metric: str = "accuracy",
    reach: Sequence[float] = (),
    cycle: int | None = None,
    markdown: str | Path | None = None,
    csv: str | Path | None = None,
    latex: str | Path | None = None,
) -> Report:
    """The report of ``folders`` (pooled, see :mod:`.collect`), written where asked."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    reach = list(reach)
    for target in reach:
        if not 0 < target <= 1:
            raise ConfigError(f"--reach {target:g}: give the target {metric.replace('_', ' ')} as a fraction "
                              f"in (0, 1], e.g. 0.9")
    with open_collection(folders) as col:
        rows = col.rows
        if out is None and len(folders) == 1:
            out = folders[0]
        if not rows:
            return Report(f"{', '.join(map(str, folders))}: no finished cycle yet")
        present = sorted({k for r in rows for k, v in r.items() if v is not None} - {
            "strategy", "trial", "cycle", "labeled", "train_seconds", "query_seconds", "seed", "folder", "queried"})
        if metric not in present:
            raise ConfigError(f"--metric {metric}: the runs recorded {', '.join(present) or 'no metric'}")
        chosen = _choose_cycle(rows, cycle)
        tables = [metric_table(rows, col.pool_size, metric, reach=reach)]
        if metric != "ranking_accuracy" and "ranking_accuracy" in present:
            tables.append(metric_table(rows, col.pool_size, "ranking_accuracy", percent=False, with_aubc=False))
        tables.append(timing_table(rows))
        tables = [t for t in tables if t is not None]
        header = _sources(col) if len(folders) > 1 else ""
        text = "\n\n".join(([header] if header else []) + [to_markdown(t) for t in tables])
        result = Report(text)
        if out is not None:
            result.files = _write_outputs(col, Path(out), metric, reach, chosen, combined=len(folders) > 1)
        if csv:
            write_summary_csv(summary_csv_rows(rows, col.pool_size, present, reach, metric), csv)
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


def _sources(col: Collection) -> str:
    parts = []
    for folder in col.folders:
        runs = [r for r in col.runs if r.folder == folder]
        names = ", ".join(dict.fromkeys(r.strategy for r in runs))
        seeds = ", ".join(map(str, sorted({r.seed for r in runs})))
        parts.append(f"{folder} ({names or 'no runs'}; seed {seeds or '-'})")
    return "combined: " + "; ".join(parts)


def _choose_cycle(rows: list[dict[str, Any]], requested: int | None) -> int:
    """The cycle of the per-class and confidence figures: ``requested``, or the last cycle every strategy reached."""
    per: dict[str, set[int]] = {}
    for row in rows:
        per.setdefault(row["strategy"], set()).add(row["cycle"])
    every = sorted(set().union(*per.values()))
    if requested is None:
        return min(max(c) for c in per.values())
    if requested not in every:
        raise ConfigError(f"--cycle {requested}: the runs have cycles {every[0]} to {every[-1]}")
    return requested


def _write_outputs(col: Collection, out: Path, metric: str, reach: Sequence[float], cycle: int,
                   combined: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = col.rows
    files = [out / "results.csv"]
    write_rows_csv(rows, files[0], extra=("seed", "folder") if combined else ())
    spec = col.dataset.get("spec", "")
    colors = palette(col.strategies)
    plot_curves(rows, out / "curves.png", metric=metric, reach=reach, colors=colors,
                title=f"{spec}: test {metric.replace('_', ' ')} vs labels (mean ± std over trials)".lstrip(": "))
    plot_time(rows, out / "time.png", colors=colors, title=f"{spec}: train and query time per cycle (mean ± std over trials)".lstrip(": "))
    files += [out / "curves.png", out / "time.png"]
    pairs = loss_predictions(col)
    if pairs:
        plot_loss_prediction(pairs, out / "loss_prediction.png", colors)
        files.append(out / "loss_prediction.png")
    labels = {r["strategy"]: r["labeled"] for r in rows if r["cycle"] == cycle}
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
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for run in sorted(col.runs, key=lambda r: (col.strategies.index(r.strategy), r.seed, r.trial)):
        if run.strategy in out:
            continue
        cycles = col.finished_cycles(run)
        if not cycles:
            continue
        real = col.array(run, cycles[-1], "test_loss")
        predicted = col.array(run, cycles[-1], "predicted_loss")
        if real is not None and predicted is not None:
            out[run.strategy] = (np.asarray(real, dtype=float), np.asarray(predicted, dtype=float))
    return out


def confidence_at(col: Collection, cycle: int, labels: dict[str, int]) -> dict[str, dict[str, Any]]:
    """strategy -> confidence histograms at ``cycle``, counts summed over the trials that stored them."""
    out: dict[str, dict[str, Any]] = {}
    for run in col.runs:
        lab = col.array(run, cycle, "confidence_labeled")
        unl = col.array(run, cycle, "confidence_unlabeled")
        if lab is None or unl is None:
            continue
        h = out.setdefault(run.strategy, {"labeled": np.zeros(len(lab)), "unlabeled": np.zeros(len(unl)),
                                          "trials": 0, "labels": labels.get(run.strategy, "?")})
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
    for fig in figures:
        rel = os.path.relpath(fig.resolve(), path.resolve().parent)
        lines += [f"![{fig.stem}]({rel})", ""]
    return "\n".join(lines)
