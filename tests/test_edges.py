"""What a new user trips over: a dead worker, an unwritable --out, Ctrl-C, kept models, honest times."""
from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from activeloss import Learner
from activeloss.cli import main

from conftest import results_rows, subprocess_env, write_tiny_npz

TINY = ["--strategies", "random,entropy", "--trials", "2", "--cycles", "3", "--initial", "20", "--budget", "10",
        "--subset", "50", "--epochs", "2", "--batch-size", "16", "--model", "cnn"]
SLOW = [*TINY[:-6], "--epochs", "80", "--batch-size", "8", "--model", "cnn"]  # a few seconds per cycle: time to kill


def _workers(pid: int) -> list[int]:
    """The worker processes of ``--parallel-trials`` started by process ``pid``."""
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _evaluated(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT run_id, cycle FROM metrics)").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edges")
    npz = write_tiny_npz(folder / "tiny.npz")
    out = folder / "reference"
    assert main(["run", "--dataset", f"npz:{npz}", *TINY, "--out", str(out), "--quiet"]) == 0
    return npz, out


@pytest.fixture(scope="module")
def slow_reference(reference, tmp_path_factory):
    npz, _ = reference
    out = tmp_path_factory.mktemp("edges-slow") / "reference"
    assert main(["run", "--dataset", f"npz:{npz}", *SLOW, "--out", str(out), "--quiet"]) == 0
    return npz, out


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_with_one_line_and_resume_finishes_it(slow_reference, tmp_path):
    npz, ref = slow_reference
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "activeloss", "run", "--dataset", f"npz:{npz}", *SLOW, "--out", str(out), "--quiet",
           "--parallel-trials", "2"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while _evaluated(out / "store.sqlite") < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        workers = _workers(proc.pid)
        assert proc.poll() is None and workers, "the run ended before a worker could be killed"
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)  # the parent notices at once: no hang
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err.strip().splitlines()
    assert proc.returncode == 3, err
    assert len(lines) == 1 and "died (signal 9)" in lines[0] and " trial " in lines[0], err
    assert f"--resume --out {out}" in lines[0] and "Traceback" not in err and "leaked" not in err
    assert not [p for p in workers if Path(f"/proc/{p}").exists() and "zombie" not in
                Path(f"/proc/{p}/status").read_text().lower()]  # the other worker is stopped too
    done = subprocess.run([sys.executable, "-m", "activeloss", "run", "--resume", "--out", str(out), "--quiet"],
                          env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert results_rows(out) == results_rows(ref)


@pytest.mark.slow
def test_ctrl_c_names_the_folder_to_resume_and_kill_9_leaves_no_warning(slow_reference, tmp_path):
    npz, ref = slow_reference
    for sig, parallel in ((signal.SIGINT, []), (signal.SIGKILL, ["--parallel-trials", "2"])):
        out = tmp_path / f"stopped-{sig.name}"
        cmd = [sys.executable, "-m", "activeloss", "run", "--dataset", f"npz:{npz}", *SLOW, "--out", str(out),
               "--quiet", *parallel]
        proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 600  # a guard against a hang, generous for a loaded machine
        while _evaluated(out / "store.sqlite") < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _evaluated(out / "store.sqlite") >= 1, "the run never finished its first cycle"
        assert proc.poll() is None, "the run ended before it could be stopped: make SLOW slower"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        time.sleep(0.5)  # an orphaned resource tracker would print its warning now
        if sig == signal.SIGINT:
            assert proc.returncode == 130
            assert err.strip() == f"activeloss: interrupted; continue with: activeloss run --resume --out {out}"
        assert "leaked" not in err and "Traceback" not in err, err
        done = subprocess.run([sys.executable, "-m", "activeloss", "run", "--resume", "--out", str(out), "--quiet"],
                              env=subprocess_env(), capture_output=True, text=True)
        assert done.returncode == 0 and "leaked" not in done.stderr, done.stderr
        assert results_rows(out) == results_rows(ref)


@pytest.mark.parametrize("where", ["/proc/activeloss-out", "FILE/below"])
def test_an_unwritable_out_is_one_line_before_any_work(where, tmp_path, capsys):
    if where.startswith("FILE"):
        (tmp_path / "a-file").write_text("x")
        where = str(tmp_path / "a-file" / "below")
    started = time.perf_counter()
    code = main(["run", "--dataset", "digits", "--out", where, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"activeloss: error: --out {where}")
    assert ("cannot write there" in err[0]) or ("is a file, not a folder" in err[0])
    assert time.perf_counter() - started < 5  # refused before the data is loaded and anything runs


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "deeper"
    assert main(["run", "--dataset", "digits", "--strategies", "nope", "--out", str(out), "--quiet"]) == 2
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("keep, per_run", [("last", [2]), ("all", [0, 1, 2]), ("none", [])])
def test_kept_models_load_from_python(reference, tmp_path, keep, per_run):
    npz, ref = reference
    out = tmp_path / keep
    args = ["run", "--dataset", f"npz:{npz}", *TINY, "--out", str(out), "--quiet"]
    assert main([*args, *([] if keep == "last" else ["--keep-models", keep])]) == 0
    kept = sorted((out / "checkpoints").glob("*.pt"))
    assert len(kept) == 4 * len(per_run)  # 2 strategies x 2 trials
    assert sorted({int(p.stem.split("cycle")[1]) for p in kept}) == per_run
    if keep == "none":
        return
    learner = Learner.open(out, "entropy", trial=1)
    model = learner.model_at()
    with torch.no_grad():
        model.eval()
        x = learner.inputs.test_batch(0, learner.data.x_test.shape[0])
        accuracy = float((model(x).argmax(1) == learner.data.y_test).float().mean())
    with open(out / "results.csv") as f:
        final = [r for r in csv.DictReader(f) if r["strategy"] == "entropy" and r["trial"] == "1"][-1]
    assert f"{accuracy:.6g}" == final["accuracy"]  # the final model, as evaluated by the run


def test_the_times_add_up_and_the_plan_is_announced(reference, tmp_path, capsys):
    npz, _ = reference
    out = tmp_path / "timed"
    assert main(["run", "--dataset", f"npz:{npz}", *TINY, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "plan: 2 strategies x 2 trials = 4 runs x 3 cycles x 2 epochs = 24 epochs of training" in captured.err
    assert "the plan's training should take about" in captured.err
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        phases = sum(float(r[k]) for k in ("train_seconds", "eval_seconds", "diagnostics_seconds", "query_seconds"))
        assert float(r["wall_seconds"]) >= phases - 1e-6 and float(r["eval_seconds"]) > 0
    table = captured.out.split("seconds per trial")[1]
    assert "| strategy | train s | evaluation s | diagnostics s | query s | other s | wall s / trial |" in \
        table.replace("  ", " ").replace("  ", " ").replace("  ", " ").replace("  ", " ")


@pytest.mark.parametrize("when, cycles", [("last", [2]), ("none", []), ("every", [0, 1, 2])])
def test_the_costly_figure_data_is_recorded_when_asked(reference, tmp_path, when, cycles):
    npz, ref = reference
    out = tmp_path / when
    args = ["run", "--dataset", f"npz:{npz}", *TINY, "--out", str(out), "--quiet"]
    assert main([*args, *([] if when == "last" else ["--diagnostics", when])]) == 0
    db = sqlite3.connect(out / "store.sqlite")
    confidence = {c for c, in db.execute("SELECT DISTINCT cycle FROM arrays WHERE name = 'confidence_labeled'")}
    per_class = {c for c, in db.execute("SELECT DISTINCT cycle FROM arrays WHERE name = 'per_class_accuracy'")}
    db.close()
    assert sorted(confidence) == cycles and sorted(per_class) == [0, 1, 2]  # per-class accuracy is free: always
    assert (out / "confidence.png").exists() == bool(cycles)
    assert results_rows(out) == results_rows(ref)  # what the figures record never changes the results


def test_a_one_epoch_plan_gets_its_estimate_too(reference, tmp_path, capsys):
    npz, _ = reference
    args = [a if a != "2" or TINY[i - 1] != "--epochs" else "1" for i, a in enumerate(TINY)]
    assert main(["run", "--dataset", f"npz:{npz}", *args, "--out", str(tmp_path / "one")]) == 0
    err = capsys.readouterr().err
    assert "x 1 epochs" in err and "one epoch on 20 items took" in err and "should take about" in err
