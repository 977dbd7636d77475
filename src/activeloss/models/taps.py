"""Read intermediate outputs of any ``nn.Module`` by module name, with forward hooks.

This is what makes loss prediction task-agnostic: no backbone needs a modified
``forward``; the user names the modules (``layer1``, ``features.3``...) whose
outputs feed the loss-prediction module.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError


def resolve_modules(model: nn.Module, names: tuple[str, ...] | list[str]) -> list[nn.Module]:
    """Return the submodules named ``names``; a wrong name is a :class:`ConfigError` listing valid ones."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        top = [n for n, _ in model.named_children()]
        raise ConfigError(f"model has no module named {missing[0]!r}; its top-level modules are {', '.join(top)}")
    return [modules[n] for n in names]


class Taps:
    """Forward hooks that keep the latest outputs of the named modules.

    Hooks stay registered for the lifetime of the object (they are cheap: one list
    append per tapped module per forward); ``outputs`` holds the tensors of the last
    forward call in the order of ``names``.
    """

    def __init__(self, model: nn.Module, names: tuple[str, ...] | list[str]) -> None:
        self.names = tuple(names)
        self._outputs: dict[int, torch.Tensor] = {}
        self._handles = [
            module.register_forward_hook(self._make_hook(i))
            for i, module in enumerate(resolve_modules(model, self.names))
        ]

    def _make_hook(self, index: int):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            self._outputs[index] = output

        return hook

    @property
    def outputs(self) -> list[torch.Tensor]:
        if len(self._outputs) != len(self.names):
            raise RuntimeError("taps read before a forward pass reached every tapped module")
        return [self._outputs[i] for i in range(len(self.names))]

    def clear(self) -> None:
        self._outputs.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._outputs.clear()


@contextmanager
def tapped(model: nn.Module, names: tuple[str, ...] | list[str]) -> Iterator[Taps]:
    """``with tapped(model, ["layer1"]) as taps: model(x); taps.outputs`` - hooks removed on exit."""
    taps = Taps(model, names)
    try:
        yield taps
    finally:
        taps.remove()
