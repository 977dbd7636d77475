"""What loss-prediction implementations get wrong: stop-gradient, taps-only gradient path,
query direction, eval mode and no augmentation during queries, the target network's lag."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from activeloss.acquisitions import QueryContext, make_acquisition
from activeloss.config import Settings
from activeloss.data import Inputs
from activeloss.data.readers import reader_of
from activeloss.loop.plan import resolve_run
from activeloss.models import Taps, build
from activeloss.objectives import (
    DoubleBranchObjective,
    LossPredictionObjective,
    ModelInfo,
    Step,
)
from activeloss.objectives.lossnet import LossNetOptions
from activeloss.strategies import get_strategy
from activeloss.tasks import ClassificationTask
from activeloss.trainer import TrainConfig, train

from conftest import build_parts, make_tiny_dataset

DATA = make_tiny_dataset(n_train=64, n_test=32, classes=3, size=8)


def _model_and_objective(strategy="llal", **kw):
    """The strategy's model (seed 0) and objective, set up as a learner sets them up, with its taps."""
    parts = build_parts(strategy, DATA, epochs=10, **kw)
    return parts.model, parts.objective, Taps(parts.model, parts.taps)


def _step(model, objective, taps, epoch):
    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), (), 0)
    x, y = inputs.train_batch(torch.arange(16)), DATA.y_train[:16]
    logits = model(x)
    losses = F.cross_entropy(logits, y, reduction="none")
    return Step(x, y, logits, losses, taps.outputs, epoch)


@pytest.mark.parametrize("name,shape,n_taps", [("resnet18", (3, 32, 32), 4), ("vgg16", (3, 32, 32), 5),
                                               ("cnn", (1, 28, 28), 4), ("mlp", (16,), 2)])
def test_lossnet_attaches_to_every_models_taps(name, shape, n_taps):
    model = build(name, 10, shape)
    objective = LossPredictionObjective(LossNetOptions(stop_gradient_epoch=6, lossnet_lr=0.1))
    objective.setup(model, ModelInfo(ClassificationTask(), model.taps, shape, 10))
    assert len(objective.lossnet.heads) == n_taps
    assert objective.lossnet.out.in_features == 128 * n_taps
    if name == "resnet18":
        assert [h.in_features for h in objective.lossnet.heads] == [64, 128, 256, 512]
    taps = Taps(model, model.taps)
    model.eval()(torch.zeros(3, *shape))
    assert objective.predict_loss(taps.outputs).shape == (3,)


def test_module_gradient_reaches_the_backbone_only_through_taps_and_stops_at_the_stop_epoch():
    model, objective, taps = _model_and_objective(stop_gradient_epoch=5)
    conv = model.block1[0].weight
    for epoch, reaches_backbone in ((4, True), (5, False), (9, False)):
        step = _step(model, objective, taps, epoch)
        extra = objective.batch_loss(step)
        grads = torch.autograd.grad(extra, [conv, model.classifier.weight, objective.lossnet.out.weight], allow_unused=True)
        conv_grad, head_grad, module_grad = grads
        assert head_grad is None  # the classifier sits after the taps: no path from the module loss
        assert module_grad is not None and module_grad.abs().sum() > 0  # the module keeps learning
        if reaches_backbone:
            assert conv_grad is not None and conv_grad.abs().sum() > 0
        else:
            assert conv_grad is None or conv_grad.abs().sum() == 0


def _run(strategy, **given):
    """The resolved run of ``strategy`` (the dataset's reader defaults, no data read)."""
    settings = Settings.from_dict(given)
    return resolve_run(settings, get_strategy(strategy), DATA, reader_of(settings.dataset))


