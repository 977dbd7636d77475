"""Several processes (GPUs, nodes) under ``torchrun``: PyTorch's own process group.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), :func:`init_from_env` joins the process group: backend
``nccl`` when the run uses CUDA (one GPU per process, ``cuda:LOCAL_RANK``), ``gloo`` on CPU.
Without those variables, or with ``WORLD_SIZE=1``, nothing is initialised and every helper
below is the identity, so a single process runs exactly the code it always ran.

What is split between the W processes (ranks):

* **training** - every rank draws the same global permutation and takes its share of every
  global batch (:func:`batch_shard_positions`); the training step runs through PyTorch's
  ``DistributedDataParallel`` (:func:`data_parallel`: bucketed all-reduces of the gradients,
  overlapped with the backward pass), each rank's loss scaled (:func:`loss_scale`) so that
  DDP's average over the ranks is the gradient of the mean loss over the global batch, as in
  single-process training.  BatchNorm running statistics are averaged over the ranks after
  each step (:func:`average_running_stats`), or computed over the global batch with
  ``--sync-bn`` (:func:`sync_batchnorm`, CUDA only);
* **scoring** - the candidates of a score-based query and the test set are split in whole
  evaluation batches (:func:`batch_range`), each rank scores its part, and the parts are
  gathered in the original order (:func:`all_gather_cat`), so every rank has every score,
  bit for bit the single-process ones given the same weights, and takes the same top-k.

Rank 0 alone writes the store, ``results.csv``, checkpoints and figures, and alone asks the
oracle; what it reads or decides is sent to the others (:func:`broadcast_object`).
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ActiveLossError, ConfigError

T = TypeVar("T")


# -- the process group ------------------------------------------------------

def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when absent)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device_name: str = "auto") -> bool:
    """Join the process group torchrun describes; True when running distributed.

    ``device_name`` is the run's ``--device``: CUDA (``auto`` with a GPU, ``cuda``,
    ``cuda:N``) selects the nccl backend and ``cuda:LOCAL_RANK`` for this process, anything
    else gloo.  A no-op when already initialised or when ``WORLD_SIZE`` is absent or 1.
    """
    if dist.is_available() and dist.is_initialized():
        return world_size() > 1
    if env_world_size() <= 1 or not dist.is_available():
        return False
    name = str(device_name or "auto")
    use_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank; before joining (or after leaving) the group, torchrun's ``RANK``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if env_world_size() > 1:
        try:
            return int(os.environ.get("RANK", "0"))
        except ValueError:
            return 0
    return 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and asks the oracle."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA run under torchrun."""
    if active() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group at the end of a command, all ranks together (a rank tearing
    gloo down while another still works can abort); a no-op when not initialised."""
    if dist.is_available() and dist.is_initialized():
        if world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# -- objects ------------------------------------------------------------------

def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (pickled; for small things: ids, picks, labels)."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return cast("T", box[0])


def on_main(fn: Callable[[], T], share: bool = False) -> T | None:
    """Run ``fn`` on rank 0 only; an exception there is raised on every rank.

    Errors the user can fix (:class:`~activeloss.errors.ActiveLossError`, e.g. a missing
    checkpoint) are re-raised as they are everywhere, so every rank exits with the same
    message instead of waiting for rank 0 forever.  With ``share`` the result is sent to
    every rank; otherwise the other ranks get None.
    """
    if not active():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
    sent = broadcast_object((result if share else None, _picklable(error)))
    if error is not None:
        raise error
    if sent[1] is not None:
        raise sent[1]
    return result if is_main() else sent[0]


def _picklable(exc: BaseException | None) -> BaseException | None:
    if exc is None:
        return None
    if isinstance(exc, ActiveLossError):
        return exc
    return RuntimeError(f"rank 0 failed: {type(exc).__name__}: {exc}")


# -- splitting work -----------------------------------------------------------

def batch_range(n: int, batch_size: int) -> tuple[int, int]:
    """This rank's contiguous part ``[lo, hi)`` of ``n`` items, cut at multiples of ``batch_size``.

    The ``ceil(n / batch_size)`` batches are dealt out in consecutive runs (rank 0 the first),
    so every rank evaluates exactly the batches a single process would (bit-identical
    per-item results, since the batch shapes are the same) and concatenating the parts in
    rank order restores the original order.  A rank may get nothing when there are fewer
    batches than ranks.
    """
    if not active():
        return 0, n
    w, r = world_size(), rank()
    batches = -(-n // batch_size) if n else 0
    lo, hi = r * batches // w, (r + 1) * batches // w
    return min(n, lo * batch_size), min(n, hi * batch_size)


def _replicated(size: int) -> bool:
    """Whether a global training batch of ``size`` has fewer mirror pairs than there are ranks:
    every rank then trains on all of it (no rank may sit out a DDP step)."""
    return size // 2 < world_size()


def batch_shard_positions(size: int) -> torch.Tensor | None:
    """Positions (in a global training batch of ``size``) that this rank trains on, or None
    when not distributed (the whole batch).

    The Learning Loss ranking loss pairs position i with its mirror ``B'-1-i`` (B' = size
    rounded down to even; an odd batch's last item is unpaired).  The ``B'/2`` pairs are
    dealt out in consecutive runs and each rank's part is laid out as ``[i_lo..i_hi)``
    followed by the mirrors in reverse, so the rank's own mirror pairing forms exactly the
    global pairs; the unpaired item of an odd batch goes last on the last rank.  Every
    position goes to exactly one rank.  A batch with fewer pairs than ranks (a tiny last
    batch) is not split: every rank takes all of it, in order (see :func:`loss_scale`), since
    every rank must take part in each step of DistributedDataParallel.
    """
    if not active():
        return None
    if _replicated(size):
        return torch.arange(size)
    w, r = world_size(), rank()
    even = size - size % 2
    pairs = even // 2
    lo, hi = r * pairs // w, (r + 1) * pairs // w
    head = torch.arange(lo, hi)
    parts = [head, (even - 1 - head).flip(0)]
    if size % 2 and r == w - 1:
        parts.append(torch.tensor([size - 1]))
    return torch.cat(parts).long()


def loss_scale(local: int, size: int, mean_over: str = "sample") -> float:
    """The factor of this rank's loss, a mean over its ``local`` items of a global batch of
    ``size`` (or over their mirror pairs: ``mean_over="pair"``), such that DistributedDataParallel's
    average of the ranks' gradients is the gradient of the mean over the global batch: W times
    the rank's share of the items (or pairs; the unpaired item of an odd batch, last on the
    last rank, is in no pair), and 1 for a batch every rank takes whole.  1 in one process.
    """
    if not active() or _replicated(size):
        return 1.0
    if mean_over == "pair":
        return world_size() * (local // 2) / (size // 2)
    return world_size() * local / size


# PyTorch 2.13 renamed DDP's ``broadcast_buffers`` (now a deprecation warning); the project supports 2.1 too
_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False})


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` in PyTorch's ``DistributedDataParallel`` inside a process group (the module
    itself otherwise): the gradients of its parameters are averaged over the ranks by bucketed
    all-reduces that start during the backward pass, as soon as a bucket's gradients are ready.

    Every rank runs every step (see :func:`batch_shard_positions`) and every trainable
    parameter gets a gradient each step, so DDP needs no search for unused parameters; the
    graph may change between steps (Learning Loss detaches the taps from some epoch on: the
    same parameters still get gradients, in another order), so it is not declared static.
    Buffers are not broadcast from rank 0 at each forward: :func:`average_running_stats` keeps
    the BatchNorm statistics equal instead.
    """
    if not active():
        return module
    return DistributedDataParallel(module, **_NO_BUFFER_SYNC)


