"""BALD and MC entropy from (T, N, C) stochastic-pass probabilities."""
import math

import pytest
import torch

from activeloss.scoring import bald, mc_entropy


def test_bald_zero_when_passes_agree() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(1, 6, 5, generator=g), dim=-1).repeat(10, 1, 1)
    assert torch.allclose(bald(p), torch.zeros(6), atol=1e-6)
    # ... even when the shared prediction is maximally uncertain.
    assert bald(torch.full((4, 3, 2), 0.5)).abs().max() < 1e-7


def test_bald_hand_computed_two_passes_two_classes() -> None:
    # Pass 1: [0.9, 0.1], pass 2: [0.5, 0.5]; mean [0.7, 0.3].
    p = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]], dtype=torch.float64)
    h = lambda *q: -sum(x * math.log(x) for x in q)
    expected = h(0.7, 0.3) - (h(0.9, 0.1) + h(0.5, 0.5)) / 2
    assert expected > 0.05  # sanity: not a degenerate example
    assert bald(p).item() == pytest.approx(expected, rel=1e-10)
    assert mc_entropy(p).item() == pytest.approx(h(0.7, 0.3), rel=1e-10)


def test_bald_one_hot_disagreement_is_log2() -> None:
    # Two confident passes that disagree: MI = H[0.5, 0.5] - 0 = log 2; zeros in the
    # inputs must not produce NaN.
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert bald(p).item() == pytest.approx(math.log(2), rel=1e-6)


def test_bald_non_negative_and_bounded_on_dirichlet() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        p = torch.distributions.Dirichlet(torch.full((10,), 0.3)).sample((20, 500))
    b = bald(p)
    assert b.shape == (500,)
    assert torch.isfinite(b).all() and (b >= 0).all()
    assert (b <= mc_entropy(p) + 1e-6).all()  # MI never exceeds the total entropy
    assert (b > 0).float().mean() > 0.99


def test_mc_entropy_max_for_uniform() -> None:
    c = 7
    uniform = torch.full((5, 1, c), 1.0 / c)
    g = torch.Generator().manual_seed(2)
    other = torch.softmax(torch.randn(5, 100, c, generator=g), dim=-1)
    hu = mc_entropy(uniform)
    assert hu.item() == pytest.approx(math.log(c), rel=1e-6)
    assert (mc_entropy(other) < hu).all()


def test_bald_higher_for_disagreement_with_same_mean() -> None:
    # Both items have mean prediction [0.5, 0.5]; only item 1's passes disagree.
    p = torch.tensor(
        [
            [[0.5, 0.5], [0.9, 0.1]],
            [[0.5, 0.5], [0.1, 0.9]],
        ]
    )
    b = bald(p)
    assert b[1] > b[0] + 0.1
    h = mc_entropy(p)
    assert h[0].item() == pytest.approx(h[1].item(), abs=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (2, 5, 3, 1), (3,)])
def test_wrong_rank_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="3-d"):
        bald(torch.rand(shape))
    with pytest.raises(ValueError, match="3-d"):
        mc_entropy(torch.rand(shape))


def test_zero_passes_raises() -> None:
    with pytest.raises(ValueError, match="T >= 1"):
        bald(torch.rand(0, 4, 3))
