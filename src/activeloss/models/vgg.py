"""VGG16 with batch norm for 32x32 images (DNAL's main backbone)."""
from __future__ import annotations

import torch
from torch import nn

CONFIG_D = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """Configuration D with BN after every conv; taps are the five blocks before each max-pool.

    The five 2x2 max-pools bring a 32x32 image to 1x1, so the classifier is Linear(512, C)
    as in the papers; an adaptive average pool makes larger inputs work too.
    """

    taps = ("block1", "block2", "block3", "block4", "block5")

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        c_in = in_channels
        for i, widths in enumerate(CONFIG_D, start=1):
            layers: list[nn.Module] = []
            for w in widths:
                layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c_in = w
            self.add_module(f"block{i}", nn.Sequential(*layers))
        self.maxpool = nn.MaxPool2d(2, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened 512-d features after the last pool."""
        for i in range(1, 6):
            x = self.maxpool(getattr(self, f"block{i}")(x))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