# -- gathering ----------------------------------------------------------------

def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (variable length on dim 0, same trailing shape and dtype)
    in rank order, on every rank; returned on ``t``'s device.  The identity in one process."""
    if not active():
        return t
    dev = _comm_device()
    x = t.detach().to(dev).contiguous()
    n = torch.tensor([x.shape[0]], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes_ = [int(s.item()) for s in sizes]
    longest = max(sizes_)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes_]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes_)]).to(t.device)


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (a no-op in one process)."""
    if active():
        buf = t.to(_comm_device())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        if buf is not t:
            t.copy_(buf)
    return t


# -- keeping replicas equal -----------------------------------------------------

def _running_stat_modules(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._NormBase]:
    """Normalisation layers in training mode that keep running statistics from their rank's
    share of the batch (BatchNorm; not SyncBatchNorm, whose statistics are the global batch's)."""
    seen, out = set(), []
    for root in modules:
        for m in root.modules():
            if (isinstance(m, nn.modules.batchnorm._NormBase) and not isinstance(m, nn.SyncBatchNorm)
                    and m.training and m.track_running_stats and m.running_mean is not None and id(m) not in seen):
                seen.add(id(m))
                out.append(m)
    return out


@torch.no_grad()
def average_running_stats(modules: Iterable[nn.Module], local: int, size: int) -> None:
    """After a training step on ``local`` items of a global batch of ``size``: replace the
    BatchNorm running means and variances (updated from the rank's part in the forward) by
    their average over the ranks, weighted by the ranks' shares of the items.

    For a layer whose input is the same as in one process (the first), that is the global
    batch's running mean up to rounding and its running variance approximately (within-part
    variances only).  ``num_batches_tracked`` is already equal (every rank runs every step).
    SyncBatchNorm layers (``--sync-bn``) are left alone: they already hold the global batch's
    statistics.  One all-reduce per dtype and device; a no-op in one process.
    """
    if not active():
        return
    weight = loss_scale(local, size) / world_size()
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for m in _running_stat_modules(modules):
        for b in (m.running_mean, m.running_var):
            assert b is not None
            groups.setdefault((b.dtype, b.device), []).append(b)
    for buffers in groups.values():
        flat = torch.cat([b.reshape(-1) * weight for b in buffers])
        all_reduce_sum_(flat)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset : offset + b.numel()].view_as(b))
            offset += b.numel()


