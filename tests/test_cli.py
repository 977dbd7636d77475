"""End-to-end checks of ``activeloss`` on tiny settings: output folder, determinism, resume, bad input."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from activeloss.cli import main

from conftest import results_rows, subprocess_env

TINY = ["--trials", "2", "--cycles", "3", "--initial", "20", "--budget", "10", "--subset", "50",
        "--epochs", "2", "--batch-size", "16", "--model", "cnn", "--quiet"]


def _run(args, capsys=None) -> int:
    return main(["run", *args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run, shared by the checks that compare against it."""
    from conftest import write_tiny_npz

    folder = tmp_path_factory.mktemp("ref")
    npz = write_tiny_npz(folder / "tiny.npz")
    out = folder / "out"
    args = ["--dataset", f"npz:{npz}", "--strategies", "random,entropy", *TINY, "--out", str(out)]
    assert _run(args) == 0
    return npz, out, args


def test_output_folder_holds_store_results_and_plot(reference):
    _, out, _ = reference
    rows = results_rows(out, times=True)
    assert len(rows) == 2 * 2 * 3
    assert list(rows[0])[:5] == ["strategy", "trial", "cycle", "labeled", "accuracy"]
    assert {"train_seconds", "query_seconds"} <= set(rows[0])
    assert [int(r["labeled"]) for r in rows[:3]] == [20, 30, 40]
    assert (out / "curves.png").stat().st_size > 10_000
    db = sqlite3.connect(out / "store.sqlite")
    for run_id, in db.execute("SELECT id FROM runs"):
        labels = db.execute("SELECT item, cycle, source FROM labels WHERE run_id = ?", (run_id,)).fetchall()
        assert len(labels) == 40 and len({i for i, _, _ in labels}) == 40
        assert sorted({(c, s) for _, c, s in labels}) == [(0, "initial"), (1, "simulated"), (2, "simulated")]
        assert db.execute("SELECT COUNT(*) FROM queries WHERE run_id = ?", (run_id,)).fetchone()[0] == 20
    # both strategies of a trial start from the same initial set
    initial = db.execute("SELECT run_id, group_concat(item) FROM labels WHERE cycle = 0 "
                         "GROUP BY run_id ORDER BY run_id").fetchall()
    by_run = dict(initial)
    runs = db.execute("SELECT id, strategy, trial FROM runs").fetchall()
    for trial in (0, 1):
        sets = {by_run[i] for i, _, t in runs if t == trial}
        assert len(sets) == 1
    kept = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))  # the final model of each run is kept
    assert kept == [f"run{run_id}-cycle2.pt" for run_id, in db.execute("SELECT id FROM runs ORDER BY id")]
    assert {status for status, in db.execute("SELECT status FROM runs")} == {"done"}
    # class labels are stored as numbers; the store says its schema and its task
    types = db.execute("SELECT DISTINCT typeof(label), typeof(true_label) FROM labels").fetchall()
    assert types == [("integer", "integer")]
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    assert meta["schema_version"] == 2 and meta["task"]["name"] == "classification"
    assert db.execute("SELECT COUNT(*) FROM queries q WHERE NOT EXISTS (SELECT 1 FROM labels l "
                      "WHERE l.run_id = q.run_id AND l.item = q.item)").fetchone()[0] == 0  # nothing left pending


def test_same_seed_same_results(reference, tmp_path):
    _, out, args = reference
    again = tmp_path / "again"
    assert _run([*args[:-1], str(again)]) == 0
    assert results_rows(again) == results_rows(out)


def test_report_reprints_the_table(reference, capsys):
    _, out, _ = reference
    (out / "curves.png").unlink()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| cycle | labeled |" in text and "AUBC" in text and "entropy" in text
    assert (out / "curves.png").exists()


def test_parallel_trials_give_the_sequential_results_and_run_order(reference, tmp_path):
    _, out, args = reference
    parallel = tmp_path / "parallel"
    assert _run([*args[:-1], str(parallel), "--parallel-trials", "3"]) == 0
    assert results_rows(parallel) == results_rows(out)
    order = "SELECT id, strategy, trial FROM runs ORDER BY id"
    assert sqlite3.connect(parallel / "store.sqlite").execute(order).fetchall() == \
        sqlite3.connect(out / "store.sqlite").execute(order).fetchall()