def test_default_stop_gradient_epoch_is_120_of_200_and_dnal_120_of_150():
    llal = _run("llal", dataset="cifar10:/x")
    assert llal.settings.epochs == 200 and llal.objective_options.stop_gradient_epoch == 120
    assert llal.objective_options.lossnet_lr == pytest.approx(llal.settings.lr)
    dnal = _run("dnal", dataset="cifar10:/x", epochs=150)
    s = dnal.settings
    assert dnal.objective_options.stop_gradient_epoch == 120 and s.reinit is True and s.subset == 0
    assert dnal.objective_options.lossnet_lr == pytest.approx(s.lr / 10)
    assert dnal.options["stop_gradient_epoch"] == 120  # what the store keeps: resolved too
    assert _run("llal-mse", dataset="digits").objective_options.loss_weight == 0.1
    assert _run("llal", dataset="digits").objective_options.loss_weight == 1.0


def test_lossnet_trains_to_rank_losses():
    """After training, the module's ranking of held-out losses beats chance clearly."""
    from activeloss.metrics import ranking_accuracy
    from activeloss.trainer import evaluate

    data = make_tiny_dataset(n_train=300, n_test=200, classes=3, size=8, seed=1)
    parts = build_parts("llal", data, epochs=15, lr=0.02)
    model, objective, task = parts.model, parts.objective, parts.task
    taps = Taps(model, parts.taps)
    inputs = Inputs.from_dataset(data, torch.device("cpu"), (), 0)
    idx = torch.arange(40)  # few labels: the test losses vary a lot
    cfg = TrainConfig(15, 16, 0.02, 0.9, 5e-4, [12], 0.1)
    train(model, objective, task, inputs, idx, data.y_train[idx], cfg, taps, torch.Generator().manual_seed(0))
    ev = evaluate(model, objective, task, inputs, 64, taps)
    assert ev.predicted_losses is not None and ev.predicted_losses.shape == (200,)
    assert ranking_accuracy(ev.predicted_losses, ev.losses) > 0.6


def _ctx(model, objective, candidates):
    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), ("crop", "flip"), 4)
    return QueryContext(model, objective, inputs, candidates, torch.tensor([], dtype=torch.long),
                        torch.Generator().manual_seed(0), 8, ClassificationTask())


def test_predicted_loss_query_takes_the_highest_predictions_first():
    model, objective, taps = _model_and_objective()
    with torch.no_grad():
        objective.lossnet.out.bias.fill_(0.0)
    model.eval()
    objective.eval()
    candidates = torch.arange(40)
    selection = make_acquisition("predicted-loss").select(_ctx(model, objective, candidates), 5)
    with torch.no_grad():
        model(Inputs.from_dataset(DATA, torch.device("cpu"), (), 0).train_batch(candidates))
        predicted = objective.predict_loss(taps.outputs)
    expected = torch.argsort(predicted, descending=True)[:5]
    assert selection.indices.tolist() == expected.tolist()
    assert torch.all(selection.scores[:-1] >= selection.scores[1:])
    assert selection.scores[0] == pytest.approx(float(predicted.max()), rel=1e-5)


def test_queries_run_in_eval_mode_on_unaugmented_inputs():
    """The learner switches model and module to eval and feeds test-time inputs."""
    from activeloss import Learner
    from activeloss.acquisitions import Acquisition

    seen = {}

    class Spy(Acquisition):
        def select(self, ctx, k):
            seen["model_training"] = ctx.model.training
            seen["bn_training"] = ctx.model.block1[1].training
            seen["module_training"] = ctx.objective.lossnet.training
            batch = next(ctx.inputs.batches(ctx.candidates, 1000))
            seen["inputs"] = batch
            seen["plain"] = ctx.inputs.train_batch(ctx.candidates)
            from activeloss.acquisitions import Selection

            return Selection(ctx.candidates[:k].cpu())

    learner = Learner("cnn", DATA, "llal", acquisition=Spy(), subset=30, epochs=1, batch_size=8, augment="flip,crop")
    assert learner.inputs.augment_ops == ("flip", "crop")  # training batches are augmented...
    learner.teach(torch.arange(20), DATA.y_train[:20])
    learner.fit()
    learner.model.train()
    learner.objective.train()
    batch = learner.query(5)
    assert seen["model_training"] is False and seen["bn_training"] is False and seen["module_training"] is False
    assert torch.equal(seen["inputs"], seen["plain"])  # ...the query's are not
    assert len(batch) == 5
    assert learner.model.training and learner.objective.lossnet.training  # each module's mode is given back


