"""The t-SNE map of tsne.png (LPLgrad) and the entropy panel of loss_prediction.png (Learning Loss's
Fig. 8): what the learner records and when, and the report drawing both from a store alone."""
from __future__ import annotations

import importlib
import math
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from activeloss import Learner, Store
from activeloss.loop.tsne import GROUPS, sample_groups, tsne_arrays
from activeloss.report import build_report, entropies, plot_loss_prediction, tsne_at
from activeloss.report.collect import open_collection
from activeloss.store import CycleResult

from conftest import make_tiny_dataset, results_rows, write_tiny_npz

DATA = make_tiny_dataset(n_train=120, n_test=40, classes=3, size=8)
SMALL = dict(epochs=2, batch_size=16, subset=50)
FIRST = torch.arange(0, 120, 6)  # 20 items


def main(argv: list[str]) -> int:
    from activeloss.cli import main as cli_main

    return cli_main(argv)


def _arrays(db: Path) -> dict[tuple[int, int, str], list]:
    import json

    with sqlite3.connect(db) as conn:
        return {(r, c, n): json.loads(v) for r, c, n, v in conn.execute("SELECT run_id, cycle, name, value FROM arrays")}


# -- the t-SNE map -------------------------------------------------------------------------
def test_the_sample_is_seeded_capped_sorted_and_grouped():
    groups = {"labeled": torch.arange(0, 50), "unlabeled": torch.arange(50, 500), "queried": torch.arange(500, 510)}
    caps = {"labeled": 20, "unlabeled": 30, "queried": 40}
    items, names = sample_groups(groups, torch.Generator().manual_seed(3), caps)
    again, _ = sample_groups(groups, torch.Generator().manual_seed(3), caps)
    other, _ = sample_groups(groups, torch.Generator().manual_seed(4), caps)
    assert torch.equal(items, again) and not torch.equal(items, other)
    assert Counter(names) == {"labeled": 20, "unlabeled": 30, "queried": 10}  # a small group is kept whole
    assert names == sorted(names, key=GROUPS.index)  # labeled, unlabeled, then the batch (drawn on top)
    for name, group in groups.items():
        mine = items[[n == name for n in names]]
        assert bool(torch.isin(mine, group).all()) and torch.equal(mine, mine.sort().values)
        assert mine.unique().numel() == mine.numel()


def test_the_map_is_deterministic_for_a_seed_and_keeps_only_finite_features():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(120, 16, generator=g) + torch.arange(120)[:, None] % 3 * 4  # three clusters
    groups = {"labeled": torch.arange(0, 40), "unlabeled": torch.arange(40, 110), "queried": torch.arange(110, 120)}
    caps = {"labeled": 30, "unlabeled": 50, "queried": 10}

    def build(seed: int, features=lambda items: table[items], draw: int = 1) -> dict[str, list]:
        return tsne_arrays(features, groups, torch.Generator().manual_seed(draw), seed, caps)

    first = build(7)
    assert first == build(7)  # the same sample and coordinates for the same seeds
    assert first["tsne_item"] != build(7, draw=2)["tsne_item"]  # another sample
    n = 90
    assert [len(first[k]) for k in ("tsne_x", "tsne_y", "tsne_group", "tsne_item")] == [n] * 4
    assert first["tsne_total"] == [40, 70, 10]
    assert Counter(first["tsne_group"]) == {"labeled": 30, "unlabeled": 50, "queried": 10}
    assert all(math.isfinite(v) for v in first["tsne_x"] + first["tsne_y"])
    assert np.ptp(first["tsne_x"]) > 1  # spread out, not collapsed

    def broken(items: torch.Tensor) -> torch.Tensor:  # a diverged model: some rows NaN
        out = table[items].clone()
        out[items % 10 == 0] = float("nan")
        return out

    partial = build(7, broken)
    assert len(partial["tsne_x"]) == sum(1 for i in first["tsne_item"] if i % 10) and 0 not in partial["tsne_item"]
    assert build(7, lambda items: torch.full((items.numel(), 4), float("nan"))) == {}


