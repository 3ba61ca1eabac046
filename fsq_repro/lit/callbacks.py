"""Lightning callbacks of the project: image grids to disk and to every logger that can show images, and the
per-step re-seeding that makes a resumed run draw the same random numbers as an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
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


def step_seed(seed: int, rank: int, step: int, micro: int = 0) -> int:
    """A 63-bit seed that is a pure function of ``(seed, rank, step)`` (distinct per rank and per step) and, for the
    micro-batches ``micro > 0`` of an accumulated step, of ``micro`` too (micro-batch 0 keeps the step's seed)."""
    entropy = [int(seed), int(rank), int(step)] + ([int(micro)] if micro else [])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


class ReseedEveryStep(pl.Callback):
    """Re-seed torch (CPU and CUDA), numpy and ``random`` from ``(seed, rank, global_step, micro-batch)`` before every
    training batch (docs/fault-tolerance.md, item 1). Checkpoints store no RNG state, and restoring one at load time
    would be too early (the loader iterator is created afterwards and draws from it); seeding from the step makes the
    masking draws of Stage II, dropout and any other randomness of step ``k`` the same whether or not the run was
    resumed. The micro-batches of one accumulated step share ``global_step``, so each gets its own seed (else all
    of them would draw the same Stage II masks and dropout); the first, and every batch without accumulation, keeps
    the step's seed. Data order is the loader's business (``data/loading.py: train_loader``)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if pl_module.automatic_optimization:
            micro = batch_idx % max(1, int(trainer.accumulate_grad_batches))  # Lightning's windows start each epoch
        else:
            micro = int(getattr(pl_module, "micro_batch", 0))  # Stage I accumulates by hand
        s = step_seed(self.seed, trainer.global_rank, trainer.global_step, micro)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)  # noqa: NPY002  (the legacy global state is what third-party code draws from)
        random.seed(s)


class Preemption(pl.Callback):
    """Preemption handling (docs/fault-tolerance.md, item 2), for every training stage.

    - SIGTERM: Lightning stops at the next batch boundary and ``OnExceptionCheckpoint`` writes
      ``checkpoints/<stage>/interrupted.ckpt`` (atomically, ``AtomicCheckpointIO``); the next run resumes from it.
    - ``requeue_signals`` (SIGUSR1, SLURM's ``--signal``; SIGUSR2, submitit's timeout signal): the same, then rank 0
      runs ``scontrol requeue $SLURM_JOB_ID`` (``fit_and_validate``). Lightning's own SLURM handler is kept out (it
      saves ``hpc_ckpt_*.ckpt`` from inside the signal handler, possibly mid-step, and ``ckpt_path=last`` ignores
      those files): Lightning installs it only when no handler is registered, and this one is registered first.
    - Further SIGTERMs while the checkpoint is written are counted, never fatal: only the first reaches Lightning's
      handler, and this callback's SIGTERM handler is the one Lightning restores when it tears down, so a signal
      storm cannot kill the process mid-save (and the save is atomic anyway)."""

    def __init__(self, requeue_signals: tuple[str, ...] = ("SIGUSR1", "SIGUSR2")) -> None:
        self.requeue_signals = [getattr(signal, name) for name in requeue_signals]
        self.requeue_requested = False
        self.sigterms = 0
        self._previous: dict = {}

    def _on_requeue_signal(self, signum, frame) -> None:
        self.requeue_requested = True
        signal.raise_signal(signal.SIGTERM)  # Lightning's path: stop at the batch boundary, checkpoint

    def _on_sigterm(self, signum, frame) -> None:
        self.sigterms += 1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in [(s, self._on_requeue_signal) for s in self.requeue_signals] + [
            (signal.SIGTERM, self._on_sigterm)
        ]:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning has installed its SIGTERM handler by now: let it see the first SIGTERM only. It logs on every
        call, and a burst of SIGTERMs re-entered it until Python's recursion limit (seen under CI load)."""
        if threading.current_thread() is not threading.main_thread():
            return
        lightning_handler = signal.getsignal(signal.SIGTERM)

        def first_only(signum, frame) -> None:
            self.sigterms += 1
            if self.sigterms == 1 and callable(lightning_handler):
                lightning_handler(signum, frame)

        signal.signal(signal.SIGTERM, first_only)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def slurm_requeue() -> str | None:
    """``scontrol requeue`` this SLURM job (array task aware); returns the job id, or None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    subprocess.run(["scontrol", "requeue", job], check=False)
    return job


class CudaPeakMemory(pl.Callback):
    """Prints ``cuda peak <stage>: X GiB`` — ``torch.cuda.max_memory_allocated`` over the fit — at the end of every
    fit on a CUDA device (what ``scripts/gpu_check.py`` reports per stage); nothing on a CPU."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda" and trainer.is_global_zero:
            peak = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            print(f"cuda peak {type(pl_module).__name__}: {peak:.2f} GiB", flush=True)


class ProgressBar(pl.callbacks.RichProgressBar):
    """Lightning's ``RichProgressBar`` that reads the logged values (``loss``, ``val/psnr``: one device→host copy
    each, a stall on a GPU) every ``metrics_every`` training batches instead of every batch; the bar itself still
    advances every batch (docs/gpu.md, "No host syncs in the training step")."""

    def __init__(self, metrics_every: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metrics_every = max(1, int(metrics_every))
        self._train_batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._train_batches += 1
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _update_metrics(self, trainer, pl_module) -> None:
        if trainer.training and self._train_batches % self.metrics_every != 0:
            return
        super()._update_metrics(trainer, pl_module)
