"""What loss-prediction implementations get wrong: stop-gradient, taps-only gradient path,
query direction, eval mode and no augmentation during queries, the target network's lag."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from activeloss.acquisitions import QueryContext, make_acquisition
from activeloss.config import Settings, resolve
from activeloss.inputs import Inputs
from activeloss.models import Taps, build
from activeloss.objectives import DoubleBranchObjective, LossPredictionObjective, Step
from activeloss.strategies import get_strategy
from activeloss.training import TrainConfig, train

from conftest import make_tiny_dataset

DATA = make_tiny_dataset(n_train=64, n_test=32, classes=3, size=8)


def _settings(**kw):
    return resolve(Settings(dataset="digits", epochs=10, **kw))


def _model_and_objective(objective_cls=LossPredictionObjective, **kw):
    torch.manual_seed(0)
    model = build("cnn", 3, DATA.input_shape)
    objective = objective_cls()
    objective.setup(model, 3, model.taps, _settings(**kw), DATA.input_shape)
    return model, objective, Taps(model, model.taps)


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
    objective = LossPredictionObjective()
    objective.setup(model, 10, model.taps, _settings(), shape)
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


def test_default_stop_gradient_epoch_is_120_of_200_and_dnal_120_of_150():
    assert resolve(Settings(dataset="cifar10:/x")).stop_gradient_epoch == 120
    dnal = get_strategy("dnal")
    s = resolve(Settings(dataset="cifar10:/x", epochs=150), dnal.defaults)
    assert s.stop_gradient_epoch == 120 and s.reinit is True and s.subset == 0
    assert s.lossnet_lr == pytest.approx(s.lr / 10)
    assert resolve(Settings(dataset="digits"), get_strategy("llal-mse").defaults).loss_weight == 0.1


def test_lossnet_trains_to_rank_losses():
    """After training, the module's ranking of held-out losses beats chance clearly."""
    from activeloss.metrics import ranking_accuracy
    from activeloss.training import evaluate

    data = make_tiny_dataset(n_train=300, n_test=200, classes=3, size=8, seed=1)
    torch.manual_seed(0)
    model = build("cnn", 3, data.input_shape)
    objective = LossPredictionObjective()
    s = resolve(Settings(dataset="digits", epochs=15, lr=0.02))
    objective.setup(model, 3, model.taps, s, data.input_shape)
    taps = Taps(model, model.taps)
    inputs = Inputs.from_dataset(data, torch.device("cpu"), (), 0)
    idx = torch.arange(40)  # few labels: the test losses vary a lot
    cfg = TrainConfig(15, 16, 0.02, 0.9, 5e-4, [12], 0.1)
    train(model, objective, inputs, idx, data.y_train[idx], cfg, taps, torch.Generator().manual_seed(0), s)
    ev = evaluate(model, objective, inputs, 64, taps)
    assert ev.predicted_losses is not None and ev.predicted_losses.shape == (200,)
    assert ranking_accuracy(ev.predicted_losses, ev.losses) > 0.6


def _ctx(model, objective, candidates, settings=None):
    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), ("crop", "flip"), 4)
    return QueryContext(model, objective, inputs, candidates, torch.tensor([], dtype=torch.long),
                        torch.Generator().manual_seed(0), 8, settings or _settings())


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


def test_queries_run_in_eval_mode_on_unaugmented_inputs(tmp_path):
    """The experiment switches model and module to eval and feeds test-time inputs."""
    from activeloss import experiment

    seen = {}

    class Spy:
        name = "spy"

        def select(self, ctx, k):
            seen["model_training"] = ctx.model.training
            seen["bn_training"] = ctx.model.block1[1].training
            seen["module_training"] = ctx.objective.lossnet.training
            batch = next(ctx.inputs.batches(ctx.candidates, 1000))
            seen["inputs"] = batch
            seen["plain"] = ctx.inputs.train_batch(ctx.candidates)
            from activeloss.acquisitions import Selection

            return Selection(ctx.candidates[:k].cpu())

    settings = Settings(dataset="digits", strategies=["llal"], trials=1, cycles=2, initial=20, budget=5, subset=30,
                        epochs=1, batch_size=8, out=str(tmp_path / "o"), augment="flip,crop")
    plan = experiment.plan(settings)
    exp = experiment.Experiment(plan, tmp_path / "o", progress=False)
    strategy, s = plan.runs[0]
    model, objective, taps = exp.fresh_model(strategy, s, 0, 0)
    model.train()
    objective.train()
    pool = exp.restore_pool(exp.open_store(False), 1, s, 0)
    exp.query(model, objective, Spy(), exp.inputs_for(s), pool, s, 0, 0)
    assert seen["model_training"] is False and seen["bn_training"] is False and seen["module_training"] is False
    assert torch.equal(seen["inputs"], seen["plain"])


def test_dnal_target_network_moves_only_at_its_updates():
    model, objective, taps = _model_and_objective(DoubleBranchObjective)
    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), (), 0)
    snapshots = []
    original_after_step = objective.after_step

    def record(m):
        original_after_step(m)
        snapshots.append({k: v.clone() for k, v in objective.target.state_dict().items()})

    objective.after_step = record
    s = _settings()
    cfg = TrainConfig(2, 16, 0.05, 0.9, 0.0, [10], 0.1)
    train(model, objective, inputs, torch.arange(64), DATA.y_train, cfg, taps, torch.Generator().manual_seed(0), s)
    per_epoch = 64 // 16
    first, last_of_epoch0, first_of_epoch1 = snapshots[0], snapshots[per_epoch - 1], snapshots[per_epoch]
    assert all(torch.equal(first[k], last_of_epoch0[k]) for k in first)  # no movement inside an epoch
    assert any(not torch.equal(last_of_epoch0[k], first_of_epoch1[k]) for k in first)  # copied at the epoch end
    final = objective.target.state_dict()
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())  # equal after the last copy
    assert not objective.target.training  # the target only predicts


def test_dnal_ema_update_follows_the_formula():
    model, objective, _ = _model_and_objective(DoubleBranchObjective, target_update="ema", ema_tau=0.9)
    before = {k: v.clone() for k, v in objective.target.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    objective.after_step(model)
    w = "block1.0.weight"
    assert torch.allclose(objective.target.state_dict()[w], 0.9 * before[w] + 0.1 * model.state_dict()[w])


def test_dnal_module_learns_the_target_networks_loss_not_the_training_networks():
    model, objective, taps = _model_and_objective(DoubleBranchObjective)
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
    from activeloss.objectives import Objective

    inputs = Inputs.from_dataset(DATA, torch.device("cpu"), (), 0)
    cfg = TrainConfig(3, 16, 0.05, 0.9, 5e-4, [2], 0.1)
    states = []
    for with_module in (False, True):
        torch.manual_seed(0)
        model = build("cnn", 3, DATA.input_shape)
        objective, taps = Objective(), None
        if with_module:
            objective = LossPredictionObjective()
            objective.setup(model, 3, model.taps, _settings(**override), DATA.input_shape)
            taps = Taps(model, model.taps)
        train(model, objective, inputs, torch.arange(64), DATA.y_train, cfg, taps, torch.Generator().manual_seed(1), _settings())
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
