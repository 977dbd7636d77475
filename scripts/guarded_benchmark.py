"""The guarded-loss benchmark (issue 14): every setting, its runs, its report and a summary.

Each setting is a dataset and a protocol small enough for a 2-core CPU.  ``run`` trains the
baselines and guarded-loss in two output folders per setting (the report pools them, so
guarded-loss can be re-run alone), ``report`` writes each setting's tables and figures with
``activeloss report``, and ``summary`` gathers the AUBC and last-cycle accuracy of every setting
into one table, with guarded-loss's paired difference to random (trial t of every strategy starts
from the same initial set, so the per-trial differences are the fair comparison).

    python scripts/guarded_benchmark.py prepare --data ../shared/data --into bench-data
    python scripts/guarded_benchmark.py run --data bench-data --out bench-out            # all settings
    python scripts/guarded_benchmark.py run --data bench-data --out bench-out --settings digits-low \\
        --which guarded --validation 0.2                                                   # one setting, one part
    python scripts/guarded_benchmark.py report --out bench-out --docs docs/guarded-loss-benchmark
    python scripts/guarded_benchmark.py summary --out bench-out --docs docs/guarded-loss-benchmark
    python scripts/guarded_benchmark.py compare val/digits-A val/digits-B     # variants, one folder each
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from activeloss.report import aubc

BASELINES = ["random", "entropy", "margin", "coreset", "badge", "llal", "lplgrad", "dnal"]
OURS = "guarded-loss"

#: setting -> (dataset spec under --data, the run's options); every option the protocol needs is
#: given, so nothing falls back to the Learning Loss protocol's 200 epochs
SETTINGS: dict[str, tuple[str, list[str]]] = {
    "digits-low": ("digits", []),  # the embedded protocol: small CNN, 40 -> 320 labels (+40), 40 epochs
    "pendigits-low": ("csv:{data}/pendigits.csv", [
        "--model", "mlp", "--initial", "20", "--budget", "20", "--cycles", "8", "--subset", "0",
        "--epochs", "100", "--batch-size", "8", "--lr", "0.01", "--milestones", "80%"]),
    "letter-low": ("csv:{data}/letter.csv", [
        "--model", "mlp", "--initial", "52", "--budget", "52", "--cycles", "8", "--subset", "0",
        "--epochs", "100", "--batch-size", "8", "--lr", "0.05", "--milestones", "80%"]),
    "mnist-low": ("mnist:{data}/mnist", [
        "--model", "cnn", "--initial", "100", "--budget", "100", "--cycles", "5", "--subset", "5000",
        "--epochs", "60", "--batch-size", "16", "--lr", "0.05", "--milestones", "80%"]),
    "cifar10-low": ("folder:{data}/cifar10", [
        "--model", "cnn", "--initial", "500", "--budget", "250", "--cycles", "4", "--subset", "5000",
        "--epochs", "30", "--batch-size", "32", "--lr", "0.01", "--milestones", "80%", "--augment", "none"]),
    "letter-high": ("csv:{data}/letter.csv", [
        "--model", "mlp", "--initial", "500", "--budget", "500", "--cycles", "5", "--subset", "0",
        "--epochs", "100", "--batch-size", "32", "--lr", "0.05", "--milestones", "80%"]),
}


def prepare(data: Path, into: Path) -> None:
    """The UCI tables as CSVs with a header and a label column; MNIST and CIFAR-10 linked as they are."""
    into.mkdir(parents=True, exist_ok=True)
    header = ",".join([f"f{i}" for i in range(16)] + ["label"]) + "\n"
    uci = data / "uci-classification"
    rows = [line.strip().split(",") for line in (uci / "pendigits.tra").read_text().splitlines() if line.strip()]
    (into / "pendigits.csv").write_text(header + "".join(",".join(v.strip() for v in r) + "\n" for r in rows))
    rows = [line.strip().split(",") for line in (uci / "letter-recognition.data").read_text().splitlines()
            if line.strip()]
    (into / "letter.csv").write_text(header + "".join(",".join(r[1:] + r[:1]) + "\n" for r in rows))
    if not (into / "mnist").exists():
        (into / "mnist").symlink_to((data / "mnist").resolve())
    if not (into / "cifar10").exists():  # the archive holds train/ and test/ with a folder per class
        (into / "cifar10").mkdir()
        subprocess.run(["tar", "-xzf", str(data / "cifar10-jpg.tar.gz"), "-C", str(into / "cifar10")], check=True)
    print(f"prepared {', '.join(sorted(p.name for p in into.iterdir()))} in {into}")


def run(settings: list[str], data: Path, out: Path, which: str, trials: int, parallel: int,
        extra: list[str]) -> None:
    parts = {"baselines": BASELINES, "guarded": [OURS]}
    for name in settings:
        spec, options = SETTINGS[name]
        for part in (["baselines", "guarded"] if which == "all" else [which]):
            folder = out / name / part
            execution = ["--parallel-trials", str(parallel), "--quiet", "--out", str(folder)]
            if (folder / "store.sqlite").exists():  # an interrupted run: the store holds its settings
                command = ["activeloss", "run", "--resume", *execution]
            else:
                command = ["activeloss", "run", "--dataset", spec.format(data=data), "--strategies",
                           ",".join(parts[part]), *options, "--trials", str(trials), "--diagnostics", "none",
                           "--keep-models", "none", *extra, *execution]
            print("$", " ".join(command), flush=True)
            subprocess.run(command, check=True)


def report(out: Path, docs: Path) -> None:
    for setting in SETTINGS:
        folders = [out / setting / part for part in ("baselines", "guarded") if (out / setting / part).exists()]
        if not folders:
            continue
        figures = docs / setting
        shutil.rmtree(figures, ignore_errors=True)
        command = ["activeloss", "report", *map(str, folders), "--out", str(figures),
                   "--markdown", str(figures / "tables.md"), "--csv", str(figures / "summary.csv")]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def _trial_aubcs(folders: list[Path]) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]], int]:
    """Per strategy and finished trial: the AUBC of accuracy and the last cycle's accuracy (results.csv)."""
    curves: dict[str, dict[int, dict[int, tuple[int, float]]]] = defaultdict(lambda: defaultdict(dict))
    for folder in folders:
        with open(folder / "results.csv") as f:
            for row in csv.DictReader(f):
                curves[row["strategy"]][int(row["trial"])][int(row["cycle"])] = (int(row["labeled"]),
                                                                                  float(row["accuracy"]))
    pool = _pool_size(folders[0])
    complete = max(len(cycles) for trials in curves.values() for cycles in trials.values())
    areas: dict[str, dict[int, float]] = defaultdict(dict)
    last: dict[str, dict[int, float]] = defaultdict(dict)
    for strategy, trials in curves.items():
        for trial, cycles in trials.items():
            if len(cycles) < complete:  # an unfinished trial (an interrupted run) counts nowhere
                continue
            points = [cycles[c] for c in sorted(cycles)]
            areas[strategy][trial] = aubc([p[0] for p in points], [p[1] for p in points], pool)
            last[strategy][trial] = points[-1][1]
    return areas, last, len(next(iter(curves.values()))[0])


