"""Reports: aggregation over trials and folders on hand-built stores (expected values worked out
below), the output files, and one end-to-end run on digits."""
from __future__ import annotations

import csv
import math
import sqlite3
from pathlib import Path

import pytest

from activeloss.errors import ConfigError
from activeloss.report import build_report, labels_to_reach, report
from activeloss.store import CycleResult, Store

LABELED = [10, 20, 40]  # pool of 100 items: fractions 0.1, 0.2, 0.4
DATASET = {"spec": "digits", "train": 100, "test": 20, "classes": ["zero", "one", "two"]}
SQ2 = math.sqrt(2)


def main(argv: list[str]) -> int:
    """The CLI, imported when a test calls it: the report's own tests need only the store."""
    from activeloss.cli import main as cli_main

    return cli_main(argv)


def make_store(folder: Path, seed: int, runs: dict[tuple[str, int], list[float]], epochs: int = 5,
               dataset: dict | None = None, train_seconds: dict[int, float] | None = None,
               executed: dict | None = None) -> Path:
    """A finished 3-cycle run per (strategy, trial): the given accuracies, query seconds 0.5 on the two
    cycles with a query (none on the last), llal with ranking accuracy and the arrays of the figures."""
    folder.mkdir(parents=True)
    store = Store.in_folder(folder)
    store.set_meta("dataset", dataset or DATASET)
    store.set_meta("settings", {"seed": seed, "trials": 2})
    store.set_meta("dataset_fingerprint", "f" + (dataset or DATASET)["spec"])
    for (strategy, trial), accs in runs.items():
        settings = {"seed": seed, "cycles": 3, "epochs": epochs, "trials": 2, "out": str(folder), **(executed or {})}
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
    # seconds per trial: train 3 x 1 and 3 x 3 s; query 0.5 s on the two cycles with a query; the wall time
    # of a whole-cycle record is train + query, so the phases add up to it
    timing = next(line for line in text.splitlines() if line.startswith("| random ") and "±" in line
                  and line.count("|") == 8)
    cells = [c.strip() for c in timing.strip("|").split("|")]
    assert cells == ["random", "6.00 ± 4.24", "0.00 ± 0.00", "0.00 ± 0.00", "1.00 ± 0.00", "0.00 ± 0.00",
                     "7.00 ± 4.24"]
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
    assert (float(reach["mean"]), reach["n"], reach["trials"], reach["target"]) == (
        pytest.approx(100 / 3), "3", "4", "0.9")
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


def test_runs_executed_differently_pool(tmp_path):
    # another --parallel-trials (e.g. on --resume), --keep-models or --diagnostics is the same protocol
    a = make_store(tmp_path / "a", 0, {("random", 0): [0.5, 0.6, 0.7]}, executed={"parallel_trials": 1})
    b = make_store(tmp_path / "b", 1, {("random", 0): [0.3, 0.4, 0.5]},
                   executed={"parallel_trials": 2, "keep_models": "none", "diagnostics": "none"})
    assert "mean ± std over 2 trials" in report([a, b])


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
    from activeloss.data import load_dataset
    from activeloss.tasks import classification

    out = tmp_path / "run"
    args = ["run", "--dataset", "digits", "--strategies", "random,llal", "--trials", "2", "--cycles", "2",
            "--epochs", "1", "--initial", "30", "--budget", "10", "--batch-size", "16", "--quiet", "--diagnostics", "every"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| cycle | labeled |" in text and "AUBC" in text
    assert "ranking accuracy" in text and "seconds per trial" in text

    data = load_dataset("digits", seed=0)
    db = sqlite3.connect(out / "store.sqlite")
    import json

    arrays = {(r, c, n): json.loads(v) for r, c, n, v in db.execute("SELECT run_id, cycle, name, value FROM arrays")}
    query = "SELECT run_id, cycle, value FROM metrics WHERE name = 'accuracy'"
    accuracy = {(r, c): v for r, c, v in db.execute(query)}
    counts = [int((data.y_test == k).sum()) for k in range(10)]
    for (run, cycle), acc in accuracy.items():
        per_class = arrays[(run, cycle, "per_class_accuracy")]
        assert len(per_class) == 10
        assert sum(a * n for a, n in zip(per_class, counts)) / sum(counts) == pytest.approx(acc)
        labeled = 30 + 10 * cycle
        assert sum(arrays[(run, cycle, "confidence_labeled")]) == labeled
        assert sum(arrays[(run, cycle, "confidence_unlabeled")]) == min(classification.UNLABELED_SAMPLE, 1437 - labeled)
        edges = arrays[(run, cycle, "confidence_edges")]
        assert edges == list(classification.CONFIDENCE_EDGES) and edges[0] == 0 and edges[-1] == 1
        assert len(arrays[(run, cycle, "confidence_labeled")]) == len(edges) - 1
    # the t-SNE map of the first trial from cycle 1 on (cycle 0 bought nothing), the entropies at the last
    trial_of = dict(db.execute("SELECT id, trial FROM runs"))
    assert {(trial_of[r], c) for r, c, n in arrays if n == "tsne_x"} == {(0, 1)}
    assert {(trial_of[r], c) for r, c, n in arrays if n == "test_entropy"} == {(0, 1), (1, 1)}

    # the extra inference changes nothing: the same run without it gives the same results
    def without_inference(self, outputs, targets, num_classes, pool_outputs, labeled, unlabeled, gen):
        return {"per_class_accuracy": classification.per_class_accuracy(self.predict(outputs), targets, num_classes)}

    from activeloss.loop.learner import Learner

    monkeypatch.setattr(classification.ClassificationTask, "diagnostics", without_inference)
    monkeypatch.setattr(Learner, "_tsne_due", lambda self, figures: False)
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    plain_arrays = {n for n, in sqlite3.connect(tmp_path / "plain" / "store.sqlite").execute("SELECT name FROM arrays")}
    assert "per_class_accuracy" in plain_arrays and not plain_arrays & {"confidence_labeled", "tsne_x"}

    def strip(path: Path) -> list[dict[str, str]]:
        with open(path) as f:
            return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in csv.DictReader(f)]

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
    for name in ("curves", "time", "loss_prediction", "confidence", "per_class", "tsne"):
        png = (out if name == "tsne" else tmp_path / "figs") / f"{name}.png"  # --cycle 0 has no map
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, name


