"""A run's model checkpoints: written whole (temporary name, then rename), one per trained
cycle, kept until the next cycle's is on disk, so a run stopped at any moment can continue
from its last committed step."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..objectives import Objective


class Checkpoints:
    """The checkpoints of run ``run_id`` in ``folder/checkpoints`` (none when ``folder`` is None:
    an in-memory learner keeps its model in memory only)."""

    def __init__(self, folder: Path | None, run_id: int) -> None:
        self.dir = None if folder is None else Path(folder) / "checkpoints"
        self.run_id = run_id

    def path(self, cycle: int) -> Path:
        assert self.dir is not None
        return self.dir / f"run{self.run_id}-cycle{cycle}.pt"

    def save(self, cycle: int, model: nn.Module, objective: Objective) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(),
                 **{f"objective.{k}": m.state_dict() for k, m in objective.modules().items()}}
        path = self.path(cycle)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load(self, cycle: int, model: nn.Module, objective: Objective, device: torch.device) -> None:
        path = None if self.dir is None else self.path(cycle)
        if path is None or not path.is_file():
            where = "" if path is None else f" ({path})"
            raise ConfigError(f"the model of cycle {cycle} is not saved{where}; cannot continue this run")
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        for k, m in objective.modules().items():
            m.load_state_dict(state[f"objective.{k}"])

    def drop(self, keep: int | None = None) -> None:
        """Delete the run's checkpoints except that of cycle ``keep``."""
        if self.dir is None or not self.dir.is_dir():
            return
        for path in self.dir.glob(f"run{self.run_id}-cycle*.pt"):
            if keep is None or path != self.path(keep):
                path.unlink(missing_ok=True)
