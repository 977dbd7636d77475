"""guarded-loss, activeloss's own strategy: held-out items, the measured guard, the two kinds of picks."""
import math

import pytest
import torch

from activeloss.data import Inputs
from activeloss.losses import ranking_loss
from activeloss.models import tapped
from activeloss.objectives import Step
from activeloss.scoring.typical import cold_start

from conftest import build_parts, make_context


def _slow_weighted_ranking(pred, target, weights, margin=1.0):
    """Mirror pairs (i, B-1-i) of the even part, kept when both weigh 1; mean over the kept ones."""
    n = len(pred) - len(pred) % 2
    kept = []
    for i in range(n // 2):
        j = n - 1 - i
        if weights[i] and weights[j]:
            sign = 1.0 if target[i] > target[j] else -1.0
            kept.append(max(0.0, margin - sign * float(pred[i] - pred[j])))
    return sum(kept) / max(len(kept), 1)


@pytest.mark.parametrize("batch", [2, 7, 10])
def test_weighted_ranking_loss_keeps_only_pairs_of_two_kept_items(batch):
    g = torch.Generator().manual_seed(batch)
    pred, target = torch.randn(batch, generator=g), torch.randn(batch, generator=g)
    weights = torch.rand(batch, generator=g) < 0.6
    got = ranking_loss(pred, target, weights=weights)
    assert got.item() == pytest.approx(_slow_weighted_ranking(pred, target, weights.tolist()), abs=1e-6)
    assert torch.equal(ranking_loss(pred, target, weights=torch.ones(batch, dtype=torch.bool)), ranking_loss(pred, target))
    assert ranking_loss(pred, target, weights=torch.zeros(batch, dtype=torch.bool)).item() == 0.0


def test_held_out_items_are_a_fixed_share_and_teach_the_module_nothing(tiny_dataset):
    parts = build_parts("guarded-loss", tiny_dataset)
    objective = parts.objective
    assert objective.stop_gradient_epoch == 0 and objective.options.module_holdout == 0.2
    items = torch.arange(20_000)
    held = objective.held_out(items)
    assert 0.18 < held.float().mean().item() < 0.22
    assert torch.equal(held, objective.held_out(items.flip(0)).flip(0))  # per item, whatever the batch
    # a batch of held-out items gives the module no loss and no gradient
    batch = items[held][:8]
    with tapped(parts.model, parts.taps) as recorded:
        outputs = parts.model(tiny_dataset.x_train[:8].float())
        taps = list(recorded.outputs)
    step = Step(torch.zeros(8, 1), torch.zeros(8), outputs, torch.rand(8), taps, epoch=0, items=batch)
    loss = objective.batch_loss(step)
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in objective.lossnet.parameters())


def _context(tiny_dataset, labels=True, **options):
    parts = build_parts("guarded-loss", tiny_dataset, guard_min_items=2, **options)
    parts.model.eval()
    parts.objective.eval()
    inputs = Inputs.from_dataset(tiny_dataset, torch.device("cpu"), (), 0)
    labeled, candidates = torch.arange(0, 40), torch.arange(40, tiny_dataset.size)
    ctx = make_context(parts, inputs, candidates, labeled)
    if labels:
        ctx.labels = tiny_dataset.y_train[labeled]
    return parts, inputs, ctx


def _first_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(0)))


def test_a_module_that_does_not_rank_gets_coreset_picks_by_default_and_no_scores(tiny_dataset, monkeypatch):
    from activeloss.scoring import k_center_greedy

    parts, _, ctx = _context(tiny_dataset)
    assert parts.acquisition.options.guard_fallback == "coreset"
    monkeypatch.setattr(type(parts.acquisition), "held_out_ranking", lambda self, ctx: 0.55)
    selection = parts.acquisition.select(ctx, 6)
    features = ctx.features(ctx.candidates)
    expected = ctx.candidates[k_center_greedy(features, ctx.features(ctx.labeled), 6)]
    assert selection.indices.tolist() == expected.tolist()
    assert selection.scores is None  # a stored query without scores is a fallback batch


def test_the_fallback_can_be_random_or_typical(tiny_dataset, monkeypatch):
    monkeypatch.setattr(type(build_parts("guarded-loss", tiny_dataset).acquisition), "held_out_ranking",
                        lambda self, ctx: 0.55)
    parts, inputs, ctx = _context(tiny_dataset, guard_fallback="random")
    chosen = parts.acquisition.select(ctx, 6).indices
    expected = ctx.candidates[torch.randperm(ctx.candidates.numel(), generator=torch.Generator().manual_seed(0))[:6]]
    assert chosen.tolist() == expected.tolist()
    parts, inputs, ctx = _context(tiny_dataset, guard_fallback="typical")
    assert parts.acquisition.select(ctx, 6).indices.tolist() == cold_start(inputs, ctx.candidates, 6, _first_seed())[0]


@pytest.mark.parametrize("cold_start_rule", ["typical", "fallback"])
def test_too_few_held_out_items_get_the_cold_start(tiny_dataset, monkeypatch, cold_start_rule):
    parts, inputs, ctx = _context(tiny_dataset, guard_cold_start=cold_start_rule, guard_fallback="random")
    monkeypatch.setattr(type(parts.acquisition), "held_out_ranking", lambda self, ctx: float("nan"))
    chosen = parts.acquisition.select(ctx, 6).indices.tolist()
    typical = cold_start(inputs, ctx.candidates, 6, _first_seed())[0]
    random = ctx.candidates[torch.randperm(ctx.candidates.numel(), generator=torch.Generator().manual_seed(0))[:6]]
    assert chosen == (typical if cold_start_rule == "typical" else random.tolist())


def test_without_known_labels_nothing_is_measured(tiny_dataset):
    parts, _, ctx = _context(tiny_dataset, labels=False)
    assert math.isnan(parts.acquisition.held_out_ranking(ctx))


def test_a_module_that_ranks_gets_diverse_high_loss_picks(tiny_dataset, monkeypatch):
    from activeloss.acquisitions.loss_based import predicted_losses

    parts, _, ctx = _context(tiny_dataset)
    monkeypatch.setattr(type(parts.acquisition), "held_out_ranking", lambda self, ctx: 0.9)
    selection = parts.acquisition.select(ctx, 4)
    chosen = selection.indices
    predicted = predicted_losses(ctx, ctx.candidates)
    pool = set(ctx.candidates[torch.argsort(predicted, descending=True)[:20]].tolist())  # loss-pool 5 x 4
    assert len(set(chosen.tolist())) == 4 and set(chosen.tolist()) <= pool
    assert not set(chosen.tolist()) & set(ctx.labeled.tolist())


def test_the_guard_measures_ranking_on_held_out_labeled_items_only(tiny_dataset, monkeypatch):
    from activeloss.acquisitions import guarded

    parts, _, ctx = _context(tiny_dataset)
    seen = []
    real = guarded.predicted_losses
    monkeypatch.setattr(guarded, "predicted_losses", lambda c, items: seen.append(items.clone()) or real(c, items))
    accuracy = parts.acquisition.held_out_ranking(ctx)
    held = ctx.labeled[parts.objective.held_out(ctx.labeled)]
    assert 0.0 <= accuracy <= 1.0 and torch.equal(seen[0], held)