def test_the_learner_maps_the_batch_of_the_last_cycle_with_the_figures_only(tmp_path):
    learner = Learner("cnn", DATA, "llal", store=tmp_path, cycles=3, **SMALL)
    learner.teach(FIRST, DATA.y_train[FIRST], source="initial")
    batches = {}
    store = Store.in_folder(tmp_path)
    for cycle in range(3):
        learner.fit()
        learner.evaluate(figures=False)  # without the figures' arrays: never a map
        assert store.array(learner.run_id, cycle, "tsne_x") is None
        learner.evaluate(keep_losses=cycle == 2)
        if cycle < 2:
            assert store.array(learner.run_id, cycle, "tsne_x") is None  # not the plan's last cycle
            batches[cycle] = learner.query(10)
            learner.teach(batches[cycle].items, DATA.y_train[batches[cycle].items])
    group = store.array(learner.run_id, 2, "tsne_group")
    items = store.array(learner.run_id, 2, "tsne_item")
    assert group is not None and len(store.array(learner.run_id, 2, "tsne_x")) == len(items) == len(group)
    by_group = {name: sorted(i for i, g in zip(items, group) if g == name) for name in GROUPS}
    assert by_group["queried"] == sorted(batches[1].items.tolist())  # the batch the previous cycle's model chose
    labeled_before = set(FIRST.tolist()) | set(batches[0].items.tolist())
    assert set(by_group["labeled"]) == labeled_before
    assert not set(by_group["unlabeled"]) & (labeled_before | set(batches[1].items.tolist()))
    assert len(by_group["unlabeled"]) == 120 - 40  # fewer than the sample's cap: all of them
    assert store.array(learner.run_id, 2, "tsne_total") == [30, 80, 10]
    # an explicit request records it at any cycle; an explicit refusal never
    learner.evaluate(figures=False, tsne=True)
    assert store.array(learner.run_id, 2, "tsne_group") == group
    store.close()
    other = Learner("cnn", DATA, "random", cycles=2, diagnostics="every", **SMALL)
    other.teach(FIRST, DATA.y_train[FIRST])
    other.fit()
    other.evaluate()  # cycle 0 bought nothing: no map
    more = torch.tensor([1, 2, 3, 4, 5, 7, 8, 9, 10, 11])  # none of FIRST
    other.teach(more, DATA.y_train[more])
    other.fit()
    other.evaluate(tsne=False)
    assert other.store.array(other.run_id, 0, "tsne_x") is None and other.store.array(other.run_id, 1, "tsne_x") is None
    other.evaluate()
    assert Counter(other.store.array(other.run_id, 1, "tsne_group"))["queried"] == 10


