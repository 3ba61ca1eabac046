"""MaskGIT's convolutional VQGAN encoder and decoder (FSQ paper §4.1 / §4.3 use MaskGIT's Stage I unchanged).

Layer for layer the official ``maskgit/nets/vqgan_tokenizer.py`` (``Encoder``, ``Decoder``, ``ResBlock``) with the
MaskGIT VQGAN config (numbers in ``configs/model/stage1/maskgit_vqgan.yaml``): base filters 128, channel multipliers
``[1, 1, 2, 2, 4]``, 2 residual blocks per level, GroupNorm(32, eps 1e-6), swish, no attention.

- ResBlock: GN → swish → conv3×3 (no bias) → GN → swish → conv3×3 (no bias), plus the input (see below).
- Encoder: conv3×3 3 → 128 (no bias); per level ``num_res_blocks`` ResBlocks to ``128·m``, then 2×2 average pooling
  (not after the last level; on the even sizes the Tokenizer allows it is the official TF-style 'SAME' pool);
  ``num_res_blocks`` more ResBlocks; GN → swish → conv1×1 (bias) to the quantizer's dimension (``d = len(levels)``
  for FSQ, FSQ paper §3.3 "we project to d channels"; the embedding dim for VQ).
- Decoder: conv3×3 (bias) d → ``128·m[-1]``; ``num_res_blocks`` ResBlocks; per level (reversed) ``num_res_blocks``
  ResBlocks to ``128·m``, then (not after the last) nearest 2× upsampling + conv3×3 (bias); GN → swish → conv3×3
  (bias) to RGB.
- Init as flax's defaults: conv kernels LeCun normal (variance 1/fan_in, truncated at ±2σ), biases zero, GroupNorm
  scale 1 and bias 0 — except the decoder's entry bias (deliberate difference, below).

The decoder's entry conv bias starts as PyTorch's default ``U(±1/√fan_in)``, not zero. FSQ maps ``z ≈ 0`` to the
zero code (for every L), so an image whose latent is all zeros is common at init (with ``L = 2`` nearly every
code is 0). With zero biases everywhere its decoder activations are then exactly 0, every GroupNorm sees zero
variance and multiplies the gradient by ``1/√eps = 1000`` on the way back: ≈ 1e36 after the decoder's GroupNorms,
NaN in float32 (seen in the levels ablation's ``[2]*10``; ``tests/nets/test_vqgan.py``). A non-zero entry bias makes
each group's channels differ, so no group has zero variance.

The official ResBlock's shortcut when the width changes: its 1×1 conv (no bias, ``out → out``) is applied to the
block's *output* ``h``, not to its input, so such a block returns ``h + W·h`` and its input reaches the output only
through the main branch. This is the public MaskGIT code (whose Stage I the FSQ paper reuses), and
``shortcut_from="output"`` (the default) reproduces it: encoder 23 645 828 and decoder 29 317 123 parameters for d = 4
at the paper config (``tests/nets/test_vqgan.py`` derives both layer by layer). ``shortcut_from="input"`` is the
usual VQGAN/ResNet projection ``W·x + h`` (``in → out``; 23 481 988 / 29 399 043 parameters); the Tokenizer always
uses the default.

The downsampling factor is ``2 ** (len(channel_multipliers) − 1)`` (16 for ImageNet: 256 px → 16×16 tokens).
Shapes: ``Encoder(x: (B, 3, H, W)) -> (B, d, H/f, W/f)``; ``Decoder(z: (B, d, h, w)) -> (B, 3, h·f, w·f)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from fsq_repro.nets.init import lecun_normal_


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm(32) as MaskGIT; fewer groups when a tiny config has fewer channels."""
    groups = min(groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


def flax_default_init(module: nn.Module) -> None:
    """Every conv in ``module``: LeCun-normal kernel truncated at ±2σ (variance exactly 1/fan_in), zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            lecun_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResBlock(nn.Module):
    """GN → swish → conv3×3 → GN → swish → conv3×3, plus the input or (width change) a 1×1-conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32, shortcut_from: str = "output") -> None:
        super().__init__()
        if shortcut_from not in ("output", "input"):
            raise ValueError(f"shortcut_from must be 'output' (official MaskGIT) or 'input', got {shortcut_from!r}")
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut_from = shortcut_from
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            source = out_channels if shortcut_from == "output" else in_channels
            self.shortcut = nn.Conv2d(source, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if isinstance(self.shortcut, nn.Conv2d) and self.shortcut_from == "output":
            return h + self.shortcut(h)  # the official quirk: no path from x when the width changes
        return self.shortcut(x) + h


def run_layers(layers: nn.Sequential, x: torch.Tensor, checkpoint_activations: bool) -> torch.Tensor:
    """``layers(x)``; with ``checkpoint_activations`` (and autograd recording) each ``ResBlock`` keeps only its input
    and recomputes its inside during the backward (``torch.utils.checkpoint``, non-reentrant): the same values and
    gradients, for about one more forward of the blocks (docs/gpu.md, "Memory plan")."""
    if not (checkpoint_activations and torch.is_grad_enabled()):
        return layers(x)
    for layer in layers:
        if isinstance(layer, ResBlock):
            x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
        else:
            x = layer(x)
    return x


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
        shortcut_from: str = "output",
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        channels = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(channels, width, groups, shortcut_from))
                channels = width
            if level < len(widths) - 1:
                layers.append(nn.AvgPool2d(2))
        layers += [ResBlock(channels, channels, groups, shortcut_from) for _ in range(num_res_blocks)]
        layers += [group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_dim, 1)]
        self.net = nn.Sequential(*layers)
        self.checkpoint_activations = False  # set by the Tokenizer (training memory only; see ``run_layers``)
        flax_default_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_layers(self.net, x, self.checkpoint_activations)


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
        shortcut_from: str = "output",
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        channels = widths[-1]
        layers: list[nn.Module] = [nn.Conv2d(in_dim, channels, 3, padding=1)]
        layers += [ResBlock(channels, channels, groups, shortcut_from) for _ in range(num_res_blocks)]
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(channels, widths[level], groups, shortcut_from))
                channels = widths[level]
            if level > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)]
        layers += [group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.checkpoint_activations = False  # set by the Tokenizer (training memory only; see ``run_layers``)
        flax_default_init(self)
        entry = self.net[0]
        bound = 1 / math.sqrt(entry.in_channels * entry.kernel_size[0] * entry.kernel_size[1])
        nn.init.uniform_(entry.bias, -bound, bound)  # not zero: see the module docstring

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return run_layers(self.net, z, self.checkpoint_activations)


def downsampling_factor(channel_multipliers: Sequence[int]) -> int:
    return 2 ** (len(channel_multipliers) - 1)
