"""Image transforms as in MaskGIT's input pipeline (FSQ paper §4.1/§4.3 use MaskGIT's ImageNet setup).

- train: resize the shorter side to ``resolution`` (bicubic, antialiased), random ``resolution²`` crop, horizontal
  flip;
- eval: resize the shorter side, center crop.

Input: a PIL RGB image. Output: ``(3, R, R)`` float32 in [−1, 1], the pixel convention of the whole project.

UViM's dense tasks (FSQ paper §4.4) crop image and label together with ``inception_box`` (big_vision
``pp/proj/uvim/pp_ops.py`` at 21bd6eb, TF's ``sample_distorted_bounding_box``).
"""

from __future__ import annotations

import math

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


def uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(0, high, (), generator=generator))


def inception_box(
    height: int,
    width: int,
    area: tuple[float, float] = (0.05, 1.0),
    aspect: tuple[float, float] = (0.75, 1.33),
    max_attempts: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop, following TF's ``sample_distorted_bounding_box`` (what the official
    ``inception_box`` calls, defaults ``area=(0.05, 1.0)``, ``aspect=(0.75, 1.33)``, 100 attempts).

    Each attempt draws the aspect ratio ``w / h`` uniformly in ``aspect``, then the height uniformly among the
    integers whose box area lies in ``area · H · W`` (``w = round(h · ratio)``, nudged by one row when rounding leaves
    the area range), and the offsets uniformly in ``[0, H − h)`` and ``[0, W − w)`` (TF's half-open ranges). After
    ``max_attempts`` failures the whole frame is returned.
    """
    min_area, max_area = area[0] * height * width, area[1] * height * width
    for _ in range(max_attempts):
        ratio = aspect[0] + (aspect[1] - aspect[0]) * uniform(generator)
        h = round(math.sqrt(min_area / ratio))
        h_max = round(math.sqrt(max_area / ratio))
        if round(h_max * ratio) > width:  # the tallest box whose rounded width still fits
            h_max = int((width + 0.5 - 1e-7) / ratio)
            if round(h_max * ratio) > width:
                h_max -= 1
        h_max = min(h_max, height)
        h = min(h, h_max)
        if h < h_max:
            h += randint(h_max - h + 1, generator)
        w = round(h * ratio)
        if w * h < min_area:
            h += 1
            w = round(h * ratio)
        if w * h > max_area:
            h -= 1
            w = round(h * ratio)
        if not (min_area <= w * h <= max_area and 0 < w <= width and 0 < h <= height):
            continue
        top = randint(height - h, generator) if h < height else 0
        left = randint(width - w, generator) if w < width else 0
        return top, left, h, w
    return 0, 0, height, width
