"""A callback the fault-tolerance tests add from the command line (``+callbacks.kill._target_=...``): it kills
its own process with SIGKILL — no handler, no cleanup, like a node failure — once ``global_step`` reaches
``step`` (at the start of the next batch, so the checkpoint of step ``step`` has been written)."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl


class KillAtStep(pl.Callback):
    def __init__(self, step: int, sig: str = "SIGKILL") -> None:
        self.step, self.sig = int(step), getattr(signal, sig)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), self.sig)


class SignalStorm(pl.Callback):
    """When the run is being interrupted (``on_exception``, which runs before the checkpoint callbacks save), send
    this process SIGTERM every millisecond from a thread until ``checkpoints/<stage>/interrupted.ckpt`` exists
    (at most ``seconds``): the checkpoint is written under a storm of further SIGTERMs. (The storm stops once the
    file is there: at interpreter shutdown CPython restores the default handlers, and a SIGTERM then would end
    the process with -15 after a complete save, which is not what this tests.)"""

    def __init__(self, stage: str = "stage1", seconds: float = 30.0) -> None:
        self.stage, self.seconds = stage, float(seconds)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        import threading
        import time
        from pathlib import Path

        target = Path(trainer.default_root_dir) / "checkpoints" / self.stage / "interrupted.ckpt"

        def storm() -> None:
            end = time.monotonic() + self.seconds
            while time.monotonic() < end and not target.exists():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.001)

        threading.Thread(target=storm, daemon=True).start()


class PoisonBatch(pl.Callback):
    """Fill the images of the ``batch``-th training batch of this process (1-based) with NaN: a non-finite loss
    from the data. (Counted in batches, not steps: a skipped batch does not advance ``global_step``.)"""

    def __init__(self, batch: int) -> None:
        self.batch, self.calls = int(batch), 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.calls += 1
        if self.calls == self.batch:
            batch["image"].fill_(float("nan"))


class EmptyBatchOnRank(pl.Callback):
    """Make the ``batch``-th training batch (1-based) of rank ``rank`` all corrupt: no image left, every file
    counted in ``num_corrupt`` — what ``collate_skip_corrupt`` yields when every file of a batch is unreadable."""

    def __init__(self, batch: int, rank: int = 1) -> None:
        self.batch, self.rank, self.calls = int(batch), int(rank), 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.calls += 1
        if self.calls == self.batch and trainer.global_rank == self.rank:
            batch["num_corrupt"] = batch["num_corrupt"] + batch["image"].shape[0]
            batch["image"] = batch["image"][:0]


class KillRankAt(pl.Callback):
    """SIGKILL rank ``rank`` at the start of its ``step``-th optimizer step (a node failure in the middle of a DDP
    run): the other ranks then wait for it in the next gradient all-reduce."""

    def __init__(self, step: int, rank: int = 1) -> None:
        self.step, self.rank = int(step), int(rank)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
