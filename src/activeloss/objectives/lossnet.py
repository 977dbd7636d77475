"""The loss-prediction module (Learning Loss, Yoo and Kweon, CVPR 2019) as a training objective."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config.options import option, redefault
from ..losses import mse_loss_prediction, ranking_loss
from .base import OBJECTIVES, ModelInfo, Objective, ParamGroup, Step


@dataclass(frozen=True)
class LossNetOptions:
    loss_weight: float = option(1.0, "lambda, the weight of the loss-prediction term", at_least=0)
    margin: float = option(1.0, "margin of the pairwise ranking loss", at_least=0)
    stop_gradient_epoch: int | str = option("60%", "epoch (or percentage of --epochs) from which the taps are "
                                            "detached from the loss-prediction module (Learning Loss: 120 of 200)",
                                            at_least=0, percent_of="epochs")
    lossnet_lr: float | str = option("100%", "learning rate of the loss-prediction module, or a percentage of --lr",
                                     above=0, percent_of="lr")
    lossnet_decay: bool = option(True, "apply the learning-rate milestones to the loss-prediction module too "
                                 "(LPLgrad's code: no)")
    module_holdout: float = option(0.0, "share of the labeled items the loss-prediction module never learns from "
                                   "(the backbone does), so its ranking can be checked on them (guarded-loss: 0.2)",
                                   at_least=0, below=1)


@dataclass(frozen=True)
class MSELossNetOptions(LossNetOptions):
    loss_weight: float = redefault(LossNetOptions, "loss_weight", 0.1)  # the paper's lambda for its MSE ablation


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

    Total loss = mean task loss + ``loss_weight`` x ranking loss.  From ``stop_gradient_epoch``
    on the tapped features are detached: the module keeps learning, the backbone sees the
    task loss only.
    """

    name = "lossnet"
    Options = LossNetOptions
    needs_taps = True
    predicts_loss = True
    batch_loss_mean = "pair"  # the ranking loss is a mean over mirror pairs

    def setup(self, model: nn.Module, info: ModelInfo) -> None:
        self.tap_names = info.taps
        self.lossnet = LossNet(tap_channels(model, info.taps, info.input_shape))
        self.loss_weight = float(self.options.loss_weight)
        self.margin = float(self.options.margin)
        self.stop_gradient_epoch = int(self.options.stop_gradient_epoch)

    def modules(self) -> dict[str, nn.Module]:
        return {"lossnet": self.lossnet}

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup(list(self.lossnet.parameters()), float(self.options.lossnet_lr), self.options.lossnet_decay)]

    def held_out(self, items: torch.Tensor) -> torch.Tensor:
        """Whether each pool item is one the module never learns from (``module_holdout``): a
        fixed hash of the item's index, so an item stays held out (or not) in every cycle."""
        mixed = (items.long() * 2654435761 + 12345) % 1_000_003
        return mixed < round(float(self.options.module_holdout) * 1_000_003)

    def features(self, step: Step) -> list[torch.Tensor]:
        assert step.taps is not None, "the trainer records the taps of an objective that needs them"
        if step.epoch >= self.stop_gradient_epoch:
            return [f.detach() for f in step.taps]
        return step.taps

    def graph_phase(self, epoch: int) -> object:
        return epoch >= self.stop_gradient_epoch  # all the batch loss takes from the epoch

    def module_loss(self, predicted: torch.Tensor, step: Step) -> torch.Tensor:
        weights = None
        if self.options.module_holdout > 0 and step.items is not None:
            weights = ~self.held_out(step.items)
        return ranking_loss(predicted, step.losses, margin=self.margin, weights=weights)

    def batch_loss(self, step: Step) -> torch.Tensor:
        predicted = self.lossnet(self.features(step))
        return self.loss_weight * self.module_loss(predicted, step)

    def predict_loss(self, taps: list[torch.Tensor]) -> torch.Tensor:
        return self.lossnet(taps)


class MSELossPredictionObjective(LossPredictionObjective):
    """The paper's ablation: regress the loss with MSE (lambda 0.1); worse than ranking."""

    name = "lossnet-mse"
    Options = MSELossNetOptions
    batch_loss_mean = "sample"

    def module_loss(self, predicted: torch.Tensor, step: Step) -> torch.Tensor:
        return mse_loss_prediction(predicted, step.losses)


OBJECTIVES.register("lossnet", LossPredictionObjective,
                    "loss-prediction module on the taps, pairwise ranking loss (Learning Loss)")
OBJECTIVES.register("lossnet-mse", MSELossPredictionObjective,
                    "loss-prediction module regressed with MSE (the Learning Loss ablation)")
