"""MaskGIT's convolutional VQGAN encoder and decoder (FSQ paper §4.1 / §4.3 use MaskGIT's Stage I unchanged).

Architecture (MaskGIT ``vqgan_tokenizer.py``; numbers in ``configs/model/stage1/maskgit_vqgan.yaml``): base filters
128, channel multipliers ``[1, 1, 2, 2, 4]``, 2 residual blocks per level, GroupNorm(32), swish, no attention, no conv
biases, average-pool downsampling in the encoder, nearest-neighbour upsampling + 3×3 conv in the decoder. The
downsampling factor is ``2 ** (len(channel_multipliers) − 1)`` (16 for ImageNet: 256 px → 16×16 tokens).

The encoder ends in a 1×1 conv to the quantizer's dimension (``d = len(levels)`` for FSQ, FSQ paper §3.3 "we project
to d channels"; the embedding dim for VQ) and the decoder starts with a 1×1 conv back.

Shapes: ``Encoder(x: (B, 3, H, W)) -> (B, d, H/f, W/f)``; ``Decoder(z: (B, d, h, w)) -> (B, 3, h·f, w·f)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm(32) as MaskGIT; fewer groups when a tiny config has fewer channels."""
    groups = min(groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """GN → swish → conv3×3 → GN → swish → conv3×3, plus a 1×1-conv shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Encoder(nn.Module):
    """``(B, 3, H, W) -> (B, out_dim, H/f, W/f)`` with ``f = 2 ** (len(channel_multipliers) − 1)``."""

    def __init__(
        self,
        out_dim: int,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        in_channels: int = 3,
        groups: int = 32,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        channels = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(channels, width, groups))
                channels = width
            if level < len(widths) - 1:
                layers.append(nn.AvgPool2d(2))
        layers += [ResBlock(channels, channels, groups) for _ in range(num_res_blocks)]
        layers += [group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``(B, in_dim, h, w) -> (B, 3, h·f, w·f)``, the mirror of ``Encoder``."""

    def __init__(
        self,
        in_dim: int,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        out_channels: int = 3,
        groups: int = 32,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        channels = widths[-1]
        layers: list[nn.Module] = [
            nn.Conv2d(in_dim, channels, 1),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        ]
        layers += [ResBlock(channels, channels, groups) for _ in range(num_res_blocks)]
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(channels, widths[level], groups))
                channels = widths[level]
            if level > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)]
        layers += [group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def downsampling_factor(channel_multipliers: Sequence[int]) -> int:
    return 2 ** (len(channel_multipliers) - 1)
