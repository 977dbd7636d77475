"""The device fast path: memory format, autotuning, compilation, mixed precision.

On a CUDA GPU a run by default uses cuDNN autotuning, the channels_last memory format for
convolutional models (what tensor cores want) and bf16 autocast around the model's forward
passes (:func:`autocast`); data stays on the GPU as uint8 (:class:`~activeloss.data.Inputs`).
``--deterministic`` gives up autotuning and the non-deterministic kernels, so the same
seed on the same device gives the same bits; ``--compile`` runs the forward pass through
``torch.compile``.  On CPU none of this changes results: runs are deterministic anyway.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


def configure(device: torch.device, deterministic: bool) -> None:
    """Set PyTorch's process-wide switches for a run on ``device``."""
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible results; read when CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    # autotuning times several kernels per shape and keeps the fastest: which one wins may vary
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    # float32 matrix products keep full precision (PyTorch's default): the exactness of the
    # gradient-norm scores and of the core-set distances depends on it; training uses bf16


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores); full precision on CPU, where it would only slow down."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def full_precision(device: torch.device):
    """Autocast off, whatever the caller's context: for distances and scores that must be fp32."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def memory_format(channels_last: bool | None, device: torch.device, image: bool) -> torch.memory_format:
    """channels_last for image inputs when asked, or by default on CUDA; else the usual layout."""
    wanted = device.type == "cuda" if channels_last is None else channels_last
    return torch.channels_last if wanted and image else torch.contiguous_format


def forward_of(model: nn.Module, compile: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """What calls the model: the model itself, or its ``torch.compile`` wrapper (same parameters
    and hooks, so taps and the optimizer see the very same tensors).

    Each new model is compiled afresh: PyTorch's compile cache is shared by all instances of a
    class and does not notice forward hooks (the taps) on a new instance, so a graph compiled for
    an untapped model would silently skip a later model's taps.
    """
    if not compile:
        return model
    torch._dynamo.reset()
    return torch.compile(model)


@contextmanager
def explained_determinism_errors() -> Iterator[None]:
    """Turn PyTorch's "X does not have a deterministic implementation" into one clear line."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if "does not have a deterministic implementation" not in text:
            raise
        op = text.split(" does not have")[0].strip()
        raise ConfigError(f"--deterministic: {op} has no deterministic kernel in PyTorch {torch.__version__} "
                          f"on this device; run without --deterministic") from None


def set_threads(settings: Any, device: torch.device, workers: int = 1) -> None:
    """Apply ``--threads``; auto means one thread for the small models on CPU, and with
    ``workers`` processes side by side an equal share of the cores each."""
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    elif device.type == "cpu" and settings.model in ("cnn", "mlp", "ssd-small"):
        torch.set_num_threads(1)
    elif workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
