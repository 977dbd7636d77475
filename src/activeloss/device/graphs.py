"""The training step as CUDA graphs (``--cuda-graphs``): one launch instead of hundreds.

At the papers' batch of 128 a ResNet-18 step is a few hundred small kernels whose launch
overhead exceeds their GPU work.  A CUDA graph records the kernels of one step (forward,
backward, optimiser step) once and replays them with a single launch.  A graph replays the
very kernels it recorded on the very memory it recorded, so everything that varies between
steps must live in tensors filled before each replay (the batch's positions and its
augmentation parameters), and everything fixed at recording time is part of the graph's
*key*: the batch size, the objective's phase (e.g. features detached after the stop-gradient
epoch) and the learning rates (the multi-step schedule's decay).  A new key is first run
eagerly (``warmup`` steps: cuDNN chooses its kernels, the optimiser makes its momentum
buffers), then recorded; keys of a past phase are dropped.  The replayed kernels are those the
eager step runs, so results match the eager path's on the same device.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..errors import ConfigError

_log = logging.getLogger(__name__)

StepFn = Callable[[dict[str, torch.Tensor]], None]


class Recorded(Protocol):
    def replay(self) -> None: ...


class GraphBackend(Protocol):
    """How steps are warmed up and recorded: CUDA graphs on a GPU; :class:`EagerReplay` in tests."""

    def warm(self, fn: Callable[[], None]) -> None: ...

    def record(self, fn: Callable[[], None]) -> Recorded: ...


class CudaGraphs:
    """Warm-up steps on a side stream, then ``torch.cuda.graph`` capture (PyTorch's recipe for
    capturing a whole network with its optimiser step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def warm(self, fn: Callable[[], None]) -> None:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            fn()
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def record(self, fn: Callable[[], None]) -> Recorded:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph


class EagerReplay:
    """A stand-in that "records" by remembering the function and replays by calling it again
    on the same static tensors: on the CPU it exercises every part of the graph path but the
    capture itself (what the tests compare against the eager loop)."""

    def __init__(self) -> None:
        self.recorded = 0

    def warm(self, fn: Callable[[], None]) -> None:
        fn()

    def record(self, fn: Callable[[], None]) -> Recorded:
        self.recorded += 1

        class _Replay:
            def replay(self) -> None:
                fn()

        return _Replay()


@dataclass
class _Entry:
    static: dict[str, torch.Tensor]  # the step's inputs, filled in place before each call
    runs: int = 0
    graph: Recorded | None = None


@dataclass
class StepGraphs:
    """Runs ``step(static)`` for a key: eagerly for its first calls (``warmup`` for the first
    key, one for later keys), then recorded once and replayed.  ``inputs`` passed to
    :meth:`__call__` are copied into the key's static tensors first.  A recording that fails
    (an operation a graph cannot hold) is logged once and the rest of the training runs eagerly."""

    step: StepFn
    backend: GraphBackend
    warmup: int = 2
    entries: dict[Hashable, _Entry] = field(default_factory=dict)
    failed: str | None = None
    recordings: int = 0  # over the whole training, dropped keys included

    def __call__(self, key: Hashable, inputs: dict[str, torch.Tensor]) -> None:
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry({name: t.clone() for name, t in inputs.items()})
        else:
            for name, t in inputs.items():
                entry.static[name].copy_(t)
        if entry.graph is not None:
            entry.graph.replay()
            return
        static = entry.static
        # the first key warms up the optimiser's state and the allocator; a later key (a new
        # batch size or phase) needs one eager step for cuDNN to choose its kernels
        if self.failed is not None or entry.runs < (self.warmup if self.recordings == 0 else 1):
            entry.runs += 1
            (self.backend.warm if self.failed is None else _call)(lambda: self.step(static))
            return
        try:
            entry.graph = self.backend.record(lambda: self.step(static))
            self.recordings += 1
        except Exception as exc:  # noqa: BLE001  # any capture error: train on, eagerly
            self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
            _log.warning("--cuda-graphs: the training step could not be recorded (%s); training eagerly", self.failed)
            self.entries.clear()
            self.step(static)
            return
        entry.graph.replay()

    def keep_phase(self, phase: Hashable) -> None:
        """Forget the graphs (and their memory) of keys ``(batch size, phase)`` of another phase:
        phases only move forward, so they will not come back."""
        for key in [k for k in self.entries if not (isinstance(k, tuple) and k[1:] == (phase,))]:
            del self.entries[key]

    @property
    def recorded(self) -> int:
        return sum(e.graph is not None for e in self.entries.values())


def _call(fn: Callable[[], None]) -> None:
    fn()


def check_cuda_graphs(setting: bool | None, compiled: bool, device: torch.device) -> None:
    """``--cuda-graphs`` asked for needs CUDA and excludes ``--compile``: one clear line otherwise."""
    if setting and device.type != "cuda":
        raise ConfigError(f"--cuda-graphs records CUDA graphs, and this run is on {device.type}; leave it out")
    if setting and compiled:
        raise ConfigError("--cuda-graphs and --compile both change how the step runs: choose one")


def use_cuda_graphs(setting: bool | None, compiled: bool, device: torch.device, *parts: object) -> bool:
    """Whether to record the training steps: as asked, or by default on CUDA (not with
    ``--compile``) when the model and the objective (``parts``) are the library's own.  A graph
    replays kernels only: Python run inside a user's forward (a counter, a data-dependent
    branch) would not run again, so the user's own code is graphed only when asked for."""
    if setting is not None:
        return setting
    own = all(type(p).__module__.startswith("activeloss.") for p in parts)
    return device.type == "cuda" and not compiled and own
