"""Where Learning Loss loses to random: three measurements from two runs' stores (issue 14).

Run A (``--out JOINT``): random, llal and lossnet+random with the default stop-gradient epoch;
run B (``--out DETACHED``): llal and lossnet+random with ``--stop-gradient-epoch 0`` (the module
learns from detached features from the first epoch: it never touches the backbone).

1. Joint training: ``lossnet+random`` picks exactly as ``random`` does (same seeds, same
   acquisition), so any gap between them is what training the module through the taps costs
   (or gives) the backbone; detached, the gap should vanish.
2. Ranking accuracy of the module on the test set at each label count.
3. Redundancy of the picks: per cycle, how many classes the queried batch covers and the
   share of its largest class, for random and for the loss-driven picks.

    python scripts/diagnose_loss_prediction.py --joint JOINT --detached DETACHED --name digits \\
        --out docs/loss-diagnosis
"""
from __future__ import annotations

import argparse
import csv
import sqlite3
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def results(folder: Path, suffix: str) -> dict[str, dict[int, list[dict]]]:
    """results.csv rows by strategy (renamed ``strategy suffix``) and cycle."""
    out: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with open(folder / "results.csv") as f:
        for row in csv.DictReader(f):
            out[f"{row['strategy']}{suffix}"][int(row["cycle"])].append(row)
    return out


def picks(folder: Path, suffix: str) -> dict[str, dict[int, list[list[int]]]]:
    """The classes of each cycle's queried batch, per strategy and trial."""
    db = sqlite3.connect(folder / "store.sqlite")
    rows = db.execute("SELECT r.strategy, r.trial, l.cycle, l.label FROM labels l JOIN runs r ON r.id = l.run_id "
                      "WHERE l.source != 'initial'").fetchall()
    db.close()
    grouped: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for strategy, trial, cycle, label in rows:
        grouped[(f"{strategy}{suffix}", trial, cycle)].append(int(label))
    out: dict[str, dict[int, list[list[int]]]] = defaultdict(lambda: defaultdict(list))
    for (strategy, _, cycle), labels in sorted(grouped.items()):
        out[strategy][cycle].append(labels)
    return out


def mean_std(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.2f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--joint", type=Path, required=True)
    ap.add_argument("--detached", type=Path, required=True)
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="further runs' folders whose strategies join the tables (e.g. guarded-loss)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    res = {**results(args.joint, ""), **results(args.detached, " (detached)")}
    chosen = {**picks(args.joint, ""), **picks(args.detached, " (detached)")}
    for folder in args.extra:
        res.update(results(folder, ""))
        chosen.update(picks(folder, ""))
    order = ["random", "lossnet+random", "lossnet+random (detached)", "llal", "llal (detached)"]
    order = [s for s in order if s in res] + sorted(set(res) - set(order))
    cycles = sorted(res["random"])
    labeled = {c: res["random"][c][0]["labeled"] for c in cycles}
    accuracy = [[str(c), labeled[c]] + [mean_std([100 * float(r["accuracy"]) for r in res[s][c]]) for s in order]
                for c in cycles]
    ranked = [s for s in order if res[s][cycles[0]][0].get("ranking_accuracy", "") not in ("", None)]
    ranking = [[str(c), labeled[c]] + [mean_std([float(r["ranking_accuracy"]) for r in res[s][c]]) for s in ranked]
               for c in cycles]
    classes = int(max(max(max(b) for b in v) for per in chosen.values() for v in per.values())) + 1
    redundant = [s for s in ("random", "llal", "llal (detached)") if s in chosen]
    redundant += sorted(set(chosen) - set(redundant) - {"lossnet+random", "lossnet+random (detached)"})
    spread = []
    for c in sorted(chosen["random"]):
        row = [str(c)]
        for s in redundant:
            batches = chosen[s][c]
            covered = [len(set(b)) for b in batches]
            top = [np.bincount(b, minlength=classes).max() / len(b) for b in batches]
            row.append(f"{np.mean(covered):.1f} / {100 * np.mean(top):.0f} %")
        spread.append(row)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for s in order:
        acc = np.array([[100 * float(r["accuracy"]) for r in res[s][c]] for c in cycles])
        axes[0].errorbar([int(labeled[c]) for c in cycles], acc.mean(1), yerr=acc.std(1), label=s, capsize=3)
    axes[0].set(xlabel="labels", ylabel="test accuracy (%)", title=f"{args.name}: accuracy")
    for s in ranked:
        rk = np.array([[float(r["ranking_accuracy"]) for r in res[s][c]] for c in cycles])
        axes[1].errorbar([int(labeled[c]) for c in cycles], rk.mean(1), yerr=rk.std(1), label=s, capsize=3)
    axes[1].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].set(xlabel="labels", ylabel="ranking accuracy (test)", title="the module's ranking accuracy")
    for s in redundant:
        cs = sorted(chosen[s])
        axes[2].plot([int(labeled[c]) for c in cs], [np.mean([len(set(b)) for b in chosen[s][c]]) for c in cs],
                     marker="o", label=s)
    axes[2].set(xlabel="labels before the query", ylabel=f"classes in the queried batch (of {classes})",
                title="diversity of the picks")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{args.name}.png", dpi=110)
    text = [f"### {args.name}", "", "Test accuracy (%), mean ± std over trials:", "",
            table(["cycle", "labels", *order], accuracy), "",
            "Ranking accuracy of the loss-prediction module on the test set:", "",
            table(["cycle", "labels", *ranked], ranking), "",
            "Queried batches: classes covered / share of the largest class (mean over trials):", "",
            table(["cycle", *redundant], spread), "", f"![{args.name}](loss-diagnosis/{args.name}.png)", ""]
    (out / f"{args.name}.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
