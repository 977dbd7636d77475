"""The steppable learner: fit / evaluate / query / teach, each step in the store, a pending batch
that another process can label, and a run that continues wherever it stopped."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from activeloss import Dataset, Learner, Store
from activeloss.errors import ConfigError, PoolError

from conftest import make_tiny_dataset, results_rows, sql_rows, write_tiny_npz

DATA = make_tiny_dataset(n_train=120, n_test=40, classes=3, size=8)
SMALL = dict(epochs=2, batch_size=16, subset=50)
FIRST = torch.arange(0, 120, 6)  # 20 items


def _learner(strategy: str = "llal", store=None, **kw) -> Learner:
    return Learner("cnn", DATA, strategy, store=store, **{**SMALL, **kw})


def test_each_step_is_written_to_the_store_as_it_happens(tmp_path):
    learner = _learner(store=tmp_path)
    db = tmp_path / "store.sqlite"
    learner.teach(FIRST, DATA.y_train[FIRST], source="initial")
    assert sql_rows(db, "SELECT COUNT(*), MIN(cycle), MAX(cycle) FROM labels") == [(20, 0, 0)]
    learner.fit()
    assert sql_rows(db, "SELECT cycle, labeled FROM cycles") == [(0, 20)]
    assert sql_rows(db, "SELECT COUNT(*) FROM metrics") == [(0,)]
    assert (tmp_path / "checkpoints" / f"run{learner.run_id}-cycle0.pt").is_file()  # saved before the fit row
    metrics = learner.evaluate()
    assert set(metrics) == {"accuracy", "ranking_accuracy"} and 0 <= metrics["accuracy"] <= 1
    stored = dict(sql_rows(db, "SELECT name, value FROM metrics WHERE cycle = 0"))
    assert stored == pytest.approx(metrics)
    batch = learner.query(10)
    assert batch.cycle == 0 and len(batch) == 10
    assert sql_rows(db, "SELECT item FROM queries ORDER BY rank") == [(i,) for i in batch.items.tolist()]
    assert learner.pending().items.tolist() == batch.items.tolist()  # queried, not labeled
    learner.teach(batch.items[:4], DATA.y_train[batch.items[:4]])
    assert learner.pending().items.tolist() == batch.items[4:].tolist()  # partly labeled: the rest waits
    learner.teach(batch.items[4:], DATA.y_train[batch.items[4:]])
    assert learner.pending() is None
    assert sql_rows(db, "SELECT cycle, COUNT(*) FROM labels GROUP BY cycle") == [(0, 20), (1, 10)]
    learner.fit()
    assert learner.cycle == 1 and learner.num_labeled == 30
    assert sql_rows(db, "SELECT cycle, labeled FROM cycles ORDER BY cycle") == [(0, 20), (1, 30)]
    assert not (tmp_path / "checkpoints" / f"run{learner.run_id}-cycle0.pt").exists()  # only the latest is kept


def test_teach_refuses_bad_labels_before_writing_anything():
    learner = _learner()
    learner.teach(FIRST, DATA.y_train[FIRST])
    before = learner.store.labels(learner.run_id)
    cases = [
        (torch.tensor([1, 2]), torch.tensor([0, 7]), "label 7 is out of range: the classes are 0..2"),
        (torch.tensor([1, 1]), torch.tensor([0, 0]), "the same item appears twice"),
        (FIRST[:1], torch.tensor([0]), f"item {int(FIRST[0])} is already labeled"),
        (torch.tensor([1, 2]), torch.tensor([0]), "2 items but 1 labels"),
        (torch.tensor([500]), torch.tensor([0]), "out of range for a pool of 120"),
        (torch.tensor([1]), [0.5], "class labels must be integers"),
    ]
    for items, labels, message in cases:
        with pytest.raises(PoolError, match=message):
            learner.teach(items, labels)
    assert learner.store.labels(learner.run_id) == before
    assert learner.num_labeled == 20


def test_steps_in_the_wrong_order_say_what_to_do():
    learner = _learner()
    with pytest.raises(PoolError, match="nothing is labeled yet"):
        learner.fit()
    with pytest.raises(PoolError, match=r"fit\(\) before query"):
        learner.query(5)
    with pytest.raises(ConfigError, match="needs data"):
        Learner("cnn", None)


def test_a_learner_reopened_from_its_folder_continues_exactly(tmp_path):
    def steps(learner: Learner, until: int) -> list[dict]:
        out = []
        while learner.cycle < until:
            learner.fit()
            out.append(learner.evaluate())
            batch = learner.query(10)
            learner.teach(batch.items, DATA.y_train[batch.items])
        return out

    straight = _learner(store=tmp_path / "a")
    straight.teach(FIRST, DATA.y_train[FIRST])
    expected = steps(straight, 2)

    first = _learner(store=tmp_path / "b")
    first.teach(FIRST, DATA.y_train[FIRST])
    got = steps(first, 0)
    first.fit()
    del first  # the process "stops" after a fit: the next learner must find the model on disk
    second = _learner(store=tmp_path / "b")
    assert second.cycle == 1 and not second.evaluated and second.num_labeled == 30
    got.append(second.evaluate())
    batch = second.query(10)
    third = _learner(store=tmp_path / "b")  # stops with a batch pending
    assert third.pending().items.tolist() == batch.items.tolist()
    third.teach(batch.items, DATA.y_train[batch.items])
    got += steps(third, 2)
    assert got == expected


def test_your_own_module_tensors_and_score_function():
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    y = (x[:, 0] + x[:, 1] > 0).long()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
            self.head = nn.Linear(16, 2)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(v))

    calls = []

    def most_confused(ctx) -> torch.Tensor:
        calls.append(ctx.candidates.numel())
        p = ctx.probs()
        return -(p[:, 0] - p[:, 1]).abs()

    net = Net()
    learner = Learner(net, (x[:150], y[:150], x[150:], y[150:]), "lossnet+entropy", acquisition=most_confused,
                      taps=["body"], epochs=3, batch_size=16, lr=0.05)
    learner.teach(range(20), y[:20])
    learner.fit()
    assert learner.model is not net and not torch.equal(learner.model.head.weight, net.head.weight)  # a trained copy
    batch = learner.query(5)
    assert calls == [130] and len(batch) == 5
    learner.model.eval()
    with torch.no_grad():  # the model sees the standardised rows the learner feeds it
        p = torch.softmax(learner.model(learner.inputs.train_batch(batch.items)), 1)
    gaps = (p[:, 0] - p[:, 1]).abs()
    assert torch.allclose(batch.scores, -gaps, atol=1e-5)
    assert torch.all(gaps[:-1] <= gaps[1:])  # the most confused first
    assert "accuracy" in learner.evaluate()
    untapped = Learner(Net(), (x[:150], y[:150], x[150:], y[150:]), "llal", epochs=1)
    untapped.teach(range(5), y[:5])
    with pytest.raises(ConfigError, match="name the modules to tap"):
        untapped.fit()


def test_a_torch_dataset_and_coreset_on_a_model_without_features():
    class Pairs(torch.utils.data.Dataset):
        def __init__(self, n: int, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 4, generator=g)
            self.y = self.x.sum(1)

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int):
            return self.x[i], self.y[i]

    data = Dataset.from_torch(Pairs(80, 0), Pairs(20, 1))
    assert data.task == "regression" and data.y_train.dtype == torch.float32
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    learner = Learner(net, data, "coreset", epochs=2, batch_size=8)
    learner.teach(range(10), data.y_train[:10])
    learner.fit()
    assert set(learner.evaluate()) == {"rmse", "mae"}
    assert len(learner.query(6)) == 6  # the embedding is the input of the last Linear


STOP_AT_QUERY = """
import sys
from activeloss import Settings, run
from activeloss.loop import DeferredOracle
run(Settings.from_dict(dict(dataset=sys.argv[1], strategies=["random", "llal"], trials=2, cycles=3, initial=20,
                            budget=10, subset=50, epochs=2, batch_size=16, model="cnn", out=sys.argv[2])),
    progress=False, oracle=DeferredOracle())
