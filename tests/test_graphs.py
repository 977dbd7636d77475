"""The ``--cuda-graphs`` training path, checked on the CPU with a stand-in recorder.

:class:`EagerReplay` replays a "recorded" step by calling it again on the same static
tensors, so everything but the capture itself (the static inputs, the keys, the phases, the
drawn augmentation, the warm-up) must give the eager loop's results bit for bit.
"""
import pytest
import torch

from activeloss.data import Inputs
from activeloss.data.augment import apply, augment, draw
from activeloss.device.graphs import EagerReplay, StepGraphs, check_cuda_graphs
from activeloss.errors import ConfigError
from activeloss.models import Taps
from activeloss.trainer import TrainConfig, train

from conftest import build_parts


def test_drawn_augmentation_equals_drawing_while_augmenting():
    x = torch.rand(6, 3, 8, 8)
    for ops in (("crop", "flip"), ("flip",), ("crop",), ()):
        expected = augment(x, ops, 2, torch.Generator().manual_seed(4))
        params = draw(6, ops, 2, torch.Generator().manual_seed(4), x.device)
        assert torch.equal(apply(x, 2, params), expected)
    assert set(draw(6, ("crop", "flip"), 0, torch.Generator(), x.device)) == {"flip"}  # no padding, no crop


def test_inputs_augmented_batch_equals_train_batch(tiny_dataset):
    inputs = Inputs.from_dataset(tiny_dataset, torch.device("cpu"), ("crop", "flip"), 1)
    idx = torch.tensor([3, 1, 7, 7, 0])
    drawn = inputs.draw_augmentation(5, torch.Generator().manual_seed(2))
    assert torch.equal(inputs.augmented_batch(idx, drawn), inputs.train_batch(idx, torch.Generator().manual_seed(2)))


def _train(data, name, graphs, epochs=5, n=37, **settings):
    parts = build_parts(name, data, **settings)
    inputs = Inputs.from_dataset(data, torch.device("cpu"), ("crop", "flip"), 1)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=[3], gamma=0.1)
    taps = Taps(parts.model, parts.taps) if parts.objective.needs_taps else None
    idx = torch.arange(n)
    used = train(parts.model, parts.objective, parts.task, inputs, idx, data.y_train[idx], cfg, taps,
                 torch.Generator().manual_seed(5), graphs=graphs)
    state = {**parts.model.state_dict(), **{f"o.{k}.{p}": v for k, m in parts.objective.modules().items()
                                           for p, v in m.state_dict().items()}}
    return state, used


@pytest.mark.parametrize("name, settings", [
    ("random", {}),
    ("llal", {"stop_gradient_epoch": 2}),  # the phase changes within the run
    ("llal-mse", {"stop_gradient_epoch": 4}),
    ("dnal", {"stop_gradient_epoch": 2}),
    ("dnal", {"target_update": "ema"}),
    ("guarded-loss", {}),  # the held-out items reach the module's loss through the graph's static positions
])
def test_replayed_steps_give_the_eager_loops_results(tiny_dataset, name, settings):
    eager, none = _train(tiny_dataset, name, None, **settings)
    backend = EagerReplay()
    replayed, used = _train(tiny_dataset, name, backend, **settings)
    assert none is None and used is not None and used.failed is None
    assert backend.recorded > 0  # steps really went through the recorded path
    assert eager.keys() == replayed.keys()
    assert all(torch.isfinite(v.float()).all() for v in eager.values())
    for key in eager:
        assert torch.equal(eager[key], replayed[key]), key


def test_one_recording_per_batch_size_and_phase(tiny_dataset):
    # 37 items in batches of 8: a full and a partial batch size; stop-gradient at epoch 2 and the
    # lr decay at 3 make three phases: (attached, 0.05) epochs 0-1, (detached, 0.05) epoch 2,
    # (detached, 0.005) epochs 3-5.  The first key warms up twice, later ones once: recorded are
    # phase 1's full and partial batches, phase 2's full one (its partial step runs once,
    # eagerly), phase 3's full and partial ones
    backend = EagerReplay()
    _train(tiny_dataset, "llal", backend, epochs=6, stop_gradient_epoch=2)
    assert backend.recorded == 5
    backend = EagerReplay()
    _train(tiny_dataset, "random", backend, epochs=6)  # no phase: only the decay re-records
    assert backend.recorded == 4


