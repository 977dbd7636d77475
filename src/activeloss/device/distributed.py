"""Several processes (GPUs, nodes) under ``torchrun``: PyTorch's own process group.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), :func:`init_from_env` joins the process group: backend
``nccl`` when the run uses CUDA (one GPU per process, ``cuda:LOCAL_RANK``), ``gloo`` on CPU.
Without those variables, or with ``WORLD_SIZE=1``, nothing is initialised and every helper
below is the identity, so a single process runs exactly the code it always ran.

What is split between the W processes (ranks):

* **training** - every rank draws the same global permutation and takes its share of every
  global batch (:func:`batch_shard_positions`); each rank's loss is weighted by its share and
  the gradients are summed over ranks (:func:`sync_step`), which is the gradient of the mean
  loss over the global batch, as in single-process training;
* **scoring** - the candidates of a score-based query and the test set are split in whole
  evaluation batches (:func:`batch_range`), each rank scores its part, and the parts are
  gathered in the original order (:func:`all_gather_cat`), so every rank has every score,
  bit for bit the single-process ones given the same weights, and takes the same top-k.

Rank 0 alone writes the store, ``results.csv``, checkpoints and figures, and alone asks the
oracle; what it reads or decides is sent to the others (:func:`broadcast_object`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

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
    from ..errors import ActiveLossError

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


def batch_shard_positions(size: int) -> torch.Tensor | None:
    """Positions (in a global training batch of ``size``) that this rank trains on, or None
    when not distributed (the whole batch).

    The Learning Loss ranking loss pairs position i with its mirror ``B'-1-i`` (B' = size
    rounded down to even; an odd batch's last item is unpaired).  The ``B'/2`` pairs are
    dealt out in consecutive runs and each rank's part is laid out as ``[i_lo..i_hi)``
    followed by the mirrors in reverse, so the rank's own mirror pairing forms exactly the
    global pairs; the unpaired item of an odd batch goes last on the last rank.  Every
    position goes to exactly one rank; a rank may get none (tiny batches, many ranks).
    """
    if not active():
        return None
    w, r = world_size(), rank()
    even = size - size % 2
    pairs = even // 2
    lo, hi = r * pairs // w, (r + 1) * pairs // w
    head = torch.arange(lo, hi)
    parts = [head, (even - 1 - head).flip(0)]
    if size % 2 and r == w - 1:
        parts.append(torch.tensor([size - 1]))
    return torch.cat(parts).long()


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

def _unique_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    seen, out = set(), []
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _running_stat_modules(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._NormBase]:
    """Normalisation layers in training mode that keep running statistics (BatchNorm)."""
    seen, out = set(), []
    for root in modules:
        for m in root.modules():
            if (isinstance(m, nn.modules.batchnorm._NormBase) and m.training and m.track_running_stats
                    and m.running_mean is not None and id(m) not in seen):
                seen.add(id(m))
                out.append(m)
    return out


@torch.no_grad()
def sync_step(modules: Iterable[nn.Module], weight: float) -> None:
    """After a local backward: make every rank hold the gradient of the global batch.

    Each rank's loss was already weighted by its share of the global batch (``n_rank / B``
    for a per-sample mean), so the gradients are summed over ranks: the gradient of the
    mean over the global batch.  ``weight`` is the rank's share of the items.  A parameter
    with no gradient on every rank keeps none (SGD then skips it, as in one process); one
    with a gradient on some rank gets the sum.  BatchNorm running means and variances
    (updated from the local part in the forward) are replaced by their share-weighted
    average: for a layer whose input is the same as in one process (the first), that is the
    global batch's running mean up to rounding and its running variance approximately
    (within-part variances only);
    ``num_batches_tracked`` takes the maximum.  One all-reduce per dtype and device (plus
    one for the counters), so the replicas stay identical.  A no-op in one process.
    """
    if not active():
        return
    modules = list(modules)
    params = _unique_parameters(modules)
    norms = _running_stat_modules(modules)
    groups: dict[tuple, list] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(("grad", p))
    for m in norms:
        for name in ("running_mean", "running_var"):
            b = getattr(m, name)
            groups.setdefault((b.dtype, b.device), []).append(("buffer", b))
    for (dtype, device), items in groups.items():
        chunks, flags = [], []
        for kind, obj in items:
            if kind == "grad":
                g = obj.grad
                flags.append(0.0 if g is None else 1.0)
                chunks.append((torch.zeros_like(obj) if g is None else g).reshape(-1))
            else:
                chunks.append(obj.reshape(-1) * weight)
        flat = torch.cat(chunks + [torch.tensor(flags, dtype=dtype, device=device)])
        all_reduce_sum_(flat)
        has_grad = flat[flat.numel() - len(flags):].tolist() if flags else []  # one read-back per group
        offset, k = 0, 0
        for kind, obj in items:
            size = obj.numel()
            part = flat[offset : offset + size].view_as(obj)
            offset += size
            if kind == "grad":
                has = has_grad[k] > 0
                k += 1
                if has:
                    if obj.grad is None:
                        obj.grad = part.clone()
                    else:
                        obj.grad.copy_(part)
                else:
                    obj.grad = None
            else:
                obj.copy_(part)
    counters = [m.num_batches_tracked for m in norms if m.num_batches_tracked is not None]
    if counters:
        flat = torch.stack([c.reshape(()) for c in counters]).to(_comm_device())
        dist.all_reduce(flat, op=dist.ReduceOp.MAX)
        for c, v in zip(counters, flat.tolist()):
            c.fill_(int(v))


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
