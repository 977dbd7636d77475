"""The contract every registered strategy keeps (written once, run over the whole registry)."""
import pytest
import torch

from activeloss.acquisitions import QueryContext
from activeloss.config import Settings, resolve
from activeloss.inputs import Inputs
from activeloss.models import build
from activeloss.pool import Pool
from activeloss.strategies import STRATEGIES, get_strategy

from conftest import make_tiny_dataset

DATA = make_tiny_dataset(n_train=90, n_test=30, classes=3, size=8)


def _query(name: str, candidates_subset: int, k: int, seed: int, model_seed: int = 0):
    strategy = get_strategy(name)
    settings = resolve(Settings(dataset="digits", epochs=4), strategy.defaults)
    torch.manual_seed(model_seed)
    model = build("cnn", DATA.num_classes, DATA.input_shape)
    objective = strategy.make_objective()
    objective.setup(model, DATA.num_classes, model.taps, settings, DATA.input_shape)
    model.eval()
    objective.eval()
    pool = Pool(DATA.x_train.shape[0])
    pool.add(torch.arange(0, 90, 3), DATA.y_train[0:90:3], cycle=0)
    candidates = pool.candidates(candidates_subset, torch.Generator().manual_seed(seed))
    ctx = QueryContext(model, objective, Inputs.from_dataset(DATA, torch.device("cpu"), (), 0), candidates,
                       pool.labeled_indices(), torch.Generator().manual_seed(seed), 16, settings)
    return strategy.make_acquisition().select(ctx, k), pool, candidates


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_exactly_k_distinct_unlabeled_candidates(name):
    selection, pool, candidates = _query(name, candidates_subset=25, k=7, seed=1)
    picked = selection.indices
    assert picked.numel() == 7
    assert picked.unique().numel() == 7
    assert not pool.labeled_mask[picked].any()
    assert set(picked.tolist()) <= set(candidates.tolist())
    if selection.scores is not None:
        assert selection.scores.shape == (7,)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_seeded_reproducibility(name):
    a, _, _ = _query(name, candidates_subset=0, k=5, seed=4)
    b, _, _ = _query(name, candidates_subset=0, k=5, seed=4)
    assert torch.equal(a.indices, b.indices)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_whole_pool_when_k_equals_candidates(name):
    selection, _, candidates = _query(name, candidates_subset=12, k=12, seed=2)
    assert sorted(selection.indices.tolist()) == candidates.tolist()


def test_random_depends_on_the_seed():
    a, _, _ = _query("random", 0, 10, seed=1)
    b, _, _ = _query("random", 0, 10, seed=2)
    assert not torch.equal(a.indices, b.indices)


def test_uncertainty_strategies_pick_in_descending_score_order():
    for name in ("entropy", "margin", "least-confidence"):
        selection, _, _ = _query(name, 0, 10, seed=0)
        scores = selection.scores
        assert torch.all(scores[:-1] >= scores[1:]), name


def test_any_objective_acquisition_pair_is_a_strategy():
    s = get_strategy("none+margin")
    assert (s.objective, s.acquisition) == ("none", "margin")
    from activeloss.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        get_strategy("nope")
    with pytest.raises(ConfigError, match="unknown acquisition 'bogus'"):
        get_strategy("none+bogus")
