"""The CUDA fast path end to end (skipped without a GPU; `bench/gpu.sh` runs them on one).

They check what the CPU suite cannot: that the default GPU path (uint8 data on the device,
channels_last, bf16 autocast, cuDNN autotuning, training steps replayed from CUDA graphs) runs
every kind of strategy, and so does the eager path, that
``--deterministic`` really gives the same bits twice, that parallel trials share one GPU
with the sequential results, and that the batched scores agree with the CPU's.
"""
from __future__ import annotations

import pytest
import torch

from activeloss.cli import main
from activeloss.device import performance
from activeloss.models import build
from activeloss.scoring import gradient_norm_scores

from conftest import results_rows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TINY = ["--trials", "1", "--cycles", "2", "--initial", "20", "--budget", "10", "--subset", "60", "--epochs", "2",
        "--batch-size", "16", "--quiet", "--device", "cuda"]


@pytest.fixture(autouse=True)
def _reset_switches():
    yield
    performance.configure(torch.device("cpu"), deterministic=False)


def test_every_kind_of_strategy_runs_on_the_default_gpu_path(tiny_npz, tmp_path):
    strategies = "random,entropy,llal,lplgrad,dnal,coreset,badge,bald,vaal"
    assert main(["run", "--dataset", f"npz:{tiny_npz}", "--strategies", strategies, *TINY, "--model", "cnn",
                 "--vae-width", "8", "--vae-epochs", "1", "--out", str(tmp_path / "gpu")]) == 0
    rows = results_rows(tmp_path / "gpu")
    assert len(rows) == 9 * 2 and all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)


def test_deterministic_runs_repeat_bit_for_bit(tiny_npz, tmp_path):
    args = ["run", "--dataset", f"npz:{tiny_npz}", "--strategies", "llal,ent-gradnorm,badge", *TINY,
            "--model", "resnet18", "--deterministic"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert results_rows(tmp_path / "a") == results_rows(tmp_path / "b")


def test_parallel_trials_share_the_gpu_with_the_sequential_results(tiny_npz, tmp_path):
    args = ["run", "--dataset", f"npz:{tiny_npz}", "--strategies", "entropy,llal", *TINY, "--trials", "2",
            "--model", "cnn", "--deterministic"]
    assert main([*args, "--out", str(tmp_path / "seq")]) == 0
    assert main([*args, "--out", str(tmp_path / "par"), "--parallel-trials", "2"]) == 0
    assert results_rows(tmp_path / "seq") == results_rows(tmp_path / "par")


def test_gradient_norms_on_the_gpu_equal_the_cpu_ones():
    torch.manual_seed(0)
    model = build("resnet18", 10, (3, 32, 32)).eval()
    x = torch.randn(24, 3, 32, 32)
    cpu = gradient_norm_scores(model, x)
    gpu_model = build("resnet18", 10, (3, 32, 32)).cuda().to(memory_format=torch.channels_last)
    gpu_model.load_state_dict(model.state_dict())
    with torch.autocast("cuda", dtype=torch.bfloat16):  # the query's context: the scores must not use it
        gpu = gradient_norm_scores(gpu_model, x.cuda().contiguous(memory_format=torch.channels_last))
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-4)


def _graph_training(data, name, graphs, **settings):
    from activeloss.data import Inputs
    from activeloss.device.graphs import CudaGraphs
    from activeloss.models import Taps
    from activeloss.trainer import TrainConfig, train

    from conftest import build_parts

    device = torch.device("cuda")
    performance.configure(device, deterministic=True)
    parts = build_parts(name, data, model="resnet18", **settings)
    parts.model.to(device).to(memory_format=torch.channels_last)
    parts.objective.to(device)
    inputs = Inputs.from_dataset(data, device, ("crop", "flip"), 4, torch.channels_last)
    taps = Taps(parts.model, parts.taps) if parts.objective.needs_taps else None
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.01, momentum=0.9, weight_decay=5e-4, milestones=[3], gamma=0.1)
    idx = torch.arange(53)
    used = train(parts.model, parts.objective, parts.task, inputs, idx, data.y_train[idx], cfg, taps,
                 torch.Generator().manual_seed(5), graphs=CudaGraphs(device) if graphs else None)
    state = {**parts.model.state_dict(), **{f"o.{k}.{p}": v for k, m in parts.objective.modules().items()
                                           for p, v in m.state_dict().items()}}
    return {k: v.cpu() for k, v in state.items()}, used


@pytest.mark.parametrize("name", ["random", "llal", "dnal"])
def test_recorded_cuda_graphs_train_to_the_eager_bits(tiny_dataset, name):
    """With --deterministic, replaying recorded steps gives the eager loop's weights exactly."""
    eager, _ = _graph_training(tiny_dataset, name, False, stop_gradient_epoch=2)
    replayed, used = _graph_training(tiny_dataset, name, True, stop_gradient_epoch=2)
    assert used is not None and used.failed is None and used.recordings >= 2
    assert all(torch.isfinite(v.float()).all() for v in eager.values())
    for key in eager:
        assert torch.equal(eager[key], replayed[key]), key


def test_every_kind_of_strategy_runs_eagerly_with_no_cuda_graphs(tiny_npz, tmp_path):
    strategies = "random,llal,llal-mse,dnal,lplgrad,bald,vaal,bgadl"
    assert main(["run", "--dataset", f"npz:{tiny_npz}", "--strategies", strategies, *TINY, "--model", "cnn",
                 "--vae-width", "8", "--vae-epochs", "1", "--no-cuda-graphs", "--out", str(tmp_path / "g")]) == 0
    rows = results_rows(tmp_path / "g")
    assert len(rows) == 8 * 2 and all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)


def test_the_default_gpu_path_records_the_training_steps(tiny_dataset, monkeypatch):
    from activeloss import Learner
    from activeloss.device.graphs import CudaGraphs
    from activeloss.loop import learner as learner_module

    recorded = []

    class Counting(CudaGraphs):
        def record(self, fn):
            recorded.append(fn)
            return super().record(fn)

    monkeypatch.setattr(learner_module, "CudaGraphs", Counting)
    first = torch.arange(30)
    for given, expected in (({}, True), ({"cuda_graphs": False}, False)):
        recorded.clear()
        learner = Learner("cnn", tiny_dataset, "llal", epochs=3, batch_size=8, device="cuda", **given)
        learner.teach(first, tiny_dataset.y_train[first])
        learner.fit()
        assert bool(recorded) is expected
