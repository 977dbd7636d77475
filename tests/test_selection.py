"""k-center greedy: same picks as the textbook algorithm, known answers, edge cases, speed."""

import pytest
import torch

from activeloss.scoring.selection import k_center_greedy


def textbook(cand: torch.Tensor, labeled: torch.Tensor, k: int) -> list[int]:
    """Naive float64 k-center greedy with an explicit full distance matrix."""
    c = cand.double()
    lab = labeled.double().reshape(-1, c.shape[1])
    full = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1).sqrt()
    picks: list[int] = []
    if lab.shape[0] > 0:
        d = ((c[:, None, :] - lab[None, :, :]) ** 2).sum(-1).sqrt().min(dim=1).values
    else:  # documented rule: first pick = farthest from the candidates' mean
        first = int(((c - c.mean(dim=0)) ** 2).sum(-1).argmax())
        picks.append(first)
        d = full[:, first].clone()
        d[first] = float("-inf")
    while len(picks) < k:
        j = int(d.argmax())
        picks.append(j)
        d = torch.minimum(d, full[:, j])
        d[j] = float("-inf")
    return picks


def line(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)[:, None]


@pytest.mark.parametrize("m", [0, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float64_matches_textbook(m: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    cand = torch.randn(500, 16, generator=g, dtype=torch.float64)
    lab = torch.randn(m, 16, generator=g, dtype=torch.float64)
    assert k_center_greedy(cand, lab, 40).tolist() == textbook(cand, lab, 40)


@pytest.mark.parametrize("m", [0, 50])
def test_float32_matches_float64_textbook(m: int) -> None:
    g = torch.Generator().manual_seed(10 + m)
    cand = torch.randn(500, 16, generator=g)
    lab = torch.randn(m, 16, generator=g)
    assert k_center_greedy(cand, lab, 40).tolist() == textbook(cand, lab, 40)


def test_float32_with_large_offset_matches_textbook() -> None:
    # Post-ReLU-like features far from the origin: ||a||^2 + ||b||^2 - 2ab in float32
    # without centring would lose the distances in round-off.
    g = torch.Generator().manual_seed(3)
    cand = torch.randn(300, 16, generator=g) + 1000.0
    lab = torch.randn(30, 16, generator=g) + 1000.0
    assert k_center_greedy(cand, lab, 30).tolist() == textbook(cand, lab, 30)


def test_chunking_does_not_change_picks() -> None:
    g = torch.Generator().manual_seed(4)
    cand = torch.randn(203, 8, generator=g)
    lab = torch.randn(37, 8, generator=g)
    ref = k_center_greedy(cand, lab, 25)
    assert k_center_greedy(cand, lab, 25, chunk_size=7).tolist() == ref.tolist()
    assert k_center_greedy(cand, lab, 25, chunk_size=1).tolist() == ref.tolist()


def test_line_with_labeled_origin() -> None:
    cand = line(*range(11))
    picks = k_center_greedy(cand, line(0), 11)
    # 10 (farthest from 0), 5 (midpoint), then ties at distance 2 -> lowest index (2),
    # then 7, then all at distance 1 in index order, then 0 (on the labeled point).
    assert picks.tolist() == [10, 5, 2, 7, 1, 3, 4, 6, 8, 9, 0]


def test_no_labeled_starts_farthest_from_mean() -> None:
    # mean 3.25 -> 10 is farthest; then 0, then 2 (distance 2 to 0) before 1.
    assert k_center_greedy(line(0, 1, 2, 10), line(), 4).tolist() == [3, 0, 2, 1]
    # symmetric: 0 and 10 tie for farthest from the mean 5 -> lowest index first.
    assert k_center_greedy(line(*range(11)), torch.empty(0, 1), 3).tolist() == [0, 10, 5]


def test_empty_labeled_may_be_1d() -> None:
    assert k_center_greedy(line(0, 1, 2, 10), torch.empty(0), 2).tolist() == [3, 0]


def test_duplicates_of_picks_are_not_preferred_and_picks_are_distinct() -> None:
    # 1 and 2 are the same point: once 1 is picked, 2 is at distance 0 and comes last-ish,
    # but is still picked (never 1 again) when k == N.
    cand = line(0, 10, 10, 5)
    assert k_center_greedy(cand, line(0), 4).tolist() == [1, 3, 0, 2]
    g = torch.Generator().manual_seed(5)
    rep = torch.randn(10, 3, generator=g).repeat(4, 1)
    picks = k_center_greedy(rep, torch.empty(0, 3), 40)
    assert sorted(picks.tolist()) == list(range(40))
    # The first 10 picks cover the 10 distinct points.
    assert sorted(p % 10 for p in picks[:10].tolist()) == list(range(10))


def test_output_type_and_k_zero() -> None:
    cand = torch.randn(20, 4)
    out = k_center_greedy(cand, torch.randn(3, 4), 5)
    assert out.dtype == torch.long and out.shape == (5,) and out.device == cand.device
    empty = k_center_greedy(cand, torch.randn(3, 4), 0)
    assert empty.dtype == torch.long and empty.shape == (0,)


def test_integer_features_are_accepted() -> None:
    cand = torch.arange(11)[:, None]
    assert k_center_greedy(cand, torch.zeros(1, 1, dtype=torch.long), 2).tolist() == [10, 5]


def test_invalid_arguments() -> None:
    cand = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k=6"):
        k_center_greedy(cand, torch.randn(2, 3), 6)
    with pytest.raises(ValueError, match="non-negative"):
        k_center_greedy(cand, torch.randn(2, 3), -1)
    with pytest.raises(ValueError, match="labeled"):
        k_center_greedy(cand, torch.randn(2, 4), 1)
    with pytest.raises(ValueError, match="candidates"):
        k_center_greedy(torch.randn(5), torch.randn(2, 3), 1)
    with pytest.raises(ValueError, match="NaN"):
        k_center_greedy(torch.tensor([[0.0], [float("nan")]]), torch.empty(0, 1), 1)


def test_does_not_modify_inputs() -> None:
    cand = torch.randn(50, 4)
    lab = torch.randn(5, 4)
    c0, l0 = cand.clone(), lab.clone()
    k_center_greedy(cand, lab, 10)
    assert torch.equal(cand, c0) and torch.equal(lab, l0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(6)
    cand = torch.randn(2000, 32, generator=g, dtype=torch.float64)
    lab = torch.randn(100, 32, generator=g, dtype=torch.float64)
    out = k_center_greedy(cand.cuda(), lab.cuda(), 100)
    assert out.device.type == "cuda"
    assert out.cpu().tolist() == k_center_greedy(cand, lab, 100).tolist()


def test_a_callers_autocast_does_not_lower_the_precision_of_the_distances() -> None:
    g = torch.Generator().manual_seed(3)
    cand, lab = torch.randn(3000, 64, generator=g) + 5.0, torch.randn(200, 64, generator=g) + 5.0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what a query under mixed precision would do
        mixed = k_center_greedy(cand, lab, 200)
    assert torch.equal(mixed, k_center_greedy(cand, lab, 200))
