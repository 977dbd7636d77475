"""scripts/guarded_benchmark.py: its summary agrees with `activeloss report` and pairs trials right."""
import csv
import importlib.util
from pathlib import Path

import pytest
from test_cli import TINY

from activeloss.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "guarded_benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("guarded_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_summary_matches_the_report_and_pairs_trials(bench, tmp_path, tiny_npz):
    out = tmp_path / "out"
    setting = next(iter(bench.SETTINGS))
    for part, strategies in (("baselines", "random,coreset"), ("guarded", "guarded-loss")):
        assert main(["run", "--dataset", f"npz:{tiny_npz}", "--strategies", strategies, *TINY,
                     "--out", str(out / setting / part)]) == 0
    text = bench.summary(out, tmp_path / "docs")
    assert (tmp_path / "docs" / "summary.md").read_text() == text
    assert main(["report", str(out / setting / "baselines"), str(out / setting / "guarded"),
                 "--csv", str(tmp_path / "report.csv")]) == 0
    with open(tmp_path / "report.csv") as f:
        reported = {r["strategy"]: r for r in csv.DictReader(f) if r["kind"] == "aubc" and r["metric"] == "accuracy"}
    row = next(line for line in text.splitlines() if line.startswith(f"| {setting} |"))
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")][1:]
    by_strategy = dict(zip([*bench.BASELINES, bench.OURS], cells))
    for strategy in ("random", "coreset", "guarded-loss"):
        mean = float(by_strategy[strategy].split(" ± ")[0])
        assert mean == pytest.approx(100 * float(reported[strategy]["mean"]), abs=0.006)
    assert by_strategy["entropy"] == "-"
    # the paired difference: guarded-loss minus random, trial by trial
    areas, _, _ = bench._trial_aubcs([out / setting / "baselines", out / setting / "guarded"])
    diffs = [areas["guarded-loss"][t] - areas["random"][t] for t in (0, 1)]
    paired = next(line for line in text.splitlines() if line.startswith(f"| {setting} |") and "of 2" in line)
    assert paired.split("|")[2].strip().startswith(f"{100 * sum(diffs) / 2:+.2f}")
    assert f"{sum(d > 0 for d in diffs)} of 2" in paired


def test_compare_lists_each_folder(bench, tmp_path, tiny_npz):
    for name in ("a", "b"):
        assert main(["run", "--dataset", f"npz:{tiny_npz}", "--strategies", "random", *TINY,
                     "--out", str(tmp_path / name)]) == 0
    lines = bench.compare([tmp_path / "a", tmp_path / "b"]).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["a", "b"]
    assert lines[2].split("|")[3:] == lines[3].split("|")[3:]  # same seed, same results
