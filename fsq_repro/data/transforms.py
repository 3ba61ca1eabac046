"""Image transforms as in MaskGIT's input pipeline (FSQ paper §4.1/§4.3 use MaskGIT's ImageNet setup).

- train: resize the shorter side to ``resolution`` (bicubic, antialiased), random ``resolution²`` crop, horizontal
  flip;
- eval: resize the shorter side, center crop.

Input: a PIL RGB image. Output: ``(3, R, R)`` float32 in [−1, 1], the pixel convention of the whole project.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def _to_model_range(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


def image_transform(resolution: int, train: bool) -> v2.Compose:
    """The train (random crop + flip) or eval (center crop) transform for ``resolution`` px."""
    steps = [v2.ToImage(), v2.Resize(resolution, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if train:
        steps += [v2.RandomCrop(resolution), v2.RandomHorizontalFlip()]
    else:
        steps += [v2.CenterCrop(resolution)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Lambda(_to_model_range)]
    return v2.Compose(steps)
