"""DNAL's double branch: a lagged target network supplies the loss the module learns.

A reconstruction (the paper's equations were lost; METHODS.md section 5): the target
network is a copy of the training network updated once per epoch (or by EMA), its
per-sample cross-entropy is the module's regression target.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import Step
from .lossnet import LossPredictionObjective

TARGET_UPDATES = ("epoch", "ema")
MODULE_LOSSES = ("mse", "huber")


class DoubleBranchObjective(LossPredictionObjective):
    name = "double-branch"
    batch_loss_mean = "sample"  # MSE / Huber against the target network's losses

    def setup(self, model, num_classes, tap_names, settings, input_shape=None) -> None:
        super().setup(model, num_classes, tap_names, settings, input_shape)
        if settings.target_update not in TARGET_UPDATES:
            raise ConfigError(f"--target-update must be one of {', '.join(TARGET_UPDATES)}, not {settings.target_update!r}")
        if settings.module_loss not in MODULE_LOSSES:
            raise ConfigError(f"--module-loss must be one of {', '.join(MODULE_LOSSES)}, not {settings.module_loss!r}")
        self.update = settings.target_update
        self.tau = settings.ema_tau
        self.huber = settings.module_loss == "huber"
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
        self.target.load_state_dict(model.state_dict())

    def on_cycle_start(self, model: nn.Module) -> None:
        self.sync_target(model)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        if self.update == "epoch":
            self.sync_target(model)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        if self.update != "ema":
            return
        target = self.target.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                target[name].mul_(self.tau).add_(value, alpha=1 - self.tau)
            else:
                target[name].copy_(value)

    def module_loss(self, predicted: torch.Tensor, step: Step) -> torch.Tensor:
        with torch.no_grad():
            target_loss = F.cross_entropy(self.target(step.inputs).float(), step.targets, reduction="none")
        if self.huber:
            return F.smooth_l1_loss(predicted, target_loss)
        return F.mse_loss(predicted, target_loss)
