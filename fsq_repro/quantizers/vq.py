"""Vector quantization baseline — FSQ paper §2 / §4.1 (VQ with MaskGIT's entropy loss), VQ-VAE (van den Oord
et al. 2017) for the losses.

``z: (..., dim)`` is replaced by its nearest codebook vector (squared Euclidean distance, computed in float32
even under autocast), with a straight-through estimator. The auxiliary loss is

    loss = ‖e − sg(z)‖²  +  β ‖z − sg(e)‖²  +  w_H · (H_sample − H_batch)

- codebook loss and commitment (β = 0.25),
- MaskGIT's entropy loss (weight 0.1, temperature 0.01): ``p = softmax(−‖z − e_k‖² / T)``; the mean per-vector
  entropy ``H_sample`` is pushed down (confident assignments) and the entropy ``H_batch`` of the batch-averaged
  distribution is pushed up (spread usage). It is minimal for confident, uniformly spread assignments.

Options the paper contrasts FSQ with (§1, §2: "codebook collapse ... reseeding, EMA, l2-normalisation"),
all off by default:

- ``l2_normalize``: codes and inputs on the unit sphere (ViT-VQGAN),
- ``ema_decay > 0``: EMA codebook updates instead of the codebook loss (VQ-VAE-2),
- ``dead_code_threshold > 0``: re-seed codes whose EMA usage (hits per batch) falls below the threshold with
  random encoder outputs of the current batch (Jukebox / Dhariwal et al.).

UViM's VQ (FSQ paper §4.4 and Table 2; big_vision ``models/proj/uvim/vit.py`` at 21bd6eb), ``ema_style="uvim"``:

- ``standardize``: inputs are standardized over channels first (``jax.nn.standardize``, eps 1e-5); the
  straight-through codes refer to the standardized vectors;
- dictionary learning by *discounted* counts and sums (``c ← m·c + n``, ``s ← m·s + Σx``, no ``1 − m`` factor),
  codewords ``normalize(s / c)``; init ``s ~ N(0, 1/√K)``, ``c = 1``; counts and sums are summed over DDP ranks;
- ``split_dead_codes``: while some ``c < split_min_count`` (0.1 ≈ 0.995^460 batches unused), the least used code
  becomes a copy of the most used one times ``U(1 ± split_perturb)`` per dimension, and both share its count and
  sum halves (Linde et al. 1980). The noise comes from a generator seeded by a step counter, so every DDP rank draws
  the same. ``split_dead_codes=False`` is the paper's "VQ without splitting" ablation.

Memory: the ``(N, K)`` distance and softmax matrices (N = vectors in the batch, K = codebook size) are computed in
row chunks with a hand-derived backward (``quantizers/assignment.py``), so only ``O(rows · K)`` is ever allocated.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fsq_repro.quantizers.assignment import assign_and_entropy, nearest_codes
from fsq_repro.quantizers.base import LazyMetrics, Quantizer, QuantizerOutput, batch_usage_metrics


def code_counts(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(N,)`` indices in ``[0, C)`` → float32 counts ``(C,)``: ``bincount(minlength=C)``, exact (integers below
    2²⁴), with a fixed output shape — ``bincount`` sizes its output by the largest index, which on a GPU is a host
    sync every step."""
    counts = torch.zeros(codebook_size, dtype=torch.float32, device=indices.device)
    return counts.index_add_(0, indices.reshape(-1), torch.ones(indices.numel(), device=indices.device))


