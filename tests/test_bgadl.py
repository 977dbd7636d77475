"""BGADL (``bgadl`` = the ``vae-acgan`` objective + ``bald``): the budget stays exact while synthetic
items x' = g(e(x*)) join the training data; they are never labels, never in the pool, never
evaluated, have the inputs' form, come from a VAE-ACGAN trained on labeled items only, and are
the same for the same seed, through a checkpoint and a resumed run."""
from __future__ import annotations

import shutil

import pytest
import torch

from activeloss import Dataset, Learner
from activeloss.cli import main
from activeloss.data import Inputs
from activeloss.errors import ConfigError
from activeloss.objectives.generative import SyntheticItems
from activeloss.trainer import TrainConfig, train

from conftest import build_parts, make_tiny_dataset, results_rows, sql_rows

DATA = make_tiny_dataset(n_train=90, n_test=30, classes=3, size=8)
#: tiny VAE-ACGAN and training, so that a cycle takes a fraction of a second
SMALL = dict(epochs=1, batch_size=16, eval_batch_size=32, mc_passes=3, gen_width=4, gen_latent=4, gen_iterations=3,
             gen_batch_size=16)
INITIAL, K, CYCLES = 20, 6, 3


def _inputs(data: Dataset = DATA) -> Inputs:
    return Inputs.from_dataset(data, torch.device("cpu"), (), 0)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    tensors = [(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()) if isinstance(p, torch.Tensor)]
    return len(tensors) == len(a.state_dict()) - 1 and all(torch.equal(p, q) for p, q in tensors)  # - the dropout's


def _loop(seed: int = 0, store=None, **settings) -> tuple[Learner, list[torch.Tensor]]:
    """``CYCLES`` query-teach-fit cycles of ``K`` items after ``INITIAL`` labels; the queried batches."""
    learner = Learner("cnn", DATA, "bgadl", seed=seed, store=store, **{**SMALL, **settings})
    learner.teach(range(INITIAL), DATA.y_train[:INITIAL], source="test")
    learner.fit()
    batches = []
    for _ in range(CYCLES):
        batch = learner.query(K)
        learner.teach(batch.items, DATA.y_train[batch.items], source="oracle")
        learner.fit()
        batches.append(batch.items)
    return learner, batches


def test_the_budget_counts_only_the_oracles_labels(tmp_path):
    learner, batches = _loop(store=tmp_path)
    synthetic = learner.objective.synthetic
    queried = torch.cat(batches)
    # the labels bought: the initial ones + K per cycle, exactly, in the pool and in the store
    assert learner.num_labeled == INITIAL + K * CYCLES and learner.pool.size == DATA.size
    db = tmp_path / "store.sqlite"
    assert [r[0] for r in sql_rows(db, "SELECT labeled FROM cycles ORDER BY cycle")] == \
        [INITIAL + K * c for c in range(CYCLES + 1)]
    labels = sql_rows(db, "SELECT item, cycle FROM labels")
    assert len(labels) == INITIAL + K * CYCLES and all(0 <= item < DATA.size for item, _ in labels)
    # one synthetic item per queried-and-labeled item, with its label; none for the initial set
    assert synthetic.count == K * CYCLES
    assert sorted(synthetic.source.tolist()) == sorted(queried.tolist())
    assert torch.equal(synthetic.y, DATA.y_train[synthetic.source])
    assert not set(synthetic.source.tolist()) & set(range(INITIAL))
    # synthetic items have no pool index: every query and label is a real item, queried once
    queries = sql_rows(db, "SELECT item FROM queries")
    assert sorted(i for (i,) in queries) == sorted(queried.tolist())
    assert {i for i, c in labels if c > 0} == set(queried.tolist())


