"""Peak signal-to-noise ratio, the one definition every part of the project reports (Stage I validation, the
``reconstruction`` eval task — FSQ paper Fig. 3 a at CPU scale — and UViM colorization's resized PSNR, official
``big_vision/evaluators/proj/uvim/colorization.py`` ``_psnr`` at 21bd6eb).

Per image: ``PSNR = 20 log10(range) − 10 log10(MSE)`` over all pixels and channels, for images in [−1, 1]
(``range = 2``, so ``10 log10(4 / MSE)``). Shapes: ``pred``, ``truth`` ``(B, …)`` → ``(B,)``.
"""

from __future__ import annotations

import math

import torch


def psnr_from_mse(mse: torch.Tensor, dynamic_range: float = 2.0, min_mse: float = 0.0) -> torch.Tensor:
    """``20 log10(range) − 10 log10(max(mse, min_mse))``: ``min_mse = 0`` keeps the official ``inf`` for a perfect
    reconstruction; the training logs pass ``1e-10`` (100 dB at most) so that a mean stays finite."""
    return 20 * math.log10(dynamic_range) - 10 * torch.log10(mse.clamp_min(min_mse) if min_mse else mse)


def psnr(pred: torch.Tensor, truth: torch.Tensor, dynamic_range: float = 2.0, min_mse: float = 0.0) -> torch.Tensor:
    """Per-image PSNR ``(B,)`` in dB, the mean squared error taken in float64."""
    mse = (pred.double() - truth.double()).pow(2).flatten(1).mean(1)
    return psnr_from_mse(mse, dynamic_range, min_mse)
