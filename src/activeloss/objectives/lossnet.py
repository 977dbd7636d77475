"""The loss-prediction module (Learning Loss, Yoo and Kweon, CVPR 2019) as a training objective."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import mse_loss_prediction, ranking_loss
from .base import Objective, ParamGroup, Step


class LossNet(nn.Module):
    """Per tap: global average pool -> Linear(C, width) -> ReLU; concatenated -> Linear(., 1).

    Adaptive pooling makes any spatial size work; 2-d taps (an MLP's hidden layers) skip it.
    """

    def __init__(self, channels: list[int], width: int = 128) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(c, width) for c in channels)
        self.out = nn.Linear(width * len(channels), 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for f, head in zip(features, self.heads):
            if f.dim() > 2:
                f = f.flatten(2).mean(-1)  # global average pooling over every spatial position
            parts.append(F.relu(head(f.float())))
        return self.out(torch.cat(parts, dim=1)).flatten()


@torch.no_grad()
def tap_channels(model: nn.Module, tap_names: tuple[str, ...], input_shape: tuple[int, ...]) -> list[int]:
    """Channel count of each tap, read from one dry forward pass (train/eval mode preserved)."""
    from ..models import eval_mode, tapped

    device = next(model.parameters()).device
    with eval_mode(model), tapped(model, tap_names) as taps:
        model(torch.zeros(2, *input_shape, device=device))
        return [int(t.shape[1]) for t in taps.outputs]


class LossPredictionObjective(Objective):
    """Trains a LossNet on the model's taps with the pairwise ranking loss.

    Total loss = mean CE + ``loss_weight`` x ranking loss.  From ``stop_gradient_epoch`` on
    the tapped features are detached: the module keeps learning, the backbone sees CE only.
    """

    name = "lossnet"
    needs_taps = True
    predicts_loss = True
    batch_loss_mean = "pair"  # the ranking loss is a mean over mirror pairs

    def setup(self, model, num_classes, tap_names, settings, input_shape=None) -> None:
        self.tap_names = tap_names
        self.lossnet = LossNet(tap_channels(model, tap_names, input_shape))
        self.loss_weight = settings.loss_weight
        self.margin = settings.margin
        self.stop_gradient_epoch = settings.stop_gradient_epoch

    def modules(self) -> dict[str, nn.Module]:
        return {"lossnet": self.lossnet}

    def param_groups(self, settings) -> list[ParamGroup]:
        return [ParamGroup(list(self.lossnet.parameters()), settings.lossnet_lr, settings.lossnet_decay)]

    def features(self, step: Step) -> list[torch.Tensor]:
        if step.epoch >= self.stop_gradient_epoch:
            return [f.detach() for f in step.taps]
        return step.taps

    def module_loss(self, predicted: torch.Tensor, step: Step) -> torch.Tensor:
        return ranking_loss(predicted, step.losses, margin=self.margin)

    def batch_loss(self, step: Step) -> torch.Tensor:
        predicted = self.lossnet(self.features(step))
        return self.loss_weight * self.module_loss(predicted, step)

    def predict_loss(self, taps: list[torch.Tensor]) -> torch.Tensor:
        return self.lossnet(taps)


class MSELossPredictionObjective(LossPredictionObjective):
    """The paper's ablation: regress the loss with MSE (lambda 0.1); worse than ranking."""

    name = "lossnet-mse"
    batch_loss_mean = "sample"

    def module_loss(self, predicted: torch.Tensor, step: Step) -> torch.Tensor:
        return mse_loss_prediction(predicted, step.losses)
