"""Codebook usage — FSQ paper §4.1 / Fig. 3 c ("fraction of the codewords used at least once on the validation
set"), over the whole validation set under DDP: bincount per process, all-reduce SUM, then ``(hist > 0).mean()``.

``CodebookUsage(codebook_size)`` is a torchmetrics ``Metric``: ``update(indices: (...) int)`` accumulates an
int64 histogram ``(codebook_size,)`` whose DDP reduction is a sum, so every process computes the same result as a
single process that saw all indices. ``compute()`` returns a dict:

- ``usage``: fraction of codes hit at least once,
- ``perplexity``: ``exp(H(p))`` of the empirical code distribution (``codebook_size`` for uniform usage),
- ``histogram``: the ``(codebook_size,)`` counts.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def usage_from_histogram(histogram: torch.Tensor) -> dict[str, torch.Tensor]:
    """``histogram: (K,)`` counts → ``{"usage", "perplexity", "histogram"}``."""
    counts = histogram.double()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-300))).sum()
    return {
        "usage": (histogram > 0).float().mean(),
        "perplexity": entropy.exp().float(),
        "histogram": histogram,
    }


class CodebookUsage(Metric):
    """Histogram of token indices over a whole evaluation set, summed across processes."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, codebook_size: int, validate_indices: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        self.codebook_size = int(codebook_size)
        self.validate_indices = validate_indices
        self.add_state("histogram", default=torch.zeros(self.codebook_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:
        flat = indices.reshape(-1).to(torch.long)
        if self.validate_indices and flat.numel() > 0:
            low, high = int(flat.min()), int(flat.max())
            if low < 0 or high >= self.codebook_size:
                raise ValueError(f"token indices must lie in [0, {self.codebook_size}), got min {low}, max {high}")
        self.histogram += torch.bincount(flat, minlength=self.codebook_size)

    def compute(self) -> dict[str, torch.Tensor]:
        return usage_from_histogram(self.histogram)
