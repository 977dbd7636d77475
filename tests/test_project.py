"""Labeling projects: answers as events, the labels they add up to, and the learner each round."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from activeloss.errors import ActiveLossError, ConfigError, DataError, PoolError
from activeloss.project import Project
from activeloss.project.answers import Answer, agreement, derive
from activeloss.scoring.typical import cold_start
from activeloss.store import Store

from conftest import IMAGE_CLASSES, make_images, subprocess_env

CLASSES = IMAGE_CLASSES
FAST = {"epochs": 3, "model": "cnn", "batch_size": 16}




@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    root = tmp_path / "images"
    return root, make_images(root, 45)


def a(id: int, item: int, who: str, kind: str = "label", label: int | None = None, undoes: int | None = None) -> Answer:
    return Answer(id, item, who, kind, label, undoes)  # type: ignore[arg-type]


# -- answers -> labels -------------------------------------------------------------
def test_majority_wins_and_a_tie_goes_to_the_latest_answer() -> None:
    events = [a(1, 0, "x", label=2), a(2, 0, "y", label=1), a(3, 0, "z", label=1),  # 2 votes for 1
              a(4, 1, "x", label=0), a(5, 1, "y", label=2)]  # a tie: y answered last
    d = derive(events)
    assert d.labels == {0: 1, 1: 2}
    assert d.deciding[1].id == 5
    tie_the_other_way = derive([a(1, 1, "y", label=2), a(2, 1, "x", label=0)])
    assert tie_the_other_way.labels == {1: 0}


def test_an_annotator_counts_once_per_item_with_their_latest_answer() -> None:
    d = derive([a(1, 0, "x", label=2), a(2, 0, "x", label=2), a(3, 0, "x", label=1), a(4, 0, "y", label=2)])
    assert d.labels == {0: 2}  # x's answer in force is 1 (one vote), y's is 2: a tie, y answered last
    d = derive([a(1, 0, "x", label=2), a(2, 0, "y", label=1), a(3, 0, "x", label=1)])
    assert d.labels == {0: 1}


def test_undo_takes_back_the_answer_it_names_and_skips_only_count_without_a_label() -> None:
    events = [a(1, 0, "x", label=2), a(2, 1, "x", "skip"), a(3, 1, "x", "undo", undoes=2), a(4, 0, "x", "undo", undoes=1)]
    d = derive(events)
    assert d.labels == {} and d.skipped == set() and d.current == {}
    d = derive([a(1, 0, "x", "skip"), a(2, 0, "y", label=1), a(3, 2, "y", "skip")])
    assert d.labels == {0: 1} and d.skipped == {2}


def test_agreement_counts_the_items_both_annotators_labeled() -> None:
    d = derive([a(1, 0, "x", label=1), a(2, 0, "y", label=1), a(3, 1, "x", label=0), a(4, 1, "y", label=2),
                a(5, 2, "x", label=0)])
    (g,) = agreement(d)
    assert (g.first, g.second, g.items, g.agreed) == ("x", "y", 2, 1)


# -- making a project ------------------------------------------------------------------
def test_create_reads_images_of_any_size_and_keeps_nothing_on_a_bad_labels_file(tmp_path: Path, images) -> None:
    root, truth = images
    bad = tmp_path / "labels.csv"
    bad.write_text("item,label\npart0/img000.png,red\npart0/nope.png,red\n")
    with pytest.raises(DataError, match="no item 'part0/nope.png'"):
        Project.create(tmp_path / "p", CLASSES, images=root, labels=bad)
    assert not (tmp_path / "p").exists()
    bad.write_text("item,label\npart0/img000.png,purple\n")
    with pytest.raises(DataError, match="unknown class 'purple'"):
        Project.create(tmp_path / "p", CLASSES, images=root, labels=bad)
    good = tmp_path / "good.csv"
    good.write_text("item,label\npart0/img000.png,red\npart1/img001.png,green\n")
    p = Project.create(tmp_path / "p", CLASSES, images=root, labels=good, size=16)
    assert p.size == len(truth) and p.dataset().x_train.shape == (len(truth), 3, 16, 16)
    assert p.records.keys() == sorted(truth)
    assert p.derived().labels == {p.item_of("part0/img000.png"): 0, p.item_of("part1/img001.png"): 1}
    assert not p.has_val and p.dataset().x_test.shape[0] == 0
    with pytest.raises(ConfigError, match="already holds a project"):
        Project.create(tmp_path / "p", CLASSES, images=root)


def test_a_corrupt_image_is_named(tmp_path: Path, images) -> None:
    root, _ = images
    (root / "part0" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        Project.create(tmp_path / "p", CLASSES, images=root)


# -- answering -----------------------------------------------------------------------
def test_answers_are_idempotent_by_request_and_undo_names_its_item(tmp_path: Path, images) -> None:
    p = Project.create(tmp_path / "p", CLASSES, images=images[0])
    first = p.answer(3, "ann", "label", 1, request="r1")
    again = p.answer(3, "ann", "label", 2, request="r1")  # the same request sent twice
    assert first is not None and again is not None and again.id == first.id
    assert p.answer(3, "ann", "label", 1, request="r2").id == first.id  # the same answer again: not repeated
    assert len(p.answers()) == 1
    p.answer(5, "ann", "skip")
    undo = p.undo("ann")
    assert undo is not None and undo.item == 5 and undo.undoes is not None
    assert p.derived().labels == {3: 1} and p.derived().skipped == set()
    assert p.undo("other") is None  # nothing to undo
    for bad in (lambda: p.answer(999, "ann", "label", 0), lambda: p.answer(1, "ann", "label", 3),
                lambda: p.answer(1, "", "label", 0), lambda: p.answer(1, "ann", "undo"), lambda: p.undo("")):  # type: ignore[arg-type]
        with pytest.raises(PoolError):
            bad()


# -- the first batch --------------------------------------------------------------------
def test_cold_start_takes_a_typical_item_of_each_group_largest_first() -> None:
    from activeloss.data import Inputs

    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [30, 12, 5]
    x = torch.cat([c + 0.3 * torch.randn(n, 2, generator=gen) for c, n in zip(centres, sizes)])
    inputs = Inputs(x, torch.zeros(len(x)), x[:0], torch.zeros(0), torch.zeros(1, 2), torch.ones(1, 2), (), 0,
                    torch.device("cpu"))
    picks, scores = cold_start(inputs, torch.arange(len(x)), 3, seed=0)
    group = [0 if i < 30 else 1 if i < 42 else 2 for i in picks]
    assert group == [0, 1, 2]  # one per blob, the largest first
    assert scores == pytest.approx([30 / 47, 12 / 47, 5 / 47])
    for i, g in zip(picks, group):  # the pick is the blob's most central member
        members = x[[j for j in range(len(x)) if (0 if j < 30 else 1 if j < 42 else 2) == g]]
        assert torch.allclose(x[i], members[(members - members.mean(0)).norm(dim=1).argmin()])
    assert cold_start(inputs, torch.arange(len(x)), 3, seed=0)[0] == picks  # seeded


# -- rounds ------------------------------------------------------------------------------
def label_batch(p: Project, truth: dict[str, int], who: str = "ann", skip: int = 0) -> list[int]:
    keys = p.records.keys()
    open_items = [b.item for b in p.batch() if b.item not in p.derived().labels]
    for i, item in enumerate(open_items):
        if i < skip:
            p.answer(item, who, "skip")
        else:
            p.answer(item, who, "label", truth[keys[item]])
    return open_items


@pytest.mark.slow
def test_rounds_train_versions_sync_changed_labels_and_never_requery_pending_or_skipped(tmp_path: Path) -> None:
    root = tmp_path / "images"
    truth = make_images(root, 45)
    val = tmp_path / "val"
    make_images(val, 12, seed=1, by_class=True)
    p = Project.create(tmp_path / "p", CLASSES, images=root, val=val, **FAST)
    first = p.query(6)
    assert first.version == 0 and len(set(first.items)) == 6
    skipped = label_batch(p, truth, skip=1)[0]
    fit = p.fit()
    assert fit.version == 1 and fit.labeled == 5 and fit.metric == "accuracy" and 0 <= fit.value <= 1
    learner = p.learner()
    assert learner.num_labeled == 5
    assert all(r is None for r in p.store.conn.execute("SELECT true_label FROM labels").fetchall()[0])
    second = p.query(8, "entropy")
    assert second.version == 1 and not set(second.items) & set(first.items)  # labeled, pending and skipped excluded
    guesses = p.records.guesses(second.items)
    assert set(guesses) == set(second.items) and all(g[0] == 1 for g in guesses.values())
    # a label taken back and one outvoted are what the next fit trains on
    undo = p.undo("ann")  # takes back ann's latest answer, whatever item it names
    assert undo is not None and undo.item != skipped
    item = undo.item
    other = next(i for i in first.items if i not in (item, skipped))
    wrong = (p.derived().labels[other] + 1) % 3
    p.answer(other, "b", "label", wrong)
    p.answer(other, "c", "label", wrong)
    learner = p.learner()
    labels = dict(zip(learner.labeled.tolist(), learner.pool.labels[learner.labeled].tolist()))
    assert item not in labels and labels[other] == wrong
    # skipped items come back only when asked
    rest = p.queryable()
    third = p.query(rest, "entropy")
    assert skipped not in third.items
    again = p.query(1, "entropy", include_skipped=True)
    assert again.items == [skipped]


@pytest.mark.slow
def test_a_new_objective_trains_before_it_queries_and_fit_without_validation_is_not_measured(tmp_path, images) -> None:
    root, truth = images
    labels = tmp_path / "labels.csv"
    keys = sorted(truth)
    labels.write_text("item,label\n" + "".join(f"{k},{CLASSES[truth[k]]}\n" for k in keys[:9]))
    p = Project.create(tmp_path / "p", CLASSES, images=root, labels=labels, **FAST)
    said: list[str] = []
    q = p.query(4, "llal", say=said.append)
    assert said == ["no model yet: training one on the 9 labels first"]
    assert q.version == 1 and p.records.versions()[0].strategy == "llal"
    q2 = p.query(4, "lossnet+coreset", say=said.append)  # the same objective: the same model
    assert q2.version == 1 and len(said) == 1
    q3 = p.query(4, "entropy", say=said.append)
    assert "trained for lossnet" in said[-1] and q3.version == 2
    fit = p.fit()
    assert fit.metric is None and fit.value is None and fit.version == 3


def test_one_process_at_a_time_trains_or_queries(tmp_path: Path, images) -> None:
    p = Project.create(tmp_path / "p", CLASSES, images=images[0])
    with p.exclusive():
        other = Project.open(tmp_path / "p")
        with pytest.raises(ConfigError, match="running in another process"):
            other.query(3)


# -- the command line -----------------------------------------------------------------
def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "activeloss", *args], capture_output=True, text=True,
                       env=subprocess_env(), timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow
def test_rows_from_a_csv_round_trip_through_the_command_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = tmp_path / "rows.csv"
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(int)
    with open(rows, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "a", "b", "c", "d"])
        for i, r in enumerate(x):
            w.writerow([f"r{i}", *r])
    proj = tmp_path / "proj"
    out = cli("init", str(proj), "--csv", str(rows), "--classes", "neg,pos", "--epochs", "5")
    assert "60 rows" in out.stdout and "no validation set" in out.stdout
    cli("query", str(proj), "--budget", "8")
    p = Project.open(proj)
    for b in p.batch():
        p.answer(b.item, "ann", "label", int(y[b.item]))
    out = cli("fit", str(proj), "--then-query")
    assert "model version 1" in out.stdout and "not measured" in out.stdout and "queried the next 8" in out.stdout
    status = cli("status", str(proj)).stdout
    assert "ann" in status and "v1" in status and "pending batch: 8 items" in status
    preds = tmp_path / "preds.csv"
    cli("predict", str(proj), "--csv", str(rows), "--out", str(preds))
    table = list(csv.DictReader(open(preds)))
    assert len(table) == 60 and table[0]["item"] == "r0" and set(table[0]) >= {"class", "confidence", "p_neg", "p_pos"}
    assert all(r["model_version"] == "1" for r in table)
    assert abs(float(table[0]["p_neg"]) + float(table[0]["p_pos"]) - 1) < 1e-3
    bad = cli("query", str(proj), "--budget", "1000", ok=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot query 1000" in bad.stderr


def test_store_sync_labels_inserts_relabels_and_removes_in_one_step(tmp_path: Path) -> None:
    s = Store.in_folder(tmp_path)
    run = s.run_id("x", 0, {})
    s.sync_labels(run, 0, {1: (2, "a"), 3: (0, "a")})
    s.sync_labels(run, 1, {1: (1, "b"), 4: (2, "a")})
    assert s.labels(run) == [(1, 1, 0), (4, 2, 1)]


def test_errors_are_one_line(tmp_path: Path) -> None:
    assert issubclass(DataError, ActiveLossError)
    r = cli("init", str(tmp_path / "p"), "--images", str(tmp_path / "none"), "--classes", "a,b", ok=False)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "is not a folder" in r.stderr
    r = cli("status", str(tmp_path), ok=False)
    assert r.returncode == 2 and "not a labeling project" in r.stderr


def test_a_query_that_fails_changes_nothing(tmp_path: Path, images) -> None:
    p = Project.create(tmp_path / "p", CLASSES, images=images[0])
    with pytest.raises(PoolError, match="cannot query 1000 items"):
        p.query(1000, "entropy")
    again = Project.open(tmp_path / "p")
    assert again.strategy == "margin" and "budget" not in again.meta and again.batch() == []