# -- regression: a lower-is-better metric in real units -------------------------------------
REGRESSION_TASK = {"name": "regression", "metrics": [
    {"name": "rmse", "higher_is_better": False, "percent": False, "description": "root mean squared error"},
    {"name": "mae", "higher_is_better": False, "percent": False, "description": "mean absolute error"}]}
# rmse per cycle; random is better (lower) at cycle 0, llal at cycles 1 and 2 and over the budget
REGRESSION_RUNS = {("random", 0): [56.0, 55.0, 50.0], ("random", 1): [58.0, 57.0, 52.0],
                   ("llal", 0): [60.0, 50.0, 45.0], ("llal", 1): [62.0, 52.0, 47.0]}


def make_regression_store(folder: Path, runs: dict[tuple[str, int], list[float]] = REGRESSION_RUNS) -> Path:
    """A finished 3-cycle regression run per (strategy, trial): the given RMSE, MAE = 0.8 x RMSE, and
    llal's per-item test and predicted losses (the loss-prediction figure); no per-class array."""
    folder.mkdir(parents=True)
    store = Store.in_folder(folder)
    store.set_meta("task", REGRESSION_TASK)
    store.set_meta("dataset", {"spec": "diabetes", "train": 353, "test": 89, "classes": []})
    store.set_meta("settings", {"seed": 0})
    for (strategy, trial), rmses in runs.items():
        run = store.run_id(strategy, trial, {"seed": 0, "cycles": 3})
        for cycle, rmse in enumerate(rmses):
            arrays = None
            if strategy == "llal" and cycle == 2:
                arrays = {"test_loss": [1.0, 40.0, 900.0, 2500.0], "predicted_loss": [2.0, 30.0, 700.0, 800.0]}
            store.record_cycle(run, CycleResult(cycle, LABELED[cycle], 1.0, 0.5 if cycle < 2 else 0.0,
                                                {"rmse": rmse, "mae": 0.8 * rmse}, arrays=arrays))
    store.close()
    return folder


def _bold_columns(tex: str, first_cell: str) -> list[int]:
    """Indices of the bold cells in the first LaTeX row that starts with ``first_cell``."""
    row = next(line for line in tex.splitlines() if line.startswith(first_cell + " & "))
    return [i for i, cell in enumerate(row.removesuffix(r" \\").split(" & ")) if cell.startswith(r"\textbf{")]


def test_metric_info_reads_the_task_and_known_metrics():
    from activeloss.report import metric_info

    rmse = metric_info("rmse", REGRESSION_TASK)
    assert (rmse.higher_is_better, rmse.percent, rmse.heading) == (False, False, "RMSE (lower is better)")
    assert rmse.reached(55.0, 55.0) and rmse.reached(54.0, 55.0) and not rmse.reached(56.0, 55.0)
    accuracy = metric_info("accuracy")  # a store written before tasks: classification
    assert (accuracy.higher_is_better, accuracy.percent, accuracy.heading) == (True, True, "accuracy (%)")
    ranking = metric_info("ranking_accuracy", REGRESSION_TASK)
    assert (ranking.higher_is_better, ranking.percent) == (True, False)
    assert metric_info("top5_accuracy").percent and not metric_info("dice").percent
    assert metric_info("dice").higher_is_better


