"""Statistics over trials and the summary tables (terminal/Markdown, LaTeX, CSV).

A trial is identified by ``(seed, trial)`` so that trials pooled from folders run with
different seeds stay apart.  Every statistic is a mean and a sample standard deviation
(``ddof=1``; 0 for a single trial) over trials.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..store import Store

FIRST_COLUMNS = ["strategy", "trial", "cycle", "labeled"]
LAST_COLUMNS = ["train_seconds", "query_seconds"]
_INTERNAL = {"seed", "folder", "queried"}


# -- per-run rows -------------------------------------------------------------
def write_results_csv(store: Store, path: str | Path) -> None:
    """One row per (strategy, trial, cycle) of one store; written to a temporary file and renamed."""
    write_rows_csv(store.results(), path)


def write_rows_csv(rows: list[dict[str, Any]], path: str | Path, extra: Sequence[str] = ()) -> None:
    """``strategy, trial, cycle, labeled, <metrics>, train_seconds, query_seconds, <extra>``, never half-written."""
    metric_names: list[str] = []
    for row in rows:
        for key in row:
            if key not in FIRST_COLUMNS + LAST_COLUMNS and key not in _INTERNAL and key not in metric_names:
                metric_names.append(key)
    metric_names.sort(key=lambda k: (k != "accuracy", k))
    columns = FIRST_COLUMNS + metric_names + LAST_COLUMNS + list(extra)
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
    os.replace(tmp, path)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


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


def aubc(labeled: list[int], accuracy: list[float], pool_size: int) -> float:
    """Area under the budget curve: trapezoid of accuracy over the labeled fraction, divided by the
    fraction's range so that it reads as an average accuracy (1.0 is perfect)."""
    if len(labeled) == 1:
        return float(accuracy[0])
    x = np.asarray(labeled, dtype=float) / pool_size
    y = np.asarray(accuracy, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def aubc_per_trial(per_cycle: dict[int, dict[str, Any]], pool_size: int) -> list[float]:
    """AUBC of each trial that finished every cycle of the strategy."""
    cycles = sorted(per_cycle)
    trials = set.intersection(*(set(per_cycle[c]["values"]) for c in cycles)) if cycles else set()
    labeled = [per_cycle[c]["labeled"] for c in cycles]
    return [aubc(labeled, [per_cycle[c]["values"][t] for c in cycles], pool_size) for t in sorted(trials)]


def labels_to_reach(per_cycle: dict[int, dict[str, Any]], target: float) -> tuple[list[int], int]:
    """Labels at the first cycle where each trial's metric is >= ``target``: (labels of the trials
    that reached it, number of trials)."""
    trials = sorted({t for cell in per_cycle.values() for t in cell["values"]})
    reached = []
    for t in trials:
        for c in sorted(per_cycle):
            value = per_cycle[c]["values"].get(t)
            if value is not None and value >= target - 1e-12:
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
    valid = [m for m in means if m is not None and not math.isnan(m)]
    if len(valid) < 2:
        return set()
    target = max(valid) if higher else min(valid)
    return {i for i, m in enumerate(means) if m is not None and abs(m - target) < 1e-12}


def _percent(metric: str) -> bool:
    return metric.endswith("accuracy")


def metric_table(rows: list[dict[str, Any]], pool_size: int, metric: str = "accuracy", percent: bool | None = None,
                 reach: Sequence[float] = (), with_aubc: bool = True) -> Table | None:
    """The metric per cycle as mean ± std over trials, one column per strategy; then the AUBC and the
    labels needed to reach each ``reach`` target."""
    data = curves(rows, metric)
    if not data:
        return None
    percent = _percent(metric) if percent is None else percent
    scale = 100.0 if percent else 1.0
    strategies = list(data)
    cycles = sorted({c for per in data.values() for c in per})
    table = Table("", ["cycle", "labeled"] + strategies, [], align="lr" + "r" * len(strategies))
    for r, c in enumerate(cycles):
        labeled = sorted({per[c]["labeled"] for per in data.values() if c in per})
        line = [str(c), "/".join(map(str, labeled))]
        means: list[float | None] = []
        for s in strategies:
            cell = data[s].get(c)
            line.append(_cell(list(cell["values"].values()), scale) if cell else "")
            means.append(mean_std(cell["values"].values())[0] if cell else None)
        table.body.append(line)
        table.best |= {(r, 2 + i) for i in _best(means, higher=True)}
    if with_aubc:
        line, means = ["AUBC", ""], []
        for s in strategies:
            values = aubc_per_trial(data[s], pool_size)
            line.append(_cell(values, scale) if values else "")
            means.append(mean_std(values)[0] if values else None)
        table.summary.append(line)
        table.best |= {(len(cycles), 2 + i) for i in _best(means, higher=True)}
    for target in reach:
        line, means = [f"labels to {_target(target, percent)}", ""], []
        for s in strategies:
            reached, n = labels_to_reach(data[s], target)
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
    table.title = f"{metric.replace('_', ' ')}{' (%)' if percent else ''}, mean ± std over {_trials_text(data)}"
    return table


def _trials_text(data: dict[str, dict[int, dict[str, Any]]]) -> str:
    """``3 trials``, or the count per strategy when they differ (e.g. folders pooled unevenly)."""
    counts = {s: len({t for cell in per.values() for t in cell["values"]}) for s, per in data.items()}
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return f"{n} trial{'s' if n != 1 else ''}"
    return "trials (" + ", ".join(f"{s}: {n}" for s, n in counts.items()) + ")"


def _target(target: float, percent: bool) -> str:
    return f"{target * 100:g}%" if percent else f"{target:g}"


def timing(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """strategy -> {train, query, total}: one value per trial (mean train seconds per cycle, mean query
    seconds per cycle with a query, total seconds of the trial)."""
    per: dict[str, dict[tuple[int, int], dict[str, list[float]]]] = {}
    for row in rows:
        cell = per.setdefault(row["strategy"], {}).setdefault(trial_key(row), {"train": [], "query": []})
        cell["train"].append(row["train_seconds"])
        if row.get("queried", row["query_seconds"] > 0):
            cell["query"].append(row["query_seconds"])
    out: dict[str, dict[str, list[float]]] = {}
    for strategy, trials in per.items():
        out[strategy] = {
            "train": [float(np.mean(t["train"])) for t in trials.values()],
            "query": [float(np.mean(t["query"])) for t in trials.values() if t["query"]],
            "total": [float(np.sum(t["train"]) + np.sum(t["query"])) for t in trials.values()],
        }
    return out


def timing_table(rows: list[dict[str, Any]]) -> Table | None:
    """Mean train and query seconds per cycle (cycles with a query only), mean ± std over trials."""
    per = timing(rows)
    if not per:
        return None
    table = Table("seconds per cycle (query: cycles with a query), mean ± std over trials",
                  ["strategy", "train s / cycle", "query s / cycle", "total s / trial"], [], align="lrrr")
    for strategy, t in per.items():
        table.body.append([
            strategy, _seconds(t["train"]),
            _seconds(t["query"]) if t["query"] else "",
            _seconds(t["total"]),
        ])
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
                     reach: Sequence[float], reach_metric: str) -> list[dict[str, Any]]:
    """The long-format summary: one row per (kind, strategy, metric, cycle or target).

    kind ``cycle`` (mean, std, n of the metric at a cycle), ``aubc`` (per metric), ``reach`` (labels to
    ``target`` of ``reach_metric``: mean, std over the n trials that reached it, of ``trials``),
    ``train_seconds`` / ``query_seconds`` (per cycle, mean and std over trials).  Metrics are fractions.
    """
    out: list[dict[str, Any]] = []
    blank = dict(cycle="", labeled="", target="", trials="")
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
            if metric == reach_metric:
                for target in reach:
                    reached, n = labels_to_reach(per, target)
                    m, sd = mean_std(reached) if reached else (None, None)
                    out.append({**blank, "kind": "reach", "strategy": strategy, "metric": metric, "target": target,
                                "mean": m, "std": sd, "n": len(reached), "trials": n})
    for strategy, t in timing(rows).items():
        for kind, values in (("train_seconds", t["train"]), ("query_seconds", t["query"])):
            if values:
                m, sd = mean_std(values)
                out.append({**blank, "kind": kind, "strategy": strategy, "metric": "", "mean": m, "std": sd,
                            "n": len(values), "trials": len(t["train"])})
    return out


SUMMARY_COLUMNS = ["kind", "strategy", "metric", "cycle", "labeled", "target", "mean", "std", "n", "trials"]


def write_summary_csv(summary: list[dict[str, Any]], path: str | Path) -> None:
    _write_text(path, _csv_text(summary))


def _csv_text(summary: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summary:
        writer.writerow({k: f"{v:.12g}" if isinstance(v := row.get(k), float) else _fmt(v) for k in SUMMARY_COLUMNS})
    return buf.getvalue()


def _write_text(path: str | Path, text: str) -> None:
    """Through a temporary file and a rename, so a file on disk is always whole."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def table(rows: list[dict[str, Any]], pool_size: int, metric: str = "accuracy", percent: bool = True) -> str:
    """The metric table as Markdown text (mean ± std per cycle and the AUBC for accuracy)."""
    t = metric_table(rows, pool_size, metric, percent, with_aubc=metric == "accuracy")
    return to_markdown(t) if t else ""