def _pool_size(folder: Path) -> int:
    import json
    import sqlite3

    db = sqlite3.connect(folder / "store.sqlite")
    try:
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    finally:
        db.close()
    return int(meta["dataset"]["train"])


def _loss_driven(folder: Path) -> tuple[int, int]:
    """guarded-loss's query batches that followed the predicted losses (stored with scores; the
    fallback's carry none), and all its batches."""
    import sqlite3

    db = sqlite3.connect(folder / "store.sqlite")
    try:
        batches = db.execute("SELECT COUNT(q.score) > 0 FROM queries q JOIN runs r ON r.id = q.run_id "
                             "WHERE r.strategy = ? GROUP BY q.run_id, q.cycle", (OURS,)).fetchall()
    finally:
        db.close()
    return sum(int(b) for b, in batches), len(batches)


def _cell(values: list[float], best: bool) -> str:
    a = 100 * np.asarray(values)
    text = f"{a.mean():.2f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.2f}" + (f" ({a.size} trial{'s' * (a.size > 1)})"
                                                                          if a.size < 3 else "")
    return f"**{text}**" if best else text


def summary(out: Path, docs: Path) -> str:
    strategies = [*BASELINES, OURS]
    lines: dict[str, list[str]] = {"aubc": [], "last": []}
    paired: list[str] = []
    for setting in SETTINGS:
        folders = [out / setting / part for part in ("baselines", "guarded")
                   if (out / setting / part / "results.csv").exists()]
        if not folders:
            continue
        areas, last, cycles = _trial_aubcs(folders)
        for kind, table in (("aubc", areas), ("last", last)):
            means = {s: float(np.mean(list(table[s].values()))) for s in strategies if table.get(s)}
            top = max(means.values())
            cells = [_cell(list(table[s].values()), means[s] == top) if s in means else "-" for s in strategies]
            lines[kind].append(f"| {setting} | " + " | ".join(cells) + " |")
        if OURS in areas and "random" in areas:
            trials = sorted(set(areas[OURS]) & set(areas["random"]))
            diff = 100 * np.array([areas[OURS][t] - areas["random"][t] for t in trials])
            rank = 1 + sum(float(np.mean(list(areas[s].values()))) > float(np.mean(list(areas[OURS].values())))
                           for s in strategies if s != OURS and areas.get(s))
            best_other = max((s for s in strategies if s != OURS and areas.get(s)),
                             key=lambda s: float(np.mean(list(areas[s].values()))))
            gap = 100 * (float(np.mean(list(areas[OURS].values()))) - float(np.mean(list(areas[best_other].values()))))
            driven, batches = _loss_driven(out / setting / "guarded")
            paired.append(f"| {setting} | {diff.mean():+.2f} ± {diff.std(ddof=1) if diff.size > 1 else 0:.2f} | "
                          f"{int((diff > 0).sum())} of {diff.size} | {rank} of {len(strategies)} | "
                          f"{best_other} ({gap:+.2f}) | {driven} of {batches} |")
    header = "| setting | " + " | ".join(strategies) + " |\n|---|" + "---:|" * len(strategies)
    text = ["AUBC of test accuracy (%), mean ± std over trials (best mean in bold):", "", header, *lines["aubc"], "",
            "Test accuracy (%) at the last cycle:", "", header, *lines["last"], "",
            "guarded-loss against random, paired by trial (AUBC points), its rank among the nine, the best other "
            "strategy (guarded-loss's AUBC minus its), and how many of its query batches followed the predicted "
            "losses (the others: the core-set fallback):", "",
            "| setting | AUBC − random | trials above random | rank | best other (difference) | loss-driven batches |",
            "|---|---:|---:|---:|---|---:|", *paired, ""]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "summary.md").write_text("\n".join(text))
    return "\n".join(text)


