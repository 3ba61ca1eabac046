"""Lightning callbacks of the project: image grids to disk and to every logger that can show images."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from fsq_repro.viz import image_grid, save_image_grid


def log_image(trainer: pl.Trainer, key: str, grid: torch.Tensor, step: int) -> None:
    """Send a ``(3, H, W)`` grid in [0, 1] to the W&B / TensorBoard loggers (CSV loggers cannot show images)."""
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            logger.log_image(key=key, images=[grid.permute(1, 2, 0).numpy()], step=step)
        elif kind == "TensorBoardLogger":
            logger.experiment.add_image(key, grid, global_step=step)


class ImageGridLogger(pl.Callback):
    """After every validation, write ``pl_module.last_val_grid`` (``(2n, 3, H, W)`` in [−1, 1]: n inputs then their
    n reconstructions, or samples) to ``<dirpath>/<name>_step<k>.png`` and ``<dirpath>/<name>.png`` (the latest),
    and to the image-capable loggers."""

    def __init__(self, dirpath: str | Path, name: str = "reconstructions", nrow: int = 8, upscale: int = 1) -> None:
        self.dirpath, self.name, self.nrow, self.upscale = Path(dirpath), name, nrow, upscale

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        grid_images = getattr(pl_module, "last_val_grid", None)
        if grid_images is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        step = trainer.global_step
        save_image_grid(grid_images, self.dirpath / f"{self.name}_step{step}.png", self.nrow, self.upscale)
        save_image_grid(grid_images, self.dirpath / f"{self.name}.png", self.nrow, self.upscale)
        log_image(trainer, f"val/{self.name}", image_grid(grid_images, nrow=self.nrow), step)
