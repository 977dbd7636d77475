"""The contract every query keeps, written once and run over every (objective, acquisition) pair
each task accepts, and every named strategy: exactly k distinct unlabeled candidates, never a
labeled or pending item, the same picks for the same seed, modes restored after the query."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from activeloss import Dataset, Learner
from activeloss.errors import ConfigError, PoolError
from activeloss.seeding import generator
from activeloss.strategies import get_strategy, named_for, valid_pairs
from activeloss.tasks import task_type

from conftest import make_tiny_dataset

CLASSIFICATION = make_tiny_dataset(n_train=90, n_test=30, classes=3, size=8)


def _regression_data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 5, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * torch.randn(120, generator=g)
    return Dataset.from_tensors(x[:90], y[:90], x[90:], y[90:], name="tiny-regression")


REGRESSION = _regression_data()


def _pose_data() -> Dataset:
    """60 + 20 stick figures of 7 keypoints on 32 x 32 crops (the synthetic-pose renderer)."""
    from activeloss.data.readers.posecommon import pose_dataset
    from activeloss.data.readers.synthetic_pose import JOINTS, figures, render

    rng = np.random.default_rng(0)
    points = figures(120, 32, rng)
    keypoints = np.concatenate([points, np.ones((120, 7, 1))], axis=-1)
    reference = np.full(120, 12.0, dtype=np.float32)
    return pose_dataset("tiny-pose", render(points, 32, rng), keypoints, reference, 0.2, JOINTS,
                        np.arange(120) < 90, "test", "last 30")


POSE = _pose_data()


def _detection_data() -> Dataset:
    """90 + 30 images of 1-3 shapes on 32 x 32 (the synthetic-shapes renderer)."""
    from activeloss.data.readers.boxcommon import detection_dataset
    from activeloss.data.readers.synthetic_shapes import CLASSES, layout, objects_of, render

    rng = np.random.default_rng(0)
    boxes, classes = layout(120, 32, rng)
    return detection_dataset("tiny-shapes", render(boxes, classes, 32, rng), objects_of(boxes, classes), CLASSES,
                             np.arange(120) < 90, "test", "last 30")


DETECTION = _detection_data()
DATA = {"classification": (CLASSIFICATION, "cnn"), "regression": (REGRESSION, "mlp"), "pose": (POSE, "hourglass-small"),
        "detection": (DETECTION, "ssd-small")}
SMALL = dict(epochs=1, batch_size=16, eval_batch_size=16, mc_passes=3, vae_width=4, vae_epochs=0.5,
             vae_batch_size=16, vae_latent=4, gen_width=4, gen_iterations=2, gen_batch_size=16, gen_latent=4)
LABELED = torch.arange(0, 90, 3)  # 30 labeled items


def _cases() -> list[tuple[str, str]]:
    cases = []
    for task in DATA:
        cases += [(task, n) for n in valid_pairs(task_type(task)) + named_for(task_type(task))]
    return cases


CASES = _cases()


def _learner(task: str, name: str, subset: int = 0, seed: int = 0) -> Learner:
    data, model = DATA[task]
    learner = Learner(model, data, name, subset=subset, seed=seed, **SMALL)
    learner.teach(LABELED, data.y_train[LABELED], source="test")
    learner.fit()
    return learner


def test_the_cases_cover_every_valid_pair_of_both_tasks():
    pairs = {n for t, n in CASES if "+" in n}
    assert len([c for c in CASES if c[0] == "classification" and "+" in c[1]]) >= 60
    assert "lossnet+predicted-loss" in pairs and "none+mc-variance" in pairs
    regression = {n for t, n in CASES if t == "regression"}
    assert {"random", "llal", "llal-mse", "coreset", "mc-variance"} <= regression
    assert not {"entropy", "bald", "badge", "none+gradnorm", "lplgrad"} & regression
    pose = {n for t, n in CASES if t == "pose"}
    assert {"random", "entropy", "coreset", "llal", "llal-mse", "dnal", "lossnet+entropy"} <= pose
    assert not {"margin", "bald", "badge", "lplgrad", "mc-variance", "none+gradnorm", "mc-dropout+random"} & pose
    detection = {n for t, n in CASES if t == "detection"}
    assert {"random", "entropy", "coreset", "llal", "llal-mse", "dnal", "lossnet+entropy"} <= detection
    assert not {"margin", "bald", "badge", "lplgrad", "mc-variance", "none+gradnorm", "sraal", "bgadl",
                "mc-dropout+random"} & detection


@pytest.mark.parametrize("task,name", CASES)
def test_query_contract(task, name):
    learner = _learner(task, name, subset=40)
    modules = [learner.model, *learner.objective.modules().values()]
    for i, m in enumerate(m for root in modules for m in root.modules()):
        m.train(i % 2 == 0)  # a pattern a query must leave exactly as it found it
    before = [m.training for root in modules for m in root.modules()]
    first = learner.query(7)
    assert [m.training for root in modules for m in root.modules()] == before
    items = first.items
    assert items.numel() == 7 and items.unique().numel() == 7
    assert not set(items.tolist()) & set(LABELED.tolist())
    if first.scores is not None:
        assert first.scores.shape == (7,)
    second = learner.query(5)  # the first batch is pending: never chosen again
    assert second.items.unique().numel() == 5
    assert not set(second.items.tolist()) & (set(items.tolist()) | set(LABELED.tolist()))
    pending = learner.pending()
    assert pending is not None and pending.items.tolist() == items.tolist() + second.items.tolist()


@pytest.mark.parametrize("task,name", CASES)
def test_same_seed_same_picks(task, name):
    a = _learner(task, name).query(6)
    b = _learner(task, name).query(6)
    assert torch.equal(a.items, b.items)


def test_random_depends_on_the_seed():
    a = _learner("classification", "random", seed=1).query(10)
    b = _learner("classification", "random", seed=2).query(10)
    assert not torch.equal(a.items, b.items)


def test_whole_candidate_set_when_k_equals_it():
    learner = _learner("classification", "entropy", subset=12)
    batch = learner.query(12)
    subset = learner.pool.candidates(12, generator(0, "subset", 0, 0))
    assert sorted(batch.items.tolist()) == subset.tolist()


def test_a_query_larger_than_the_unlabeled_pool_is_refused():
    learner = _learner("classification", "entropy")
    learner.query(55)  # 60 unlabeled: 5 left that are not pending
    with pytest.raises(PoolError, match="cannot query 6 items: 5 unlabeled candidates are left"):
        learner.query(6)


def test_uncertainty_strategies_pick_in_descending_score_order():
    for name in ("entropy", "margin", "least-confidence", "llal"):
        scores = _learner("classification", name).query(10).scores
        assert scores is not None and torch.all(scores[:-1] >= scores[1:]), name


def test_any_objective_acquisition_pair_is_a_strategy():
    s = get_strategy("none+margin")
    assert (s.objective, s.acquisition) == ("none", "margin")
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        get_strategy("nope")
    with pytest.raises(ConfigError, match="unknown acquisition 'bogus'"):
        get_strategy("none+bogus")
    with pytest.raises(ConfigError, match="needs an objective with a loss-prediction module"):
        get_strategy("none+predicted-loss")


@pytest.mark.parametrize("name, needs", [("entropy", "an entropy per item"), ("margin", "class probabilities"),
                                         ("bald", "class probabilities"), ("badge", "class probabilities"),
                                         ("lplgrad", "class probabilities"), ("sraal", "class probabilities"),
                                         ("none+gradnorm", "class probabilities")])
def test_probability_acquisitions_refuse_regression_in_one_line(name, needs):
    with pytest.raises(ConfigError) as err:
        Learner("mlp", REGRESSION, name, epochs=1)
    message = str(err.value)
    assert "\n" not in message and "regression" in message
    assert needs in message


def test_mc_variance_refuses_classification():
    with pytest.raises(ConfigError, match="needs real-valued predictions, which the classification task"):
        Learner("cnn", CLASSIFICATION, "mc-variance", epochs=1)
