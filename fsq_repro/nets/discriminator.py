"""StyleGAN discriminator of MaskGIT's VQGAN (official ``maskgit/nets/discriminator.py``; FSQ paper §4.1).

``(B, 3, H, W) -> (B,)`` logits, ``H = W = resolution`` a power of two ≥ 4. Structure, as in the official code:

- width of a feature map of spatial size ``s``: ``filters(s) = min(max_channels, 512 if s ≤ 32 else 16384·cm/s)``
  with ``cm = channel_multiplier``. Defaults (cm 1, max 512) give the official map {4..32: 512, 64: 256, 128: 128,
  256: 64, 512: 32, 1024: 16}; ``max_channels`` < 512 shrinks it for the CPU configs;
- stem: conv3×3 (bias) 3 → ``filters(resolution)`` → leaky ReLU 0.2;
- one residual block per halving down to 4×4 (6 blocks at 256 px, 5 at 128 px), ``in → out = filters(s/2)``:
  main = conv3×3 in → in (bias) → lrelu → BlurPool → conv3×3 in → out (bias, stride 1) → lrelu;
  residual = BlurPool(input) → conv1×1 in → out (no bias); output = (main + residual)/√2;
- conv3×3 (bias) → lrelu at 4×4, flatten, dense(16·C → C) → lrelu, dense(C → 1), ``C = filters(4)``;
- BlurPool: depthwise [1,3,3,1]ᵀ[1,3,3,1]/64 filter with stride 2 and TensorFlow 'SAME' zero padding (1 before,
  1 after for even sizes), i.e. blur and subsample in one op; the convolution after it runs at stride 1
  (unlike StyleGAN2, which blurs at stride 1 and then convolves at stride 2);
- init: conv and dense kernels xavier-uniform, biases zero (flax defaults of the official code).

Parameters: 23 998 017 at 256 px, 23 880 833 at 128 px (``tests/nets/test_discriminator.py`` derives both layer
by layer). The one deliberate difference: the flatten before the first dense is channel-major (NCHW) here and
channel-last (NHWC) in the official code, a fixed permutation of that dense layer's inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/XLA 'SAME' padding ``(before, after)`` of one spatial axis: output ``ceil(size / stride)``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class BlurPool(nn.Module):
    """Depthwise [1, 3, 3, 1]ᵀ[1, 3, 3, 1]/64 blur with stride 2 and 'SAME' zero padding: ``(B, C, H, W) -> (B, C,
    ⌈H/2⌉, ⌈W/2⌉)`` (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"; official ``BlurPool2D``)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 64.0)[None, None], persistent=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, height, width = x.shape[1:]
        top, bottom = tf_same_padding(height, 4, self.stride)
        left, right = tf_same_padding(width, 4, self.stride)
        x = F.pad(x, (left, right, top, bottom))
        kernel = self.kernel.to(x.dtype).expand(channels, 1, 4, 4)
        return F.conv2d(x, kernel, stride=self.stride, groups=channels)


class DownBlock(nn.Module):
    """The official ``ResBlock`` of the discriminator: halves the spatial size, ``in_channels -> out_channels``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.blur = BlurPool()
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self.blur(h)), 0.2)
        return (h + self.skip(self.blur(x))) / math.sqrt(2)


class Discriminator(nn.Module):
    """MaskGIT's StyleGAN discriminator; ``resolution`` (a power of two ≥ 4) fixes the depth and the first dense."""

    def __init__(self, resolution: int, channel_multiplier: float = 1.0, max_channels: int = 512) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"discriminator resolution {resolution} is not a power of two >= 4 (it halves to 4x4)")
        self.resolution = int(resolution)
        self.channel_multiplier, self.max_channels = float(channel_multiplier), int(max_channels)
        self.stem = nn.Conv2d(3, self.filters(resolution), 3, padding=1)
        blocks, size = [], resolution
        while size > 4:
            blocks.append(DownBlock(self.filters(size), self.filters(size // 2)))
            size //= 2
        self.blocks = nn.Sequential(*blocks)
        channels = self.filters(4)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.fc1 = nn.Linear(channels * 4 * 4, channels)
        self.fc2 = nn.Linear(channels, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def filters(self, size: int) -> int:
        """Channels of a ``size × size`` feature map (the official ``filters`` dict for the default arguments)."""
        official = 512 if size <= 32 else int(16384 * self.channel_multiplier) // size
        return min(self.max_channels, official)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.stem(x), 0.2)
        h = self.blocks(h)
        h = F.leaky_relu(self.conv(h), 0.2).flatten(1)
        return self.fc2(F.leaky_relu(self.fc1(h), 0.2)).squeeze(1)