def test_each_epoch_trains_on_the_labeled_items_plus_one_synthetic_item_per_query():
    parts = build_parts("bgadl", DATA, **SMALL)
    objective, inputs = parts.objective, _inputs()
    first = torch.arange(0, 52, 2)  # 26 initial items
    gen = torch.Generator().manual_seed(0)
    assert objective.training_items(parts.model, inputs, first, DATA.y_train[first], gen) is None
    objective.after_training(parts.model, inputs, first, torch.arange(52, 90), gen, DATA.y_train[first])
    labeled = torch.cat([first, torch.tensor([61, 67, 71, 73, 79, 83])])  # 6 labeled by the oracle since
    seen: dict[int, list[torch.Tensor]] = {}
    batch_loss = objective.batch_loss

    def counting(step):
        seen.setdefault(step.epoch, []).append(step.targets.clone())
        return batch_loss(step)

    objective.batch_loss = counting
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.01, momentum=0.9, weight_decay=0.0, milestones=[], gamma=0.1)
    train(parts.model, objective, parts.task, inputs, labeled, DATA.y_train[labeled], cfg, None,
          torch.Generator().manual_seed(1))
    assert objective.synthetic.count == 6 and sorted(objective.synthetic.source.tolist()) == [61, 67, 71, 73, 79, 83]
    expected = torch.cat([DATA.y_train[labeled], DATA.y_train[objective.synthetic.source]]).sort().values
    assert sorted(seen) == [0, 1, 2]
    for targets in seen.values():  # 26 + 6 = 32 items per epoch: two batches of 16
        assert torch.equal(torch.cat(targets).sort().values, expected)
    # the next training with no new labels makes no new synthetic item
    train(parts.model, objective, parts.task, inputs, labeled, DATA.y_train[labeled], cfg, None,
          torch.Generator().manual_seed(2))
    assert objective.synthetic.count == 6


def test_synthetic_items_have_the_form_of_the_inputs():
    learner, _ = _loop()
    x = learner.objective.synthetic.x
    assert x.dtype == DATA.x_train.dtype == torch.uint8 and x.shape == (K * CYCLES, *DATA.x_train.shape[1:])
    # rows: floats of the table's shape, inside each feature's range
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(90, 5, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0]) + 4
    classes = (rows[:, 0] > 4).long() + (rows[:, 1] > 4).long()
    table = Dataset.from_tensors(rows[:70], classes[:70], rows[70:], classes[70:], name="rows", task="classification")
    parts = build_parts("bgadl", table, model="mlp", **SMALL)
    inputs = _inputs(table)
    items = parts.objective.generate(inputs, torch.arange(10), torch.Generator().manual_seed(0))
    assert items.dtype == torch.float32 and items.shape == (10, 5)
    low, high = rows[:70].amin(0), rows[:70].amax(0)
    assert bool(((items >= low) & (items <= high)).all())


def test_generated_images_come_back_to_the_input_size_with_little_blur():
    """The VAE works on digits at 16x16 (bilinear upsampling); block averages bring them back to
    8x8 close to the original, unlike an antialiased filter (a blur that cost x' its class)."""
    from activeloss.objectives.generative import back_to_size
    from activeloss.objectives.vae import build_vae

    x = _inputs().train_batch(torch.arange(40))
    up = build_vae((1, 8, 8), 4, 4).prepare(x)
    assert up.shape[-2:] == (16, 16)
    back = back_to_size(up, (8, 8))
    blurred = torch.nn.functional.interpolate(up, size=(8, 8), mode="bilinear", antialias=True)
    assert back.shape == x.shape and (back - x).pow(2).mean() < 0.6 * (blurred - x).pow(2).mean()
    assert back_to_size(x, (8, 8)) is x and back_to_size(x, (12, 12)).shape[-2:] == (12, 12)


class _Recording(Inputs):
    """Inputs that record every training item read (a spy)."""

    read: list[int]

    def train_batch(self, indices, gen=None):
        self.read.extend(indices.tolist())
        return super().train_batch(indices, gen)