def check_sync_bn(enabled: bool, device: torch.device) -> None:
    """``--sync-bn`` needs CUDA under torchrun: a :class:`ConfigError` on any other device
    (gloo on the CPU).  Without a process group it is accepted and does nothing."""
    if enabled and active() and device.type != "cuda":
        raise ConfigError(f"--sync-bn: SyncBatchNorm needs CUDA (nccl), and this torchrun run is on {device.type} "
                          "(gloo); leave --sync-bn out")


def sync_batchnorm(model: nn.Module, enabled: bool, device: torch.device) -> nn.Module:
    """``--sync-bn``: ``model`` with its BatchNorm layers turned into SyncBatchNorm (same
    parameters, buffers and state-dict keys), under torchrun on CUDA; ``model`` itself without
    a process group (one process already normalises with the global batch's statistics).

    In training mode a SyncBatchNorm layer normalises with the statistics of the whole global
    batch, gathered from every rank, so a BatchNorm model trains as in one process up to
    rounding (a tiny batch that every rank takes whole counts W times in the unbiased running
    variance); in eval mode (evaluation, queries) it is a plain BatchNorm.  Call it on a fresh
    model before anything refers to its modules (taps, a compiled forward, a copy).
    """
    check_sync_bn(enabled, device)
    if not (enabled and active()):
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


@torch.no_grad()
def broadcast_modules(modules: Iterable[nn.Module], src: int = 0) -> None:
    """Copy every parameter and buffer of ``modules`` from rank ``src`` to all ranks (after a
    checkpoint load on rank 0, and as a guard after training).  A no-op in one process."""
    if not active():
        return
    dev = _comm_device()
    seen = set()
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if id(t) in seen:
                continue
            seen.add(id(t))
            buf = t.data.to(dev)
            dist.broadcast(buf, src=src)
            if buf is not t.data:
                t.data.copy_(buf)
