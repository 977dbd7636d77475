"""The Learning Loss ranking loss, the llal-mse ablation and the ranking-accuracy metric."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from activeloss.losses import mse_loss_prediction, ranking_loss
from activeloss.metrics import ranking_accuracy


def public_loss_pred_loss(inp: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The public Learning Loss code's LossPredLoss (even batches), kept verbatim in spirit."""
    inp = (inp - inp.flip(0))[: len(inp) // 2]
    target = (target - target.flip(0))[: len(target) // 2]
    target = target.detach()
    one = 2 * torch.sign(torch.clamp(target, min=0)) - 1
    return torch.sum(torch.clamp(margin - one * inp, min=0)) / inp.size(0)


def pairwise_reference(pred: list[float], target: list[float], margin: float) -> float:
    """The paper's formula written pair by pair (i with B-1-i, odd batch drops the last)."""
    n = len(pred) - len(pred) % 2
    losses = []
    for i in range(n // 2):
        j = n - 1 - i
        s = 1.0 if target[i] > target[j] else -1.0
        losses.append(max(0.0, margin - s * (pred[i] - pred[j])))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("batch", [2, 7, 8, 33])
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_ranking_loss_matches_the_pairwise_formula(batch: int, margin: float) -> None:
    torch.manual_seed(batch)
    pred = torch.randn(batch)
    target = torch.rand(batch) * 3
    expected = pairwise_reference(pred.tolist(), target.tolist(), margin)
    assert ranking_loss(pred, target, margin).item() == pytest.approx(expected, rel=1e-6)


def test_ranking_loss_equals_the_public_code_on_even_batches() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(128), torch.rand(128)
    target[::5] = target[1::5][: len(target[::5])]  # some ties
    assert torch.allclose(ranking_loss(pred, target), public_loss_pred_loss(pred, target))


def test_odd_batch_leaves_the_last_sample_out() -> None:
    torch.manual_seed(1)
    pred, target = torch.randn(9), torch.rand(9)
    base = ranking_loss(pred, target)
    assert base == ranking_loss(pred[:8], target[:8])
    pred2, target2 = pred.clone(), target.clone()
    pred2[-1], target2[-1] = 100.0, -100.0
    assert ranking_loss(pred2, target2) == base


def test_ties_count_as_target_i_not_greater() -> None:
    pred = torch.tensor([0.2, 0.0])
    tied = torch.tensor([1.0, 1.0])
    assert ranking_loss(pred, tied).item() == pytest.approx(1.0 + 0.2)  # s = -1
    assert ranking_loss(pred, torch.tensor([2.0, 1.0])).item() == pytest.approx(1.0 - 0.2)  # s = +1
    assert ranking_loss(torch.tensor([5.0, 0.0]), torch.tensor([2.0, 1.0])).item() == 0.0  # beyond the margin


def test_gradient_reaches_pred_but_not_target() -> None:
    pred = torch.tensor([0.5, 0.1, -0.3, 0.4], requires_grad=True)
    target = torch.tensor([1.0, 2.0, 0.5, 0.2], requires_grad=True)
    ranking_loss(pred, target).backward()
    assert target.grad is None
    # pair (0,3): target0 > target3, s=+1, active (1 - 0.1 > 0): d/dpred0 = -1/2, d/dpred3 = +1/2
    # pair (1,2): target1 > target2, s=+1, active (1 - 0.4 > 0): d/dpred1 = -1/2, d/dpred2 = +1/2
    assert torch.allclose(pred.grad, torch.tensor([-0.5, -0.5, 0.5, 0.5]))


def test_column_shaped_inputs_are_flattened() -> None:
    torch.manual_seed(2)
    pred, target = torch.randn(6), torch.rand(6)
    assert ranking_loss(pred[:, None], target) == ranking_loss(pred, target)
    assert mse_loss_prediction(pred[:, None], target[:, None]) == mse_loss_prediction(pred, target)


@pytest.mark.parametrize("batch", [0, 1])
def test_tiny_batches_give_a_zero_connected_to_the_graph(batch: int) -> None:
    pred = torch.randn(batch, 1, requires_grad=True)
    loss = ranking_loss(pred, torch.rand(batch))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        ranking_loss(torch.randn(4), torch.randn(5))
    with pytest.raises(ValueError):
        mse_loss_prediction(torch.randn(4), torch.randn(3))


def test_mse_loss_prediction_is_the_mean_squared_error_with_a_detached_target() -> None:
    pred = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    target = torch.tensor([0.0, 2.0, 1.0], requires_grad=True)
    loss = mse_loss_prediction(pred, target)
    assert loss.item() == pytest.approx((1 + 0 + 9) / 3)
    loss.backward()
    assert target.grad is None
    assert torch.allclose(pred.grad, 2 * torch.tensor([1.0, 0.0, 3.0]) / 3)


# ----------------------------------------------------------------------------- ranking accuracy


def brute_ranking_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    concordant = discordant = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if x[i] == x[j] or y[i] == y[j]:
                continue
            if (x[i] - x[j]) * (y[i] - y[j]) > 0:
                concordant += 1
            else:
                discordant += 1
    return concordant / (concordant + discordant) if concordant + discordant else math.nan


def test_ranking_accuracy_matches_brute_force_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        x = rng.integers(0, int(rng.integers(1, 6)), n).astype(float)
        y = rng.integers(0, int(rng.integers(1, 6)), n).astype(float)
        got, want = ranking_accuracy(x, y), brute_ranking_accuracy(x, y)
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12), (x, y)


def test_ranking_accuracy_accepts_tensors_and_columns() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.normal(size=50)
    y[:10] = y[10:20]  # ties in true
    want = brute_ranking_accuracy(x, y)
    assert ranking_accuracy(torch.tensor(x, dtype=torch.float64)[:, None], torch.tensor(y)) == pytest.approx(want)
    assert ranking_accuracy(x.tolist(), y) == pytest.approx(want)


def test_ranking_accuracy_extremes() -> None:
    v = np.arange(20.0)
    assert ranking_accuracy(v, v * 3 + 1) == 1.0
    assert ranking_accuracy(v, -v) == 0.0
    assert math.isnan(ranking_accuracy(np.ones(5), v[:5]))  # every pair tied in pred
    assert math.isnan(ranking_accuracy([1.0], [2.0]))


def test_ranking_accuracy_is_kendall_tau_shifted_without_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    x = rng.normal(size=500)
    y = x + rng.normal(size=500)
    tau = stats.kendalltau(x, y)[0]
    assert ranking_accuracy(x, y) == pytest.approx((tau + 1) / 2, abs=1e-12)


def test_ranking_accuracy_is_fast_on_a_test_set() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=10_000)
    y = np.round(x + rng.normal(size=10_000), 1)  # ties in true
    start = time.perf_counter()
    value = ranking_accuracy(x, y)
    assert time.perf_counter() - start < 1.0
    assert 0.5 < value < 1.0


def test_ranking_accuracy_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        ranking_accuracy([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        ranking_accuracy([1.0, float("nan")], [1.0, 2.0])


def test_confidence_histogram_bins_against_a_slow_count():
    from activeloss.tasks.classification import CONFIDENCE_EDGES, histogram

    values = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.9, 0.949, 0.95, 0.991, 0.9995, 0.99999, 1.0])
    slow = [0] * (len(CONFIDENCE_EDGES) - 1)
    for v in values.tolist():
        i = max(k for k in range(len(CONFIDENCE_EDGES) - 1) if v >= CONFIDENCE_EDGES[k])
        slow[i] += 1
    assert histogram(values) == slow
    assert sum(histogram(values)) == values.numel() and histogram(values)[-1] == 2  # 1.0 lands in the last bin
