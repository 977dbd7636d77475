"""Training and evaluation of a model and its objective on the labeled items, for any task."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from .data import Inputs
from .device import distributed
from .device.graphs import GraphBackend, StepGraphs
from .device.performance import autocast
from .models import Taps
from .objectives import Objective, Step
from .seeding import on_device
from .tasks import Task

_log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    milestones: list[int]
    gamma: float
    optimizer: str = "sgd"  # sgd (every paper here but pose) or rmsprop (the Stacked Hourglass code's)


OPTIMIZERS = ("sgd", "rmsprop")


def make_optimizer(model: nn.Module, objective: Objective, cfg: TrainConfig) -> tuple[Any, Any]:
    """One optimiser (SGD, or RMSprop) over the model and the objective's groups, with a per-group
    multi-step schedule.

    A ``LambdaLR`` with one factor function per group lets a group opt out of the decay
    (LPLgrad's public code never decays its loss-prediction module).
    """
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    decays = [True]
    for g in objective.param_groups():
        groups.append({"params": g.params, "lr": g.lr})
        decays.append(g.decay)
    if cfg.optimizer == "rmsprop":  # the hourglass code's: PyTorch's defaults, no momentum unless asked
        optimizer: torch.optim.Optimizer = torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                               weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    milestones = sorted(cfg.milestones)

    def factor(decay: bool) -> Callable[[int], float]:
        return lambda epoch: cfg.gamma ** sum(epoch >= m for m in milestones) if decay else 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(d) for d in decays])
    return optimizer, scheduler


def _batch_loss(
    forward: Callable[[torch.Tensor], torch.Tensor], task: Task, objective: Objective, taps: Taps | None,
    x: torch.Tensor, y: torch.Tensor, epoch: int, scale: float | None = None, extra_scale: float | None = None,
    items: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of one training batch: the mean per-sample task loss plus the objective's term.

    Under torchrun the two are scaled by ``scale`` and ``extra_scale``
    (:func:`distributed.loss_scale`), so that DistributedDataParallel's average over the ranks
    is the gradient of the global batch's loss; in one process they are left as they are.
    """
    if taps is not None:
        taps.clear()
    outputs = forward(x)
    losses = task.loss(outputs, y)  # per sample, [B]: what a loss predictor learns
    loss = losses.mean()
    extra = objective.batch_loss(Step(x, y, outputs, losses, taps.outputs if taps is not None else None, epoch,
                                      items))
    if scale is not None:
        loss = loss * scale
    if extra is not None:
        if extra_scale is not None:
            extra = extra * extra_scale
        loss = loss + extra
    return loss


def _labeled_first(order: torch.Tensor, labeled: int, batch_size: int) -> tuple[torch.Tensor, list[int]]:
    """``order`` (positions over the labeled items, below ``labeled``, then an objective's extra
    items) with each batch's labeled positions before its extra ones, each part in its drawn
    order, and the number of labeled positions per batch; on the CPU, so nothing is read back
    from the device."""
    extra = order >= labeled
    batch_of = torch.arange(order.numel()) // batch_size
    order = order[torch.sort(batch_of * 2 + extra.long(), stable=True).indices]
    return order, [int(part.sum()) for part in (~extra).long().split(batch_size)]


def _batch_inputs(inputs: Inputs, indices: torch.Tensor, extra: torch.Tensor, batch: torch.Tensor, labeled: int,
                  gen: torch.Generator) -> torch.Tensor:
    """The model inputs of a batch whose first ``labeled`` positions are labeled items (normalised
    and augmented by ``inputs``) and the rest an objective's extra items (normalised alone)."""
    parts = []
    if labeled:
        parts.append(inputs.train_batch(indices[batch[:labeled]], gen))
    if labeled < batch.numel():
        parts.append(inputs.normalise(extra[batch[labeled:] - indices.numel()]))
    x = torch.cat(parts)
    return x.contiguous(memory_format=inputs.memory_format) if inputs.is_image else x


class _TrainingStep(nn.Module):
    """One training step's loss as one module, what DistributedDataParallel wraps under torchrun.

    Its parameters are those of the model and of the objective's modules trained with it
    (``extra``); its forward is :func:`_batch_loss`, which calls the model (through
    ``forward``, the compiled one with ``--compile``) and the objective, so the gradients of
    both are averaged by DDP.  The objective's modules read the model's taps: forward hooks
    on the model's own submodules, which fire as in one process.
    """

    def __init__(self, model: nn.Module, extra: list[nn.Module], loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.extra = nn.ModuleList(extra)
        self.loss = loss

    def forward(self, x: torch.Tensor, y: torch.Tensor, epoch: int, scale: float, extra_scale: float,
                items: torch.Tensor | None = None) -> torch.Tensor:
        return self.loss(x, y, epoch, scale, extra_scale, items)


def _trained_with_model(model: nn.Module, objective: Objective) -> list[nn.Module]:
    """The objective's modules that the model's optimiser trains each step (those holding its
    ``param_groups``: the loss-prediction module; not VAAL's VAE, trained in ``after_training``,
    nor DNAL's frozen target network)."""
    grouped = {id(p) for g in objective.param_groups() for p in g.params}
    modules = [m for m in objective.modules().values() if any(id(p) in grouped for p in m.parameters())]
    covered = {id(p) for m in (model, *modules) for p in m.parameters()}
    if grouped - covered:
        raise RuntimeError(f"objective {objective.name}: param_groups() must hold parameters of its modules(), "
                           "which DistributedDataParallel keeps equal on every rank")
    return modules


def train(
    model: nn.Module,
    objective: Objective,
    task: Task,
    inputs: Inputs,
    indices: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    taps: Taps | None,
    gen: torch.Generator,
    progress: Callable[[int, int], None] | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    graphs: GraphBackend | None = None,
) -> StepGraphs | None:
    """Train ``model`` (and ``objective``) on the items ``indices`` with targets ``labels`` for
    ``cfg.epochs``; ``task`` gives the per-sample loss.

    Batches are drawn from a fresh permutation each epoch (``gen``) and augmented as a
    whole on the device.  A last batch of a single item is skipped (BatchNorm cannot
    train on one sample).  The loop never reads a value back to the host.
    ``forward`` calls the model (its ``torch.compile`` wrapper with ``--compile``).
    Items the objective adds (:meth:`Objective.training_items`, BGADL's synthetic items) join
    the permutation as further training items; in each batch the labeled items come first,
    and the added ones are normalised but not augmented.

    Under torchrun (:mod:`activeloss.device.distributed`) every rank draws the same permutation
    and augmentation and trains on its share of each global batch; the model and the
    objective's modules trained with it run inside PyTorch's DistributedDataParallel, which
    averages their gradients over the ranks during the backward pass, each rank's loss scaled
    so that the average is the gradient of the mean over the global batch.  The model and its
    state dict stay the unwrapped ones.  One process runs the same loss without any wrapper.

    BatchNorm normalises with the statistics of the rank's share (as DistributedDataParallel
    without SyncBatchNorm; with ``--sync-bn`` on CUDA, those of the global batch); the running
    statistics are averaged.  The loss-prediction ranking loss pairs the same mirror items as
    in one process (the shares keep pairs together) and is scaled by the rank's share of the
    pairs, so it is the single-process loss too; its taps are hooks on the model's own
    modules, and from the stop-gradient epoch on the model's parameters get their gradients
    from the task loss alone, which DDP handles without ``find_unused_parameters``.  What an
    objective trains outside these steps (VAAL's VAE and discriminator, with optimisers of
    their own, in ``after_training``) is not split: every rank computes all of it, and the
    learner sends rank 0's weights to all after each cycle.  With ``--compile`` the compiled
    model runs inside DDP, whose all-reduces then start when the compiled backward has ended.

    With ``graphs`` (``--cuda-graphs``) each step is replayed from a recorded CUDA graph
    (:mod:`activeloss.device.graphs`, :func:`_train_graphed`) where the run allows it; returns
    the :class:`StepGraphs` used, or None for the eager loop.
    """
    device = inputs.device
    forward = model if forward is None else forward
    optimizer, scheduler = make_optimizer(model, objective, cfg)
    labels = labels.to(device)
    indices = indices.to(device)  # batches are cut on the device: no copy from the host per step
    extra = objective.training_items(model, inputs, indices, labels, gen)
    x_extra = None
    if extra is not None and extra[0].shape[0] > 0:  # items beside the labeled ones (BGADL's synthetic items)
        x_extra = extra[0].to(device)
        labels = torch.cat([labels, extra[1].to(device=device, dtype=labels.dtype)])
    n_labeled = indices.numel()
    n = n_labeled + (x_extra.shape[0] if x_extra is not None else 0)
    aug_gen = on_device(gen, device)
    model.train()
    objective.train()
    objective.on_cycle_start(model)
    if graphs is not None:
        reason = _not_graphable(model, task, forward, x_extra is not None)
        if reason is None:
            return _train_graphed(model, objective, task, inputs, indices, labels, cfg, taps, gen, aug_gen,
                                  optimizer, scheduler, graphs, progress)
        _log.info("--cuda-graphs: training eagerly (%s)", reason)
    trained: list[nn.Module] = []
    step: nn.Module | None = None
    if distributed.active():
        trained = [model, *_trained_with_model(model, objective)]
        step = distributed.data_parallel(
            _TrainingStep(model, trained[1:], partial(_batch_loss, forward, task, objective, taps)))
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)  # drawn on the CPU (seeded), sent once per epoch
        per_batch: list[int] = []
        if x_extra is not None:
            order, per_batch = _labeled_first(order, n_labeled, cfg.batch_size)
        order = order.to(device)
        for b, start in enumerate(range(0, n, cfg.batch_size)):
            batch = order[start : start + cfg.batch_size]
            if batch.numel() < 2 and n > 1:
                continue
            # the whole batch is drawn and augmented on every rank (the same random draws),
            # then each rank keeps its share: see distributed.batch_shard_positions
            if x_extra is None:
                x = inputs.train_batch(indices[batch], aug_gen)
            else:
                x = _batch_inputs(inputs, indices, x_extra, batch, per_batch[b], aug_gen)
            y = labels[batch]
            x, y = task.augment(x, y, aug_gen)
            optimizer.zero_grad(set_to_none=True)
            if step is None:
                with autocast(device):
                    loss = _batch_loss(forward, task, objective, taps, x, y, epoch,
                                       items=indices[batch] if x_extra is None else None)
                loss.backward()
            else:
                share = distributed.batch_shard_positions(batch.numel())
                assert share is not None
                x, y = x[share.to(device)], y[share.to(device)]
                items = indices[batch][share.to(device)] if x_extra is None else None
                local, size = share.numel(), batch.numel()
                with autocast(device):
                    loss = step(x, y, epoch, distributed.loss_scale(local, size),
                                distributed.loss_scale(local, size, objective.batch_loss_mean), items)
                loss.backward()  # DDP's all-reduces run during this backward
                distributed.average_running_stats(trained, local, size)
            optimizer.step()
            objective.after_step(model)
        scheduler.step()
        objective.on_epoch_end(model, epoch)
        if progress is not None:
            progress(epoch + 1, cfg.epochs)
    return None


def _not_graphable(model: nn.Module, task: Task, forward: Callable, extra_items: bool) -> str | None:
    """Why this training cannot run as recorded graphs, or None."""
    if distributed.active():
        return "under torchrun the steps run inside DistributedDataParallel"
    if forward is not model:
        return "the model is compiled (--compile)"
    if extra_items:
        return "the objective adds training items of its own"
    if type(task).augment is not Task.augment:
        return f"the {task.name} task augments its targets outside the graph"
    return None


def _train_graphed(
    model: nn.Module, objective: Objective, task: Task, inputs: Inputs, indices: torch.Tensor, labels: torch.Tensor,
    cfg: TrainConfig, taps: Taps | None, gen: torch.Generator, aug_gen: torch.Generator, optimizer: Any,
    scheduler: Any, backend: GraphBackend, progress: Callable[[int, int], None] | None,
) -> StepGraphs:
    """:func:`train`'s loop with each step replayed from a recorded graph.

    The same permutations and augmentation draws in the same order as the eager loop: the
    draws are made before each step (outside the graph) into the step's static tensors and
    applied inside it.  A graph's key is the batch size, the objective's phase and the learning
    rates, which the recorded kernels hold as constants."""
    device = inputs.device
    n = indices.numel()
    current = {"epoch": 0}

    def step(static: dict[str, torch.Tensor]) -> None:
        positions = static["positions"]
        drawn = {name: t for name, t in static.items() if name != "positions"}
        x = inputs.augmented_batch(indices[positions], drawn)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = _batch_loss(model, task, objective, taps, x, labels[positions], current["epoch"],
                               items=indices[positions])
        loss.backward()
        optimizer.step()

    graphs = StepGraphs(step, backend)
    for epoch in range(cfg.epochs):
        current["epoch"] = epoch
        phase = (objective.graph_phase(epoch), tuple(float(g["lr"]) for g in optimizer.param_groups))
        graphs.keep_phase(phase)
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if batch.numel() < 2 and n > 1:
                continue
            drawn = inputs.draw_augmentation(batch.numel(), aug_gen)
            graphs((batch.numel(), phase), {"positions": batch, **drawn})
            objective.after_step(model)
        scheduler.step()
        objective.on_epoch_end(model, epoch)
        if progress is not None:
            progress(epoch + 1, cfg.epochs)
    optimizer.zero_grad(set_to_none=True)  # the gradients live in the graphs' memory: let it go
    graphs.entries.clear()
    return graphs


@dataclass
class Evaluation:
    metrics: dict[str, float]  # the task's metrics on the test set
    outputs: torch.Tensor  # the model's test outputs (float32, on the CPU)
    losses: torch.Tensor  # per-sample test loss
    predicted_losses: torch.Tensor | None  # from the objective's loss predictor, when it has one


@torch.no_grad()
def evaluate(
    model: nn.Module, objective: Objective, task: Task, inputs: Inputs, batch_size: int, taps: Taps | None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Evaluation:
    """The task's test metrics, per-sample test losses and (when the objective predicts them)
    predicted losses.

    Under torchrun each rank evaluates its run of whole batches and the per-item results are
    gathered in test-set order, so every rank gets the single-process numbers.
    """
    model.eval()
    objective.eval()
    device = inputs.device
    forward = model if forward is None else forward
    losses, outs, predicted = [], [], []
    lo, n = distributed.batch_range(inputs.x_test.shape[0], batch_size)
    for start in range(lo, n, batch_size):
        x = inputs.test_batch(start, min(n, start + batch_size))
        y = inputs.y_test[start : min(n, start + batch_size)]
        with autocast(device):
            if taps is not None:
                taps.clear()
            out = forward(x).float()
            if taps is not None:
                p = objective.predict_loss(taps.outputs)
                if p is not None:
                    predicted.append(p.float().flatten())
        losses.append(task.loss(out, y))
        outs.append(out)
    if distributed.active():
        empty = torch.zeros(0, device=device)
        if not outs:  # a rank without a test batch still sends outputs of the right width
            with autocast(device):
                outs = [forward(inputs.test_batch(0, 1)).float()[:0]]
        losses = [distributed.all_gather_cat(torch.cat(losses) if losses else empty)]
        outs = [distributed.all_gather_cat(torch.cat(outs))]
        if taps is not None and objective.predicts_loss:
            predicted = [distributed.all_gather_cat(torch.cat(predicted) if predicted else empty)]
    outputs = torch.cat(outs)
    return Evaluation(
        metrics=task.evaluate(outputs, inputs.y_test),
        outputs=outputs.cpu(),
        losses=torch.cat(losses).cpu(),
        predicted_losses=torch.cat(predicted).cpu() if predicted else None,
    )
