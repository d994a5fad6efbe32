"""The three models of the seed article (shared/seed), as PyTorch modules.

The article's example 3 ports `SeedCNN` by copying weights layer by layer and
forgets that PyTorch flattens the (C, H, W) feature map while Keras flattens
(H, W, C): its Dense kernel reads features in the wrong order. specs/seed_cnn.yaml
maps that kernel with `unflatten`, and tests/test_seed_parity.py shows both.
"""

from __future__ import annotations

import torch
from torch import nn


class SeedLinear(nn.Module):
    """Example 1: one Linear layer, 10 -> 5."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class SeedConv(nn.Module):
    """Example 2: one Conv2d, 3 -> 16 channels, 3x3, padding 1, on 32x32 images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SeedCNN(nn.Module):
    """Example 3: two conv/relu/pool stages, flatten, Linear(32 * 8 * 8, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = x.view(x.size(0), -1)  # NCHW flatten: channel-major feature order
        return self.fc(x)
