"""A tiny Conv2d -> BatchNorm2d -> ReLU model for verify's tests and examples.

Small enough to run in milliseconds, yet it has the BatchNorm whose epsilon
(PyTorch 1e-5, Keras 1e-3) a port gets wrong without anyone noticing.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallConvBN(nn.Module):
    """Conv2d(3 -> 8, 3x3, padding 1) -> BatchNorm2d(8) -> ReLU on 8x8 images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))
