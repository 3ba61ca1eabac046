"""A callback the DDP tests add from the command line (``+callbacks.allreduce._target_=tests.lit.ddp_probe.
CountAllReduces``): it counts the gradient all-reduce rounds of DDP per optimizer step through a DDP communication
hook (one call per gradient bucket; a round is a call for bucket 0) and, on rank 0, writes
``<default_root_dir>/allreduce_<module class>.json``: ``{"rounds_per_step": [...], "buckets": n}``. Without DDP it
does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel


class CountAllReduces(pl.Callback):
    def __init__(self) -> None:
        self.rounds, self.buckets, self.per_step, self.step = 0, set(), [], 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = trainer.strategy.model
        if not isinstance(model, DistributedDataParallel):
            return

        def hook(state, bucket):
            self.buckets.add(bucket.index())
            if bucket.index() == 0:
                self.rounds += 1
            return default_hooks.allreduce_hook(state, bucket)

        model.register_comm_hook(None, hook)
        self.step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:  # an optimizer step ended with this batch
            self.per_step.append(self.rounds)
            self.rounds, self.step = 0, trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if isinstance(trainer.strategy.model, DistributedDataParallel) and trainer.is_global_zero:
            out = Path(trainer.default_root_dir) / f"allreduce_{type(pl_module).__name__}.json"
            out.write_text(json.dumps({"rounds_per_step": self.per_step, "buckets": len(self.buckets)}))