def test_dnal_target_network_moves_only_at_its_updates():
    model, objective, taps = _model_and_objective("dnal")
    assert isinstance(objective, DoubleBranchObjective)
    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), (), 0)
    snapshots = []
    original_after_step = objective.after_step

    def record(m):
        original_after_step(m)
        snapshots.append({k: v.clone() for k, v in objective.target.state_dict().items()})

    objective.after_step = record
    cfg = TrainConfig(2, 16, 0.05, 0.9, 0.0, [10], 0.1)
    train(model, objective, ClassificationTask(), inputs, torch.arange(64), DATA.y_train, cfg, taps,
          torch.Generator().manual_seed(0))
    per_epoch = 64 // 16
    first, last_of_epoch0, first_of_epoch1 = snapshots[0], snapshots[per_epoch - 1], snapshots[per_epoch]
    assert all(torch.equal(first[k], last_of_epoch0[k]) for k in first)  # no movement inside an epoch
    assert any(not torch.equal(last_of_epoch0[k], first_of_epoch1[k]) for k in first)  # copied at the epoch end
    final = objective.target.state_dict()
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())  # equal after the last copy
    assert not objective.target.training  # the target only predicts


def test_dnal_ema_update_follows_the_formula():
    model, objective, _ = _model_and_objective("dnal", target_update="ema", ema_tau=0.9)
    before = {k: v.clone() for k, v in objective.target.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    objective.after_step(model)
    w = "block1.0.weight"
    assert torch.allclose(objective.target.state_dict()[w], 0.9 * before[w] + 0.1 * model.state_dict()[w])


def test_dnal_module_learns_the_target_networks_loss_not_the_training_networks():
    model, objective, taps = _model_and_objective("dnal")
    with torch.no_grad():  # make the two networks disagree
        for p in objective.target.parameters():
            p.mul_(0.5)
    step = _step(model, objective, taps, 0)
    predicted = objective.lossnet(step.taps)
    target_loss = F.cross_entropy(objective.target(step.inputs), step.targets, reduction="none")
    assert objective.module_loss(predicted, step).item() == pytest.approx(F.mse_loss(predicted, target_loss).item(), rel=1e-5)
    assert objective.module_loss(predicted, step).item() != pytest.approx(F.mse_loss(predicted, step.losses).item(), rel=1e-3)


def test_a_predicted_loss_query_needs_a_loss_predicting_objective():
    from activeloss.errors import ConfigError

    with pytest.raises(ConfigError, match="needs an objective with a loss-prediction module"):
        get_strategy("none+predicted-loss")
    with pytest.raises(ConfigError, match=r"needs an objective with a VAE and discriminator \(vaal, sraal\)"):
        get_strategy("lossnet+vaal")
    assert get_strategy("lossnet+entropy").objective == "lossnet"


@pytest.mark.parametrize("override", [{"stop_gradient_epoch": 0}, {"loss_weight": 0.0}])
def test_backbone_trains_exactly_as_plain_training_when_the_module_cannot_reach_it(override):
    """Detached from epoch 0 (or weighted 0), the module must leave the backbone's training untouched."""
    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), (), 0)
    cfg = TrainConfig(3, 16, 0.05, 0.9, 5e-4, [2], 0.1)
    states = []
    for strategy in ("random", "llal"):  # the plain objective, then the loss-prediction module
        parts = build_parts(strategy, DATA, epochs=10, **(override if strategy == "llal" else {}))
        model, objective = parts.model, parts.objective
        taps = Taps(model, parts.taps) if objective.needs_taps else None
        assert isinstance(objective, LossPredictionObjective) == (strategy == "llal")
        train(model, objective, parts.task, inputs, torch.arange(64), DATA.y_train, cfg, taps,
              torch.Generator().manual_seed(1))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
