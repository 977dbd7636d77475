"""DNAL's double branch: a lagged target network supplies the loss the module learns.

A reconstruction (the paper's equations were lost): the target network is a copy of the
training network updated once per epoch (or by EMA); its per-sample task loss is the module's
regression target.  Defaults are DNAL's: features detached at 80 % of the epochs (120 of
150), the module's learning rate a tenth of the network's.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config.options import option, redefault
from .base import OBJECTIVES, ModelInfo, Step
from .lossnet import LossNetOptions, LossPredictionObjective


@dataclass(frozen=True)
class DoubleBranchOptions(LossNetOptions):
    stop_gradient_epoch: int | str = redefault(LossNetOptions, "stop_gradient_epoch", "80%")  # 120 of 150
    lossnet_lr: float | str = redefault(LossNetOptions, "lossnet_lr", "10%")  # VGG16: 0.01 and 0.001
    target_update: str = option("epoch", "DNAL target network update: epoch (hard copy after each epoch) or ema "
                                "(after each step)", choices=("epoch", "ema"))
    ema_tau: float = option(0.99, "DNAL EMA factor: target = tau x target + (1 - tau) x network", above=0, below=1)
    module_loss: str = option("mse", "DNAL module loss against the target network's loss: mse or huber",
                              choices=("mse", "huber"))


class DoubleBranchObjective(LossPredictionObjective):
    name = "double-branch"
    Options = DoubleBranchOptions
    batch_loss_mean = "sample"  # MSE / Huber against the target network's losses

    def setup(self, model: nn.Module, info: ModelInfo) -> None:
        super().setup(model, info)
        self.task = info.task
        self.update = self.options.target_update
        self.tau = self.options.ema_tau
        self.huber = self.options.module_loss == "huber"
        self.target = copy.deepcopy(model)
        for m in self.target.modules():  # the copy must not feed the training network's taps
            m._forward_hooks.clear()
        self.target.requires_grad_(False)
        self.target.eval()

    def modules(self) -> dict[str, nn.Module]:
        return {"lossnet": self.lossnet, "target": self.target}

    def train(self, mode: bool = True) -> None:
        self.lossnet.train(mode)
        self.target.eval()  # the target network only ever predicts

    @torch.no_grad()
    def sync_target(self, model: nn.Module) -> None:
        """A hard copy of every parameter and buffer, as one foreach copy (one launch on a GPU)."""
        target, source = self._state_pairs(model)
        torch._foreach_copy_(target, source)

    def _state_pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        source = model.state_dict()
        target = self.target.state_dict()
        if list(source) != list(target):
            raise RuntimeError("DNAL: the target network's state does not match the model's")
        return list(target.values()), list(source.values())

    def on_cycle_start(self, model: nn.Module) -> None:
        self.sync_target(model)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        if self.update == "epoch":
            self.sync_target(model)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        if self.update != "ema":
            return
        target, source = self._state_pairs(model)
        floats = [i for i, t in enumerate(source) if t.dtype.is_floating_point]
        others = [i for i, t in enumerate(source) if not t.dtype.is_floating_point]
        moving = [target[i] for i in floats]
        torch._foreach_mul_(moving, self.tau)
        torch._foreach_add_(moving, [source[i] for i in floats], alpha=1 - self.tau)
        if others:
            torch._foreach_copy_([target[i] for i in others], [source[i] for i in others])

    def module_loss(self, predicted: torch.Tensor, step: Step) -> torch.Tensor:
        with torch.no_grad():
            target_loss = self.task.loss(self.target(step.inputs), step.targets)
        if self.huber:
            return F.smooth_l1_loss(predicted, target_loss)
        return F.mse_loss(predicted, target_loss)


OBJECTIVES.register("double-branch", DoubleBranchObjective,
                    "loss-prediction module learning a lagged target network's loss (DNAL)")
