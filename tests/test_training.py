import pytest
import torch

from activeloss.data import Inputs
from activeloss.models import build
from activeloss.objectives import Objective, ParamGroup
from activeloss.tasks import ClassificationTask
from activeloss.trainer import TrainConfig, evaluate, make_optimizer, train


def _setup(data, seed=0):
    torch.manual_seed(seed)
    model = build("cnn", data.num_classes, data.input_shape)
    inputs = Inputs.from_dataset(data, torch.device("cpu"), ("crop",), 1)
    return model, inputs


def test_training_learns_and_is_deterministic(tiny_dataset):
    cfg = TrainConfig(epochs=6, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=[5], gamma=0.1)
    idx = torch.arange(60)
    results = []
    for _ in range(2):
        model, inputs = _setup(tiny_dataset)
        task = ClassificationTask()
        before = evaluate(model, Objective(), task, inputs, 64, None).metrics["accuracy"]
        train(model, Objective(), task, inputs, idx, tiny_dataset.y_train[idx], cfg, None,
              torch.Generator().manual_seed(3))
        results.append((before, evaluate(model, Objective(), task, inputs, 64, None), model.state_dict()))
    (before, ev, state), (_, ev2, state2) = results
    assert ev.metrics["accuracy"] > 0.9 > before
    assert ev.metrics == ev2.metrics and torch.equal(ev.outputs, ev2.outputs)
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert ev.losses.shape == (60,) and ev.predicted_losses is None


def test_schedule_decays_only_groups_that_ask_for_it(tiny_dataset):
    class Extra(Objective):
        def __init__(self):
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

        def param_groups(self):
            return [ParamGroup(list(self.a.parameters()), 0.01, decay=True), ParamGroup(list(self.b.parameters()), 0.02, decay=False)]

    model, _ = _setup(tiny_dataset)
    cfg = TrainConfig(epochs=10, batch_size=8, lr=0.1, momentum=0.9, weight_decay=0.0, milestones=[2, 4], gamma=0.1)
    opt, sched = make_optimizer(model, Extra(), cfg)
    lrs = []
    for _ in range(5):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [round(l[0], 6) for l in lrs] == [0.1, 0.1, 0.01, 0.01, 0.001]
    assert [round(l[1], 6) for l in lrs] == [0.01, 0.01, 0.001, 0.001, 0.0001]
    assert all(l[2] == 0.02 for l in lrs)


def test_a_single_leftover_item_does_not_break_batchnorm(tiny_dataset):
    model, inputs = _setup(tiny_dataset)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.01, momentum=0.9, weight_decay=0.0, milestones=[1], gamma=0.1)
    idx = torch.arange(9)  # 4 + 4 + 1
    train(model, Objective(), ClassificationTask(), inputs, idx, tiny_dataset.y_train[idx], cfg, None,
          torch.Generator().manual_seed(0))


def test_inputs_are_normalised_with_train_statistics(tiny_dataset):
    inputs = Inputs.from_dataset(tiny_dataset, torch.device("cpu"), (), 0)
    x = inputs.train_batch(torch.arange(tiny_dataset.x_train.shape[0]))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2
    assert inputs.x_train.dtype == torch.uint8  # kept compact until a batch is taken


def test_rmsprop_is_the_optimizer_when_asked_and_learns(tiny_dataset):
    model, inputs = _setup(tiny_dataset)
    cfg = TrainConfig(epochs=6, batch_size=16, lr=1e-3, momentum=0.0, weight_decay=0.0, milestones=[5], gamma=0.1,
                      optimizer="rmsprop")
    opt, _ = make_optimizer(model, Objective(), cfg)
    assert isinstance(opt, torch.optim.RMSprop) and opt.param_groups[0]["lr"] == 1e-3
    idx = torch.arange(60)
    task = ClassificationTask()
    train(model, Objective(), task, inputs, idx, tiny_dataset.y_train[idx], cfg, None, torch.Generator().manual_seed(3))
    assert evaluate(model, Objective(), task, inputs, 64, None).metrics["accuracy"] > 0.9
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        make_optimizer(model, Objective(), TrainConfig(1, 8, 0.1, 0.9, 0.0, [1], 0.1, optimizer="adamw"))