TINY = ["--strategies", "random,llal", "--trials", "2", "--cycles", "3", "--initial", "20", "--budget", "10",
        "--subset", "50", "--epochs", "2", "--batch-size", "16", "--model", "cnn", "--quiet"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_npz(tmp_path_factory.mktemp("figures") / "tiny.npz", n_train=150, n_test=40)


@pytest.mark.parametrize("when, cycles", [("last", [2]), ("every", [1, 2])])
def test_the_run_records_the_map_when_diagnostics_say_so(tiny, tmp_path, when, cycles):
    out = tmp_path / when
    assert main(["run", "--dataset", f"npz:{tiny}", *TINY, *(["--diagnostics", when] if when != "last" else []),
                 "--out", str(out)]) == 0
    arrays = _arrays(out / "store.sqlite")
    with sqlite3.connect(out / "store.sqlite") as conn:
        run_of = {r: (s, t) for r, s, t in conn.execute("SELECT id, strategy, trial FROM runs")}
        queried = {(r, c): sorted(i for i, in conn.execute(
            "SELECT item FROM queries WHERE run_id = ? AND cycle = ?", (r, c))) for r in run_of for c in (0, 1)}
    trial_of = {r: t for r, (_, t) in run_of.items()}
    mapped = sorted((*run_of[r], c) for r, c, n in arrays if n == "tsne_x")
    assert mapped == sorted((s, 0, c) for s in ("random", "llal") for c in cycles)  # the first trial only
    for (run, cycle, name), x in arrays.items():
        if name != "tsne_x":
            continue
        group = arrays[(run, cycle, "tsne_group")]
        items = arrays[(run, cycle, "tsne_item")]
        assert len(x) == len(arrays[(run, cycle, "tsne_y")]) == len(group) == len(items)
        assert sorted(i for i, g in zip(items, group) if g == "queried") == queried[(run, cycle - 1)]
        labeled = 20 + 10 * cycle
        assert Counter(group) == {"labeled": labeled - 10, "queried": 10, "unlabeled": 150 - labeled}
    # the entropy of every strategy and the predicted loss of llal at the last cycle only
    entropy = {(trial_of[r], c) for r, c, n in arrays if n == "test_entropy"}
    assert entropy == {(0, 2), (1, 2)} and sum(n == "test_entropy" for _, _, n in arrays) == 4
    assert all(len(v) == 40 for (_, _, n), v in arrays.items() if n in ("test_entropy", "test_loss"))
    assert (out / "tsne.png").exists() and (out / "loss_prediction.png").exists()
    if when == "every":  # none: no map; and what the figures record never changes the results
        plain = tmp_path / "plain"
        assert main(["run", "--dataset", f"npz:{tiny}", *TINY, "--diagnostics", "none", "--out", str(plain)]) == 0
        names = {n for _, _, n in _arrays(plain / "store.sqlite")}
        assert "tsne_x" not in names and "test_entropy" in names and not (plain / "tsne.png").exists()
        assert results_rows(plain) == results_rows(out)


# -- the entropy -------------------------------------------------------------------------------
def test_the_recorded_entropy_is_minus_p_log_p_summed_over_the_classes(tmp_path):
    learner = Learner("cnn", DATA, "random", store=tmp_path, **SMALL)
    learner.teach(FIRST, DATA.y_train[FIRST])
    learner.fit()
    learner.evaluate(keep_losses=True)
    recorded = learner.store.array(learner.run_id, 0, "test_entropy")
    real = learner.store.array(learner.run_id, 0, "test_loss")
    assert learner.store.array(learner.run_id, 0, "predicted_loss") is None  # random has no loss module
    model = learner.model_at().eval()
    with torch.no_grad():
        logits = model(learner.inputs.test_batch(0, 40)).double()
    slow = []
    for row in logits.tolist():  # the obvious way: softmax, then -sum p log p with 0 log 0 = 0
        exps = [math.exp(v - max(row)) for v in row]
        ps = [e / sum(exps) for e in exps]
        slow.append(-sum(p * math.log(p) for p in ps if p > 0))
    assert recorded == pytest.approx(slow, abs=1e-5)
    labels = DATA.y_test.tolist()
    assert real == pytest.approx([-math.log(math.exp(r[y]) / sum(math.exp(v) for v in r))
                                  for r, y in zip(logits.tolist(), labels)], abs=1e-4)
    # a certain prediction has no entropy, an even one log C
    from activeloss.scoring import entropy

    assert entropy(torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])).tolist() == pytest.approx([0.0, math.log(3)])


def test_a_regression_run_records_no_entropy():
    x = torch.randn(80, 5, generator=torch.Generator().manual_seed(0))
    y = x.sum(dim=1)
    learner = Learner("mlp", (x[:60], y[:60], x[60:], y[60:]), "random", task="regression", epochs=2, batch_size=16)
    learner.teach(torch.arange(20), y[:20])
    learner.fit()
    learner.evaluate(keep_losses=True)
    names = {n for n, in learner.store.conn.execute("SELECT name FROM arrays")}
    assert not names & {"test_entropy", "test_loss", "predicted_loss"}  # nothing to plot the loss against


# -- the report ---------------------------------------------------------------------------------
DATASET = {"spec": "digits", "train": 100, "test": 4, "classes": ["zero", "one", "two"]}
REAL = [0.1, 0.5, 2.0, 3.0]


def _map(n: int = 60) -> dict[str, list]:
    g = np.random.default_rng(0)
    groups = ["labeled"] * 20 + ["unlabeled"] * (n - 30) + ["queried"] * 10
    return {"tsne_x": g.normal(size=n).round(3).tolist(), "tsne_y": g.normal(size=n).round(3).tolist(),
            "tsne_group": groups, "tsne_item": list(range(n)), "tsne_total": [20, 70, 10]}


