"""Reports: aggregation over trials and folders on hand-built stores (expected values worked out
below), the output files, and one end-to-end run on digits."""
from __future__ import annotations

import csv
import math
import sqlite3
from pathlib import Path

import pytest

from activeloss.cli import main
from activeloss.errors import ConfigError
from activeloss.report import build_report, labels_to_reach, report
from activeloss.store import CycleResult, Store

LABELED = [10, 20, 40]  # pool of 100 items: fractions 0.1, 0.2, 0.4
DATASET = {"spec": "digits", "train": 100, "test": 20, "classes": ["zero", "one", "two"]}
SQ2 = math.sqrt(2)


def make_store(folder: Path, seed: int, runs: dict[tuple[str, int], list[float]], epochs: int = 5,
               dataset: dict | None = None, train_seconds: dict[int, float] | None = None) -> Path:
    """A finished 3-cycle run per (strategy, trial): the given accuracies, query seconds 0.5 on the two
    cycles with a query (none on the last), llal with ranking accuracy and the arrays of the figures."""
    folder.mkdir(parents=True)
    store = Store.in_folder(folder)
    store.set_meta("dataset", dataset or DATASET)
    store.set_meta("settings", {"seed": seed, "trials": 2})
    store.set_meta("dataset_fingerprint", "f" + (dataset or DATASET)["spec"])
    for (strategy, trial), accs in runs.items():
        settings = {"seed": seed, "cycles": 3, "epochs": epochs, "trials": 2, "out": str(folder)}
        run = store.run_id(strategy, trial, settings)
        for cycle, acc in enumerate(accs):
            metrics = {"accuracy": acc}
            arrays = {"per_class_accuracy": [acc, 1.0, None],
                      "confidence_labeled": [0] * 15 + [LABELED[cycle]] + [0] * 4,
                      "confidence_unlabeled": [0] * 5 + [50] * 10 + [0] * 5}
            if strategy == "llal":
                metrics["ranking_accuracy"] = 0.7
                if cycle == 2:
                    arrays.update(test_loss=[0.1, 0.5, 2.0, 3.0], predicted_loss=[0.2, 0.1, 0.9, 1.0])
            seconds = (train_seconds or {}).get(trial, 1.0)
            store.record_cycle(run, CycleResult(cycle, LABELED[cycle], seconds, 0.5 if cycle < 2 else 0.0,
                                                metrics, arrays=arrays))
        store.set_status(run, "done")
    store.close()
    return folder


@pytest.fixture
def folder_a(tmp_path) -> Path:
    return make_store(tmp_path / "a", 0, {
        ("random", 0): [0.5, 0.7, 0.9], ("random", 1): [0.3, 0.5, 0.7],
        ("llal", 0): [0.6, 0.6, 0.6], ("llal", 1): [0.4, 0.4, 0.4],
    }, train_seconds={0: 1.0, 1: 3.0})


def test_one_folder_mean_std_aubc_reach_and_time(folder_a, tmp_path):
    # random: cycle means 0.4, 0.6, 0.8, each with std sqrt(2) x 0.1;
    # AUBC trial 0: (0.1 x 0.6 + 0.2 x 0.8) / 0.3 = 0.7333, trial 1: (0.1 x 0.4 + 0.2 x 0.6) / 0.3 = 0.5333
    # reach 0.7: trial 0 at 20 labels, trial 1 at 40 -> 30 +- 14; reach 0.9: only trial 0, at 40
    result = build_report(folder_a, reach=[0.7, 0.9])
    text = result.text
    assert "| cycle | labeled |" in text and "mean ± std over 2 trials" in text
    assert "| 40.00 ± 14.14 |" in text and "| 60.00 ± 14.14 |" in text and "| 80.00 ± 14.14 |" in text
    assert "63.33 ± 14.14" in text  # random's AUBC
    assert "50.00 ± 14.14" in text  # llal: 0.6 and 0.4 at every cycle, AUBC too
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| labels to")}
    assert "30 ± 14" in lines["labels to 70%"] and "not reached" in lines["labels to 70%"]
    assert "40 ± 0 (1/2)" in lines["labels to 90%"]
    assert "ranking accuracy" in text and "0.70 ± 0.00" in text
    # train seconds: per-trial means 1 and 3; query seconds: 0.5 on the cycles with a query (the last has none)
    timing = next(line for line in text.splitlines() if line.startswith("| random "))
    assert "2.00 ± 1.41" in timing and "0.500 ± 0.000" in timing
    assert sorted(p.name for p in result.files) == sorted(
        ["results.csv", "curves.png", "time.png", "loss_prediction.png", "confidence.png", "per_class.png"])
    assert labels_to_reach({0: {"labeled": 10, "values": {(0, 0): 0.2}}}, 0.5) == ([], 1)


