"""Backbones and their feature taps, registered by name in ``MODELS``.

Every built-in model exposes ``taps`` (default tap module names), ``classifier`` (the last
``nn.Linear``) and ``features(x)`` (the pooled penultimate features); a user's own
``nn.Module`` needs none of these (see :mod:`.heads`).  Adding a model is one file plus one
registry line here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .heads import features_of, last_linear, split_classifier
from .hourglass import StackedHourglass, hourglass, hourglass_small
from .modes import eval_mode
from .resnet import ResNet18
from .small import MLP, SmallCNN
from .ssd import SSD, ssd300, ssd_small
from .taps import Taps, resolve_modules, tapped
from .vgg import VGG16


@dataclass(frozen=True)
class ModelEntry:
    """How to build a model for ``outputs`` outputs and inputs of ``input_shape``."""

    build: Callable[..., nn.Module]
    inputs: str = "images"  # images (C, H, W) or rows (D,): what it accepts
    min_side: int = 0  # smallest image side it accepts
    #: "heatmaps" for keypoint models (the pose task), "boxes" for detectors (one (D, 4 + C + 1)
    #: row block per image), "vector" for one output vector per item
    outputs: str = "vector"
    #: the run's settings its build takes as keywords (the hourglass: ``stacks``)
    options: tuple[str, ...] = ()


def _rows(cls: Callable[..., nn.Module]) -> Callable[[int, tuple[int, ...]], nn.Module]:
    def build(outputs: int, shape: tuple[int, ...]) -> nn.Module:
        features = 1
        for d in shape:
            features *= d
        return cls(outputs, features)
    return build


def _images(cls: Callable[..., nn.Module]) -> Callable[[int, tuple[int, ...]], nn.Module]:
    return lambda outputs, shape: cls(num_classes=outputs, in_channels=shape[0])


def _detector(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    return lambda outputs, shape, **options: fn(outputs, in_channels=shape[0], **options)


def _heatmaps(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    return lambda outputs, shape, **options: fn(outputs, in_channels=shape[0], **options)


MODELS: Registry[ModelEntry] = Registry("model")
MODELS.register("resnet18", ModelEntry(_images(ResNet18)),
                "CIFAR ResNet-18 (3x3 stem, no max-pool), taps layer1..layer4")
MODELS.register("vgg16", ModelEntry(_images(VGG16), min_side=32),
                "VGG16 with batch norm (configuration D), taps block1..block5; images of at least 32x32")
MODELS.register("cnn", ModelEntry(_images(SmallCNN)), "small CNN for small grey images (digits, MNIST), taps block1, "
                "block2, block3, fc")
MODELS.register("mlp", ModelEntry(_rows(MLP), inputs="rows"), "two-hidden-layer MLP for tabular rows (images are "
                "flattened), taps hidden1, hidden2")
MODELS.register("hourglass", ModelEntry(_heatmaps(hourglass), min_side=16, outputs="heatmaps", options=("stacks",)),
                "Stacked Hourglass for pose (--stacks, default 2; 256 features, heatmaps at 1/4 of the crop: 64x64 for "
                "256x256), taps post.0.. (the last feature map of each hourglass)")
MODELS.register("hourglass-small", ModelEntry(_heatmaps(hourglass_small), min_side=8, outputs="heatmaps",
                                              options=("stacks",)),
                "a small Stacked Hourglass for CPU runs (32 features, depth 2; 16x16 heatmaps for 64x64 crops)")
MODELS.register("ssd300", ModelEntry(_detector(ssd300), min_side=64, outputs="boxes", options=("backbone_weights",)),
                "SSD300 with a VGG-16 backbone for detection (300x300 inputs; --backbone-weights: a local VGG-16 "
                "state_dict), taps conv4_3, conv7, conv8_2, conv9_2, conv10_2, conv11_2")
MODELS.register("ssd-small", ModelEntry(_detector(ssd_small), min_side=32, outputs="boxes"),
                "a small SSD for CPU runs (BN convs, four source maps, 64-160 pixel inputs), taps conv4, conv7, "
                "conv8, conv9")

#: what each task needs its model to output
TASK_OUTPUTS = {"pose": "heatmaps", "detection": "boxes"}


def build(name: str, outputs: int, input_shape: tuple[int, ...], *, task: str | None = None, **options: object
          ) -> nn.Module:
    """Build model ``name`` with ``outputs`` outputs for inputs of ``input_shape`` (C,H,W or D).

    ``task`` (when given) must be one the model's outputs serve; ``options`` are run settings,
    of which the model takes those it declares (the hourglass: ``stacks``)."""
    entry = MODELS.get(name)
    if task is not None and entry.outputs != TASK_OUTPUTS.get(task, "vector"):
        able = [n for n, e in MODELS.items() if e.outputs == TASK_OUTPUTS.get(task, "vector")]
        raise ConfigError(f"model {name!r} does not predict what the {task} task needs; use {', '.join(able)}")
    is_image = len(input_shape) == 3
    if entry.inputs == "images" and not is_image:
        raise ConfigError(f"model {name!r} needs images; this dataset has rows of {input_shape[0]} features: use mlp")
    if is_image and min(input_shape[1:]) < entry.min_side:
        _, height, width = input_shape
        raise ConfigError(f"{name} needs images of at least {entry.min_side}x{entry.min_side}, these are "
                          f"{height}x{width}; use cnn or resnet18")
    return entry.build(outputs, tuple(input_shape), **{k: v for k, v in options.items() if k in entry.options})


def default_model(input_shape: tuple[int, ...], task: str = "classification") -> str:
    """The model a dataset gets when none is named: for pose the Stacked Hourglass (the small one
    below 128-pixel crops), for detection SSD300 (the small SSD below 300 pixels); else MLP for
    rows, small CNN for small grey images, ResNet-18 for colour images."""
    if task == "pose":
        return "hourglass" if min(input_shape[1:]) >= 128 else "hourglass-small"
    if task == "detection":
        return "ssd300" if min(input_shape[1:]) >= 300 else "ssd-small"
    if len(input_shape) == 1:
        return "mlp"
    channels, height, _ = input_shape
    return "cnn" if channels == 1 and height <= 32 else "resnet18"


__all__ = ["MLP", "MODELS", "ModelEntry", "ResNet18", "SSD", "SmallCNN", "StackedHourglass", "Taps", "VGG16", "build",
           "default_model",
           "eval_mode", "features_of", "last_linear", "resolve_modules", "split_classifier", "tapped"]
