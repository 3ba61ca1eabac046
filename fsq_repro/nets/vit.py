"""ViT building blocks shared by UViM's two stages (FSQ paper §4.4; UViM, Kolesnikov et al. 2022; big_vision
``models/vit.py`` at commit 21bd6eb, which ``models/proj/uvim/{vit,vtt}.py`` build on).

- ``Attention``: multi-head attention with separate q/k/v/out projections (flax ``MultiHeadDotProductAttention``),
  self- or cross-attention, optional causal mask, optional key/value cache for autoregressive decoding.
- ``MlpBlock``: dense → GELU (tanh approximation, flax ``nn.gelu`` default) → dense.
- ``EncoderBlock`` / ``ViTEncoder``: pre-LN blocks (``x + MHSA(LN(x))``, ``x + MLP(LN(x))``) and a final LayerNorm
  (``encoder_norm``); LayerNorm eps 1e-6 (flax default).
- ``posemb``: learned (N(0, 1/√width), big_vision ``get_posemb("learn")``) or fixed 2-D sin-cos.

Initialisation follows big_vision: xavier-uniform kernels for the ViT's attention and MLP (``models/vit.py``
passes ``kernel_init=xavier_uniform``; flax initialises a ``DenseGeneral`` kernel on its flattened ``(in, out)``
shape, so q, k, v and out are each a ``(D, D)`` xavier matrix), MLP biases N(0, 1e-6), attention biases zero;
convolutions and plain dense layers use flax's default LeCun-normal kernels and zero biases (``lecun_normal_``).
The UViM language model's decoder attention (``models/proj/uvim/vtt.py`` ``SelfAttn`` / ``CrossAttn``) passes no
``kernel_init``, so flax's default applies there: ``Attention(init="lecun")`` — the same variance 1/D as xavier on
a ``(D, D)`` kernel, but a truncated normal instead of a uniform.

Shapes: tokens are ``(B, N, D)`` throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fsq_repro.nets.init import lecun_normal_


def dense(in_dim: int, out_dim: int, bias: bool = True, init: str = "lecun") -> nn.Linear:
    """A ``Linear`` initialised like flax: ``lecun`` (nn.Dense default), ``xavier`` or ``zeros``; bias zero."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    if init == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    elif init == "zeros":
        nn.init.zeros_(layer.weight)
    else:
        lecun_normal_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> torch.Tensor:
    """big_vision ``posemb_sincos_2d``: ``(1, h·w, width)`` = [sin x, cos x, sin y, cos y] features."""
    if width % 4:
        raise ValueError(f"sincos2d position embeddings need width % 4 == 0, got {width}")
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = torch.arange(width // 4, dtype=torch.float64) / max(1, width // 4 - 1)
    omega = 1.0 / temperature**omega
    x, y = x.flatten()[:, None] * omega[None], y.flatten()[:, None] * omega[None]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)[None].float()


class PositionEmbedding(nn.Module):
    """``forward(x (B, N, D)) -> x + pos``; ``kind`` ``learn`` (a parameter) or ``sincos2d`` (a buffer)."""

    def __init__(self, grid: tuple[int, int], width: int, kind: str = "learn") -> None:
        super().__init__()
        n = grid[0] * grid[1]
        if kind == "learn":
            self.pos = nn.Parameter(torch.randn(1, n, width) / math.sqrt(width))
        elif kind == "sincos2d":
            self.register_buffer("pos", posemb_sincos_2d(grid[0], grid[1], width), persistent=False)
        else:
            raise ValueError(f"posemb must be 'learn' or 'sincos2d', got {kind!r}")

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.pos[:, offset : offset + x.shape[1]].to(x.dtype)


class Attention(nn.Module):
    """Multi-head dot-product attention (``F.scaled_dot_product_attention``).

    ``forward(x (B, Lq, D), context (B, Lk, D) | None, causal, cache)``: ``context=None`` is self-attention.
    ``cache`` (a dict, self-attention only) holds the keys/values of earlier positions: they are read, the new
    ones appended, and the query attends to all of them (positions are processed in order, so no mask is needed
    for one new position; ``causal`` masks within the new block).
    """

    def __init__(self, dim: int, num_heads: int, bias: bool = True, dropout: float = 0.0, init: str = "xavier") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.dropout = num_heads, dropout
        self.q, self.k, self.v, self.out = (dense(dim, dim, bias, init=init) for _ in range(4))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False, cache: dict | None = None
    ) -> torch.Tensor:
        source = x if context is None else context
        q, k, v = self._heads(self.q(x)), self._heads(self.k(source)), self._heads(self.v(source))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        mask = None
        if causal and x.shape[1] > 1:
            lq, lk = q.shape[2], k.shape[2]  # new queries sit at the end of the key sequence
            mask = torch.ones(lq, lk, dtype=torch.bool, device=x.device).tril(diagonal=lk - lq)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class MlpBlock(nn.Module):
    """big_vision ``MlpBlock``: xavier kernels, biases N(0, 1e-6), GELU (tanh)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2 = dense(dim, mlp_dim, init="xavier"), dense(mlp_dim, dim, init="xavier")
        nn.init.normal_(self.fc1.bias, std=1e-6)
        nn.init.normal_(self.fc2.bias, std=1e-6)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x), approximate="tanh")))


class EncoderBlock(nn.Module):
    """Pre-LN ViT block (big_vision ``Encoder1DBlock``)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, bias=True, dropout=0.0)
        self.mlp = MlpBlock(dim, mlp_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class ViTEncoder(nn.Module):
    """``depth`` pre-LN blocks + ``encoder_norm``: ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, depth: int, width: int, num_heads: int, mlp_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(width, num_heads, mlp_dim or 4 * width, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class PatchEmbed(nn.Module):
    """``(B, C, H, W) -> (B, (H/p)·(W/p), D)``: a stride-p convolution (flax ``nn.Conv``, LeCun-normal kernel)."""

    def __init__(self, in_channels: int, width: int, patch_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        lecun_normal_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image).flatten(2).transpose(1, 2)
