"""Switch a model to eval mode for a moment, restoring every module's own flag afterwards."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module, keep_training: Iterable[nn.Module] = ()) -> Iterator[nn.Module]:
    """Eval mode for the block (``keep_training`` modules in train mode, e.g. MC-dropout layers).

    Each module's flag is restored on exit, even on an exception, so a model that was
    partly in train mode comes back exactly as it was (``model.train(old)`` would not).
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in keep_training:
        m.train()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training