def test_an_error_in_a_parallel_worker_is_one_line_and_exit_2(reference, tmp_path, capsys):
    import shutil

    _, out, _ = reference
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    db = sqlite3.connect(broken / "store.sqlite")
    with db:  # forget run 1's last cycle: resuming it needs the checkpoint a finished run no longer keeps
        for table in ("cycles", "metrics", "queries", "arrays"):
            db.execute(f"DELETE FROM {table} WHERE run_id = 1 AND cycle = 2")
    db.close()
    assert main(["run", "--resume", "--out", str(broken), "--quiet", "--parallel-trials", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the model of cycle 1 is not saved" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("parallel", [[], ["--parallel-trials", "2"]], ids=["sequential", "parallel"])
def test_kill_9_and_resume_gives_the_uninterrupted_results(reference, tmp_path, parallel):
    npz, out, args = reference
    target = tmp_path / "killed"
    cmd = [sys.executable, "-m", "activeloss", "run", *args[:-1], str(target), *parallel]
    env = subprocess_env()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            db = target / "store.sqlite"
            if db.exists():
                try:
                    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0
                if n >= 4:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    time.sleep(1.0)  # parallel workers notice their parent is gone and stop (within 0.2 s)
    finished = sqlite3.connect(target / "store.sqlite").execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
    assert 4 <= finished < 12, "the kill should land in the middle of the run"
    assert main(["run", "--resume", "--out", str(target), "--quiet", *parallel]) == 0
    assert results_rows(target) == results_rows(out)
    db = sqlite3.connect(target / "store.sqlite")
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 4 * 40


def test_resume_refuses_a_folder_without_run_and_a_second_run_in_the_same_folder(reference, tmp_path, capsys):
    _, out, args = reference
    assert main(["run", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    assert _run(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["run", "--resume", "--out", str(out), "--epochs", "3"]) == 2
    assert "do not pass --epochs" in capsys.readouterr().err


def _bad_npz_labels(tmp_path: Path) -> str:
    p = tmp_path / "bad.npz"
    np.savez(p, x=np.zeros((10, 1, 8, 8), np.uint8), y=np.arange(10), x_test=np.zeros((4, 1, 8, 8), np.uint8),
             y_test=np.array([0, 1, 2, 12]), class_names=np.array([str(i) for i in range(10)]))
    return f"npz:{p}"


def _corrupt_folder(tmp_path: Path) -> str:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "b" / "broken.jpg").write_bytes(b"not an image at all")
    return f"folder:{tmp_path / 'imgs'}"


@pytest.mark.parametrize(
    "make_args,needle",
    [
        (lambda t: ["--dataset", f"mnist:{t / 'nowhere'}"], "does not exist"),
        (lambda t: ["--dataset", "imagenet:/x"], "unknown dataset kind 'imagenet'"),
        (lambda t: ["--dataset", _corrupt_folder(t)], "broken.jpg"),
        (lambda t: ["--dataset", _bad_npz_labels(t)], "out of range"),
        (lambda t: ["--dataset", "digits", "--initial", "5000"], "--initial 5000 is larger than the training pool"),
        (lambda t: ["--dataset", "digits", "--budget", "1000"], "more than the training pool"),
        (lambda t: ["--dataset", "digits", "--strategies", "random,oracle-magic"], "unknown strategy 'oracle-magic'"),
        (lambda t: ["--dataset", "digits", "--epochs", "many"], "--epochs expects int"),
        (lambda t: ["--dataset", "digits", "--model", "alexnet"], "unknown model 'alexnet'"),
        (lambda t: ["--dataset", "digits", "--bogus-option"], "unrecognized arguments"),
        (lambda t: ["--dataset", "digits", "--config", str(t / "none.toml")], "does not exist"),
        (lambda t: ["--dataset", "digits", "--parallel-trials", "0"], "--parallel-trials must be at least 1, not 0"),
        (lambda t: ["--dataset", "digits", "--momentum", "1"], "--momentum must be below 1, not 1"),
        (lambda t: ["--dataset", "digits", "--strategies", "dnal", "--target-update", "x"],
         "--target-update must be one of epoch, ema, not 'x'"),
        (lambda t: ["--dataset", "digits", "--strategies", "bald", "--mc-passes", "0"],
         "--mc-passes must be at least 1, not 0"),
        (lambda t: ["--dataset", "digits", "--initial", "x%"], "--initial expects a number or a percentage"),
        (lambda t: ["--dataset", "digits", "--compile", "yes"], "unrecognized arguments"),
        (lambda t: ["--dataset", "digits", "--epoch", "5"], "unrecognized arguments: --epoch 5"),  # no abbreviations
    ],
)
def test_bad_input_gives_one_line_and_exit_2_and_writes_nothing(make_args, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code = _run([*make_args(tmp_path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("activeloss: error: ")
    assert "Traceback" not in err
    assert not out.exists()


def test_version_is_printed(capsys):
    import activeloss

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"activeloss {activeloss.__version__}"


def test_bad_input_from_the_installed_command_exits_2_without_traceback(tmp_path):
    env = subprocess_env()
    proc = subprocess.run([sys.executable, "-m", "activeloss", "run", "--dataset", f"csv:{tmp_path / 'x.csv'}"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr


def test_config_file_settings_and_cli_override(tmp_path, tiny_npz):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'dataset = "npz:{tiny_npz}"\nstrategies = ["margin"]\ntrials = 1\ncycles = 2\ninitial = 10\n'
                   f'budget = 5\nsubset = 0\nepochs = 1\nbatch-size = 8\n')
    out = tmp_path / "out"
    assert _run(["--config", str(cfg), "--budget", "7", "--out", str(out), "--quiet"]) == 0
    rows = results_rows(out)
    assert [(r["strategy"], r["labeled"]) for r in rows] == [("margin", "10"), ("margin", "17")]


def _strategies_for(task: str) -> list[str]:
    from activeloss.strategies import named_for
    from activeloss.tasks import task_type

    return sorted(named_for(task_type(task)))


def test_every_registered_strategy_runs_from_the_cli(tmp_path, capsys):
    """Each strategy end to end on digits (tiny settings); loss predictors add ranking accuracy and a plot.
    The strategies that cannot work on classification (regression only) run on diabetes."""
    from activeloss.strategies import STRATEGIES

    names = _strategies_for("classification")
    out = tmp_path / "all"
    args = ["--dataset", "digits", "--strategies", ",".join(names), "--trials", "1", "--cycles", "2",
            "--initial", "30", "--budget", "10", "--epochs", "1", "--batch-size", "16", "--out", str(out), "--quiet"]
    assert _run(args) == 0
    rows = results_rows(out)
    assert sorted({r["strategy"] for r in rows}) == names
    assert all(len([r for r in rows if r["strategy"] == n]) == 2 for n in names)
    predictors = {"llal", "llal-mse", "lplgrad", "dnal", "guarded-loss"}
    for r in rows:
        assert (r["ranking_accuracy"] != "") == (r["strategy"] in predictors), r
    assert (out / "loss_prediction.png").stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "ranking accuracy" in text
    others = sorted(set(STRATEGIES) - set(names))
    assert set(others) <= set(_strategies_for("regression"))  # every strategy works on some task
    if others:
        out = tmp_path / "regression"
        args = ["--dataset", "diabetes", "--strategies", ",".join(others), "--trials", "1", "--cycles", "2",
                "--initial", "30", "--budget", "10", "--epochs", "1", "--batch-size", "16", "--out", str(out),
                "--quiet"]
        assert _run(args) == 0
        rows = results_rows(out)
        assert sorted({r["strategy"] for r in rows}) == others and len(rows) == 2 * len(others)
        assert all(r["rmse"] != "" for r in rows)


def test_a_diverged_loss_module_is_recorded_not_a_crash(tmp_path, monkeypatch):
    """NaN predicted losses (a module that diverged) leave the ranking accuracy empty; the run goes on."""
    import torch

    from activeloss.objectives import LossPredictionObjective

    monkeypatch.setattr(LossPredictionObjective, "predict_loss",
                        lambda self, taps: torch.full((taps[0].shape[0],), float("nan")))
    out = tmp_path / "nan"
    assert _run(["--dataset", "digits", "--strategies", "llal", "--trials", "1", "--cycles", "2", "--initial", "30",
                 "--budget", "10", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    rows = results_rows(out)
    assert len(rows) == 2 and all(r["ranking_accuracy"] == "" for r in rows)


def test_one_milestone_percentage_on_the_command_line(capsys):
    assert main(["run", "--dataset", "digits", "--epochs", "40", "--milestones", "80%", "--dry-run"]) == 0
    assert "milestones = [32]" in capsys.readouterr().out
    assert main(["run", "--dataset", "digits", "--milestones", "x%", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--milestones" in err[0]
