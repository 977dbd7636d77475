"""Statistics over trials and the summary tables (terminal/Markdown, LaTeX, CSV).

A trial is identified by ``(seed, trial)`` so that trials pooled from folders run with
different seeds stay apart.  Every statistic is a mean and a sample standard deviation
(``ddof=1``; 0 for a single trial) over trials.  A metric knows its direction
(:class:`MetricInfo`): the best mean of a row, the AUBC's reading and "labels to reach a
target" follow it, so an RMSE table bolds the lowest error.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..store import DEFAULT_TASK


# -- metrics ------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricInfo:
    """How to read and show a metric: its direction, and whether it is a fraction shown in %."""

    name: str
    higher_is_better: bool = True
    percent: bool = False

    @property
    def scale(self) -> float:
        """Factor from the stored value to the shown one (accuracy 0.9 is shown as 90)."""
        return 100.0 if self.percent else 1.0

    @property
    def label(self) -> str:
        """The name as people write it: ``rmse`` -> ``RMSE``, ``ranking_accuracy`` -> ``ranking accuracy``."""
        return " ".join(w.upper() if w in _ACRONYMS else w for w in self.name.split("_"))

    @property
    def heading(self) -> str:
        """The label with its unit and direction, e.g. ``accuracy (%)`` or ``RMSE (lower is better)``."""
        parts = (["%"] if self.percent else []) + ([] if self.higher_is_better else ["lower is better"])
        return self.label + (f" ({', '.join(parts)})" if parts else "")

    def reached(self, value: float, target: float) -> bool:
        """Whether ``value`` is at the target or better (a hair of tolerance for float sums)."""
        return value >= target - 1e-12 if self.higher_is_better else value <= target + 1e-12

    def target_text(self, target: float) -> str:
        """A target as shown: ``90%`` for a percent metric, ``5.5`` otherwise."""
        return f"{target * 100:g}%" if self.percent else f"{target:g}"


_ACRONYMS = frozenset({"rmse", "mae", "mse", "nll", "auc", "iou", "ece", "r2"})
#: metrics a learner records besides the task's, with their reading
KNOWN_METRICS = {"ranking_accuracy": MetricInfo("ranking_accuracy", higher_is_better=True, percent=False)}


def metric_info(metric: str | MetricInfo, task: dict[str, Any] | None = None) -> MetricInfo:
    """The reading of ``metric``: from the task's description when it lists it, else a known
    metric, else higher is better and a percentage only for a name ending in ``accuracy``."""
    if isinstance(metric, MetricInfo):
        return metric
    described: dict[str, Any] = task or DEFAULT_TASK
    for entry in described.get("metrics", []):
        if entry.get("name") == metric:
            return MetricInfo(metric, bool(entry.get("higher_is_better", True)), bool(entry.get("percent", False)))
    return KNOWN_METRICS.get(metric) or MetricInfo(metric, True, metric.endswith("accuracy"))


# -- statistics ----------------------------------------------------------------
def trial_key(row: dict[str, Any]) -> tuple[int, int]:
    return (int(row.get("seed", 0)), int(row["trial"]))


def curves(rows: list[dict[str, Any]], metric: str = "accuracy") -> dict[str, dict[int, dict[str, Any]]]:
    """strategy -> cycle -> {labeled, values: {trial key: value}}; strategies in order of first appearance."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        if row.get(metric) is None:
            continue
        cell = out.setdefault(row["strategy"], {}).setdefault(row["cycle"], {"labeled": row["labeled"], "values": {}})
        cell["values"][trial_key(row)] = row[metric]
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(list(values), dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def aubc(labeled: list[int], values: list[float], pool_size: int) -> float:
    """Area under the budget curve: trapezoid of the metric over the labeled fraction, divided by the
    fraction's range so that it reads as an average of the metric over the budget (an average
    accuracy, 1.0 is perfect; an average RMSE, lower is better)."""
    if len(labeled) == 1:
        return float(values[0])
    x = np.asarray(labeled, dtype=float) / pool_size
    y = np.asarray(values, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def aubc_per_trial(per_cycle: dict[int, dict[str, Any]], pool_size: int) -> list[float]:
    """AUBC of each trial that finished every cycle of the strategy, in the metric's units and
    direction (compare them with :func:`_best` and the metric's ``higher_is_better``)."""
    cycles = sorted(per_cycle)
    trials = set.intersection(*(set(per_cycle[c]["values"]) for c in cycles)) if cycles else set()
    labeled = [per_cycle[c]["labeled"] for c in cycles]
    return [aubc(labeled, [per_cycle[c]["values"][t] for c in cycles], pool_size) for t in sorted(trials)]


def labels_to_reach(per_cycle: dict[int, dict[str, Any]], target: float,
                    higher_is_better: bool = True) -> tuple[list[int], int]:
    """Labels at the first cycle where each trial's metric is at ``target`` or better (>= for a
    higher-is-better metric, <= for an error): (labels of the trials that reached it, number of trials)."""
    info = MetricInfo("", higher_is_better)
    trials = sorted({t for cell in per_cycle.values() for t in cell["values"]})
    reached = []
    for t in trials:
        for c in sorted(per_cycle):
            value = per_cycle[c]["values"].get(t)
            if value is not None and info.reached(value, target):
                reached.append(int(per_cycle[c]["labeled"]))
                break
    return reached, len(trials)


# -- tables ----------------------------------------------------------------------
@dataclass
class Table:
    """A table rendered to Markdown, LaTeX or CSV; ``summary`` rows follow a rule.

    ``best`` holds the (row, column) cells to set in bold in LaTeX (the best mean of a row).
    """

    title: str
    header: list[str]
    body: list[list[str]]
    summary: list[list[str]] = field(default_factory=list)
    best: set[tuple[int, int]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    align: str = ""


def _cell(values: Sequence[float], scale: float, digits: int = 2) -> str:
    m, sd = mean_std(values)
    return f"{m * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def _seconds(values: Sequence[float]) -> str:
    """Seconds with about three significant digits of the mean (queries can take 0.0004 s or 400 s)."""
    m, _ = mean_std(values)
    digits = 2 if m <= 0 else min(4, max(1, 2 - math.floor(math.log10(m))))
    return _cell(values, 1.0, digits)


def _best(means: list[float | None], higher: bool) -> set[int]:
    """Indices of the best mean (ties included); none when fewer than two can be compared."""
    valid = [m for m in means if m is not None and not math.isnan(m)]
    if len(valid) < 2:
        return set()
    target = max(valid) if higher else min(valid)
    return {i for i, m in enumerate(means) if m is not None and abs(m - target) < 1e-12}


def _digits(data: dict[str, dict[int, dict[str, Any]]], info: MetricInfo) -> int:
    """Decimals of a table's cells: 2, or more for a real-valued metric whose values are small
    (an RMSE of 0.004 must not read 0.00)."""
    if info.percent:
        return 2
    means = [abs(mean_std(cell["values"].values())[0]) for per in data.values() for cell in per.values()]
    smallest = min((m for m in means if 0 < m < math.inf), default=1.0)
    return int(min(6, max(2, 1 - math.floor(math.log10(smallest)))))


def metric_table(rows: list[dict[str, Any]], pool_size: int, metric: str | MetricInfo = "accuracy",
                 percent: bool | None = None, reach: Sequence[float] = (), with_aubc: bool = True) -> Table | None:
    """The metric per cycle as mean ± std over trials, one column per strategy; then the AUBC and the
    labels needed to reach each ``reach`` target.  The best mean of a row follows the metric's direction;
    ``percent`` overrides its display."""
    info = metric_info(metric)
    info = info if percent is None else replace(info, percent=percent)
    data = curves(rows, info.name)
    if not data:
        return None
    strategies = list(data)
    cycles = sorted({c for per in data.values() for c in per})
    digits = _digits(data, info)
    table = Table("", ["cycle", "labeled"] + strategies, [], align="lr" + "r" * len(strategies))
    for r, c in enumerate(cycles):
        labeled = sorted({per[c]["labeled"] for per in data.values() if c in per})
        line = [str(c), "/".join(map(str, labeled))]
        means: list[float | None] = []
        for s in strategies:
            cell = data[s].get(c)
            line.append(_cell(list(cell["values"].values()), info.scale, digits) if cell else "")
            means.append(mean_std(cell["values"].values())[0] if cell else None)
        table.body.append(line)
        table.best |= {(r, 2 + i) for i in _best(means, info.higher_is_better)}
    if with_aubc:
        line, means = ["AUBC", ""], []
        for s in strategies:
            values = aubc_per_trial(data[s], pool_size)
            line.append(_cell(values, info.scale, digits) if values else "")
            means.append(mean_std(values)[0] if values else None)
        table.summary.append(line)
        table.best |= {(len(cycles), 2 + i) for i in _best(means, info.higher_is_better)}
    for target in reach:
        line, means = [f"labels to {info.target_text(target)}", ""], []
        for s in strategies:
            reached, n = labels_to_reach(data[s], target, info.higher_is_better)
            if not reached:
                line.append("not reached")
                means.append(None)
                continue
            m, sd = mean_std(reached)
            line.append(f"{m:.0f} ± {sd:.0f}" + ("" if len(reached) == n else f" ({len(reached)}/{n})"))
            means.append(m if len(reached) == n else None)
        table.best |= {(len(cycles) + len(table.summary), 2 + i) for i in _best(means, higher=False)}
        table.summary.append(line)
    if reach:
        table.notes.append("labels to a target: mean ± std over the trials that reached it at some cycle; "
                           "(k/n) when only k of n trials did (the mean is then optimistic), "
                           "'not reached' when none did")
    table.title = f"{info.heading}, mean ± std over {_trials_text(data)}"
    return table


def _trials_text(data: dict[str, dict[int, dict[str, Any]]]) -> str:
    """``3 trials``, or the count per strategy when they differ (e.g. folders pooled unevenly)."""
    counts = {s: len({t for cell in per.values() for t in cell["values"]}) for s, per in data.items()}
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return f"{n} trial{'s' if n != 1 else ''}"
    return "trials (" + ", ".join(f"{s}: {n}" for s, n in counts.items()) + ")"


#: the phases of a trial's wall time, as the store names their seconds
PHASES = (("train", "train_seconds"), ("evaluation", "eval_seconds"), ("diagnostics", "diagnostics_seconds"),
          ("query", "query_seconds"))


def timing(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """strategy -> lists with one value per trial: ``train`` and ``query`` (mean seconds per cycle,
    the query over the cycles that had one), the trial's total seconds of each phase (``train_total``,
    ``evaluation_total``, ``diagnostics_total``, ``query_total``), its ``wall`` time (every step end
    to end) and ``other`` (wall minus the phases: checkpoints and the store).  A store written before
    the evaluation and wall times were kept has neither: its wall is train + query."""
    per: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = {}
    for row in rows:
        per.setdefault(row["strategy"], {}).setdefault(trial_key(row), []).append(row)
    out: dict[str, dict[str, list[float]]] = {}
    for strategy, trials in per.items():
        stats: dict[str, list[float]] = {"train": [], "query": [], "wall": [], "other": []}
        for cycles in trials.values():
            stats["train"].append(float(np.mean([r["train_seconds"] for r in cycles])))
            queried = [r["query_seconds"] for r in cycles if r.get("queried", r["query_seconds"] > 0)]
            if queried:
                stats["query"].append(float(np.mean(queried)))
            totals = {name: float(sum(r.get(key) or 0.0 for r in cycles)) for name, key in PHASES}
            for name, value in totals.items():
                stats.setdefault(f"{name}_total", []).append(value)
            recorded = all(r.get("wall_seconds") for r in cycles)
            wall = float(sum(r["wall_seconds"] for r in cycles)) if recorded else totals["train"] + totals["query"]
            stats["wall"].append(wall)
            stats["other"].append(max(0.0, wall - sum(totals.values())) if recorded else float("nan"))
        out[strategy] = stats
    return out


def timing_table(rows: list[dict[str, Any]]) -> Table | None:
    """Seconds per trial: each phase and the wall time they add up to, mean ± std over trials."""
    per = timing(rows)
    if not per:
        return None
    detailed = any(not math.isnan(v) for t in per.values() for v in t["other"])
    names = [name for name, _ in PHASES] if detailed else ["train", "query"]
    header = (["strategy", *[f"{n} s" for n in names]] + (["other s"] if detailed else [])
              + ["wall s / trial" if detailed else "train + query s / trial"])
    title = ("seconds per trial, mean ± std over trials: the phases add up to the wall time (other: "
             "checkpoints and the store)" if detailed else
             "seconds per trial (train and query; this store predates the other timings), mean ± std over trials")
    table = Table(title, header, [], align="l" + "r" * (len(header) - 1))
    for strategy, t in per.items():
        cells = [_seconds(t[f"{n}_total"]) for n in names]
        if detailed:
            cells.append(_seconds(t["other"]) if not any(math.isnan(v) for v in t["other"]) else "")
        table.body.append([strategy, *cells, _seconds(t["wall"])])
    return table


# -- rendering ---------------------------------------------------------------------
def to_markdown(table: Table, heading: str = "") -> str:
    """Aligned Markdown: reads in a terminal, pastes into an issue or a README."""
    lines = table.body + table.summary
    widths = [max(len(r[i]) for r in [table.header] + lines) for i in range(len(table.header))]
    align = table.align or "r" * len(table.header)

    def fmt(r: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(r, widths, align)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + (":" if a == "r" else "-") for w, a in zip(widths, align)) + "|"
    out = [heading + table.title, "", fmt(table.header), sep, *map(fmt, lines)]
    out += [""] + [f"_{n}_" if heading else n for n in table.notes] if table.notes else []
    return "\n".join(out)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_cell(text: str, bold: bool) -> str:
    cell = latex_escape(text).replace("±", r"$\pm$")
    return rf"\textbf{{{cell}}}" if bold and cell else cell


def to_latex(table: Table) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the best mean of a row in bold."""
    align = table.align or "r" * len(table.header)
    out = [f"% {latex_escape(table.title)}".replace("±", "+-"), rf"\begin{{tabular}}{{{align}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for r, row in enumerate(table.body + table.summary):
        if r == len(table.body) and table.summary:
            out.append(r"\midrule")
        out.append(" & ".join(_latex_cell(v, (r, i) in table.best) for i, v in enumerate(row)) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {latex_escape(n)}".replace("±", "+-") for n in table.notes]
    return "\n".join(out)


def summary_csv_rows(rows: list[dict[str, Any]], pool_size: int, metrics: Sequence[str],
                     reach: Sequence[float], reach_metric: str | MetricInfo) -> list[dict[str, Any]]:
    """The long-format summary: one row per (kind, strategy, metric, cycle or target).

    kind ``cycle`` (mean, std, n of the metric at a cycle), ``aubc`` (per metric), ``reach`` (labels to
    ``target`` of ``reach_metric``, in its direction: mean, std over the n trials that reached it, of
    ``trials``), ``train_seconds`` / ``query_seconds`` (per cycle, mean and std over trials).  Metrics
    are in their stored units (accuracy as a fraction, RMSE in the target's units).
    """
    reach_info = metric_info(reach_metric)
    out: list[dict[str, Any]] = []
    blank = {"cycle": "", "labeled": "", "target": "", "trials": ""}
    for metric in metrics:
        data = curves(rows, metric)
        for strategy, per in data.items():
            trials = len({t for cell in per.values() for t in cell["values"]})
            for c in sorted(per):
                m, sd = mean_std(per[c]["values"].values())
                out.append({**blank, "kind": "cycle", "strategy": strategy, "metric": metric, "cycle": c,
                            "labeled": per[c]["labeled"], "mean": m, "std": sd, "n": len(per[c]["values"]),
                            "trials": trials})
            values = aubc_per_trial(per, pool_size)
            if values:
                m, sd = mean_std(values)
                out.append({**blank, "kind": "aubc", "strategy": strategy, "metric": metric, "mean": m, "std": sd,
                            "n": len(values), "trials": trials})
            if metric == reach_info.name:
                out += _reach_rows(per, strategy, reach_info, reach, blank)
    for strategy, t in timing(rows).items():
        for kind, values in (("train_seconds", t["train"]), ("query_seconds", t["query"])):
            if values:
                m, sd = mean_std(values)
                out.append({**blank, "kind": kind, "strategy": strategy, "metric": "", "mean": m, "std": sd,
                            "n": len(values), "trials": len(t["train"])})
    return out


def _reach_rows(per: dict[int, dict[str, Any]], strategy: str, info: MetricInfo, reach: Sequence[float],
                blank: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's ``reach`` rows of one strategy (mean and std empty when no trial reached it)."""
    out = []
    for target in reach:
        reached, n = labels_to_reach(per, target, info.higher_is_better)
        m, sd = mean_std(reached) if reached else (None, None)
        out.append({**blank, "kind": "reach", "strategy": strategy, "metric": info.name, "target": target,
                    "mean": m, "std": sd, "n": len(reached), "trials": n})
    return out


SUMMARY_COLUMNS = ["kind", "strategy", "metric", "cycle", "labeled", "target", "mean", "std", "n", "trials"]


def write_summary_csv(summary: list[dict[str, Any]], path: str | Path) -> None:
    _write_text(path, _csv_text(summary))


def _csv_text(summary: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summary:
        writer.writerow({k: _summary_value(row.get(k)) for k in SUMMARY_COLUMNS})
    return buf.getvalue()


def _summary_value(value: Any) -> Any:
    """Floats with 12 significant digits (the summary is for further computation), None as empty."""
    if isinstance(value, float):
        return f"{value:.12g}"
    return "" if value is None else value


def _write_text(path: str | Path, text: str) -> None:
    """Through a temporary file and a rename, so a file on disk is always whole."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def table(rows: list[dict[str, Any]], pool_size: int, metric: str | MetricInfo = "accuracy",
          percent: bool | None = None) -> str:
    """The metric table as Markdown text (mean ± std per cycle, and the AUBC but for the ranking accuracy,
    which is a property of the module, not of the budget)."""
    info = metric_info(metric)
    t = metric_table(rows, pool_size, info, percent, with_aubc=info.name != "ranking_accuracy")
    return to_markdown(t) if t else ""
