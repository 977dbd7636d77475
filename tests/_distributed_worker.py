"""The work of tests/test_distributed.py, run once in one process (the reference) and once
under ``torchrun --nproc_per_node=2`` (gloo): ``python _distributed_worker.py OUT NPZ``.

Each process saves what it computed to ``OUT/rank{R}.pt``; under torchrun it then runs
``activeloss run`` end to end into ``OUT/run`` (the test compares it with a one-process run).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from activeloss import Learner, Settings, Store
from activeloss.acquisitions import QueryContext, make_acquisition
from activeloss.data import Inputs
from activeloss.device import distributed
from activeloss.errors import ConfigError
from activeloss.loop.plan import plan
from activeloss.seeding import generator
from activeloss.trainer import TrainConfig, evaluate, train

SCORED = ("entropy", "gradnorm", "predicted-loss")  # split over the ranks, gathered
WHOLE = ("random", "coreset", "badge", "bald")  # computed whole on every rank


def run_args(npz: str, out: str) -> list[str]:
    """The end-to-end run; mlp has no BatchNorm, so training matches one process up to rounding."""
    return ["run", "--dataset", f"npz:{npz}", "--strategies", "random,entropy,llal", "--trials", "1",
            "--cycles", "3", "--initial", "20", "--budget", "10", "--subset", "0", "--epochs", "2",
            "--batch-size", "16", "--model", "mlp", "--threads", "1", "--seed", "3", "--quiet", "--out", out]


def setup(npz: str, out: Path, model: str = "mlp") -> Learner:
    """The learner of llal's trial 0 (an in-memory store: nothing is written), without a model yet."""
    settings = Settings(dataset=f"npz:{npz}", strategies=["llal"], trials=1, cycles=2, initial=20, budget=10,
                        subset=0, epochs=1, batch_size=16, model=model, eval_batch_size=16, seed=5, out=str(out))
    the_plan = plan(settings)
    return Learner.for_run(the_plan.runs[0], the_plan.data, the_plan.device, Store.in_memory(), 0)


def fresh_model(learner: Learner):
    """The model, objective and taps a learner builds for trial 0, cycle 0 (seeded: the same in every process)."""
    learner._fresh(0)
    return learner.model, learner.objective, learner.taps


def sync_bn_refusal(npz: str, out: Path) -> str | None:
    """What planning a run with ``--sync-bn`` on the CPU says (None: accepted)."""
    settings = Settings(dataset=f"npz:{npz}", strategies=["random"], trials=1, cycles=2, initial=20, budget=10,
                        subset=0, epochs=1, model="cnn", sync_bn=True, device="cpu", out=str(out))
    try:
        plan(settings)
    except ConfigError as exc:
        return str(exc)
    return None


def checks(npz: str, out: Path) -> dict:
    """Gradients, BatchNorm statistics, evaluation and query scores of this process, and what
    the trainer wrapped its steps in."""
    torch.set_num_threads(1)
    result: dict = {"wrapped": [], "sync_bn": sync_bn_refusal(npz, out)}
    data_inputs = None
    data_parallel = distributed.data_parallel

    def recorded(module):
        """distributed.data_parallel, noting the wrapper's type and what it holds."""
        wrapped = data_parallel(module)
        inner = getattr(wrapped, "module", None)
        result["wrapped"].append((type(wrapped).__name__, type(inner).__name__,
                                  [type(m).__name__ for m in getattr(inner, "extra", [])]))
        return wrapped

    for name, model_name, n, batch, epochs, augment in (
        ("full_batch", "mlp", 32, 32, 1, ()),  # one step: the gradient itself
        ("epochs", "mlp", 46, 16, 2, ("flip", "crop")),  # batches 16, 16, 14; momentum; augmentation
        ("odd_batch", "mlp", 21, 21, 1, ()),  # an unpaired item in the ranking loss
        ("tiny_batch", "mlp", 10, 4, 2, ()),  # batches 4, 4, 2: the last has fewer pairs than ranks
        ("batchnorm", "cnn", 32, 32, 1, ()),  # BatchNorm: statistics of each rank's half
    ):
        learner = setup(npz, out, model_name)
        inputs = Inputs.from_dataset(learner.data, torch.device("cpu"), augment, 2)
        model, objective, taps = fresh_model(learner)
        indices = torch.arange(n) * 3
        cfg = TrainConfig(epochs, batch, 0.05, 0.9, 5e-4, [epochs], 0.1)
        distributed.data_parallel = recorded
        try:
            train(model, objective, learner.task, inputs, indices, learner.data.y_train[indices], cfg, taps,
                  generator(1, "t"))
        finally:
            distributed.data_parallel = data_parallel
        modules = {"model": model, **objective.modules()}
        result[name] = {
            "grads": {f"{k}.{p}": t.grad.clone() for k, m in modules.items() for p, t in m.named_parameters()
                      if t.grad is not None},
            "state": {f"{k}.{p}": t.clone() for k, m in modules.items() for p, t in m.state_dict().items()},
        }
        if taps is not None:
            taps.remove()
        if name == "full_batch":
            data_inputs = (learner, inputs)
    # evaluation and queries with the same (freshly seeded) weights in every process
    learner, inputs = data_inputs
    model, objective, taps = fresh_model(learner)
    task, s = learner.task, learner.settings
    ev = evaluate(model, objective, task, inputs, s.eval_batch_size, taps)
    result["evaluate"] = {"accuracy": ev.metrics["accuracy"], "losses": ev.losses, "predicted": ev.predicted_losses,
                          "predictions": task.predict(ev.outputs)}
    candidates = torch.arange(1, 150)  # 149 items in batches of 16: 10 batches, 5 per rank
    labeled = torch.tensor([0, 150, 151, 152])
    model.eval()
    objective.eval()
    for name in SCORED + WHOLE:
        ctx = QueryContext(model, objective, inputs, candidates, labeled, generator(9, "query"), 16, task)
        acquisition = make_acquisition(name)
        selection = acquisition.select(ctx, 12)
        entry = {"picks": selection.indices, "picked_scores": selection.scores}
        if name in SCORED:
            entry["scores"] = acquisition.scores(
                QueryContext(model, objective, inputs, candidates, labeled, generator(9, "query"), 16, task))
        result[name] = entry
    learner.finish()  # removes the taps
    return result


def main(out: str, npz: str) -> None:
    from activeloss import cli

    distributed.init_from_env("cpu")
    out_dir = Path(out)
    result = checks(npz, out_dir / f"scratch{distributed.rank()}")
    result["world_size"] = distributed.world_size()
    torch.save(result, out_dir / f"rank{distributed.rank()}.pt")
    code = cli.main(run_args(npz, str(out_dir / "run")))  # leaves the process group at its end
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