"""

TEACH_PENDING = """
import sys
from activeloss import Learner
for name in ("random", "llal"):
    for trial in (0, 1):
        learner = Learner.open(sys.argv[1], name, trial)
        batch = learner.pending()
        assert batch is not None and len(batch) == 10, batch
        learner.teach(batch.items, learner.data.y_train[batch.items], source="person")
"""


@pytest.mark.slow
def test_labels_from_another_process_finish_like_an_uninterrupted_run(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    common = ["--dataset", f"npz:{npz}", "--strategies", "random,llal", "--trials", "2", "--cycles", "3",
              "--initial", "20", "--budget", "10", "--subset", "50", "--epochs", "2", "--batch-size", "16",
              "--model", "cnn", "--quiet"]
    cli = [sys.executable, "-m", "activeloss"]
    subprocess.run([*cli, "run", *common, "--out", str(tmp_path / "straight")], check=True, capture_output=True)

    out = tmp_path / "stopped"
    subprocess.run([sys.executable, "-c", textwrap.dedent(STOP_AT_QUERY), f"npz:{npz}", str(out)], check=True)
    db = out / "store.sqlite"
    assert sql_rows(db, "SELECT COUNT(*) FROM cycles") == [(4,)]  # every run stopped after cycle 0's query
    assert sql_rows(db, "SELECT COUNT(*) FROM queries") == [(40,)]
    assert sql_rows(db, "SELECT COUNT(*) FROM labels WHERE cycle = 1") == [(0,)]

    subprocess.run([sys.executable, "-c", textwrap.dedent(TEACH_PENDING), str(out)], check=True)
    assert sql_rows(db, "SELECT source, COUNT(*) FROM labels WHERE cycle = 1 GROUP BY source") == [("person", 40)]
    done = subprocess.run([*cli, "run", "--resume", "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert results_rows(out) == results_rows(tmp_path / "straight")
    store = Store.in_folder(out)
    assert {r["status"] for r in store.runs()} == {"done"}
    store.close()
