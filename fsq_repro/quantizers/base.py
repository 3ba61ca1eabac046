"""The interface shared by every bottleneck (FSQ paper §3, Fig. 1: FSQ is a drop-in replacement for VQ).

A quantizer maps channel-last encoder outputs ``z: (..., d)`` to

- ``codes``: the quantized vectors ``ẑ: (..., d)`` (float32, straight-through gradient to ``z``),
- ``indices``: one int64 token per vector ``(...)`` — what Stage II models,
- ``loss``: the quantizer's auxiliary loss (zero for FSQ; commitment + codebook + entropy for VQ),
- ``metrics``: detached scalars to log (batch perplexity, batch usage, ...), computed when first read
  (``LazyMetrics``): a caller that never reads them — tokenization, evaluation, someone's own training loop — does
  not pay for the per-batch histogram (≈ 1.2 ``tanh`` passes at 15 360 codes, ``scripts/bench_fsq.py``).

Both quantizers also expose ``codes_to_indexes`` / ``indexes_to_codes`` (App. A.1 names), ``codebook_size``
and ``dim`` so that the tokenizer and the generator never need to know which bottleneck they use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


class LazyMetrics(Mapping):
    """A read-only ``{name: detached scalar}`` mapping: the ``ready`` values now, ``compute()``'s on first need (a
    read of another key, ``in``, iteration, ``dict(...)``: computed once and kept)."""

    def __init__(self, compute: Callable[[], dict[str, torch.Tensor]], **ready: torch.Tensor) -> None:
        self._compute: Callable[[], dict[str, torch.Tensor]] | None = compute
        self._values: dict[str, torch.Tensor] = dict(ready)

    def _all(self) -> dict[str, torch.Tensor]:
        if self._compute is not None:
            computed, self._compute = self._compute(), None
            self._values = {**computed, **self._values}
        return self._values

    @property
    def computed(self) -> bool:
        return self._compute is None

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._values[key] if key in self._values else self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"LazyMetrics({self._values if self.computed else '<not computed yet>'})"


@dataclass
class QuantizerOutput:
    """What ``Quantizer.forward`` returns. Shapes for an input ``z: (..., d)``."""

    codes: torch.Tensor  # (..., d) float32, straight-through to z
    indices: torch.Tensor  # (...) int64
    loss: torch.Tensor  # () float32
    metrics: Mapping[str, torch.Tensor] = field(default_factory=dict)  # detached scalars (LazyMetrics)


class Quantizer(nn.Module):
    """Abstract bottleneck. Subclasses set ``codebook_size`` and ``dim``."""

    codebook_size: int
    dim: int

    def codes_to_indexes(self, codes: torch.Tensor) -> torch.Tensor:  # (..., d) -> (...) int64
        raise NotImplementedError

    def indexes_to_codes(self, indices: torch.Tensor) -> torch.Tensor:  # (...) -> (..., d) float32
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` encoder outputs → ``(...)`` int64 tokens, the same as ``forward(z).indices`` without the
        losses and metrics (tokenization); quantizers override it where that saves work."""
        return self(z).indices

    def config(self) -> dict:
        """Plain-container description sufficient to rebuild this quantizer (used by the tokenizer export)."""
        raise NotImplementedError


def batch_usage_metrics(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Perplexity and fraction of codes used within one batch of ``indices: (...)`` (detached).

    Perplexity is ``exp(H(p))`` of the empirical code distribution ``p``; equals ``codebook_size`` for uniform
    usage and 1 when a single code is used. Out-of-range indices (what a NaN latent turns into) are left out, so
    a non-finite batch reaches the training module's NaN guard instead of crashing here.
    """
    with torch.no_grad():
        # bins: 0 = negative, 1 … K = the codes, K + 1 = too large (out of range: left out)
        bins = indices.reshape(-1).clamp(-1, codebook_size).add_(1)
        counts = torch.zeros(codebook_size + 2, dtype=torch.float64, device=indices.device)
        counts = counts.scatter_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
        counts = counts[1 : codebook_size + 1]
        # H(p) = log n − Σ c·log c / n for counts c summing to n (one dot product; 0·log 1 = 0 for unused codes)
        n = counts.sum()
        entropy = n.clamp_min(1).log() - torch.dot(counts, counts.clamp_min(1).log()) / n.clamp_min(1)
        return {
            "perplexity": entropy.exp().float(),
            "batch_usage": torch.count_nonzero(counts).float() / codebook_size,
        }
