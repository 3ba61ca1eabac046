"""Colorization data for UViM (FSQ paper §4.4, Table 2 ImageNet colorization rows): any RGB image dataset becomes
(grayscale context, colour label) pairs, the luminance computed on the fly as the official pre-processing
(big_vision ``configs/proj/uvim/vqvae_imagenet2012_colorization.py``: ``copy(image → labels) |
rgb_to_grayscale_to_rgb(image)``, both in [−1, 1]).

- ``grayscale``: TF's ``rgb_to_grayscale`` weights (0.2989, 0.5870, 0.1140) replicated to 3 channels; applied to the
  [−1, 1] float image (the weights are linear; TF goes through uint8, which rounds — a < 1/255 difference);
- ``ColorizationDataset(base, …)`` wraps the dataset (embedded shapes / photos, or an ImageFolder such as ImageNet
  via ``data.root``): item ``i`` is base item ``start + i`` as ``{"image": gray (3, R, R), "color": (3, R, R),
  "label", "index": i}``; an unreadable base item stays ``None`` (skipped and counted by the loader).
- FID-5k reference pool (``evaluators/proj/uvim/coltran_fid.py``): ColTran colorises val images 0…4 999 and compares
  them with *other* val images, 10 000…14 999 (``coltran_seed = 1``); ``reference_start`` names that block
  (``reference(i)`` = base item ``reference_start + i``'s colours). Deliberate difference: the official lists follow
  TFDS's shard order (``coltran_fid_data/*.txt``); an ImageFolder is in sorted file order.
"""

from __future__ import annotations

import inspect

import torch
from torch.utils.data import Dataset

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` → the luminance replicated to 3 channels (``grayscale_to_rgb(rgb_to_grayscale(x))``)."""
    w = torch.tensor(GRAY_WEIGHTS, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * w).sum(-3, keepdim=True).expand_as(image).contiguous()


class ColorizationDataset(Dataset):
    """``count`` items of ``base`` from ``start`` as (grayscale, colour) pairs (module docstring)."""

    def __init__(self, base, augment: bool = False, start: int = 0, count: int | None = None,
                 reference_start: int | None = None) -> None:  # fmt: skip
        if callable(base) and not isinstance(base, Dataset):  # a Hydra partial: the training flag if it has one
            params = inspect.signature(base).parameters
            base = (
                base(train=augment) if "train" in params else base(augment=augment) if "augment" in params else base()
            )
        self.base, self.start = base, int(start)
        available = len(base) - self.start
        self.count = available if count is None else min(int(count), available)
        if self.count <= 0:
            raise ValueError(f"colorization: base dataset has {len(base)} items, start={start}")
        self.reference_start = reference_start
        if reference_start is not None and reference_start + self.count > len(base):
            raise ValueError(f"colorization: the reference block {reference_start}…{reference_start + self.count} "
                             f"exceeds the base dataset ({len(base)} items)")  # fmt: skip

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict | None:
        if not 0 <= index < self.count:
            raise IndexError(index)
        item = self.base[self.start + index]
        if item is None:
            return None
        color = item["image"]
        return {"image": grayscale(color), "color": color, "label": item.get("label", 0), "index": index}

    def has_reference(self) -> bool:
        return self.reference_start is not None

    def reference(self, index: int) -> torch.Tensor | None:
        """The colour image ``(3, R, R)`` in [−1, 1] of reference item ``index`` (``None`` if unreadable)."""
        item = self.base[int(self.reference_start) + index]
        return None if item is None else item["image"]
