"""MaskGIT's bidirectional transformer for Stage II (FSQ paper §4.3; MaskGIT §3, public code).

Vocabulary (one embedding table, as in MaskGIT): ``[0, C)`` the tokenizer's codes, ``[C, C + K)`` the K class tokens,
``C + K`` the MASK token, which also serves as the null class for classifier-free guidance. The class token is
prepended to the ``N = h·w`` image tokens.

Architecture: token + learned position embeddings → LayerNorm → dropout → ``depth`` post-LN blocks
(``x = LN(x + Drop(MHSA(x)))``, ``x = LN(x + Drop(MLP(x)))``, GELU MLP,
``nets.attention``: SDPA, or its math path with a cheaper dropout mask on the CPU) →
MaskGIT's MLM head (dense → GELU → LN) → logits tied to the token embedding + a bias. As in the official
``maskgit_transformer.py``: GELU is the tanh approximation (``jax.nn.gelu`` default), every dense and embedding
kernel (position embeddings too) is drawn from a normal with std 0.02 truncated at ±2σ (``truncated_normal``),
biases start at zero, LayerNorm eps 1e-12.

Only the code logits ``[0, C)`` are returned: every target and every sample is a code. The official sampler slices
the logits the same way (``inference.py``: ``logits[..., :codebook_size]``); its training loop is not public, so
whether its label smoothing spread over the codes or over the whole vocabulary is unknown — here, over the codes.

Shapes: ``forward(tokens: (B, N) int64 with MASK = mask_token_id, class_ids: (B,) int64 vocabulary ids)``
→ logits ``(B, N, C)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fsq_repro.errors import ConfigError
from fsq_repro.nets.attention import attention
from fsq_repro.nets.dropout import Dropout
from fsq_repro.nets.init import truncated_normal_


class ClassEmbedder(nn.Module):
    """Labels → class-token ids, with label dropout for CFG training (p = 0.1, FSQ paper §4.3).

    ``forward(labels: (B,))``: label ``y ∈ [0, K)`` → ``C + y``; label ``-1`` (or a dropped label while training)
    → the null id (= MASK). Dropout draws from ``generator`` (or the global RNG)."""

    def __init__(self, codebook_size: int, num_classes: int, label_drop_prob: float = 0.1) -> None:
        super().__init__()
        if not 0 <= label_drop_prob < 1:
            raise ConfigError(f"label_drop_prob={label_drop_prob} must be in [0, 1)")
        self.codebook_size, self.num_classes, self.label_drop_prob = codebook_size, num_classes, label_drop_prob
        self.null_id = codebook_size + num_classes

    def forward(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        labels = labels.long()
        # checked here outside training; while training MaskGITModule checks the batch on the host before it goes
        # to the device (here it would be a device->host sync every step)
        if not self.training and labels.numel() and (labels.max() >= self.num_classes or labels.min() < -1):
            raise ValueError(f"labels must be in [-1, {self.num_classes}), got [{labels.min()}, {labels.max()}]")
        null = labels < 0
        if self.training and self.label_drop_prob > 0:
            null = null | (torch.rand(labels.shape, generator=generator, device=labels.device) < self.label_drop_prob)
        return torch.where(null, torch.full_like(labels, self.null_id), labels + self.codebook_size)


class Block(nn.Module):
    """Post-LN transformer block (BERT / MaskGIT)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_dim, dim))
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = attention(q, k, v, self.dropout, self.training)
        x = self.norm1(x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, n, d))))
        return self.norm2(x + self.drop(self.mlp(x)))


class MaskGITTransformer(nn.Module):
    def __init__(
        self,
        codebook_size: int,
        num_classes: int,
        num_tokens: int,
        hidden_dim: int = 768,
        depth: int = 24,
        num_heads: int = 16,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        label_drop_prob: float = 0.1,
    ) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ConfigError(f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}")
        self.codebook_size, self.num_classes, self.num_tokens = int(codebook_size), int(num_classes), int(num_tokens)
        self.mask_token_id = self.codebook_size + self.num_classes
        self.vocab_size = self.mask_token_id + 1
        self.arch = dict(
            hidden_dim=hidden_dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim, dropout=dropout,
            layer_norm_eps=layer_norm_eps, label_drop_prob=label_drop_prob,
        )  # fmt: skip
        self.class_embedder = ClassEmbedder(self.codebook_size, self.num_classes, label_drop_prob)
        self.tok_emb = nn.Embedding(self.vocab_size, hidden_dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, self.num_tokens + 1, hidden_dim))
        self.emb_norm = nn.LayerNorm(hidden_dim, eps=layer_norm_eps)
        self.emb_drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(hidden_dim, num_heads, mlp_dim, dropout, layer_norm_eps) for _ in range(depth)
        )
        self.head = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(approximate="tanh"), nn.LayerNorm(hidden_dim, eps=layer_norm_eps)
        )
        self.head_bias = nn.Parameter(torch.zeros(self.vocab_size))
        self.apply(self._init)
        truncated_normal_(self.pos_emb)

    @staticmethod
    def _init(m: nn.Module) -> None:
        """MaskGIT: truncated normal (std 0.02, cut at ±2σ) for dense and embedding kernels, zero biases."""
        if isinstance(m, (nn.Linear, nn.Embedding)):
            truncated_normal_(m.weight)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def config(self) -> dict:
        return dict(
            codebook_size=self.codebook_size, num_classes=self.num_classes, num_tokens=self.num_tokens, **self.arch
        )

    def forward(
        self, tokens: torch.Tensor, class_ids: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``tokens (B, N)`` (codes or MASK), ``class_ids (B,)`` vocabulary ids → code logits ``(B, N, C)``;
        ``positions (n,)`` (indices or a bool mask over N) → only those positions' logits ``(B, n, C)`` (the output
        layer is most of the cost with a large codebook: compression cost needs 1/12 of the positions per pass)."""
        x = torch.cat([class_ids[:, None], tokens], dim=1)
        h = self.emb_drop(self.emb_norm(self.tok_emb(x) + self.pos_emb[:, : x.shape[1]]))
        for block in self.blocks:
            h = block(h)
        h = h[:, 1:] if positions is None else h[:, 1:][:, positions]
        h = self.head(h)
        weight, bias = self.tok_emb.weight[: self.codebook_size], self.head_bias[: self.codebook_size]
        return F.linear(h, weight.to(h.dtype), bias.to(h.dtype))

    def flops_per_token(self) -> int:
        """Forward multiply-adds × 2 per sequence position (dense layers + attention + tied head), for benchmarks."""
        d, m, n = self.arch["hidden_dim"], self.arch["mlp_dim"], self.num_tokens + 1
        per_block = 2 * (3 * d * d + d * d + 2 * d * m) + 2 * 2 * n * d  # projections + MLP + QK^T and AV
        head = 2 * (d * d + d * self.codebook_size)
        return self.arch["depth"] * per_block + head


def check_vocabulary(model_codebook_size: int, tokenizer_codebook_size: int, model_classes: int, data_classes: int):
    """Startup check (docs/fault-tolerance.md, item 5): one-line errors for a vocabulary or class-count mismatch."""
    if model_codebook_size != tokenizer_codebook_size:
        raise ConfigError(
            f"Stage II vocabulary has {model_codebook_size} codes but the tokenizer has {tokenizer_codebook_size}: "
            "use the tokenizer the token cache was built with"
        )
    if model_classes != data_classes:
        raise ConfigError(f"Stage II has {model_classes} classes but the data has {data_classes} (data.num_classes)")