def test_a_step_that_cannot_be_recorded_trains_on_eagerly(tiny_dataset):
    class Failing(EagerReplay):
        def record(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing\nmore text")

    eager, _ = _train(tiny_dataset, "llal", None)
    after_failure, used = _train(tiny_dataset, "llal", Failing())
    assert used is not None and used.failed == "RuntimeError: operation not permitted when stream is capturing"
    assert all(torch.equal(eager[k], after_failure[k]) for k in eager)


def test_step_graphs_copies_inputs_into_the_static_tensors():
    seen = []
    graphs = StepGraphs(lambda s: seen.append(s["v"].clone()), EagerReplay(), warmup=1)
    for value in (1, 2, 3):
        graphs("k", {"v": torch.tensor([value])})
    assert [int(t) for t in seen] == [1, 2, 3] and graphs.recorded == 1 and graphs.recordings == 1
    graphs.keep_phase("other")
    assert graphs.recorded == 0


def test_cuda_graphs_option_is_refused_where_it_cannot_work():
    with pytest.raises(ConfigError, match="this run is on cpu"):
        check_cuda_graphs(True, False, torch.device("cpu"))
    with pytest.raises(ConfigError, match="choose one"):
        check_cuda_graphs(True, True, torch.device("cuda"))
    check_cuda_graphs(False, True, torch.device("cpu"))


def test_cli_refuses_cuda_graphs_on_the_cpu_in_one_line(tiny_npz, tmp_path, capsys):
    from activeloss.cli import main

    code = main(["run", "--dataset", f"npz:{tiny_npz}", "--strategies", "random", "--device", "cpu",
                 "--cuda-graphs", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--cuda-graphs" in err[0] and "cpu" in err[0]
    assert not (tmp_path / "o").exists()


def test_graphs_are_used_by_default_only_on_cuda_for_the_librarys_own_parts():
    from activeloss.device.graphs import use_cuda_graphs
    from activeloss.models import build
    from activeloss.objectives import Objective

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    model, objective = build("cnn", 3, (3, 8, 8)), Objective()
    users = torch.nn.Linear(1, 1)  # not the library's own class
    assert use_cuda_graphs(None, False, cuda, model, objective)
    assert not use_cuda_graphs(None, False, cpu, model, objective)
    assert not use_cuda_graphs(None, True, cuda, model, objective)  # --compile asked for
    assert not use_cuda_graphs(None, False, cuda, users, objective)  # a model of the user's own
    assert use_cuda_graphs(True, False, cuda, users, objective)  # unless asked for
    assert not use_cuda_graphs(False, False, cuda, model, objective)


def test_the_learner_trains_to_the_same_model_through_recorded_steps(tiny_dataset, monkeypatch):
    from activeloss import Learner
    from activeloss.loop import learner as learner_module

    def fitted(graphed: bool) -> dict:
        backend = EagerReplay()
        monkeypatch.setattr(learner_module, "CudaGraphs", lambda device: backend)
        monkeypatch.setattr(learner_module, "use_cuda_graphs", lambda *args: graphed)
        learner = Learner("cnn", tiny_dataset, "llal", epochs=3, batch_size=8, augment="flip,crop")
        first = torch.arange(30)
        learner.teach(first, tiny_dataset.y_train[first])
        learner.fit()
        assert (backend.recorded > 0) is graphed
        return {**learner.model.state_dict(), **learner.objective.lossnet.state_dict()}

    eager, replayed = fitted(False), fitted(True)
    assert all(torch.equal(eager[k], replayed[k]) for k in eager)
