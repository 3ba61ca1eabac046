"""UViM Stage I: the guiding-code autoencoder over the *label space* of a dense task (FSQ paper §4.4, Table 2;
UViM, Kolesnikov et al. 2022, §3.1; big_vision ``models/proj/uvim/vit.py`` at commit 21bd6eb).

The task output (e.g. a depth map discretised into 256 bins) is patched ``p × p``; a ViT encoder — optionally given
the image as **context** — compresses it into ``code_len`` guiding tokens through the bottleneck (``quantizer``: FSQ
``[7, 5, 5, 5, 5]``, or UViM's VQ with an EMA dictionary and codebook splitting, ``quantizers/vq.py``); a ViT decoder
with the same image context reconstructs per-pixel logits. The FSQ paper swaps only the bottleneck (§4.4): here the
encoder head projects to ``quantizer.dim`` (5 for FSQ, 768 for UViM's VQ) and the decoder stem reads from it.

Pieces, in the official order (``encode`` / ``decode``):

- label embedding: per class map ``k`` with ``C_k`` classes, the official ``DenseGeneral`` over a one-hot
  ``(C_k, p²)`` patch; a one-hot input makes that a *sum of p² table rows* (row ``class · p² + pixel``), computed
  with ``EmbeddingBag(mode="sum")`` — exact, and without materialising a ``(B, N, C_k·p²)`` one-hot;
- context: a stride-p convolution of the image added to the tokens (``with_encoder_ctx`` / ``with_decoder_ctx``);
- ``bottleneck_resize``: the ``g × g`` token grid is resized to ``l × l = code_len`` with ``jax.image.resize``
  ``linear`` — antialiased (triangle filter) when shrinking, which is ``F.interpolate(bilinear, antialias=True)``;
  otherwise a learned ``(g², code_len)`` mixing matrix;
- ``code_dropout`` (``random``, training only): each sample keeps a uniformly random fraction of its codes, the others
  are zeroed — ``importance = linspace(1, 0, L+2)[1:-1] > U(0, 1)`` then a random permutation per sample;
- heads: zero-initialised dense layers to per-pixel logits (``head_zeroinit``).

A task may also give *continuous* maps (``label_channels``, e.g. colorization's ``color: 3``, official
``inputs = {"color": (3, p²)}``): the same ``DenseGeneral`` over a real-valued ``(C, p²)`` patch, which is a stride-p
convolution; its head predicts ``C`` values per pixel.

Shapes: labels ``{k: (B, H, W) int64}`` (continuous: ``(B, C, H, W)`` float), context ``(B, 3, H, W)`` in
[−1, 1]; codes ``(B, L, d)``, indices ``(B, L)``; logits ``{k: (B, C_k, H, W)}``; ``H = W = input_size``,
``g = input_size / patch_size``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fsq_repro.errors import ConfigError
from fsq_repro.nets.init import lecun_normal_
from fsq_repro.nets.vit import PatchEmbed, PositionEmbedding, ViTEncoder, dense
from fsq_repro.quantizers import Quantizer, QuantizerOutput, build_quantizer


class PatchLabelEmbedding(nn.Module):
    """``(B, H, W)`` class map → ``(B, N, D)``: ``Σ_pixels W[class·p² + pixel]`` + bias (one-hot ``DenseGeneral``).
    A class outside ``[0, C)`` (e.g. a 101st instance) has an all-zero one-hot (``jax.nn.one_hot``): it adds nothing."""

    def __init__(self, num_classes: int, patch_size: int, width: int) -> None:
        super().__init__()
        self.num_classes, self.patch_size = num_classes, patch_size
        self.table = nn.EmbeddingBag(num_classes * patch_size**2, width, mode="sum")
        lecun_normal_(self.table.weight.T)  # flax kernel (C·p², D): fan_in = C·p²
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        b, h, w = labels.shape
        p = self.patch_size
        patches = labels.view(b, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(b, -1, p * p)
        valid = (patches >= 0) & (patches < self.num_classes)  # out of range: an all-zero one-hot adds nothing
        index = patches.clamp(0, self.num_classes - 1) * p * p + torch.arange(p * p, device=labels.device)
        weights = valid.reshape(-1, p * p).to(self.table.weight.dtype)  # always: `if valid.all()` is a host sync
        out = self.table(index.reshape(-1, p * p), per_sample_weights=weights)
        return out.view(b, -1, self.bias.shape[0]) + self.bias


def tokens_to_pixels(logits: torch.Tensor, num_classes: int, grid: int, patch_size: int) -> torch.Tensor:
    """Head output ``(B, g², C·p²)`` (flax ``(C, p²)`` feature order) → ``(B, C, g·p, g·p)``."""
    b, p = logits.shape[0], patch_size
    x = logits.view(b, grid, grid, num_classes, p, p)  # b, hn, wn, c, hp, wp
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, num_classes, grid * p, grid * p)


class GuidingCodeAutoencoder(nn.Module):
    """UViM's Stage I model (module docstring). ``forward(labels, image)`` → ``(logits, QuantizerOutput)``."""

    def __init__(
        self,
        quantizer: Quantizer,
        label_classes: dict[str, int],
        input_size: int = 512,  # official vqvae_nyu_depth.py
        patch_size: int = 16,
        code_len: int = 256,
        width: int = 768,
        enc_depth: int = 6,
        dec_depth: int = 12,
        mlp_dim: int = 3072,
        num_heads: int = 12,
        posemb: str = "learn",
        dropout: float = 0.0,
        with_encoder_ctx: bool = True,
        with_decoder_ctx: bool = True,
        code_dropout: str = "random",
        bottleneck_resize: bool = True,
        label_channels: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ConfigError(f"uvim input_size={input_size} is not a multiple of patch_size={patch_size}")
        if code_dropout not in ("none", "random", "prefix"):
            raise ConfigError(f"code_dropout must be none, random or prefix, got {code_dropout!r}")
        self.grid = input_size // patch_size
        self.side = math.isqrt(code_len)
        if bottleneck_resize and self.side**2 != code_len:
            raise ConfigError(f"bottleneck_resize needs a square code_len, got {code_len}")
        self.quantizer = quantizer
        self.label_classes = {str(k): int(v) for k, v in label_classes.items()}
        self.label_channels = {str(k): int(v) for k, v in (label_channels or {}).items()}
        self.out_channels = {**self.label_classes, **self.label_channels}  # per map: classes or channels
        if len(self.out_channels) != len(self.label_classes) + len(self.label_channels) or not self.out_channels:
            raise ConfigError(f"uvim label maps must be named once: classes {self.label_classes}, "
                              f"channels {self.label_channels}")  # fmt: skip
        self.arch = dict(
            label_classes=self.label_classes, label_channels=self.label_channels, input_size=input_size,
            patch_size=patch_size, code_len=code_len,
            width=width, enc_depth=enc_depth, dec_depth=dec_depth, mlp_dim=mlp_dim, num_heads=num_heads,
            posemb=posemb, dropout=dropout, with_encoder_ctx=with_encoder_ctx, with_decoder_ctx=with_decoder_ctx,
            code_dropout=code_dropout, bottleneck_resize=bottleneck_resize,
        )  # fmt: skip
        self.input_size, self.patch_size, self.code_len = input_size, patch_size, code_len
        self.code_dropout, self.bottleneck_resize = code_dropout, bottleneck_resize
        grid = (self.grid, self.grid)

        self.embeddings = nn.ModuleDict(
            {k: PatchLabelEmbedding(c, patch_size, width) for k, c in self.label_classes.items()}
            # a continuous map (colour): DenseGeneral over the (C, p²) patch = a stride-p convolution
            | {k: PatchEmbed(c, width, patch_size) for k, c in self.label_channels.items()}
        )
        self.ctx_enc = PatchEmbed(3, width, patch_size) if with_encoder_ctx else None
        self.pos_enc = PositionEmbedding(grid, width, posemb)
        self.encoder = ViTEncoder(enc_depth, width, num_heads, mlp_dim, dropout)
        self.encoder_head = dense(width, quantizer.dim)
        if not bottleneck_resize:
            self.downsample = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.grid**2, code_len)))
            self.upsample = nn.Parameter(nn.init.xavier_uniform_(torch.empty(code_len, self.grid**2)))
        self.decoder_stem = dense(quantizer.dim, width)
        self.ctx_dec = PatchEmbed(3, width, patch_size) if with_decoder_ctx else None
        self.pos_dec = PositionEmbedding(grid, width, posemb)
        self.decoder = ViTEncoder(dec_depth, width, num_heads, mlp_dim, dropout)
        self.heads = nn.ModuleDict(
            {k: dense(width, c * patch_size**2, init="zeros") for k, c in self.out_channels.items()}
        )

    # --- (de)serialisation ------------------------------------------------------------------------------
    def config(self) -> dict:
        return {**self.arch, "quantizer": self.quantizer.config()}

    @classmethod
    def from_config(cls, config: dict) -> GuidingCodeAutoencoder:
        config = dict(config)
        return cls(quantizer=build_quantizer(config.pop("quantizer")), **config)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    # --- bottleneck geometry -----------------------------------------------------------------------------
    def _shrink(self, x: torch.Tensor) -> torch.Tensor:  # (B, g², D) -> (B, L, D)
        if not self.bottleneck_resize:
            return torch.einsum("btc,tn->bnc", x, self.downsample.to(x.dtype))
        b, _, d = x.shape
        grid = x.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        if self.side != self.grid:
            # antialiased (triangle filter widened by the scale) in float32: no bf16 kernel on CPU
            low = grid.dtype in (torch.bfloat16, torch.float16)
            grid = grid.float() if low else grid
            size = (self.side, self.side)
            grid = F.interpolate(grid, size=size, mode="bilinear", antialias=True, align_corners=False).to(x.dtype)
        return grid.flatten(2).transpose(1, 2)

    def _grow(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, g², D)
        if not self.bottleneck_resize:
            return torch.einsum("bnc,nt->btc", x, self.upsample.to(x.dtype))
        b, _, d = x.shape
        grid = x.transpose(1, 2).reshape(b, d, self.side, self.side)
        if self.side != self.grid:
            # growing: antialiasing changes nothing (the triangle filter keeps its width)
            grid = F.interpolate(grid, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def _check(self, labels: dict[str, torch.Tensor], image: torch.Tensor | None) -> None:
        for k, v in labels.items():
            if tuple(v.shape[-2:]) != (self.input_size, self.input_size):
                raise ValueError(f"label map {k!r} is {tuple(v.shape)}; the model expects {self.input_size} px")
        if (self.ctx_enc is not None or self.ctx_dec is not None) and image is None:
            raise ValueError("this model uses the image as context: pass image=(B, 3, H, W)")

    # --- the two halves ---------------------------------------------------------------------------------
    def encode(self, labels: dict[str, torch.Tensor], image: torch.Tensor | None = None) -> QuantizerOutput:
        """``labels {k: (B, H, W)}`` (+ context) → the quantizer's output: codes ``(B, L, d)``, indices ``(B, L)``."""
        self._check(labels, image)
        x = sum(self.embeddings[k](labels[k]) for k in self.out_channels)
        if self.ctx_enc is not None:
            x = x + self.ctx_enc(image)
        x = self._shrink(self.encoder(self.pos_enc(x)))
        return self.quantizer(self.encoder_head(x))

    def drop_codes(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """UViM ``code_dropout``: keep a U(0, 1)-distributed fraction of each sample's codes (training only)."""
        b, n = codes.shape[:2]
        importance = torch.linspace(1.0, 0.0, n + 2, device=codes.device)[1:-1]
        threshold = torch.rand(b, 1, device=codes.device, generator=generator)
        keep = importance[None] > threshold  # (B, L): a prefix of the codes
        if self.code_dropout == "random":  # the same number kept, at random positions
            order = torch.rand(b, n, device=codes.device, generator=generator).argsort(dim=1)
            keep = torch.gather(keep, 1, order)
        return codes * keep[..., None].to(codes.dtype)

    def decode(self, codes: torch.Tensor, image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``codes (B, L, d)`` (+ context) → ``{k: (B, C_k, H, W)}`` logits; code dropout while training."""
        if self.training and self.code_dropout != "none":
            codes = self.drop_codes(codes)
        x = self._grow(self.decoder_stem(codes))
        if self.ctx_dec is not None:
            x = x + self.ctx_dec(image)
        x = self.decoder(self.pos_dec(x))
        return {k: tokens_to_pixels(head(x), self.out_channels[k], self.grid, self.patch_size)
                for k, head in self.heads.items()}  # fmt: skip

    def decode_indices(self, indices: torch.Tensor, image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``indices (B, L)`` (e.g. from the Stage II language model) → logits."""
        return self.decode(self.quantizer.indexes_to_codes(indices).to(self.decoder_stem.weight.dtype), image)

    def forward(self, labels: dict[str, torch.Tensor], image: torch.Tensor | None = None):
        q = self.encode(labels, image)
        return self.decode(q.codes, image), q
