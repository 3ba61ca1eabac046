"""UViM's depth task: what the guiding-code autoencoder reads, its loss, and how logits become metres (FSQ paper
§4.4, Table 2 NYU depth; big_vision ``trainers/proj/uvim/depth_task.py`` at commit 21bd6eb).

- labels: the depth map discretised into ``num_bins`` = 256 bins over [1e-3, 10] m (``tasks/depth/labels.py:
  depth_to_bins``: ``floor((d − min) / (max − min) · bins)`` clipped), one class map ``{"depth": (B, H, W)}``;
- loss: per-pixel softmax cross-entropy over the bins, **zeroed where the label is bin 0** — pixels with no depth
  signal (depth 0 in NYU) fall there — and averaged over *all* pixels (the official ``jnp.mean(loss · mask)``, so
  the masked pixels still count in the denominator);
- prediction: ``argmax`` over the bins, then the bin centre (``bins_to_depth``: ``(b + 0.5) / bins``, "undoes floor
  in expectation").

Shapes: ``depth (B, 1, H, W)`` or ``(B, H, W)`` metres; logits ``{"depth": (B, bins, H, W)}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsq_repro.metrics.depth import DepthMetrics
from fsq_repro.tasks.depth.labels import bins_to_depth, depth_to_bins


class DepthTask:
    """The depth task's label coding (module docstring). Pure functions of its three numbers."""

    name = "depth"
    headline = ("rmse", True)  # the metric Table 2 reports, lower-is-better
    label_channels: dict[str, int] = {}  # noqa: RUF012 — no continuous maps

    def __init__(self, num_bins: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0) -> None:
        if num_bins < 2 or not 0 < min_depth < max_depth:
            raise ValueError(f"depth task needs num_bins >= 2 and 0 < min_depth < max_depth, got "
                             f"{num_bins}, {min_depth}, {max_depth}")  # fmt: skip
        self.num_bins, self.min_depth, self.max_depth = int(num_bins), float(min_depth), float(max_depth)

    @property
    def label_classes(self) -> dict[str, int]:
        """What the autoencoder embeds and predicts: one class map with ``num_bins`` classes."""
        return {"depth": self.num_bins}

    def config(self) -> dict:
        return {"name": self.name, "num_bins": self.num_bins, "min_depth": self.min_depth, "max_depth": self.max_depth}

    def cache_labels(self, batch: dict) -> dict[str, torch.Tensor]:
        """The labels the token cache encodes (the same as ``labels``; panoptic renumbers flipped instances)."""
        return self.labels(batch)

    def labels(self, batch: dict) -> dict[str, torch.Tensor]:
        """``batch["depth"] (B, 1, H, W)`` metres → ``{"depth": (B, H, W) int64}`` bins."""
        depth = batch["depth"]
        depth = depth[:, 0] if depth.dim() == 4 else depth
        return {"depth": depth_to_bins(depth, self.num_bins, self.min_depth, self.max_depth)}

    def loss(self, logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Official masked cross-entropy (float32): mean over every pixel of ``CE · [label ≠ 0]``."""
        target = labels["depth"]
        ce = F.cross_entropy(logits["depth"].float(), target, reduction="none")
        loss = (ce * (target != 0)).mean()
        return loss, {"loss_depth": loss.detach()}

    def predict(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, bins, H, W)`` logits → ``(B, H, W)`` metres (bin centres)."""
        return bins_to_depth(logits["depth"].argmax(dim=1), self.num_bins, self.min_depth, self.max_depth)

    def truth(self, batch: dict) -> torch.Tensor:
        """The batch's depth ``(B, H, W)`` metres (for grids)."""
        depth = batch["depth"]
        return depth[:, 0] if depth.dim() == 4 else depth

    def baseline_statistic(self, batch: dict) -> torch.Tensor:
        """What the constant baseline averages over training items: the depth maps ``(B, H, W)``."""
        return self.truth(batch).float()

    def baseline_prediction(self, mean: torch.Tensor, batch: dict) -> torch.Tensor:
        """The constant baseline: the training set's mean depth map ``(H, W)`` for every image → ``(B, H, W)``."""
        return mean.to(batch["image"].device).expand(batch["image"].shape[0], -1, -1)

    def metric(self, dataset=None) -> DepthMetric:
        return DepthMetric(self.min_depth, self.max_depth)

    def validation_metric(self, val_set=None) -> DepthMetric:
        return self.metric()

    def render(self, depth: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` metres → ``(B, 3, H, W)`` grey ramp in [−1, 1] (near = bright)."""
        return (1 - 2 * (depth.float().cpu() / self.max_depth).clamp(0, 1))[:, None].expand(-1, 3, -1, -1)


class DepthMetric:
    """``metrics/depth.py: DepthMetrics`` against ``batch["depth_gt"]`` (native resolution) or ``batch["depth"]``."""

    def __init__(self, min_depth: float, max_depth: float) -> None:
        self.metrics = DepthMetrics(min_depth=min_depth, max_depth=max_depth)

    def update(self, pred: torch.Tensor, batch: dict) -> None:
        truth = batch.get("depth_gt", batch["depth"])
        self.metrics.to(pred.device).update(pred, truth.to(pred.device))

    def compute(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metrics.compute().items()}

    def reset(self) -> None:
        self.metrics.reset()
