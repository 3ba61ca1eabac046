"""The masking schedule of MaskGIT (Chang et al. 2022, §3.2) with the FSQ paper's minimum masking rate (§4.3).

One function, ``mask_schedule(r)``, serves both sides, so training and sampling cannot disagree:

* training draws ``r ~ U(0, 1)`` per image and masks ``max(mask_schedule(r), min_mask_rate)`` of its tokens
  (at least one) — FSQ paper §4.3: "lower bounding the minimal masking ratio" (0.45) fixed a loss instability;
* sampling (``generation/sampler.py``) keeps ``floor(N · mask_schedule((t + 1) / T))`` tokens masked after step t.

``mask_schedule`` maps the fraction of decoding progress ``r ∈ [0, 1]`` to the fraction still masked:
cosine ``cos(πr/2)`` (MaskGIT's default), linear ``1 − r``, square ``1 − r²``.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "linear", "square")


def mask_schedule(r: torch.Tensor | float, kind: str = "cosine") -> torch.Tensor:
    """Fraction of tokens masked at progress ``r`` (tensor of any shape, values in [0, 1])."""
    r = torch.as_tensor(r, dtype=torch.float64 if not torch.is_tensor(r) else None)
    if kind == "cosine":
        return torch.cos(math.pi / 2 * r)
    if kind == "linear":
        return 1 - r
    if kind == "square":
        return 1 - r * r
    raise ValueError(f"unknown mask schedule {kind!r}; choose one of {SCHEDULES}")


def sample_mask_ratio(
    batch_size: int,
    min_mask_rate: float = 0.45,
    kind: str = "cosine",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per-image mask ratio ``max(mask_schedule(r), min_mask_rate)``, ``r ~ U(0, 1)``: ``(B,)`` float64 (in float32,
    0.45 · 20 floors to 8, not 9)."""
    r = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
    return mask_schedule(r, kind).clamp_min(min_mask_rate)


def random_token_mask(
    batch_size: int,
    num_tokens: int,
    min_mask_rate: float = 0.45,
    kind: str = "cosine",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training mask ``(B, N)`` bool, True = masked: ``clamp(floor(ratio · N), 1, N)`` random positions per row."""
    ratio = sample_mask_ratio(batch_size, min_mask_rate, kind, generator, device)
    num_masked = torch.floor(ratio * num_tokens).long().clamp(1, num_tokens)  # (B,)
    scores = torch.rand(batch_size, num_tokens, generator=generator, device=device)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation rank per position
    return ranks < num_masked[:, None]


def expected_mask_ratio(min_mask_rate: float = 0.45) -> float:
    """Closed form of ``E[max(cos(πr/2), m)]`` for ``r ~ U(0, 1)`` (before flooring to whole tokens):
    ``(2/π) sin(π r₀ / 2) + m (1 − r₀)`` with ``r₀ = (2/π) arccos(m)``."""
    r0 = 2 / math.pi * math.acos(min_mask_rate)
    return 2 / math.pi * math.sin(math.pi * r0 / 2) + min_mask_rate * (1 - r0)


def tokens_masked_after_step(
    num_tokens: int, step: int, total_steps: int, kind: str = "cosine", float32: bool = False
) -> int:
    """The schedule's target number of masked tokens after decoding step ``step`` (0-based) of ``total_steps``:
    ``floor(N · mask_schedule((step + 1) / T))``.

    Arithmetic: float64 by default, the exact value of the formula. The official decoder (``parallel_decode.py``,
    JAX without x64) computes ratio, cosine and product in **float32**, where ``cos(π/3)`` rounds to 0.49999997:
    at ``N = 256, T = 12`` after the 8th step (``step = 7``) it keeps 127 tokens masked where float64 keeps 128.
    ``float32=True`` reproduces the official numbers token for token (sampler option ``official_float32``)."""
    if not float32:
        return math.floor(num_tokens * float(mask_schedule((step + 1) / total_steps, kind)))
    ratio = torch.tensor((step + 1) / total_steps, dtype=torch.float32)
    masked_fraction = mask_schedule(ratio, kind).clamp(1e-6, 1.0)  # official: clip to [1e-6, 1]
    return int(torch.floor(torch.tensor(num_tokens, dtype=torch.float32) * masked_fraction))
