"""Multi-head attention with dropout on the attention probabilities (BERT / MaskGIT's transformer, FSQ paper §4.3
trains it with the official dropout 0.1: google-research/maskgit ``maskgit/configs/maskgit_class_cond_config.py``).

``attention(q, k, v, dropout_p, training)`` = ``softmax(q·kᵀ/√d_h) · v`` with inverted dropout (rate ``p``) on the
probabilities, shapes ``q, k, v: (B, H, N, d_h) → (B, H, N, d_h)``.

- On CUDA, and whenever no dropout applies, it is ``F.scaled_dot_product_attention`` (fused kernels; on the GPU
  the dropout mask is drawn inside the kernel).
- On the CPU with ``p > 0``, SDPA leaves its fused kernel for the math path and draws the mask with
  ``bernoulli_`` (8 ns per probability here). The same math path is written out, with the mask of
  ``nets.dropout`` (16 random bits per probability; realised rate ``round(p·2¹⁶)/2¹⁶``, rescaled by
  it), scores and softmax in float32: the Stage II training step ran 0.76–0.79× (tiny) and 0.62–0.71× (8 × 512,
  256 tokens) the time of SDPA with dropout 0.1 (round-robin in one run; at 64 tokens also faster than SDPA with
  dropout 0, whose fused CPU backward is slow there). Without dropout (inference, sampling) SDPA's fused kernel is
  kept: 3–4× faster than the math path forward at 257 tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsq_repro.nets.dropout import dropout


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, training: bool) -> torch.Tensor:
    """``(B, H, N, d_h)`` ×3 → ``(B, H, N, d_h)``; see the module docstring for which kernel runs where."""
    p = dropout_p if training else 0.0
    if p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    # scores and softmax in float32 at least (bf16 scores had 6× SDPA's error against float64); the probabilities
    # meet v in v's dtype, as FlashAttention's P·V on GPUs (bf16 under autocast: 2× the error of SDPA's CPU math
    # path against float64, 0.034 vs 0.016 at std 2; all-float32 was 1.16× slower per mid step)
    dtype = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast("cpu", enabled=False):
        scores = torch.matmul(q.to(dtype), k.to(dtype).transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        probs = dropout(torch.softmax(scores, dim=-1), p, training=True)
        return torch.matmul(probs.to(v.dtype), v).to(q.dtype)
