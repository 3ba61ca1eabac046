"""NYU depth metrics as the official UViM evaluator computes them (FSQ paper Table 2 reports RMSE; big_vision
``evaluators/proj/uvim/nyu_depth.py`` at 21bd6eb).

Per image: the prediction ``(H, W)`` is resized NEAREST to the ground truth's size (``jax.image.resize("nearest")``
samples source pixel ``floor((i + 0.5) · in / out)`` = ``F.interpolate(mode="nearest-exact")``); valid pixels are
``min_depth < gt < max_depth`` (strict) inside an optional ``crop = (top, left, height, width)``; then

- RMSE = √mean((gt − pred)²)   (the paper's number)
- AbsRel = mean(|gt − pred| / gt),   log10 = mean(|log10 gt − log10 pred|)
- δ_k = fraction of pixels with max(gt / pred, pred / gt) < 1.25^k, k = 1, 2, 3.

The reported value is the **mean over images** of the per-image values (not pooled over pixels). Two guards the
official code does not need (its predictions are bin centres ≥ min_depth): predictions are clamped to ≥ min_depth
before logs and ratios, and an image without any valid pixel is skipped and counted (``num_skipped``).

``DepthMetrics`` is a torchmetrics ``Metric`` (sums of per-image values + counts, reduced by sum under DDP).
Shapes: ``pred (B, H, W)`` or ``(B, 1, H, W)``; ``gt (B, Hg, Wg)`` or ``(B, 1, Hg, Wg)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

NAMES = ("rmse", "abs_rel", "log10", "delta1", "delta2", "delta3")


def _squeeze(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0] if x.dim() == 4 else x


def resize_prediction(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)`` → ``(B, *size)`` nearest with half-pixel centres (jax ``nearest``)."""
    pred = _squeeze(pred)
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0]


def depth_metrics_per_image(pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 10.0,
                            crop: tuple[int, int, int, int] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per-image metrics ``{name: (B,)}`` (NaN for an image without valid pixels) and ``valid_pixels (B,)``."""
    gt = _squeeze(gt)
    valid = (gt > min_depth) & (gt < max_depth)  # in gt's dtype, as numpy compares a float32 map with a float
    gt = gt.double()
    pred = resize_prediction(pred, gt.shape[-2:]).double().clamp_min(min_depth)
    if crop is not None:
        top, left, h, w = crop
        window = torch.zeros_like(valid)
        window[:, top : top + h, left : left + w] = True
        valid &= window
    n = valid.sum(dim=(1, 2)).double()
    safe_gt = torch.where(valid, gt, torch.ones_like(gt))
    safe_pred = torch.where(valid, pred, torch.ones_like(pred))

    def mean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, x, torch.zeros_like(x)).sum(dim=(1, 2)) / n  # NaN when n == 0

    ratio = torch.maximum(safe_gt / safe_pred, safe_pred / safe_gt)
    out = {
        "rmse": mean((safe_gt - safe_pred) ** 2).sqrt(),
        "abs_rel": mean((safe_gt - safe_pred).abs() / safe_gt),
        "log10": mean((safe_gt.log10() - safe_pred.log10()).abs()),
        **{f"delta{k}": mean((ratio < 1.25**k).double()) for k in (1, 2, 3)},
    }
    out["valid_pixels"] = n
    return out


class DepthMetrics(Metric):
    """Mean over images of the per-image NYU metrics; ``compute()`` → ``{rmse, abs_rel, log10, delta1..3,
    num_images, num_skipped}``."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0,
                 crop: tuple[int, int, int, int] | None = None, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.min_depth, self.max_depth, self.crop = float(min_depth), float(max_depth), crop
        for name in NAMES:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_skipped", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        per = depth_metrics_per_image(pred, gt, self.min_depth, self.max_depth, self.crop)
        ok = per["valid_pixels"] > 0
        for name in NAMES:
            setattr(self, name, getattr(self, name) + per[name][ok].sum())
        self.num_images += int(ok.sum())
        self.num_skipped += int((~ok).sum())

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.num_images.clamp_min(1).double()
        return {**{name: (getattr(self, name) / n).float() for name in NAMES},
                "num_images": self.num_images, "num_skipped": self.num_skipped}  # fmt: skip
