"""Our UNet encoder: the contracting half of a UNet (Ronneberger et al. 2015), as a feature backbone.

Each level is two 3x3 conv-BN-ReLU layers; levels are separated by 2x2 max pooling. The encoder returns
the map of every level (the skips a decoder would use), strides 1, 2, 4, 8... px.
"""

from __future__ import annotations

import torch
from torch import nn


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU (one UNet level)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNetEncoder(nn.Module):
    """UNet contracting path.

    Args:
        in_channels: input channels (3 for RGB).
        base_width: channels of the first level; level i has ``base_width * 2**i``.
        depth: number of levels (the last one has stride ``2**(depth-1)``).

    ``forward(x)`` returns the ``depth`` level maps, finest first; ``channels`` and ``reductions`` list
    their widths and strides.
    """

    def __init__(self, in_channels: int = 3, base_width: int = 16, depth: int = 4):
        super().__init__()
        if depth < 1 or base_width < 1:
            raise ValueError("depth and base_width must be at least 1")
        self.channels = [base_width * 2**i for i in range(depth)]
        self.reductions = [2**i for i in range(depth)]
        widths = [in_channels] + self.channels
        self.levels = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, level in enumerate(self.levels):
            if i:
                x = self.pool(x)
            x = level(x)
            maps.append(x)
        return maps
