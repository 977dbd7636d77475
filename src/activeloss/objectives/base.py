"""The training-time half of a strategy: what is trained beside the model.

An objective owns extra modules (a loss-prediction module, a target network...), adds their
parameter groups to the optimiser, adds one loss term per batch and may act at epoch
boundaries.  The plain objective adds nothing.  Each objective declares its own typed
options (an ``Options`` dataclass made with :func:`~activeloss.config.option`); it is built
with those options already resolved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..config.options import NoOptions, declare_component
from ..registry import Registry

if TYPE_CHECKING:
    from ..data import Inputs
    from ..tasks import Task


@dataclass(frozen=True)
class ModelInfo:
    """What an objective may know about the model it trains beside."""

    task: Task
    taps: tuple[str, ...]  # module names whose outputs the trainer records
    input_shape: tuple[int, ...]
    num_classes: int  # 0 for a task without classes


@dataclass
class Step:
    """What the trainer knows about one training batch."""

    inputs: torch.Tensor
    targets: torch.Tensor
    outputs: torch.Tensor
    losses: torch.Tensor  # per-sample task loss [B], still attached to the graph
    taps: list[torch.Tensor] | None
    epoch: int
    items: torch.Tensor | None = None  # the batch's pool indices (None for items an objective added)


@dataclass
class ParamGroup:
    """Extra parameters for the optimiser; ``decay`` says whether the lr schedule applies."""

    params: list[nn.Parameter]
    lr: float
    decay: bool = True


class Objective:
    """No add-on: the model is trained with its task loss alone."""

    name: ClassVar[str] = "none"
    Options: ClassVar[type] = NoOptions
    #: what the task's outputs must offer (see :mod:`activeloss.tasks`), e.g. class probabilities
    needs: ClassVar[frozenset[str]] = frozenset()
    #: whether the trainer must record the model's tapped features for :meth:`batch_loss`
    needs_taps: ClassVar[bool] = False
    #: whether :meth:`predict_loss` gives a loss prediction (what the predicted-loss acquisition ranks by)
    predicts_loss: ClassVar[bool] = False
    #: whether it trains a VAE and a discriminator (what the vaal and sraal acquisitions rank by)
    has_discriminator: ClassVar[bool] = False
    #: what :meth:`batch_loss` averages over: ``"sample"`` (a mean over the batch's items) or
    #: ``"pair"`` (a mean over the batch's mirror pairs); under torchrun each rank's term is
    #: weighted by its share of these, so the sum over ranks is the global batch's mean
    batch_loss_mean: ClassVar[str] = "sample"

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def setup(self, model: nn.Module, info: ModelInfo) -> None:
        """Build the extra modules for ``model`` (called once per fresh model)."""

    def modules(self) -> dict[str, nn.Module]:
        """Extra modules, by name: checkpointed with the model and switched to eval for queries."""
        return {}

    def param_groups(self) -> list[ParamGroup]:
        return []

    def on_cycle_start(self, model: nn.Module) -> None:
        """Called before each cycle's training (e.g. to sync a target network)."""

    def training_items(self, model: nn.Module, inputs: Inputs, labeled: torch.Tensor, labels: torch.Tensor,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Items the model trains on this cycle beside the labeled ones (BGADL's synthetic items), or None.

        Called once per cycle before the first epoch with the items about to be trained on
        (``labeled``, pool indices) and their ``labels``.  Returns ``(x, y)``: inputs in the form
        of ``inputs.x_train`` (item shape, dtype and scale; the trainer normalises them like the
        labeled items, without augmentation) and targets like ``labels``.  They are training data
        only: never labels, never in the pool, never evaluated.  ``gen`` is the cycle's training
        generator."""
        return None

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Called after each epoch and its scheduler step."""

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimiser step (e.g. an EMA update)."""

    def after_training(self, model: nn.Module, inputs: Inputs, labeled: torch.Tensor, unlabeled: torch.Tensor,
                       gen: torch.Generator, labels: torch.Tensor) -> None:
        """Called once per cycle after the model's training, inside the timed training phase:
        the place for networks trained on labeled *and* unlabeled items (VAAL's VAE).
        ``labels`` are the oracle's labels of ``labeled``."""

    def batch_loss(self, step: Step) -> torch.Tensor | None:
        """The extra loss term of one batch, or None."""
        return None

    def graph_phase(self, epoch: int) -> object:
        """What :meth:`batch_loss` takes from ``epoch`` (a recorded training step holds it as a
        constant; ``--cuda-graphs`` records a new one when it changes).  By default: nothing
        when there is no batch loss, else the epoch itself."""
        return None if type(self).batch_loss is Objective.batch_loss else epoch

    def predict_loss(self, taps: list[torch.Tensor]) -> torch.Tensor | None:
        """Predicted per-sample loss from the tapped features, for objectives that learn one."""
        return None

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)

    def eval(self) -> None:
        self.train(False)

    def to(self, device: torch.device) -> None:
        for m in self.modules().values():
            m.to(device)


#: the objectives by name; registering one declares its options (``activeloss.config.DECLARED``)
OBJECTIVES: Registry[type[Objective]] = Registry("objective", on_register=declare_component)
OBJECTIVES.register("none", Objective, "the task loss alone")