def test_combined_folders_pool_the_trials_of_each_seed(folder_a, tmp_path):
    folder_b = make_store(tmp_path / "b", 1, {("random", 0): [0.6, 0.9, 1.0], ("random", 1): [0.4, 0.6, 0.9],
                                              ("margin", 0): [0.5, 0.5, 0.5]})
    out = tmp_path / "combined"
    files = {k: tmp_path / f"summary.{k}" for k in ("csv", "md", "tex")}
    result = build_report([folder_a, folder_b], out, reach=[0.9], csv=files["csv"], markdown=files["md"],
                          latex=files["tex"])
    # random pooled over 4 trials: cycle 0 is 0.5, 0.3 (seed 0) and 0.6, 0.4 (seed 1): mean 0.45,
    # std sqrt(0.05 / 3); reach 0.9: 40 (seed 0 trial 0), 20 and 40 (seed 1) -> 33.3 +- 11.5 over 3 of 4 trials
    assert "random: 4, llal: 2, margin: 1" in result.text
    assert "45.00 ± 12.91" in result.text and "33 ± 12 (3/4)" in result.text
    with open(files["csv"]) as f:
        rows = list(csv.DictReader(f))
    cell = next(r for r in rows if r["kind"] == "cycle" and r["strategy"] == "random" and r["metric"] == "accuracy"
                and r["cycle"] == "0")
    assert (float(cell["mean"]), int(cell["n"]), cell["labeled"]) == (pytest.approx(0.45), 4, "10")
    assert float(cell["std"]) == pytest.approx(math.sqrt(0.05 / 3), abs=1e-5)
    reach = next(r for r in rows if r["kind"] == "reach" and r["strategy"] == "random")
    assert (float(reach["mean"]), reach["n"], reach["trials"], reach["target"]) == (pytest.approx(100 / 3), "3", "4", "0.9")
    aubc = next(r for r in rows if r["kind"] == "aubc" and r["strategy"] == "margin")
    assert float(aubc["mean"]) == pytest.approx(0.5) and aubc["n"] == "1"
    assert {r["kind"] for r in rows} == {"cycle", "aubc", "reach", "train_seconds", "query_seconds"}
    tex = files["tex"].read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex and "±" not in tex
    assert r"\textbf{" in tex
    md = files["md"].read_text()
    assert "| cycle | labeled |" in md and "![curves](combined/curves.png)" in md
    with open(out / "results.csv") as f:
        combined = list(csv.DictReader(f))
    assert len(combined) == 4 * 3 + 3 * 3 and {r["seed"] for r in combined} == {"0", "1"}
    assert all((out / n).stat().st_size > 10_000 for n in ("curves.png", "time.png", "confidence.png", "per_class.png"))


def test_combining_refuses_duplicates_other_protocols_and_other_datasets(folder_a, tmp_path):
    twin = make_store(tmp_path / "twin", 0, {("random", 1): [0.1, 0.2, 0.3]})
    with pytest.raises(ConfigError, match=r"'random' trial 1 \(seed 0\) is in both"):
        report([folder_a, twin])
    other = make_store(tmp_path / "other", 1, {("random", 0): [0.1, 0.2, 0.3]}, epochs=6)
    with pytest.raises(ConfigError, match="different settings .*epochs=5.*epochs=6"):
        report([folder_a, other])
    mnist = make_store(tmp_path / "mnist", 1, {("margin", 0): [0.1, 0.2, 0.3]},
                       dataset={**DATASET, "spec": "mnist:/data", "train": 60000})
    with pytest.raises(ConfigError, match="different datasets"):
        report([folder_a, mnist])


