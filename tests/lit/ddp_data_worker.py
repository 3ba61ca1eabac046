"""Worker for tests/lit/test_datamodules.py, run by torchrun with 2 CPU processes (gloo, Lightning DDP).

Records which sample indices each rank sees in one training epoch and one validation pass; rank 0 writes JSON.
"""

import json
import sys
from functools import partial

import lightning.pytorch as pl
import torch
import torch.distributed as dist

from fsq_repro.data.embedded import ShapesDataset
from fsq_repro.lit.datamodules import ImageDataModule


class Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.train_seen: list[int] = []
        self.val_seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.train_seen += batch["index"].tolist()
        return (self.weight * batch["image"].mean()).sum()

    def validation_step(self, batch, batch_idx):
        self.val_seen += batch["index"].tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def gather(values: list[int]) -> list[list[int]]:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, values)
    return out


if __name__ == "__main__":
    dm = ImageDataModule(
        train=partial(ShapesDataset, "train", size=64, resolution=8),
        val=partial(ShapesDataset, "val", size=1001, resolution=8),
        batch_size=8,
        val_batch_size=16,
    )
    model = Recorder()
    common = dict(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    pl.Trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0, **common).fit(model, datamodule=dm)
    pl.Trainer(**common).validate(model, datamodule=dm, verbose=False)
    train_seen, val_seen = gather(model.train_seen), gather(model.val_seen)
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump({"train": train_seen, "val": val_seen}, f)
    dist.barrier()
    dist.destroy_process_group()
