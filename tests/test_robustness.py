"""Robustness settings: a noisy oracle (by superclass where there is one) and a class-restricted initial pool."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from activeloss.cli import main
from activeloss.config import Settings
from activeloss.errors import ConfigError, PoolError
from activeloss.loop.experiment import Experiment, plan
from activeloss.loop.oracle import NoisyOracle, SimulatedOracle, simulated_oracle, wrong_labels
from activeloss.loop.pool import Pool, class_mask, initial_classes
from activeloss.seeding import generator

from conftest import make_tiny_dataset

#: a CIFAR-100-like map: 12 fine classes in 4 superclasses of 3, plus class 12 alone in superclass 4
COARSE = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


# ---------------------------------------------------------------- noisy oracle


def test_wrong_labels_stay_in_the_superclass_and_fall_back_to_a_uniform_other_class():
    y = torch.arange(13).repeat(2000)
    u = torch.rand(y.numel(), generator=torch.Generator().manual_seed(0))
    wrong = wrong_labels(y, u, 13, COARSE)
    coarse = torch.tensor(COARSE)
    assert bool((wrong != y).all())
    in_super = y != 12
    assert bool((coarse[wrong[in_super]] == coarse[y[in_super]]).all())
    # every sibling is reached, about equally often
    counts = torch.bincount(wrong[y == 0], minlength=13)
    assert counts[0] == 0 and counts[3:].sum() == 0 and abs(int(counts[1]) - int(counts[2])) < 200
    # a class alone in its superclass: any other class, uniformly
    alone = wrong[y == 12]
    assert set(alone.tolist()) == set(range(12))
    # no superclass map: a uniform other class
    plain = wrong_labels(y, u, 13)
    assert bool((plain != y).all()) and set(plain[y == 5].tolist()) == set(range(13)) - {5}


def test_noise_rate_is_close_to_the_rate_and_wrong_labels_keep_the_superclass():
    y = torch.arange(20_000) % 13
    oracle = NoisyOracle(y, 0.2, seed=3, num_classes=13, coarse_of_class=COARSE)
    given = oracle.label(torch.arange(20_000))
    flipped = given != y
    assert abs(float(flipped.float().mean()) - 0.2) < 0.015
    coarse = torch.tensor(COARSE)
    inner = flipped & (y != 12)
    assert bool((coarse[given[inner]] == coarse[y[inner]]).all())
    assert oracle.source == "simulated-noisy"


def test_noise_is_fixed_per_seed_trial_and_item_whatever_the_order():
    y = torch.arange(5000) % 10
    a = NoisyOracle(y, 0.3, seed=1, num_classes=10)
    b = NoisyOracle(y, 0.3, seed=1, num_classes=10)
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(9))
    # b is asked in another order, in pieces, after answering another trial: the same answers
    b.label(order[:100], trial=1)
    pieces = torch.empty(5000, dtype=torch.long)
    for chunk in order.split(700):
        pieces[chunk] = b.label(chunk, trial=0)
    assert torch.equal(pieces, a.label(torch.arange(5000), trial=0))
    assert not torch.equal(a.label(torch.arange(5000), trial=1), pieces)  # another trial, other noise
    assert not torch.equal(NoisyOracle(y, 0.3, seed=2, num_classes=10).label(torch.arange(5000)), pieces)


def test_no_noise_is_the_plain_oracle_and_bad_rates_are_refused():
    y = torch.arange(10)
    assert isinstance(simulated_oracle(y, 0.0), SimulatedOracle)
    assert isinstance(simulated_oracle(y, 0.1, num_classes=10), NoisyOracle)
    with pytest.raises(ConfigError, match="--label-noise must be in"):
        NoisyOracle(y, 1.0, 0, 10)
    with pytest.raises(ConfigError, match="at least two classes"):
        NoisyOracle(torch.zeros(5, dtype=torch.long), 0.1, 0, 1)


# ---------------------------------------------------------------- class-restricted initial pool


def test_initial_classes_are_seeded_and_the_draw_stays_inside_them():
    labels = torch.arange(300) % 10
    classes = initial_classes(10, 3, generator(0, "initial-classes", 0))
    assert classes == initial_classes(10, 3, generator(0, "initial-classes", 0)) and len(set(classes)) == 3
    assert any(initial_classes(10, 3, generator(0, "initial-classes", t)) != classes for t in range(1, 6))
    mask = class_mask(labels, classes)
    drawn = Pool(300).draw_initial(40, generator(0, "initial", 0), mask)
    assert drawn.numel() == 40 and drawn.unique().numel() == 40
    assert set(labels[drawn].tolist()) <= set(classes)
    with pytest.raises(PoolError, match="larger than the allowed items"):
        Pool(300).draw_initial(91, generator(0, "initial", 0), mask)
    for m in (0, 11):
        with pytest.raises(ConfigError, match=f"--initial-classes {m} is out of range"):
            initial_classes(10, m, torch.Generator())
    # without a restriction the draw is what it always was
    assert torch.equal(Pool(300).draw_initial(40, generator(0, "initial", 0)),
                       torch.randperm(300, generator=generator(0, "initial", 0))[:40].sort().values)


@pytest.fixture
def npz_5_classes(tmp_path) -> Path:
    data = make_tiny_dataset(n_train=200, n_test=50, classes=5)
    path = tmp_path / "five.npz"
    np.savez(path, x=data.x_train.numpy(), y=data.y_train.numpy(), x_test=data.x_test.numpy(),
             y_test=data.y_test.numpy())
    return path


def test_plan_refuses_impossible_class_restrictions(npz_5_classes, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", "--dataset", f"npz:{npz_5_classes}", "--model", "cnn", "--out", str(out), "--quiet",
            "--cycles", "2", "--budget", "10"]
    assert main([*base, "--initial", "50", "--initial-classes", "6"]) == 2
    assert "--initial-classes 6 is out of range: the dataset has 5 classes" in capsys.readouterr().err
    assert main([*base, "--initial", "50", "--initial-classes", "1"]) == 2  # one class holds 40 items
    err = capsys.readouterr().err
    assert "hold 40 training items, fewer than --initial 50" in err and err.count("\n") == 1
    assert main([*base, "--initial", "20", "--label-noise", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--label-noise must be below 1, not 1.5" in err and err.count("\n") == 1
    assert main([*base, "--initial", "20", "--label-noise", "-0.1"]) == 2
    err = capsys.readouterr().err
    assert "--label-noise must be at least 0, not -0.1" in err and err.count("\n") == 1
    assert not out.exists()


# ---------------------------------------------------------------- end to end: the store


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("robust")
    data = make_tiny_dataset(n_train=200, n_test=50, classes=5)
    npz = folder / "five.npz"
    np.savez(npz, x=data.x_train.numpy(), y=data.y_train.numpy(), x_test=data.x_test.numpy(),
             y_test=data.y_test.numpy())
    out = folder / "out"
    args = ["run", "--dataset", f"npz:{npz}", "--strategies", "random,entropy", "--trials", "2", "--cycles", "3",
            "--initial", "30", "--budget", "20", "--subset", "0", "--epochs", "1", "--batch-size", "16",
            "--model", "cnn", "--initial-classes", "2", "--label-noise", "0.3", "--seed", "4", "--out", str(out),
            "--quiet"]
    assert main(args) == 0
    return data, out


def _labels(out: Path):
    db = sqlite3.connect(out / "store.sqlite")
    runs = {i: (s, t) for i, s, t in db.execute("SELECT id, strategy, trial FROM runs")}
    rows = db.execute("SELECT run_id, item, cycle, label, true_label, source FROM labels").fetchall()
    return runs, rows


def test_initial_set_comes_from_m_classes_and_is_shared_by_the_strategies_of_a_trial(robust_run):
    data, out = robust_run
    runs, rows = _labels(out)
    for trial in (0, 1):
        classes = initial_classes(5, 2, generator(4, "initial-classes", trial))
        sets = []
        for run_id, (_, t) in runs.items():
            if t != trial:
                continue
            initial = sorted(item for r, item, cycle, *_ in rows if r == run_id and cycle == 0)
            assert len(initial) == 30
            assert set(data.y_train[initial].tolist()) <= set(classes)
            sets.append(initial)
        assert len(sets) == 2 and sets[0] == sets[1]
    # later queries are unrestricted: with a whole-pool query over 3 other classes, they show up
    later = {t for _, item, cycle, _, t, _ in rows if cycle > 0}
    assert len(later) > 2


def test_store_records_given_and_true_labels_and_the_noise_is_the_oracles(robust_run):
    data, out = robust_run
    runs, rows = _labels(out)
    assert len(rows) == 4 * 70
    for run_id, item, cycle, label, true_label, source in rows:
        assert true_label == int(data.y_train[item])
        assert source == ("initial" if cycle == 0 else "simulated-noisy")
        # an independent oracle, asked only for this item, gives the stored label: order-free, so resume-safe
        oracle = NoisyOracle(data.y_train, 0.3, seed=4, num_classes=5)
        assert int(oracle.label(torch.tensor([item]), trial=runs[run_id][1])[0]) == label
    wrong = sum(label != true_label for *_, label, true_label, _ in rows)
    assert 0.15 < wrong / len(rows) < 0.45
    # the strategies of a trial got the same answer for the items both asked about
    given: dict[tuple[int, int], set[int]] = {}
    for run_id, item, _, label, _, _ in rows:
        given.setdefault((runs[run_id][1], item), set()).add(label)
    assert all(len(v) == 1 for v in given.values())


def test_experiment_uses_the_noisy_oracle_of_the_settings(npz_5_classes, tmp_path):
    p = plan(Settings(dataset=f"npz:{npz_5_classes}", label_noise=0.2, model="cnn", initial=20, budget=10, cycles=2))
    assert isinstance(Experiment(p, tmp_path / "x").driver.oracle, NoisyOracle)
    assert not (tmp_path / "x").exists()
    plain = plan(Settings(dataset=f"npz:{npz_5_classes}", model="cnn", initial=20, budget=10, cycles=2))
    assert isinstance(Experiment(plain, tmp_path / "y").driver.oracle, SimulatedOracle)


def test_cifar100_noise_uses_the_readers_superclass_map(tmp_path):
    """The cifar100 reader fills coarse_of_class; the experiment hands it to the oracle."""
    import pickle

    root = tmp_path / "c100"
    root.mkdir()
    rng = np.random.default_rng(0)
    fine = np.arange(400) % 12
    coarse = np.array(COARSE[:12])[fine]
    for name, n in (("train", 400), ("test", 48)):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": fine[:n].tolist(), b"coarse_labels": coarse[:n].tolist()}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(12)],
                     b"coarse_label_names": [f"c{i}".encode() for i in range(4)]}, f)
    p = plan(Settings(dataset=f"cifar100:{root}", label_noise=0.3, model="cnn", initial=20, budget=10, cycles=2))
    oracle = Experiment(p, tmp_path / "x").driver.oracle
    given = oracle.label(torch.arange(400))
    truth = p.data.y_train
    flipped = given != truth
    assert flipped.any()
    table = torch.tensor(COARSE[:12])
    assert bool((table[given[flipped]] == table[truth[flipped]]).all())


@pytest.mark.parametrize("cut", ["taught", "pending"])
def test_a_resumed_noisy_preset_run_buys_the_same_labels(npz_5_classes, tmp_path, cut):
    """Cut a finished run back to its first cycle (as a crash would leave it) and resume: the same labels.
    ``taught``: cycle 0's batch is labeled; ``pending``: it is queried but not labeled yet, so the
    resumed run asks the oracle for that batch first."""
    out = tmp_path / "out"
    args = ["run", "--preset", "dnal-cifar10", "--dataset", f"npz:{npz_5_classes}", "--strategies", "dnal,random",
            "--model", "cnn", "--trials", "1", "--cycles", "3", "--epochs", "1", "--label-noise", "0.3",
            "--initial-classes", "3", "--out", str(out), "--quiet"]
    assert main(args) == 0  # DNAL's preset retrains each cycle: no checkpoint needed to resume
    db = sqlite3.connect(out / "store.sqlite")
    before = db.execute("SELECT run_id, item, cycle, label, true_label, source FROM labels ORDER BY 1, 2").fetchall()
    assert len(before) == 2 * 40 and {c for _, _, c, *_ in before} == {0, 1, 2}  # 10% = 20, +5% = 10 twice
    tables = [name for name, in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if {"run_id", "cycle"} <= columns:
            db.execute(f"DELETE FROM {table} WHERE cycle >= ?", (2 if table == "labels" and cut == "taught" else 1,))
    db.commit()
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 2 * (30 if cut == "taught" else 20)
    assert db.execute("SELECT COUNT(*) FROM queries").fetchone()[0] == 2 * 10  # cycle 0's batch
    assert db.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 2
    db.close()
    assert main(["run", "--resume", "--out", str(out), "--quiet"]) == 0
    after = sqlite3.connect(out / "store.sqlite").execute(
        "SELECT run_id, item, cycle, label, true_label, source FROM labels ORDER BY 1, 2").fetchall()
    assert after == before
