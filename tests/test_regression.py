"""Regression, the second task: per-sample squared error on the standardised target, RMSE and
MAE in the target's units (lower is better), MC-dropout predictive variance, end to end."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from activeloss import Dataset, Learner, Settings, run
from activeloss.cli import main
from activeloss.objectives import Objective, Step
from activeloss.report import build_report
from activeloss.scoring import predictive_variance
from activeloss.tasks import RegressionTask


def _data(n: int = 160, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = 50 + 10 * (x[:, 0] - 2 * x[:, 1]) + torch.randn(n, generator=g)
    cut = n * 3 // 4
    return Dataset.from_tensors(x[:cut], y[:cut], x[cut:], y[cut:], name="synthetic")


def test_loss_is_a_per_sample_vector_on_the_standardised_target():
    task = RegressionTask()
    targets = torch.tensor([10.0, 14.0, 12.0, 20.0])
    task.calibrate(targets[:3])  # the first labels: mean 12, std 2
    assert (task.mean, task.std) == (12.0, 2.0)
    outputs = torch.tensor([[0.5], [1.0], [-1.0], [2.0]], requires_grad=True)
    loss = task.loss(outputs, targets)
    expected = [(0.5 - (-1.0)) ** 2, (1.0 - 1.0) ** 2, (-1.0 - 0.0) ** 2, (2.0 - 4.0) ** 2]
    assert loss.shape == (4,) and loss.tolist() == pytest.approx(expected)
    loss.sum().backward()  # differentiable per sample
    assert outputs.grad is not None and outputs.grad[1, 0] == 0
    metrics = task.evaluate(outputs.detach(), targets)
    predictions = [o * 2 + 12 for o in (0.5, 1.0, -1.0, 2.0)]
    errors = [p - t for p, t in zip(predictions, targets.tolist())]
    assert metrics["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 4))
    assert metrics["mae"] == pytest.approx(sum(abs(e) for e in errors) / 4)
    assert [m.higher_is_better for m in task.metrics] == [False, False]


def test_a_single_or_constant_first_label_keeps_std_one():
    task = RegressionTask()
    task.calibrate(torch.tensor([3.0]))
    assert (task.mean, task.std) == (3.0, 1.0)
    task.calibrate(torch.tensor([5.0, 5.0]))
    assert (task.mean, task.std) == (5.0, 1.0)


def test_standardisation_uses_the_initial_labels_only_and_stays_fixed():
    data = _data()
    learner = Learner("mlp", data, "random", epochs=2, batch_size=8)
    first = torch.arange(10)
    learner.teach(first, data.y_train[first])
    learner.fit()
    mean, std = learner.task.mean, learner.task.std
    assert mean == pytest.approx(float(data.y_train[first].double().mean()))
    assert std == pytest.approx(float(data.y_train[first].double().std()))
    learner.teach(torch.arange(10, 20), data.y_train[10:20] + 1000)  # wildly different later labels
    learner.fit()
    assert (learner.task.mean, learner.task.std) == (mean, std)
    reopened_mean = Learner("mlp", data, "random", epochs=2, batch_size=8)
    reopened_mean.teach(first, data.y_train[first])
    reopened_mean.fit()
    assert reopened_mean.task.mean == mean  # the same labels, the same standardisation


def test_the_loss_predictor_sees_one_loss_per_sample():
    seen = []

    class Spy(Objective):
        def batch_loss(self, step: Step):
            seen.append((tuple(step.losses.shape), tuple(step.outputs.shape)))
            return None

    from activeloss.objectives import OBJECTIVES

    if "spy-losses" not in OBJECTIVES:
        OBJECTIVES.register("spy-losses", Spy, "records the per-sample losses it is given")
    data = _data()
    learner = Learner("mlp", data, "spy-losses+random", epochs=1, batch_size=8)
    learner.teach(torch.arange(16), data.y_train[:16])
    learner.fit()
    assert seen == [((8,), (8, 1)), ((8,), (8, 1))]


def test_mc_variance_scores_are_the_variance_of_the_passes():
    values = torch.tensor([[[1.0], [0.0]], [[3.0], [0.0]], [[2.0], [0.0]]])  # T=3, N=2, D=1
    scores = predictive_variance(values)
    assert scores.tolist() == pytest.approx([np.var([1.0, 3.0, 2.0]), 0.0])
    with pytest.raises(ValueError, match="3-d tensor"):
        predictive_variance(values[0])


def test_mc_variance_queries_the_most_uncertain_items():
    data = _data()
    learner = Learner("mlp", data, "mc-variance", epochs=3, batch_size=8, mc_passes=8, subset=40)
    learner.teach(torch.arange(20), data.y_train[:20])
    learner.fit()
    batch = learner.query(5)
    assert batch.scores is not None and torch.all(batch.scores[:-1] >= batch.scores[1:])
    assert torch.all(batch.scores >= 0)


def _uci_layout(root: Path, n: int = 90, splits: int = 2) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = 5 + 3 * x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=n)
    data = root / "toy" / "data"
    data.mkdir(parents=True)
    np.savetxt(data / "data.txt", np.column_stack([x, y]))
    (data / "index_features.txt").write_text("0\n1\n2\n")
    (data / "index_target.txt").write_text("3\n")
    for s in range(splits):
        order = rng.permutation(n)
        np.savetxt(data / f"index_train_{s}.txt", order[:70], fmt="%d")
        np.savetxt(data / f"index_test_{s}.txt", order[70:], fmt="%d")
    return root / "toy"


@pytest.mark.slow
def test_a_regression_comparison_from_the_cli_and_its_report(tmp_path, capsys):
    folder = _uci_layout(tmp_path)
    out = tmp_path / "out"
    args = ["run", "--dataset", f"uci:{folder}", "--split", "1", "--trials", "2", "--cycles", "3", "--initial", "10",
            "--budget", "10", "--epochs", "20", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "RMSE (lower is better)" in text and "MAE (lower is better)" in text
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == ["strategy", "trial", "cycle", "labeled", "rmse", "mae"]
    assert {r["strategy"] for r in rows} == {"random", "llal", "llal-mse", "coreset", "mc-variance"}
    assert len(rows) == 5 * 2 * 3
    assert (out / "curves.png").is_file() and (out / "loss_prediction.png").is_file()
    assert not (out / "per_class.png").exists() and not (out / "confidence.png").exists()
    report = build_report([out], reach=[1.0])
    assert "labels to 1" in report.text
    assert main(["run", "--dataset", f"uci:{folder}", "--split", "2", "--out", str(tmp_path / "x")]) == 2
    assert "split 2 does not exist" in capsys.readouterr().err


def test_a_regression_experiment_from_python(tmp_path):
    store = run(Settings.from_dict({"dataset": "diabetes", "strategies": ["random", "llal"], "trials": 1,
                                    "cycles": 2, "epochs": 5, "out": str(tmp_path / "d")}), progress=False)
    assert store is not None
    rows = store.results()
    assert [(r["strategy"], r["labeled"]) for r in rows] == [("random", 20), ("random", 40), ("llal", 20), ("llal", 40)]
    assert all(r["rmse"] > 0 and r["mae"] > 0 for r in rows)
    assert store.task()["metrics"][0] == {"name": "rmse", "higher_is_better": False, "percent": False,
                                          "description": store.task()["metrics"][0]["description"]}


def test_label_noise_and_initial_classes_refuse_real_targets(tmp_path):
    for extra in (["--label-noise", "0.1"], ["--initial-classes", "2"]):
        code = main(["run", "--dataset", "diabetes", "--out", str(tmp_path / "n"), "--quiet", *extra])
        assert code == 2
