"""--executor submitit|ray: units in shards of their own, merged into the main store, resumable."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from activeloss.config import Settings
from activeloss.errors import ConfigError
from activeloss.store import Store

from conftest import results_rows, subprocess_env

submitit = pytest.importorskip("submitit")

TINY = ["--strategies", "random,entropy", "--trials", "2", "--cycles", "2", "--epochs", "2", "--quiet"]


def activeloss(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "activeloss", *args], capture_output=True, text=True,
                          env={**subprocess_env(), "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}, timeout=600)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def metrics(folder: Path) -> list[tuple]:
    """Every (strategy, trial, cycle, labeled, accuracy, ranking accuracy) row: what must not change."""
    return [(r["strategy"], r["trial"], r["cycle"], r["labeled"], r["accuracy"], r.get("ranking_accuracy"))
            for r in results_rows(folder)]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sequential") / "run"
    activeloss("run", *TINY, "--out", str(out))
    return out


@pytest.mark.slow
def test_submitit_units_give_the_sequential_results_and_a_resume_does_nothing_more(tmp_path, sequential) -> None:
    out = tmp_path / "run"
    activeloss("run", *TINY, "--out", str(out), "--executor", "submitit")
    assert metrics(out) == metrics(sequential)
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert shards == ["entropy-trial0", "entropy-trial1", "random-trial0", "random-trial1"]
    store = Store.in_folder(out)
    assert [r["status"] for r in store.runs()] == ["done"] * 4
    assert [(r["strategy"], r["trial"]) for r in store.runs()] == [("random", 0), ("entropy", 0), ("random", 1),
                                                                   ("entropy", 1)]  # the sequential order
    assert len(list((out / "checkpoints").glob("*.pt"))) == 4  # each unit's last model, for Learner.open
    jobs = sorted((out / "submitit").iterdir())
    activeloss("run", "--resume", "--out", str(out), "--executor", "submitit")
    assert metrics(out) == metrics(sequential)
    assert sorted((out / "submitit").iterdir()) == jobs  # nothing was submitted again
    report = activeloss("report", str(out / "shards" / "entropy-trial1"))  # a shard is a run folder too
    assert "entropy" in report.stdout


@pytest.mark.slow
def test_ray_units_give_the_sequential_results(tmp_path, sequential) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "run"
    activeloss("run", *TINY, "--out", str(out), "--executor", "ray", "--max-running", "2")
    assert metrics(out) == metrics(sequential)


def test_the_slurm_parameters_submitit_is_given(monkeypatch, tmp_path) -> None:
    from submitit.slurm.slurm import _make_sbatch_string

    from activeloss.loop.cluster import submitit_parameters

    s = Settings.from_dict({"gpus_per_unit": 4, "cpus_per_unit": 16, "mem_gb": 64, "time_limit": 720,
                            "partition": "gpu", "retries": 5})
    params = submitit_parameters(s, "slurm")
    assert params == {"name": "activeloss", "timeout_min": 720, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 16,
                      "gpus_per_node": 4, "mem_gb": 64, "slurm_partition": "gpu"}
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))  # as if srun were here
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm", slurm_max_num_timeout=s.retries)
    executor.update_parameters(**params)  # names submitit knows, else it raises
    script = _make_sbatch_string(command="python -m x", folder=tmp_path, **executor._executor.parameters)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=16",
                 "#SBATCH --mem=64GB", "#SBATCH --time=720", "#SBATCH --nodes=1"):
        assert line in script, line
    with pytest.raises(ConfigError, match="no Slurm"):
        submitit_parameters(s, "local")


@pytest.mark.slow
def test_a_unit_killed_mid_run_is_reported_and_resumes_to_identical_results(tmp_path) -> None:
    args = ["--strategies", "random", "--trials", "2", "--cycles", "5", "--epochs", "40", "--quiet"]
    reference = tmp_path / "reference"
    activeloss("run", *args, "--out", str(reference))
    out = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-m", "activeloss", "run", *args, "--out", str(out), "--executor",
                               "submitit"], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    shard = out / "shards" / "random-trial0"
    deadline = time.time() + 120
    while not (shard / "snapshot.sqlite").is_file():  # its first cycle is committed: kill it in the next
        assert time.time() < deadline and driver.poll() is None, "the unit never finished a cycle"
        time.sleep(0.05)
    while not (Store.exists_in(out) and Store.in_folder(out).count_evaluated() >= 1):  # merged as it arrived
        assert time.time() < deadline and driver.poll() is None, "the driver never merged the first cycle"
        time.sleep(0.05)
    snapshot = Store.read_only(shard / "snapshot.sqlite")
    assert snapshot.run_status("random", 0) != "done"  # mid-run: cycles are left
    snapshot.close()
    os.kill(json.loads((shard / "started.json").read_text())["pid"], signal.SIGKILL)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 3
    lines = [line for line in err.splitlines() if line.startswith("activeloss:")]
    assert any("random trial 0 failed" in line for line in lines), err
    assert lines[-1].startswith("activeloss: error: 1 of 2 units failed: random trial 0") and "--resume" in lines[-1]
    assert Store.in_folder(out).run_status("random", 1) == "done"  # the other unit finished
    activeloss("run", "--resume", "--out", str(out), "--executor", "submitit")
    assert metrics(out) == metrics(reference)


PLUGIN = '''
import os

import torch

from activeloss import ActiveLossError, register_acquisition


@register_acquisition("fail-once", "random scores, but the first query of all fails")
def fail_once(ctx):
    try:
        os.close(os.open(os.environ["FAIL_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return torch.rand(ctx.candidates.numel(), generator=ctx.generator)
    raise ActiveLossError("a planned failure")
'''


@pytest.mark.slow
def test_a_failing_unit_is_one_line_and_the_others_finish(tmp_path) -> None:
    (tmp_path / "failing.py").write_text(PLUGIN)
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    args = ["--plugins", str(tmp_path / "failing.py"), "--strategies", "none+fail-once", "--trials", "3",
            "--cycles", "2", "--epochs", "1", "--quiet", "--out", str(out), "--executor", "submitit"]
    done = activeloss("run", *args, env={"FAIL_MARKER": str(marker)}, ok=False)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    told = [line for line in lines if "failed: a planned failure" in line]  # as it happened (any trial may be first)
    assert len(told) == 1 and re.fullmatch(r"activeloss: none\+fail-once trial \d failed: a planned failure; the "
                                           r"other units go on", told[0]), told
    assert re.match(r"activeloss: error: 1 of 3 units failed: none\+fail-once trial \d \(a planned failure\)",
                    lines[-1]), lines[-1]
    assert "Traceback" not in done.stderr
    statuses = [r["status"] for r in Store.in_folder(out).runs()]
    assert sorted(statuses) == ["done", "done", "running"]
    activeloss("run", "--resume", "--out", str(out), "--executor", "submitit", env={"FAIL_MARKER": str(marker)})
    assert [r["status"] for r in Store.in_folder(out).runs()] == ["done"] * 3


def test_executors_refuse_parallel_trials_and_a_local_resume_of_shards(tmp_path) -> None:
    bad = activeloss("run", *TINY, "--out", str(tmp_path / "a"), "--executor", "ray", "--parallel-trials", "2",
                     ok=False)
    assert bad.returncode == 2 and "leave --parallel-trials at 1" in bad.stderr
    out = tmp_path / "b"
    (out / "shards" / "random-trial0").mkdir(parents=True)
    from activeloss.loop.cluster import check_resume

    with pytest.raises(ConfigError, match="resume it with --executor submitit or --executor ray"):
        check_resume(out, "local", Store.in_memory())