def make_store(folder: Path, task: dict | None = None, entropy: bool = True, tsne: bool = True) -> Path:
    """Two strategies, two trials, three cycles: llal with predicted losses, both with entropies and,
    in trial 0, a t-SNE map at the last cycle."""
    folder.mkdir(parents=True)
    store = Store.in_folder(folder)
    store.set_meta("dataset", DATASET)
    store.set_meta("settings", {"seed": 0})
    if task is not None:
        store.set_meta("task", task)
    metric = (task or {"metrics": [{"name": "accuracy"}]})["metrics"][0]["name"]
    for strategy in ("random", "llal"):
        for trial in (0, 1):
            run = store.run_id(strategy, trial, {"seed": 0, "cycles": 3})
            for cycle in range(3):
                arrays: dict[str, list] = {}
                if cycle == 2:
                    if strategy == "llal":
                        arrays.update(test_loss=REAL, predicted_loss=[0.2, 0.1, 0.9, 1.0])
                    if entropy:
                        arrays.update(test_loss=REAL, test_entropy=[0.3, 0.2, 0.9, 0.7 + trial])
                    if tsne and trial == 0:
                        arrays.update(_map())
                store.record_cycle(run, CycleResult(cycle, 10 * (cycle + 1), 1.0, 0.5, {metric: 0.5},
                                                    arrays=arrays or None))
    store.close()
    return folder


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_the_report_draws_the_map_and_the_entropy_beside_the_predicted_loss(tmp_path, monkeypatch):
    folder = make_store(tmp_path / "run")
    drawn: list = []
    report_module = importlib.import_module("activeloss.report")

    def spy(*args, **kwargs):
        drawn.append(plot_loss_prediction(*args, **kwargs))

    monkeypatch.setattr(report_module, "plot_loss_prediction", spy)
    result = build_report(folder)
    names = {p.name for p in result.files}
    assert {"tsne.png", "loss_prediction.png"} <= names
    assert _png(folder / "tsne.png") and _png(folder / "loss_prediction.png")
    # the report's strategy order; llal's two panels side by side
    assert drawn == [[("random", "entropy"), ("llal", "predicted"), ("llal", "entropy")]]
    with open_collection([folder]) as col:
        ent = entropies(col)
        assert list(ent) == ["random", "llal"] and ent["random"][1].tolist() == [0.3, 0.2, 0.9, 0.7]  # trial 0
        maps = tsne_at(col, 2, {"random": 30, "llal": 30})
        assert list(maps) == ["random", "llal"] and len(maps["llal"]["x"]) == 60 and maps["llal"]["labels"] == 30
        assert maps["llal"]["total"] == [20, 70, 10]
        assert tsne_at(col, 1, {}) == {}
    # --cycle 1 has no map: no tsne.png (a stale one is not listed)
    assert "tsne.png" not in {p.name for p in build_report(folder, tmp_path / "c1", cycle=1).files}


def test_the_entropy_panel_alone_and_none_for_regression(tmp_path, monkeypatch):
    report_module = importlib.import_module("activeloss.report")
    drawn: list = []
    monkeypatch.setattr(report_module, "plot_loss_prediction",
                        lambda *a, **k: drawn.append(plot_loss_prediction(*a, **k)))
    regression = {"name": "regression", "metrics": [
        {"name": "rmse", "higher_is_better": False, "percent": False, "description": "root mean squared error"}]}
    folder = make_store(tmp_path / "regression", task=regression, entropy=False, tsne=False)
    files = {p.name for p in build_report(folder).files}
    assert drawn == [[("llal", "predicted")]] and "tsne.png" not in files
    with open_collection([folder]) as col:
        assert entropies(col) == {}
    # a strategy without a loss module still has its entropy panel
    pairs = {"llal": (np.array(REAL), np.array([0.2, 0.1, 0.9, 1.0]))}
    ent = {s: (np.array(REAL), np.array([0.3, 0.2, 0.9, 0.7])) for s in ("a", "b", "llal")}
    path = tmp_path / "alone.png"
    assert plot_loss_prediction({}, path, entropy=ent) == [("a", "entropy"), ("b", "entropy"), ("llal", "entropy")]
    assert _png(path)
    # with 4 columns a pair never straddles two rows: b's single panel, then a blank, then llal's two
    order = {"a": 0, "x": 1, "b": 2, "llal": 3}
    ent["x"] = ent["a"]
    colors = {s: "C0" for s in order}
    assert plot_loss_prediction(pairs, path, colors, entropy=ent) == [
        ("a", "entropy"), ("x", "entropy"), ("b", "entropy"), ("llal", "predicted"), ("llal", "entropy")]
