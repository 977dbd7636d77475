"""Several processes under torchrun (gloo on the CPU): 2 processes give one process's results.

One ``torchrun --standalone --nproc_per_node=2`` launch (``python -m torch.distributed.run``,
path-independent) runs tests/_distributed_worker.py: training steps, evaluation and queries,
then ``activeloss run`` end to end.  The same worker code runs here in one process as the
reference.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import activeloss
from activeloss import cli, models
from activeloss.device import distributed

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as worker  # noqa: E402
from conftest import sql_rows

WORKER = Path(__file__).parent / "_distributed_worker.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(one-process results, [rank 0, rank 1] results, folder of the 2-process run, npz, tmp root, the
    torchrun process).  The ranks save their checks before the end-to-end run, so a failure of that
    run fails only the test that checks it."""
    from conftest import write_tiny_npz

    root = tmp_path_factory.mktemp("dist")
    npz = write_tiny_npz(root / "tiny.npz")
    two = root / "two"
    two.mkdir()
    env = dict(os.environ)
    src = str(Path(activeloss.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(two),
           str(npz)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=root)
    saved = [two / f"rank{r}.pt" for r in range(2)]
    assert all(p.is_file() for p in saved), proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [torch.load(p, weights_only=False) for p in saved]
    one = worker.checks(str(npz), root / "scratch")
    return one, ranks, two / "run", npz, root, proc


def _close(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{what} {k}: {m}")


@pytest.mark.parametrize("case", ["full_batch", "epochs", "odd_batch", "tiny_batch"])
def test_gradients_equal_single_process_full_batch(runs, case):
    """Each rank trains on its share of the global batch (all of a batch with fewer pairs than
    ranks); DDP's averaged gradients (and after several steps the weights, momentum and
    augmentation included) are those of one process."""
    one, ranks, *_ = runs
    assert ranks[0]["world_size"] == 2
    for r in ranks:
        _close(r[case]["grads"], one[case]["grads"], f"{case} gradient")
        _close(r[case]["state"], one[case]["state"], f"{case} weights")
    for k, v in ranks[0][case]["state"].items():  # the replicas are identical, bit for bit
        assert torch.equal(v, ranks[1][case]["state"][k]), k


def test_training_steps_run_in_distributed_data_parallel(runs):
    """Under torchrun every training step goes through PyTorch's DistributedDataParallel, which
    holds the model and the loss-prediction module (llal); one process uses no wrapper at all,
    and the hand-written gradient sum is gone."""
    one, ranks, *_ = runs
    assert one["wrapped"] == []
    for r in ranks:
        assert r["wrapped"] == [("DistributedDataParallel", "_TrainingStep", ["LossNet"])] * 5
    assert not hasattr(distributed, "sync_step")


def test_sync_bn_is_refused_on_the_cpu_under_torchrun_and_a_no_op_in_one_process(runs):
    one, ranks, *_ = runs
    assert one["sync_bn"] is None
    for r in ranks:
        assert r["sync_bn"] == ("--sync-bn: SyncBatchNorm needs CUDA (nccl), and this torchrun run is on cpu (gloo); "
                                "leave --sync-bn out")
    model = models.build("cnn", 3, (1, 8, 8))
    assert distributed.sync_batchnorm(model, True, torch.device("cpu")) is model


def test_sync_bn_converts_batchnorm_keeping_parameters_and_state_keys(monkeypatch):
    """On CUDA under torchrun (simulated: the conversion itself needs neither) the BatchNorm
    layers become SyncBatchNorm with the same parameters and buffers, so checkpoints and taps
    by name are unchanged; their statistics are then left out of the ranks' averaging."""
    model = models.build("cnn", 3, (1, 8, 8))
    before = model.state_dict(keep_vars=True)
    monkeypatch.setattr(distributed, "active", lambda: True)
    converted = distributed.sync_batchnorm(model, True, torch.device("cuda", 0))
    after = converted.state_dict(keep_vars=True)
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)
    kinds = {type(m) for m in converted.modules()}
    assert torch.nn.SyncBatchNorm in kinds and not kinds & {torch.nn.BatchNorm1d, torch.nn.BatchNorm2d}
    assert distributed._running_stat_modules([converted.train()]) == []
    assert len(distributed._running_stat_modules([models.build("cnn", 3, (1, 8, 8)).train()])) > 0


def test_batchnorm_uses_the_shares_statistics_but_replicas_stay_equal(runs):
    one, ranks, *_ = runs
    state0, state1, ref = ranks[0]["batchnorm"]["state"], ranks[1]["batchnorm"]["state"], one["batchnorm"]["state"]
    for k in state0:
        assert torch.equal(state0[k], state1[k]), k
    # the averaged running mean is the global batch's mean where the layer's input is the same
    # (the first BatchNorm; later layers see inputs normalised with each half's statistics)
    torch.testing.assert_close(state0["model.block1.1.running_mean"], ref["model.block1.1.running_mean"],
                               rtol=1e-5, atol=1e-5)
    assert not torch.allclose(state0["model.block2.1.running_mean"], ref["model.block2.1.running_mean"],
                              rtol=1e-6, atol=1e-7)
    for k in [k for k in ref if k.endswith("num_batches_tracked")]:
        assert int(state0[k]) == int(ref[k]) == 1


def test_evaluation_and_scores_are_gathered_in_order_bit_for_bit(runs):
    """Given the same weights, the sharded evaluation and the gathered entropy / gradient-norm /
    predicted-loss scores are exactly one process's, and every rank picks the same items."""
    one, ranks, *_ = runs
    for r in ranks:
        ev, ref = r["evaluate"], one["evaluate"]
        assert ev["accuracy"] == ref["accuracy"]
        for k in ("losses", "predicted", "predictions"):
            assert torch.equal(ev[k], ref[k]), k
        for name in worker.SCORED:
            assert r[name]["scores"].shape == (149,)
            assert torch.equal(r[name]["scores"], one[name]["scores"]), name
            assert torch.equal(r[name]["picks"], one[name]["picks"]), name
            assert torch.equal(r[name]["picked_scores"], one[name]["picked_scores"]), name
        for name in worker.WHOLE:
            assert torch.equal(r[name]["picks"], one[name]["picks"]), name


def test_run_under_torchrun_picks_what_one_process_picks(runs, capsys):
    """``activeloss run`` with random, entropy and llal under 2 processes buys the same items as
    one process with the same seed, and only rank 0 wrote a store and results.csv."""
    _, _, two, npz, root, proc = runs
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    one = root / "one"
    assert cli.main(worker.run_args(str(npz), str(one))) == 0
    capsys.readouterr()
    assert sorted(p.relative_to(root) for p in root.rglob("store.sqlite")) == [Path("one/store.sqlite"),
                                                                               Path("two/run/store.sqlite")]
    assert sorted(p.relative_to(root) for p in root.rglob("results.csv")) == [Path("one/results.csv"),
                                                                              Path("two/run/results.csv")]
    labels = "SELECT r.strategy, l.item, l.label, l.cycle FROM labels l JOIN runs r ON r.id = l.run_id ORDER BY 1, 2"
    assert sql_rows(two / "store.sqlite", labels) == sql_rows(one / "store.sqlite", labels)
    queries = ("SELECT r.strategy, q.cycle, q.rank, q.item, q.score FROM queries q JOIN runs r ON r.id = q.run_id "
               "ORDER BY 1, 2, 3")
    got, want = sql_rows(two / "store.sqlite", queries), sql_rows(one / "store.sqlite", queries)
    assert [row[:4] for row in got] == [row[:4] for row in want]
    assert len({row[0] for row in got}) == 3
    for g, w in zip(got, want):  # training matches up to float summation order
        assert (g[4] is None and w[4] is None) or g[4] == pytest.approx(w[4], rel=1e-4, abs=1e-6)
    for saved in sorted((two / "checkpoints").glob("*.pt")):  # the unwrapped modules' state dicts
        state, ref = (torch.load(p, weights_only=True) for p in (saved, one / "checkpoints" / saved.name))
        assert {k: list(v) for k, v in state.items()} == {k: list(v) for k, v in ref.items()}
        assert not any(k.startswith("module.") for v in state.values() for k in v)
    assert len(list((two / "checkpoints").glob("*.pt"))) == 3
    acc = "SELECT r.strategy, m.cycle, m.name, m.value FROM metrics m JOIN runs r ON r.id = m.run_id ORDER BY 1, 2, 3"
    got, want = sql_rows(two / "store.sqlite", acc), sql_rows(one / "store.sqlite", acc)
    assert [row[:3] for row in got] == [row[:3] for row in want]
    assert [row[3] for row in got] == pytest.approx([row[3] for row in want], abs=0.02)
