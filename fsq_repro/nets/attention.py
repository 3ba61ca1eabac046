"""Multi-head attention with dropout on the attention probabilities (BERT / MaskGIT's transformer, FSQ paper §4.3
trains it with the official dropout 0.1; ``../shared/reference/hyperparameters.md``).

``attention(q, k, v, dropout_p, training)`` = ``softmax(q·kᵀ/√d_h) · v`` with inverted dropout (rate ``p``) on the
probabilities, shapes ``q, k, v: (B, H, N, d_h) → (B, H, N, d_h)``.

- On CUDA, and whenever no dropout applies, it is ``F.scaled_dot_product_attention`` (fused kernels; on the GPU
  the dropout mask is drawn inside the kernel).
- On the CPU with ``p > 0``, SDPA leaves its fused kernel for the math path and draws the mask with
  ``bernoulli_``: 8 ns per probability on this machine, 23 % of a Stage II training step
  (``scripts/bench_stage2_flops.py``). Here the same math path is written out and the mask is drawn 16 random bits
  per probability (``keep_mask``: one 64-bit draw gives four, 3.6–4× faster than ``bernoulli_``; measured in
  ``scripts/bench_stage2_flops.py``). The keep test ``bits ≥ round(p·2¹⁶)`` drops with probability
  ``round(p·2¹⁶)/2¹⁶`` — ``6554/65536 = 0.100006`` for the recipe's 0.1 (a difference of 6·10⁻⁶; the
  ``1/(1 − p)`` rescaling uses the same realised rate, so the expectation is exactly preserved).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape`` whose elements are ``True`` (kept) with probability ``1 − p'`` and the realised
    drop rate ``p' = round(p·2¹⁶)/2¹⁶``. Four 16-bit lanes per uniform 64-bit draw of the default generator (so
    ``torch.manual_seed`` makes it reproducible)."""
    numel = 1
    for size in shape:
        numel *= size
    bits = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    threshold = round(p * 65536)
    lanes = bits.view(torch.int16)[:numel].view(shape)
    return lanes >= threshold - 32768, threshold / 65536


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, training: bool) -> torch.Tensor:
    """``(B, H, N, d_h)`` ×3 → ``(B, H, N, d_h)``; see the module docstring for which kernel runs where."""
    p = dropout_p if training else 0.0
    if p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))  # bf16 → fp32
    keep, rate = keep_mask(tuple(probs.shape), p, probs.device)
    probs = torch.where(keep, probs, 0.0).mul_(1.0 / (1.0 - rate))
    return torch.matmul(probs.to(v.dtype), v)
