"""The two truncated-normal initialisers of the official (flax) models, truncated at ±2σ as ``jax.random.
truncated_normal(-2, 2)`` — ``torch.nn.init.trunc_normal_(w, std=s)`` alone would cut at ±2 *absolute*.

- ``truncated_normal_(w, std)``: MaskGIT's transformer init (``google-research/maskgit`` ``maskgit/nets/
  maskgit_transformer.py``: ``truncated_normal(stddev=0.02)``): ``std · N(0, 1)`` cut at ±2σ, the std *not*
  corrected for the truncation (the official one is not either).
- ``lecun_normal_(w)``: flax's default kernel init ``variance_scaling(1, "fan_in", "truncated_normal")`` (the VQGAN's
  convolutions, the ViTs' dense layers): variance exactly 1/fan_in, the std divided by 0.8796…, the standard
  deviation of a standard normal truncated at ±2.

``fan_in`` of a torch weight is ``w[0].numel()``: ``in`` for a ``Linear (out, in)``, ``in·kh·kw`` for a
``Conv2d (out, in, kh, kw)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TRUNCATED_STD = 0.87962566103423978  # std of N(0, 1) truncated to [−2, 2] (jax's variance_scaling constant)


def truncated_normal_(weight: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """``std · N(0, 1)`` truncated to ``[−2σ, 2σ]``, in place."""
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Truncated normal at ±2σ with variance exactly ``1 / fan_in``, in place."""
    return truncated_normal_(weight, math.sqrt(1.0 / weight[0].numel()) / TRUNCATED_STD)