def compare(folders: list[Path]) -> str:
    """AUBC and last-cycle accuracy of every strategy in each folder, one row per (folder, strategy):
    variants of one strategy run into separate folders (e.g. on a validation split)."""
    lines = ["| run | strategy | AUBC (%) | last cycle (%) |", "|---|---|---:|---:|"]
    for folder in folders:
        areas, last, _ = _trial_aubcs([folder])
        for strategy in areas:
            lines.append(f"| {folder.name} | {strategy} | {_cell(list(areas[strategy].values()), False)} | "
                         f"{_cell(list(last[strategy].values()), False)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", type=Path, required=True, help="the shared data folder (uci-classification, mnist, ...)")
    p.add_argument("--into", type=Path, required=True)
    p = sub.add_parser("run")
    p.add_argument("--data", type=Path, required=True, help="the folder `prepare` filled")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--which", choices=("all", "baselines", "guarded"), default="all")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--parallel-trials", type=int, default=2)
    p.add_argument("extra", nargs="*", help="further options for activeloss run (after --)")
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--docs", type=Path, required=True)
    p = sub.add_parser("summary")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--docs", type=Path, required=True)
    p = sub.add_parser("compare")
    p.add_argument("folders", type=Path, nargs="+")
    args = ap.parse_args()
    if args.command == "compare":
        print(compare(args.folders))
    elif args.command == "prepare":
        prepare(args.data, args.into)
    elif args.command == "run":
        names = [s.strip() for s in args.settings.split(",") if s.strip()]
        unknown = [n for n in names if n not in SETTINGS]
        if unknown:
            ap.error(f"unknown setting {unknown[0]}; choose among {', '.join(SETTINGS)}")
        run(names, args.data, args.out, args.which, args.trials, args.parallel_trials, args.extra)
    elif args.command == "report":
        report(args.out, args.docs)
    else:
        print(summary(args.out, args.docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