def test_the_vae_acgan_trains_on_labeled_items_only():
    parts = build_parts("bgadl", DATA, **{**SMALL, "gen_iterations": 8})
    objective = parts.objective
    base = _inputs()
    spy = _Recording(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    spy.read = []
    before_x = spy.x_train.clone()
    weights = [p.detach().clone() for m in (objective.vae, objective.discriminator) for p in m.parameters()]
    labeled, unlabeled = torch.arange(0, 40), torch.arange(40, 90)
    objective.after_training(parts.model, spy, labeled, unlabeled, torch.Generator().manual_seed(0),
                             DATA.y_train[labeled])
    assert spy.read and set(spy.read) <= set(labeled.tolist())
    assert torch.equal(spy.x_train, before_x)  # no input changed
    after = [p for m in (objective.vae, objective.discriminator) for p in m.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(weights, after))  # it did train
    assert not objective.vae.training and not objective.discriminator.training


def test_same_seed_same_synthetic_items_model_and_queries():
    a, qa = _loop(seed=3)
    b, qb = _loop(seed=3)
    c, _ = _loop(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(qa, qb))
    assert torch.equal(a.objective.synthetic.x, b.objective.synthetic.x)
    assert _same_weights(a.model, b.model)
    assert not torch.equal(a.objective.synthetic.x, c.objective.synthetic.x)


def test_the_synthetic_items_come_back_from_a_checkpoint(tmp_path):
    learner, _ = _loop(store=tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    again = Learner("cnn", DATA, "bgadl", store=tmp_path / "copy", **SMALL)  # another process, where the run stands
    again._model_of(again.cycle)
    saved, loaded = learner.objective.synthetic, again.objective.synthetic
    for name in ("x", "y", "source", "seen"):
        assert torch.equal(getattr(saved, name), getattr(loaded, name)), name
    # and training goes on identically from there
    batch = learner.query(K)
    assert torch.equal(again.query(K).items, batch.items)
    for one in (learner, again):
        one.teach(batch.items, DATA.y_train[batch.items])
        one.fit()
    assert torch.equal(learner.objective.synthetic.x, again.objective.synthetic.x)
    assert _same_weights(learner.model, again.model)


def test_a_label_taken_back_or_changed_drops_its_synthetic_item():
    items = SyntheticItems()
    items.add(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2]), torch.tensor([5, 7, 9]))
    items.keep_matching(torch.tensor([9, 1, 5]), torch.tensor([2, 0, 1]))  # 7 unlabeled, 5 relabeled 0 -> 1
    assert items.source.tolist() == [9] and items.y.tolist() == [2] and items.x.shape[0] == 1
    restored = SyntheticItems()
    restored.load_state_dict(items.state_dict())
    assert restored.source.tolist() == [9] and torch.equal(restored.x, items.x)


def test_bgadl_needs_classes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g)
    data = Dataset.from_tensors(x[:40], x[:40, 0], x[40:], x[40:, 0], name="regression")
    with pytest.raises(ConfigError) as err:
        Learner("mlp", data, "bgadl", epochs=1)
    assert "\n" not in str(err.value) and "regression" in str(err.value)


@pytest.mark.slow
def test_bgadl_is_listed_and_runs_from_the_cli_on_digits(tmp_path, capsys):
    assert main(["strategies"]) == 0
    listing = capsys.readouterr().out
    assert any(line.split()[:4] == ["bgadl", "vae-acgan", "+", "bald"] for line in listing.splitlines())
    assert "vae-acgan" in listing.split("objectives:")[1]
    out = tmp_path / "run"
    assert main(["run", "--dataset", "digits", "--strategies", "bgadl", "--trials", "1", "--cycles", "2",
                 "--initial", "30", "--budget", "10", "--epochs", "1", "--batch-size", "16", "--gen-iterations", "2",
                 "--out", str(out), "--quiet"]) == 0
    rows = results_rows(out)
    assert [(r["strategy"], r["cycle"], r["labeled"]) for r in rows] == [("bgadl", "0", "30"), ("bgadl", "1", "40")]
    db = out / "store.sqlite"
    assert sql_rows(db, "SELECT COUNT(*) FROM labels") == [(40,)]
    assert sql_rows(db, "SELECT COUNT(*), COUNT(DISTINCT item) FROM queries") == [(10, 10)]
