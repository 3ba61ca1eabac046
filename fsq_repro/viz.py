"""Image grids for reports and loggers. Images are ``(B, 3, H, W)`` in [−1, 1] (the project's convention)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """``(B, 3, H, W)`` in [−1, 1] → ``(3, H', W')`` in [0, 1]."""
    return make_grid(((images.detach().float().cpu() + 1) / 2).clamp(0, 1), nrow=nrow, padding=padding)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, upscale: int = 1) -> Path:
    """Write a PNG grid of ``images`` (optionally nearest-upscaled for tiny images); returns the path."""
    grid = image_grid(images, nrow=nrow)
    if upscale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=upscale, mode="nearest")[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path