def test_regression_report_defaults_to_rmse_and_bolds_the_lowest(tmp_path):
    folder = make_regression_store(tmp_path / "reg")
    tex = tmp_path / "r.tex"
    result = build_report(folder, reach=[55.5, 47], latex=tex)  # no metric: the task's primary one
    text = result.text
    assert text.startswith("RMSE (lower is better), mean ± std over 2 trials")
    assert "%" not in text.split("\n\n")[1]  # real units, not x100
    # random: means 57, 56, 51; llal: 61, 51, 46 (std sqrt 2 everywhere)
    assert "| 57.00 ± 1.41 |" in text and "| 61.00 ± 1.41 |" in text and "| 46.00 ± 1.41 |" in text
    # AUBC random: trial 0 (0.1 x 55.5 + 0.2 x 52.5) / 0.3 = 53.5, trial 1 55.5; llal: 50 and 52
    assert "54.50 ± 1.41" in text and "51.00 ± 1.41" in text
    assert "MAE (lower is better)" in text and "| 45.60 ± 1.13 |" in text  # the task's other metric
    # columns: cycle, labeled, random, llal; the lower mean is the best
    assert _bold_columns(tex.read_text(), "0") == [2]
    assert _bold_columns(tex.read_text(), "1") == [3]
    assert _bold_columns(tex.read_text(), "AUBC") == [3]
    # reach 55.5: random at 20 (55 <= 55.5) and 40 labels, llal at 20 and 20; reach 47 is at or below:
    # llal trial 1 reaches exactly 47 at 40 labels, random never does
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| labels to")}
    assert set(lines) == {"labels to 55.5", "labels to 47"}
    assert "30 ± 14" in lines["labels to 55.5"] and "20 ± 0" in lines["labels to 55.5"]
    assert "not reached" in lines["labels to 47"] and "40 ± 0 |" in lines["labels to 47"]
    assert _bold_columns(tex.read_text(), "labels to 55.5") == [3]
    with open(folder / "results.csv") as f:
        assert next(csv.reader(f))[:6] == ["strategy", "trial", "cycle", "labeled", "rmse", "mae"]
    names = sorted(p.name for p in result.files)
    assert names == ["curves.png", "loss_prediction.png", "r.tex", "results.csv", "time.png"]


def test_regression_reach_targets_and_summary_follow_the_direction(tmp_path):
    folder = make_regression_store(tmp_path / "reg")
    summary = tmp_path / "s.csv"
    build_report(folder, tmp_path / "out", reach=[55.5], csv=summary)
    with open(summary) as f:
        rows = list(csv.DictReader(f))
    reach = {r["strategy"]: r for r in rows if r["kind"] == "reach"}
    assert (float(reach["random"]["mean"]), reach["random"]["n"], reach["random"]["target"]) == (30.0, "2", "55.5")
    assert float(reach["llal"]["mean"]) == 20.0
    assert {r["metric"] for r in rows if r["kind"] == "aubc"} == {"rmse", "mae"}
    assert labels_to_reach({0: {"labeled": 10, "values": {(0, 0): 0.6}}, 1: {"labeled": 20, "values": {(0, 0): 0.4}}},
                           0.5, higher_is_better=False) == ([20], 1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="give the target RMSE as a finite number"):
            build_report(folder, reach=[bad])
    with pytest.raises(ConfigError, match="--metric accuracy: the runs recorded mae, rmse"):
        build_report(folder, metric="accuracy")


def test_classification_reach_stays_a_fraction(folder_a):
    with pytest.raises(ConfigError, match=r"--reach 1.5: give the target accuracy as a fraction in \(0, 1\]"):
        build_report(folder_a, reach=[1.5])
    with pytest.raises(ConfigError, match="--metric rmse: the runs recorded accuracy, ranking_accuracy"):
        build_report(folder_a, metric="rmse")


def test_regression_curves_are_in_rmse_units_and_say_lower_is_better(tmp_path):
    from activeloss.report import plot_curves
    from activeloss.report.collect import open_collection

    folder = make_regression_store(tmp_path / "reg")
    with open_collection([folder]) as col:
        assert col.task["name"] == "regression" and col.primary_metric == "rmse"
        ax = plot_curves(col.rows, tmp_path / "curves.png", metric=col.metric("rmse"), reach=[55.5])
    assert ax.get_ylabel() == "test RMSE (lower is better)"
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["random"] == pytest.approx([57.0, 56.0, 51.0])  # not x100
    assert any(ys == pytest.approx([55.5, 55.5]) for ys in lines.values())  # the target, in RMSE units
    assert any(t.get_text() == "target 55.5" for t in ax.texts)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_combining_a_regression_and_a_classification_folder_fails_in_one_line(folder_a, tmp_path):
    reg = make_regression_store(tmp_path / "reg")
    with pytest.raises(ConfigError) as err:
        build_report([reg, folder_a])
    message = str(err.value)
    assert "different tasks (regression vs classification)" in message
    assert str(reg) in message and str(folder_a) in message and "\n" not in message