class VectorQuantizer(Quantizer):
    """VQ bottleneck with a learned ``(codebook_size, dim)`` codebook (FSQ paper §4.1 baseline).

    Shapes: ``forward(z: (..., dim)) -> QuantizerOutput(codes (..., dim), indices (...), loss (), metrics)``.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        entropy_weight: float = 0.1,
        entropy_temperature: float = 0.01,
        l2_normalize: bool = False,
        ema_decay: float = 0.0,
        ema_eps: float = 1e-5,
        dead_code_threshold: float = 0.0,
        dead_code_decay: float = 0.99,
        ema_style: str = "vqvae2",
        standardize: bool = False,
        split_dead_codes: bool = False,
        split_min_count: float = 0.1,
        split_perturb: float = 0.001,
    ) -> None:
        super().__init__()
        if codebook_size < 2 or dim < 1:
            raise ValueError(f"VQ needs codebook_size >= 2 and dim >= 1, got {codebook_size}, {dim}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.codebook_size = int(codebook_size)
        self.dim = int(dim)
        self.beta = float(beta)
        self.entropy_weight = float(entropy_weight)
        self.entropy_temperature = float(entropy_temperature)
        self.l2_normalize = bool(l2_normalize)
        self.ema_decay = float(ema_decay)
        self.ema_eps = float(ema_eps)
        self.dead_code_threshold = float(dead_code_threshold)
        self.dead_code_decay = float(dead_code_decay)
        if ema_style not in ("vqvae2", "uvim"):
            raise ValueError(f"ema_style must be 'vqvae2' or 'uvim', got {ema_style!r}")
        if (ema_style == "uvim" or split_dead_codes) and self.ema_decay <= 0:
            raise ValueError("UViM's dictionary learning and codebook splitting need ema_decay > 0 (official 0.995)")
        self.ema_style, self.standardize = ema_style, bool(standardize)
        self.split_dead_codes, self.split_min_count = bool(split_dead_codes), float(split_min_count)
        self.split_perturb = float(split_perturb)

        # MaskGIT: variance_scaling(1.0, "fan_in", "uniform") on a (K, d) codebook -> U(±sqrt(3 / K)).
        bound = math.sqrt(3.0 / self.codebook_size)
        self.embedding = nn.Parameter(torch.empty(self.codebook_size, self.dim).uniform_(-bound, bound))
        if self.ema_decay > 0:
            self.embedding.requires_grad_(False)
            self.register_buffer("ema_cluster_size", torch.ones(self.codebook_size))
            self.register_buffer("ema_embed_sum", self.embedding.detach().clone())
        if self.ema_style == "uvim":  # official init: dictionary ~ N(0, 1/sqrt(K)), counts 1
            self.ema_embed_sum.normal_(0.0, 1.0 / math.sqrt(self.codebook_size))
            self.embedding.data.copy_(F.normalize(self.ema_embed_sum, dim=-1))
            self.register_buffer("split_steps", torch.zeros((), dtype=torch.long))
        if self.dead_code_threshold > 0:
            self.register_buffer("code_usage", torch.ones(self.codebook_size))

    # --- lookups ---------------------------------------------------------------------------------------
    def codebook(self) -> torch.Tensor:
        """``(K, dim)`` float32 codebook as used for lookup (unit-norm rows when ``l2_normalize``)."""
        weight = self.embedding.float()
        return F.normalize(weight, dim=-1) if self.l2_normalize else weight

    def codes_to_indexes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (...)`` int64: index of the nearest codebook vector."""
        self._check_dim(codes)
        with torch.autocast(device_type=codes.device.type, enabled=False):
            flat = codes.detach().float().reshape(-1, self.dim)
            return nearest_codes(flat, self.codebook()).reshape(codes.shape[:-1])

    def indexes_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...) -> (..., dim)`` float32 embedding lookup."""
        return F.embedding(indices.to(torch.int64), self.codebook())

    # --- forward ---------------------------------------------------------------------------------------
    def _flat(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (N, dim)`` float32 vectors as compared with the codebook (standardized / unit-norm)."""
        flat = z.float().reshape(-1, self.dim)
        if self.standardize:  # jax.nn.standardize: (x - mean) / sqrt(var + 1e-5) over channels
            flat = (flat - flat.mean(-1, keepdim=True)) * torch.rsqrt(flat.var(-1, unbiased=False, keepdim=True) + 1e-5)
        return F.normalize(flat, dim=-1) if self.l2_normalize else flat

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (...)`` tokens: the forward's assignment without the entropy loss (tokenization)."""
        self._check_dim(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return nearest_codes(self._flat(z), self.codebook()).reshape(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self._check_dim(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = self._flat(z)
            codebook = self.codebook()
            if self.entropy_weight > 0:  # assignment and entropy loss in row chunks (quantizers/assignment.py)
                indices, entropy = assign_and_entropy(flat, codebook, self.entropy_temperature)
            else:
                indices, entropy = nearest_codes(flat, codebook), torch.zeros((), device=z.device)
            quantized = F.embedding(indices, codebook)

            commitment = F.mse_loss(flat, quantized.detach())
            if self.ema_decay > 0:
                codebook_loss = torch.zeros((), device=z.device)
            else:
                codebook_loss = F.mse_loss(quantized, flat.detach())
            loss = codebook_loss + self.beta * commitment + self.entropy_weight * entropy
            codes = quantized.detach() + (flat - flat.detach())  # STE with an exact forward value

        splits = self._update_codebook(flat.detach(), indices) if self.training else 0

        metrics = LazyMetrics(
            lambda: self._usage_metrics(indices, splits),
            commitment=commitment.detach(),
            codebook_loss=codebook_loss.detach(),
            entropy_loss=entropy.detach(),
        )
        return QuantizerOutput(
            codes=codes.reshape(*z.shape[:-1], self.dim),
            indices=indices.reshape(z.shape[:-1]),
            loss=loss,
            metrics=metrics,
        )

    @torch.no_grad()
    def _usage_metrics(self, indices: torch.Tensor, splits: int) -> dict[str, torch.Tensor]:
        """Batch perplexity and usage (and, UViM-style, the codebook statistics it logs); read lazily."""
        metrics = batch_usage_metrics(indices, self.codebook_size)
        if self.ema_style == "uvim":
            counts = code_counts(indices, self.codebook_size)
            metrics.update(codebook_zeros_ratio=(counts == 0).float().mean(),
                           codebook_max_ratio=counts.max() / counts.sum().clamp_min(1),
                           num_splits=torch.tensor(float(splits)))  # fmt: skip
        return metrics

    @torch.no_grad()
    def _update_codebook(self, flat: torch.Tensor, indices: torch.Tensor) -> int:
        """EMA codebook update, dead-code re-seeding or splitting (all optional). Counts are summed across DDP
        ranks. Returns the number of splits."""
        if self.ema_decay <= 0 and self.dead_code_threshold <= 0:
            return 0
        counts = code_counts(indices, self.codebook_size)
        sums = torch.zeros_like(self.embedding, dtype=torch.float32).index_add_(0, indices, flat)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        if self.ema_style == "uvim":
            self.ema_cluster_size.mul_(self.ema_decay).add_(counts)
            self.ema_embed_sum.mul_(self.ema_decay).add_(sums)
            splits = self._split() if self.split_dead_codes else 0
            self.embedding.data.copy_(F.normalize(self.ema_embed_sum / self.ema_cluster_size[:, None], dim=-1))
            return splits
        if self.ema_decay > 0:
            decay = self.ema_decay
            self.ema_cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
            self.ema_embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
            n = self.ema_cluster_size.sum()
            smoothed = (self.ema_cluster_size + self.ema_eps) / (n + self.codebook_size * self.ema_eps) * n
            self.embedding.data.copy_(self.ema_embed_sum / smoothed[:, None])
        if self.dead_code_threshold > 0:
            self.code_usage.mul_(self.dead_code_decay).add_(counts, alpha=1 - self.dead_code_decay)
            dead = (self.code_usage < self.dead_code_threshold).nonzero().squeeze(1)
            if dead.numel() > 0:
                pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
                fresh = flat[pick]
                if dist.is_available() and dist.is_initialized():
                    dist.broadcast(fresh, src=0)  # every rank re-seeds with rank 0's choice
                self.embedding.data[dead] = fresh.to(self.embedding.dtype)
                self.code_usage[dead] = 1.0
                if self.ema_decay > 0:
                    self.ema_cluster_size[dead] = 1.0
                    self.ema_embed_sum[dead] = fresh
        return 0

    @torch.no_grad()
    def _split(self) -> int:
        """UViM's ``split_the_most_frequent_embedding`` loop (module docstring), run on CPU copies."""
        self.split_steps += 1
        if float(self.ema_cluster_size.min()) >= self.split_min_count:
            return 0
        counts, sums = self.ema_cluster_size.cpu().clone(), self.ema_embed_sum.cpu().clone()
        generator = torch.Generator().manual_seed(int(self.split_steps))  # identical on every rank
        splits = 0
        while float(counts.min()) < self.split_min_count:
            i_max, i_min = int(counts.argmax()), int(counts.argmin())
            if i_max == i_min:
                break
            noise = torch.empty(self.dim).uniform_(1 - self.split_perturb, 1 + self.split_perturb, generator=generator)
            sums[i_min] = sums[i_max] * noise / 2
            sums[i_max] = sums[i_max] / 2
            counts[i_min] = counts[i_max] = counts[i_max] / 2
            splits += 1
        self.ema_cluster_size.copy_(counts)
        self.ema_embed_sum.copy_(sums)
        return splits

    def config(self) -> dict:
        return {
            "name": "vq",
            "codebook_size": self.codebook_size,
            "dim": self.dim,
            "beta": self.beta,
            "entropy_weight": self.entropy_weight,
            "entropy_temperature": self.entropy_temperature,
            "l2_normalize": self.l2_normalize,
            "ema_decay": self.ema_decay,
            "ema_eps": self.ema_eps,
            "dead_code_threshold": self.dead_code_threshold,
            "dead_code_decay": self.dead_code_decay,
            "ema_style": self.ema_style,
            "standardize": self.standardize,
            "split_dead_codes": self.split_dead_codes,
            "split_min_count": self.split_min_count,
            "split_perturb": self.split_perturb,
        }

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, dim={self.dim}, beta={self.beta}, "
            f"entropy_weight={self.entropy_weight}, l2_normalize={self.l2_normalize}, ema_decay={self.ema_decay}"
            + (f", ema_style=uvim, standardize={self.standardize}, split_dead_codes={self.split_dead_codes}"
               if self.ema_style == "uvim" else "")
        )  # fmt: skip

    def _check_dim(self, z: torch.Tensor) -> None:
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"VectorQuantizer(dim={self.dim}) expects channel-last inputs (..., {self.dim}), "
                f"got shape {tuple(z.shape)}"
            )
