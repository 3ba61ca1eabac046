"""StyleGAN-style discriminator with blur-pool downsampling (MaskGIT Stage I, FSQ paper §4.1; Karras et al. 2020).

``(B, 3, H, W) -> (B,)`` logits. A 3×3 stem, then one residual down-block per channel multiplier (conv3×3 → lrelu →
blur → conv3×3 stride 2 → lrelu, skip = blur → 1×1 conv stride 2, sum scaled by 1/√2), then conv3×3 → lrelu →
flatten → dense → lrelu → dense(1). Blur is the [1, 3, 3, 1] binomial filter applied depthwise before striding
(anti-aliased "blur-pool" downsampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Blur(nn.Module):
    """Depthwise [1, 3, 3, 1]ᵀ[1, 3, 3, 1] / 64 filter, 'same'-size output (pads 2 before a stride-2 conv)."""

    def __init__(self, pad: tuple[int, int, int, int] = (1, 2, 1, 2)) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 64.0)[None, None], persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, self.pad)  # zero padding, as upfirdn2d in StyleGAN2
        return F.conv2d(x, self.kernel.to(x.dtype).expand(channels, 1, 4, 4), groups=channels)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.blur = Blur()
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self.blur(h)), 0.2)
        return (h + self.skip(self.blur(x))) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN-style residual discriminator; ``resolution`` fixes the size of the final dense layer."""

    def __init__(
        self, resolution: int, base_channels: int = 128, channel_multipliers: Sequence[int] = (2, 4, 4, 4, 4)
    ) -> None:
        super().__init__()
        if resolution % (2 ** len(channel_multipliers)):
            raise ValueError(
                f"resolution {resolution} is not divisible by 2**{len(channel_multipliers)} (discriminator depth)"
            )
        self.stem = nn.Conv2d(3, base_channels, 3, padding=1)
        blocks, channels = [], base_channels
        for mult in channel_multipliers:
            blocks.append(DownBlock(channels, base_channels * mult))
            channels = base_channels * mult
        self.blocks = nn.Sequential(*blocks)
        final = resolution // 2 ** len(channel_multipliers)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.fc1 = nn.Linear(channels * final * final, channels)
        self.fc2 = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.stem(x), 0.2)
        h = self.blocks(h)
        h = F.leaky_relu(self.conv(h), 0.2).flatten(1)
        return self.fc2(F.leaky_relu(self.fc1(h), 0.2)).squeeze(1)
