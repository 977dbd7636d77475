"""Backbones and their feature taps, built by name with :func:`build`."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .modes import eval_mode
from .resnet import ResNet18
from .small import MLP, SmallCNN
from .taps import Taps, resolve_modules, tapped
from .vgg import VGG16

MODELS: dict[str, str] = {
    "resnet18": "CIFAR ResNet-18 (3x3 stem, no max-pool), taps layer1..layer4",
    "vgg16": "VGG16 with batch norm (configuration D), taps block1..block5; images of at least 32x32",
    "cnn": "small CNN for small grey images (digits, MNIST), taps block1, block2, block3, fc",
    "mlp": "two-hidden-layer MLP for tabular rows, taps hidden1, hidden2",
}


def build(name: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Build model ``name`` for inputs of shape ``input_shape`` (C,H,W for images, D for rows).

    Every model exposes ``taps`` (default tap module names), ``classifier`` (the last
    Linear) and ``features(x)`` (the pooled penultimate features).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, the dataset has {num_classes}")
    is_image = len(input_shape) == 3
    if name == "mlp":
        features = 1
        for d in input_shape:
            features *= d
        return MLP(num_classes, features)
    if not is_image:
        raise ConfigError(f"model {name!r} needs images; this dataset has rows of {input_shape[0]} features: use mlp")
    channels, height, width = input_shape
    if name == "vgg16" and min(height, width) < 32:
        raise ConfigError(f"vgg16 needs images of at least 32x32, these are {height}x{width}; use cnn or resnet18")
    factory: Callable[..., nn.Module] = {"resnet18": ResNet18, "vgg16": VGG16, "cnn": SmallCNN}[name]
    return factory(num_classes=num_classes, in_channels=channels)


def default_model(input_shape: tuple[int, ...]) -> str:
    """The model a dataset gets when none is named: MLP for rows, small CNN for small grey
    images, ResNet-18 for colour images."""
    if len(input_shape) == 1:
        return "mlp"
    channels, height, _ = input_shape
    return "cnn" if channels == 1 and height <= 32 else "resnet18"


__all__ = ["MODELS", "MLP", "ResNet18", "SmallCNN", "Taps", "VGG16", "build", "default_model", "eval_mode", "resolve_modules", "tapped"]
