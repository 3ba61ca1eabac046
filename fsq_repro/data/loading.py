"""Data-loading pieces that are pure torch: corrupt-sample skipping and exact distributed evaluation.

- Datasets return ``None`` for an unreadable file; ``collate_skip_corrupt`` drops those from the batch and records
  how many it dropped in ``batch["num_corrupt"]`` so the training module can count and log them (the count crosses
  the worker-process boundary inside the batch).
- ``ExactDistributedSampler`` gives rank ``r`` the indices ``r, r + W, r + 2W, …`` with **no padding**, so an
  evaluation over W processes sees every sample exactly once (``torch``'s ``DistributedSampler`` pads by repeating
  samples, which biases FID/usage: ``../shared/reference/evaluation.md``). It subclasses ``DistributedSampler`` so
  that Lightning keeps it instead of wrapping it.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler, default_collate


def collate_skip_corrupt(batch: list) -> dict:
    """Collate dict samples, dropping ``None`` (unreadable files); adds ``num_corrupt`` (int64 scalar)."""
    valid = [item for item in batch if item is not None]
    num_corrupt = torch.tensor(len(batch) - len(valid), dtype=torch.int64)
    if not valid:
        return {
            "image": torch.empty(0),
            "label": torch.empty(0, dtype=torch.int64),
            "index": torch.empty(0, dtype=torch.int64),
            "num_corrupt": num_corrupt,
        }
    out = default_collate(valid)
    out["num_corrupt"] = num_corrupt
    return out


class ExactDistributedSampler(DistributedSampler):
    """Strided, unpadded, unshuffled split of a dataset over processes (each index exactly once overall)."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(self.rank, len(self.dataset), self.num_replicas))
        self.total_size = len(self.dataset)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
