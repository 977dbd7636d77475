"""The initial labeled set: ``--initial-method random`` (the default) or ``kcenter`` (k-center
greedy over the normalised, pooled inputs, the first centre drawn from the trial's generator).
Every strategy of a trial gets the same set; trials differ; runs and resumed runs repeat it."""
from __future__ import annotations

import pytest
import torch

from activeloss.config import Settings
from activeloss.data import Dataset, Inputs
from activeloss.errors import ConfigError, PoolError
from activeloss.loop import experiment
from activeloss.loop.driver import Driver, initial_features, kcenter_initial
from activeloss.loop.plan import initial_allowed, plan
from activeloss.loop.pool import Pool
from activeloss.seeding import generator
from activeloss.store import Store

from conftest import make_tiny_dataset, results_rows, sql_rows


def slow_kcenter(features: torch.Tensor, count: int, gen: torch.Generator, allowed=None) -> list[int]:
    """The obvious k-center greedy: the first centre drawn as :func:`kcenter_initial` draws it, then
    again and again the allowed item whose nearest centre is farthest (ties: lowest index)."""
    pool = list(range(features.shape[0])) if allowed is None else [i for i in range(len(allowed)) if allowed[i]]
    chosen = [pool[int(torch.randint(len(pool), (1,), generator=gen))]]
    while len(chosen) < count:
        best, best_d = -1, -1.0
        for i in pool:
            if i in chosen:
                continue
            d = min(float(torch.dist(features[i], features[c])) for c in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return sorted(chosen)


def test_three_far_clusters_give_one_item_each():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    features = (centres.repeat_interleave(20, dim=0) + torch.randn(60, 2, generator=g)).double()
    for seed in range(5):
        picked = kcenter_initial(features, 3, torch.Generator().manual_seed(seed))
        assert sorted((picked // 20).tolist()) == [0, 1, 2]
        assert picked.tolist() == slow_kcenter(features, 3, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("masked", [False, True])
def test_kcenter_initial_matches_the_obvious_implementation(masked):
    g = torch.Generator().manual_seed(1)
    features = torch.randn(90, 5, generator=g).double()
    allowed = (torch.arange(90) % 3 != 1) if masked else None
    for seed, count in ((0, 1), (1, 7), (2, 25)):
        picked = kcenter_initial(features, count, torch.Generator().manual_seed(seed), allowed)
        assert picked.tolist() == slow_kcenter(features, count, torch.Generator().manual_seed(seed), allowed)
        assert picked.unique().numel() == count
        if masked:
            assert bool(allowed[picked].all())
    with pytest.raises(PoolError, match="larger than the allowed items"):
        kcenter_initial(features, 61, torch.Generator(), torch.arange(90) % 3 != 1)


def test_initial_features_are_the_normalised_inputs_pooled_to_at_most_8x8():
    digits = make_tiny_dataset(n_train=30, n_test=6, size=8)
    inputs = Inputs.from_dataset(digits, torch.device("cpu"), (), 0)
    features = initial_features(digits)
    assert features.dtype == torch.float32 and features.shape == (30, 64)
    assert torch.equal(features, inputs.train_batch(torch.arange(30)).flatten(1))
    mnist_like = make_tiny_dataset(n_train=10, n_test=4, size=28)
    assert initial_features(mnist_like).shape == (10, 64)
    colour = Dataset("rgb", torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8), torch.arange(7) % 2,
                     torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.arange(2),
                     ["a", "b"]).validate()
    pooled = initial_features(colour)
    assert pooled.shape == (7, 192)
    x = Inputs.from_dataset(colour, torch.device("cpu"), (), 0).train_batch(torch.arange(7))
    assert torch.allclose(pooled[:, :64], x[:, 0].reshape(7, 8, 4, 8, 4).mean(dim=(2, 4)).flatten(1),
                          atol=1e-6)
    rows = Dataset.from_tensors(torch.randn(12, 4) * 5 + 3, torch.randn(12), torch.randn(3, 4), torch.randn(3))
    r = initial_features(rows)
    assert r.shape == (12, 4) and torch.allclose(r.mean(0), torch.zeros(4), atol=1e-6)


def _plan(tiny_npz, tmp_path, **values):
    return plan(Settings.from_dict({"dataset": f"npz:{tiny_npz}", "strategies": ["random", "entropy", "llal"],
                                    "trials": 3, "initial": 15, "budget": 5, "cycles": 2, "epochs": 1,
                                    "initial_method": "kcenter", "out": str(tmp_path / "out"), **values}))


def test_kcenter_set_is_one_per_trial_for_every_strategy(tiny_npz, tmp_path):
    p = _plan(tiny_npz, tmp_path)
    driver = Driver(p, tmp_path / "out", progress=False)
    sets = {(run.name, trial): driver.initial_items(run, trial) for run in p.runs for trial in range(3)}
    features = initial_features(p.data)
    for trial in range(3):
        first = sets[("random", trial)]
        assert first.numel() == 15 and first.unique().numel() == 15
        assert all(torch.equal(sets[(run.name, trial)], first) for run in p.runs)
        # what k-center greedy picks from the trial's generator, recomputed from scratch (a new process)
        assert torch.equal(first, kcenter_initial(features, 15, generator(p.settings.seed, "initial", trial)))
        assert torch.equal(first, Driver(p, tmp_path / "out", progress=False).initial_items(p.runs[2], trial))
    assert len({tuple(sets[("random", t)].tolist()) for t in range(3)}) == 3
    # the default stays the random draw of before
    random = _plan(tiny_npz, tmp_path, initial_method="random")
    assert torch.equal(Driver(random, tmp_path / "out", progress=False).initial_items(random.runs[1], 2),
                       Pool(p.data.size).draw_initial(15, generator(0, "initial", 2)))


def test_kcenter_set_respects_initial_classes(tiny_npz, tmp_path):
    p = _plan(tiny_npz, tmp_path, initial_classes=1, initial=10)
    driver = Driver(p, tmp_path / "out", progress=False)
    for trial in range(3):
        allowed = initial_allowed(p.data, p.runs[0].settings, trial)
        assert allowed is not None
        items = driver.initial_items(p.runs[0], trial)
        assert items.numel() == 10 and items.unique().numel() == 10 and bool(allowed[items].all())
        assert torch.equal(items, driver.initial_items(p.runs[1], trial))
        assert p.data.y_train[items].unique().numel() == 1


def test_initial_method_is_checked_and_one_for_every_strategy(tiny_npz, tmp_path):
    with pytest.raises(ConfigError, match="--initial-method must be one of random, kcenter"):
        _plan(tiny_npz, tmp_path, initial_method="farthest")
    with pytest.raises(ConfigError, match="--initial-method is one setting for every strategy"):
        Settings.from_dict({"per_strategy": {"llal": {"initial_method": "kcenter"}}})
    assert Settings().initial_method == "random"


def test_a_kcenter_run_labels_the_same_initial_set_for_every_strategy_and_resumes(tiny_npz, tmp_path, monkeypatch):
    """End to end: the store holds one initial set per trial, shared by the strategies, and a run
    stopped right after the first strategy's initial labels ends as an uninterrupted one."""
    def settings(out):
        return Settings.from_dict({"dataset": f"npz:{tiny_npz}", "strategies": ["random", "sraal"], "trials": 2,
                                   "initial": 12, "budget": 6, "cycles": 2, "epochs": 1, "vae_width": 2,
                                   "vae_epochs": 1, "initial_method": "kcenter", "diagnostics": "none",
                                   "out": str(out)})

    def initial_sets(out):
        rows = sql_rows(out / "store.sqlite", "SELECT r.strategy, r.trial, l.item FROM labels l JOIN runs r "
                                              "ON r.id = l.run_id WHERE l.source = 'initial' ORDER BY 1, 2, 3")
        sets: dict = {}
        for strategy, trial, item in rows:
            sets.setdefault((strategy, trial), []).append(item)
        return sets

    experiment.run(settings(tmp_path / "ref"), progress=False)
    sets = initial_sets(tmp_path / "ref")
    assert sets[("random", 0)] == sets[("sraal", 0)] and sets[("random", 1)] == sets[("sraal", 1)]
    assert sets[("random", 0)] != sets[("random", 1)] and len(sets[("random", 0)]) == 12

    real = Store.add_labels
    calls = []

    def stop_after_the_first(self, *args, **kw):
        real(self, *args, **kw)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "add_labels", stop_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(settings(tmp_path / "cut"), progress=False)
    monkeypatch.undo()
    experiment.run(settings(tmp_path / "cut"), resume=True, progress=False)
    assert initial_sets(tmp_path / "cut") == sets
    assert results_rows(tmp_path / "cut") == results_rows(tmp_path / "ref")
