"""The CUDA fast path end to end (skipped without a GPU; `bench/gpu.sh` runs them on one).

They check what the CPU suite cannot: that the default GPU path (uint8 data on the device,
channels_last, bf16 autocast, cuDNN autotuning) runs every kind of strategy, that
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

