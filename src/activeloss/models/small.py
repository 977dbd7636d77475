"""Small models for small grey images (digits, MNIST) and for tabular rows."""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _pool_matrix(size: int, out: int, like: torch.Tensor) -> torch.Tensor:
    """(out, size) averaging weights of adaptive pooling: row i averages [floor(i*size/out), ceil((i+1)*size/out))."""
    rows = torch.zeros(out, size, dtype=like.dtype, device=like.device)
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        rows[i, lo:hi] = 1.0 / (hi - lo)
    return rows


class AdaptiveMeanPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two small matrix products.

    The same numbers, but its backward is deterministic on CUDA (the built-in's backward
    scatters with atomics and is refused under ``--deterministic``).
    """

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _pool_matrix(x.shape[-2], self.output_size, x)
        cols = _pool_matrix(x.shape[-1], self.output_size, x)
        return torch.einsum("nchw,ih,jw->ncij", x, rows, cols)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (32, 64, 64 channels; the first two end in a 2x2 max-pool) and
    a hidden layer; taps are ``block1``, ``block2``, ``block3`` and ``fc``.

    One conv per block keeps it cheap on a CPU (about 6 MFLOP-MACs per 28x28 image) while
    still reaching ~99 % on MNIST with the full training set.
    """

    taps = ("block1", "block2", "block3", "fc")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, hidden: int = 128) -> None:
        super().__init__()
        self.block1 = nn.Sequential(*_conv_bn_relu(in_channels, 32), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(*_conv_bn_relu(32, 64), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(*_conv_bn_relu(64, 64))
        self.pool = AdaptiveMeanPool2d(2)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4, hidden), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden-layer features (``hidden``-d) that feed the classifier."""
        return self.fc(self.pool(self.block3(self.block2(self.block1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Two hidden layers with ReLU for tabular rows (images are flattened); taps are
    ``hidden1`` and ``hidden2``."""

    taps = ("hidden1", "hidden2")

    def __init__(self, num_classes: int, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.hidden1 = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True))
        self.hidden2 = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(hidden // 2, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden2(self.hidden1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
