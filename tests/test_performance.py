"""The GPU fast-path switches, checked on CPU: channels_last, torch.compile, --deterministic.

None of them may change what a run computes (beyond float rounding): these tests compare
each against the plain path on small inputs.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from activeloss.cli import main
from activeloss.data import Inputs
from activeloss.device import performance
from activeloss.errors import ConfigError
from activeloss.models import Taps, build
from activeloss.models.small import AdaptiveMeanPool2d
from activeloss.objectives import ModelInfo, Objective
from activeloss.objectives.lossnet import LossNetOptions, LossPredictionObjective
from activeloss.scoring import gradient_norm_scores
from activeloss.tasks import ClassificationTask
from activeloss.trainer import TrainConfig, evaluate, train

from conftest import results_rows


@pytest.mark.parametrize("shape", [(7, 7), (8, 8), (5, 9), (2, 2), (3, 1)])
def test_adaptive_mean_pool_equals_the_builtin_forward_and_backward(shape):
    x = torch.randn(3, 4, *shape, dtype=torch.float64, requires_grad=True)
    ours = AdaptiveMeanPool2d(2)(x)
    (g_ours,) = torch.autograd.grad((ours * torch.arange(ours.numel()).view_as(ours)).sum(), x)
    ref = nn.AdaptiveAvgPool2d(2)(x)
    (g_ref,) = torch.autograd.grad((ref * torch.arange(ref.numel()).view_as(ref)).sum(), x)
    assert torch.allclose(ours, ref, atol=1e-12) and torch.allclose(g_ours, g_ref, atol=1e-12)


def test_memory_format_defaults_to_channels_last_on_cuda_for_images_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert performance.memory_format(None, cuda, image=True) == torch.channels_last
    assert performance.memory_format(None, cpu, image=True) == torch.contiguous_format
    assert performance.memory_format(None, cuda, image=False) == torch.contiguous_format
    assert performance.memory_format(True, cpu, image=True) == torch.channels_last
    assert performance.memory_format(False, cuda, image=True) == torch.contiguous_format


def _train_cnn(data, memory_format, forward=None, lossnet=False, epochs=2):
    torch.manual_seed(0)
    model = build("cnn", data.num_classes, data.input_shape).to(memory_format=memory_format)
    task = ClassificationTask()
    objective = Objective()
    taps = None
    if lossnet:
        objective = LossPredictionObjective(LossNetOptions(loss_weight=1.0, stop_gradient_epoch=epochs, lossnet_lr=0.05))
        objective.setup(model, ModelInfo(task, model.taps, data.input_shape, data.num_classes))
        taps = Taps(model, model.taps)
    inputs = Inputs.from_dataset(data, torch.device("cpu"), ("crop", "flip"), 1, memory_format)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=[epochs], gamma=0.1)
    idx = torch.arange(64)
    train(model, objective, task, inputs, idx, data.y_train[idx], cfg, taps, torch.Generator().manual_seed(1),
          forward=forward(model) if forward else None)
    result = evaluate(model, objective, task, inputs, 32, taps, forward(model) if forward else None)
    return model, inputs, result


def test_channels_last_trains_and_scores_like_the_usual_layout(tiny_dataset):
    plain, _, plain_result = _train_cnn(tiny_dataset, torch.contiguous_format)
    last, inputs, last_result = _train_cnn(tiny_dataset, torch.channels_last)
    assert inputs.train_batch(torch.arange(4)).is_contiguous(memory_format=torch.channels_last)
    assert last.block1[0].weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(plain.state_dict().items(), last.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name
    assert torch.allclose(plain_result.losses, last_result.losses, atol=1e-4)
    x = inputs.train_batch(torch.arange(12))
    assert torch.allclose(gradient_norm_scores(last, x), gradient_norm_scores(plain, x.contiguous()), rtol=1e-4)


def test_compiled_forward_trains_the_same_model_and_feeds_the_taps(tiny_dataset):
    eager, _, eager_result = _train_cnn(tiny_dataset, torch.contiguous_format, lossnet=True, epochs=1)
    calls = []

    def spied(model):
        compiled = performance.forward_of(model, True)
        assert compiled is not model and compiled._orig_mod is model
        return lambda x: calls.append(x.shape[0]) or compiled(x)

    compiled, _, compiled_result = _train_cnn(tiny_dataset, torch.contiguous_format, lossnet=True, epochs=1,
                                              forward=spied)
    assert sum(calls) == 64 + tiny_dataset.x_test.shape[0]  # every training and test batch went through it
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name
    assert compiled_result.predicted_losses is not None  # the taps saw the compiled forward's activations
    assert torch.allclose(eager_result.predicted_losses, compiled_result.predicted_losses, atol=1e-4)
    assert performance.forward_of(eager, False) is eager


def test_compile_option_runs_the_loop_through_torch_compile(tiny_npz, tmp_path):
    # random first: its untapped model is compiled before llal's tapped one (the taps must still fire)
    args = ["run", "--dataset", f"npz:{tiny_npz}", "--strategies", "random,llal,entropy", "--trials", "1", "--cycles", "2",
            "--initial", "20", "--budget", "10", "--epochs", "2", "--batch-size", "16", "--model", "mlp", "--quiet"]
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    assert main([*args, "--out", str(tmp_path / "compiled"), "--compile"]) == 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert main([*args, "--out", str(tmp_path / "eager")]) == 0
    compiled, eager = results_rows(tmp_path / "compiled"), results_rows(tmp_path / "eager")
    assert [r["labeled"] for r in compiled] == [r["labeled"] for r in eager]
    for a, b in zip(compiled, eager):
        assert abs(float(a["accuracy"]) - float(b["accuracy"])) <= 1 / 60 + 1e-9  # at most one test item flips


def test_deterministic_switch_sets_and_clears_the_global_flags():
    try:
        performance.configure(torch.device("cpu"), deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        performance.configure(torch.device("cuda"), deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        performance.configure(torch.device("cpu"), deterministic=False)
    assert not torch.backends.cudnn.benchmark


def test_a_kernel_without_deterministic_version_is_one_clear_error():
    with (pytest.raises(ConfigError, match=r"--deterministic: scatter_cuda has no deterministic kernel"),
          performance.explained_determinism_errors()):
        raise RuntimeError("scatter_cuda does not have a deterministic implementation, but you set "
                           "'torch.use_deterministic_algorithms(True)'.")
    with pytest.raises(RuntimeError, match="something else"), performance.explained_determinism_errors():
        raise RuntimeError("something else")


def test_runs_under_deterministic_mode_equal_the_default_on_cpu(tiny_npz, tmp_path):
    args = ["run", "--dataset", f"npz:{tiny_npz}", "--strategies", "llal,dnal,badge,coreset,bald,ent-gradnorm",
            "--trials", "1", "--cycles", "2", "--initial", "20", "--budget", "10", "--subset", "60", "--epochs", "2",
            "--batch-size", "16", "--model", "cnn", "--quiet"]

    try:
        assert main([*args, "--out", str(tmp_path / "det"), "--deterministic"]) == 0
    finally:
        performance.configure(torch.device("cpu"), deterministic=False)
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert results_rows(tmp_path / "det") == results_rows(tmp_path / "plain")
    # the GPU's default layout, on the CPU: every kind of query must work on channels_last batches
    assert main([*args, "--strategies", "llal,dnal,badge,coreset,bald,ent-gradnorm,vaal", "--vae-width", "8",
                 "--out", str(tmp_path / "last"), "--channels-last"]) == 0
    assert len(results_rows(tmp_path / "last")) == 7 * 2
