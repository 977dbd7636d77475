"""The README's examples run exactly as printed.

A fenced block right after ``<!-- example: NAME -->`` is a Python script, after
``<!-- example-file: NAME -->`` a file the scripts import, after ``<!-- example-shell: NAME -->``
a shell command; each runs in a fresh folder holding the example files.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!-- (example|example-file|example-shell): ([\w.-]+) -->\n```\w*\n(.*?)```", re.S)


def _examples() -> dict[tuple[str, str], str]:
    return {(kind, name): code for kind, name, code in _BLOCK.findall(README.read_text())}


EXAMPLES = _examples()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for (kind, name), code in EXAMPLES.items():
        if kind == "example-file":
            (tmp_path / name).write_text(code)
    return tmp_path


def _run(folder: Path, kind: str, name: str) -> subprocess.CompletedProcess:
    code = EXAMPLES[(kind, name)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if kind == "example-shell":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        (folder / f"{name}.py").write_text(code)
        command = [sys.executable, f"{name}.py"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README example {name} failed:\n{done.stderr[-3000:]}"
    return done


def test_the_readme_has_its_examples():
    assert {name for _, name in EXAMPLES} >= {"python-api", "python-experiment", "my_acquisition.py",
                                               "use-my-acquisition", "cli-my-acquisition"}


def test_python_api_example(folder):
    out = _run(folder, "example", "python-api").stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in out] == [["0", "40"], ["1", "80"], ["2", "120"]]
    assert all("'accuracy'" in line and "'ranking_accuracy'" in line for line in out)
    assert (folder / "my-run" / "store.sqlite").is_file()


@pytest.mark.slow
def test_python_experiment_example(folder):
    out = _run(folder, "example", "python-experiment").stdout
    assert "RMSE (lower is better)" in out and "mc-variance" in out
    with open(folder / "diabetes-run" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 3 and float(rows[0]["rmse"]) > 0


def test_add_your_own_acquisition_examples(folder):
    picks = _run(folder, "example", "use-my-acquisition").stdout.strip()
    items = [int(v) for v in picks.strip("[]").split(",")]
    assert len(items) == 10 and len(set(items)) == 10
    _run(folder, "example-shell", "cli-my-acquisition")
    with open(folder / "soft-margin-run" / "results.csv") as f:
        strategies = {r["strategy"] for r in csv.DictReader(f)}
    assert strategies == {"random", "lossnet+soft-margin"}
    resumed = subprocess.run([sys.executable, "-m", "activeloss", "run", "--resume", "--out", "soft-margin-run",
                              "--quiet"], cwd=folder, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr  # the stored --plugins are imported again


@pytest.mark.slow
def test_label_your_data_example(folder):
    out = _run(folder, "example-shell", "label-your-data").stdout
    assert "60 images, 3 classes, 12 labeled; 9 labeled validation items" in out
    assert "queried 12 items by llal with model version 1" in out
    assert "v1   llal" in out and "accuracy" in out
    rows = list(csv.DictReader(open(folder / "predictions.csv")))
    assert len(rows) == 60 and rows[0]["model_version"] == "1"
    tasks = json.loads((folder / "tasks.json").read_text())
    assert len(tasks) == 12 and sorted(t["data"]["rank"] for t in tasks) == list(range(1, 13))
    assert (folder / "tasks.config.xml").is_file()