def test_cli_report_errors_are_one_line(folder_a, tmp_path, capsys):
    cases = [
        ([str(tmp_path / "nowhere")], "holds no run"),
        ([str(folder_a), "--reach", "1.5"], "--reach 1.5: give the target accuracy as a fraction"),
        ([str(folder_a), "--cycle", "7"], "--cycle 7: the runs have cycles 0 to 2"),
        ([str(folder_a), "--metric", "rmse"], "--metric rmse: the runs recorded accuracy, ranking_accuracy"),
    ]
    for args, needle in cases:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()


def test_cli_several_folders_without_out_prints_tables_only(folder_a, tmp_path, capsys):
    folder_b = make_store(tmp_path / "b", 1, {("margin", 0): [0.5, 0.6, 0.7]})
    before = {p.name for p in tmp_path.rglob("*.png")}
    assert main(["report", str(folder_a), str(folder_b)]) == 0
    captured = capsys.readouterr()
    assert "combined:" in captured.out and "margin" in captured.out and "without --out" in captured.err
    assert {p.name for p in tmp_path.rglob("*.png")} == before


def test_end_to_end_run_records_the_figures_data_and_reports_every_output(tmp_path, monkeypatch, capsys):
    from activeloss import diagnostics
    from activeloss.data import load_dataset

    out = tmp_path / "run"
    args = ["run", "--dataset", "digits", "--strategies", "random,llal", "--trials", "2", "--cycles", "2",
            "--epochs", "1", "--initial", "30", "--budget", "10", "--batch-size", "16", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| cycle | labeled |" in text and "AUBC" in text and "ranking accuracy" in text and "seconds per cycle" in text

    data = load_dataset("digits", seed=0)
    db = sqlite3.connect(out / "store.sqlite")
    import json

    arrays = {(r, c, n): json.loads(v) for r, c, n, v in db.execute("SELECT run_id, cycle, name, value FROM arrays")}
    accuracy = dict(((r, c), v) for r, c, v in db.execute("SELECT run_id, cycle, value FROM metrics WHERE name = 'accuracy'"))
    counts = [int((data.y_test == k).sum()) for k in range(10)]
    for (run, cycle), acc in accuracy.items():
        per_class = arrays[(run, cycle, "per_class_accuracy")]
        assert len(per_class) == 10
        assert sum(a * n for a, n in zip(per_class, counts)) / sum(counts) == pytest.approx(acc)
        labeled = 30 + 10 * cycle
        assert sum(arrays[(run, cycle, "confidence_labeled")]) == labeled
        assert sum(arrays[(run, cycle, "confidence_unlabeled")]) == min(diagnostics.UNLABELED_SAMPLE, 1437 - labeled)
        assert len(arrays[(run, cycle, "confidence_labeled")]) == diagnostics.BINS

    # the extra inference changes nothing: the same run without it gives the same results
    monkeypatch.setattr(diagnostics, "confidence_histograms", lambda *a, **k: {})
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    strip = lambda p: [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in csv.DictReader(open(p))]
    assert strip(tmp_path / "plain" / "results.csv") == strip(out / "results.csv")
    capsys.readouterr()

    files = {"markdown": tmp_path / "r.md", "csv": tmp_path / "r.csv", "latex": tmp_path / "r.tex"}
    assert main(["report", str(out), "--reach", "0.5", "--cycle", "0", "--out", str(tmp_path / "figs"),
                 *[x for k, v in files.items() for x in (f"--{k}", str(v))]]) == 0
    assert "labels to 50%" in capsys.readouterr().out
    with open(files["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert {(r["strategy"], r["cycle"]) for r in rows if r["kind"] == "cycle" and r["metric"] == "accuracy"} == {
        ("random", "0"), ("random", "1"), ("llal", "0"), ("llal", "1")}
    assert "| cycle | labeled |" in files["markdown"].read_text()
    tex = files["latex"].read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex
    for name in ("curves", "time", "loss_prediction", "confidence", "per_class"):
        png = tmp_path / "figs" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, name
