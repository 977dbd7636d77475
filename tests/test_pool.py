import pytest
import torch

from activeloss.errors import PoolError
from activeloss.loop.pool import Pool


def test_add_records_label_and_cycle_and_rejects_relabeling():
    pool = Pool(10)
    pool.add(torch.tensor([1, 3]), torch.tensor([7, 8]), cycle=0)
    assert pool.labeled_indices().tolist() == [1, 3]
    assert pool.labels[[1, 3]].tolist() == [7, 8]
    assert pool.label_cycle[[1, 3]].tolist() == [0, 0]
    assert pool.num_labeled == 2
    with pytest.raises(PoolError, match="already labeled"):
        pool.add(torch.tensor([3]), torch.tensor([1]), cycle=1)
    with pytest.raises(PoolError, match="twice"):
        pool.add(torch.tensor([4, 4]), torch.tensor([1, 1]), cycle=1)
    assert pool.num_labeled == 2


def test_candidates_whole_pool_and_subset():
    pool = Pool(50)
    pool.add(torch.arange(0, 50, 2), torch.zeros(25, dtype=torch.long), cycle=0)
    everything = pool.candidates(0, torch.Generator().manual_seed(0))
    assert everything.tolist() == list(range(1, 50, 2))
    sub = pool.candidates(10, torch.Generator().manual_seed(1))
    assert sub.numel() == 10 and sub.unique().numel() == 10
    assert not pool.labeled_mask[sub].any()
    assert torch.equal(sub, pool.candidates(10, torch.Generator().manual_seed(1)))
    assert not torch.equal(sub, pool.candidates(10, torch.Generator().manual_seed(2)))


def test_subsets_of_two_pools_share_the_random_order():
    """Two strategies with the same generator see the same order, so subsets differ only by their labels."""
    a, b = Pool(100), Pool(100)
    a.add(torch.tensor([5]), torch.tensor([0]), 0)
    b.add(torch.tensor([6]), torch.tensor([0]), 0)
    sa = set(a.candidates(30, torch.Generator().manual_seed(3)).tolist())
    sb = set(b.candidates(30, torch.Generator().manual_seed(3)).tolist())
    assert len(sa ^ sb) <= 2


def test_draw_initial_is_seeded_and_bounded():
    pool = Pool(20)
    first = pool.draw_initial(5, torch.Generator().manual_seed(0))
    assert torch.equal(first, pool.draw_initial(5, torch.Generator().manual_seed(0)))
    assert first.unique().numel() == 5
    with pytest.raises(PoolError, match="larger than the pool"):
        pool.draw_initial(21, torch.Generator())
