"""The Lightning side of every training stage (the FSQ paper's two-stage pipeline, §4): the callbacks every Trainer
carries, atomic checkpoint writes, resume checks, and a fit that turns a SIGTERM into a resumable exit.

Everything here receives objects (a built ``Trainer``, a module, paths); ``fsq_repro/pipeline/stages.py`` reads the
config and calls it. See docs/fault-tolerance.md for what a resume restores.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fsq_repro.artifacts import read_checkpoint
from fsq_repro.atomic import atomic_torch_save
from fsq_repro.errors import ConfigError, peer_failure
from fsq_repro.lit.callbacks import Preemption, ReseedEveryStep, slurm_requeue


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs, and the DataLoader workers' seeds (Lightning's ``seed_everything``, whose
    "Seed set" line is printed once: ``quiet_lightning_logging`` first)."""
    quiet_lightning_logging()
    pl.seed_everything(int(seed), workers=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to ``<path>.<pid>.tmp`` next to the target, fsynced, then ``os.replace``d
    (``fsq_repro/atomic.py``): a crash or a full disk mid-write leaves the previous checkpoint intact (Lightning's
    own write goes through a temp file in ``$TMPDIR`` and ``shutil.move``, which is atomic only on one filesystem
    and never fsyncs)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)


class RunInfo(pl.Callback):
    """Stamps every checkpoint with the experiment name (shown when a resume does not fit)."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["experiment"] = self.experiment


class InterruptedCheckpoint(pl.callbacks.OnExceptionCheckpoint):
    """``OnExceptionCheckpoint`` (``<dirpath>/interrupted.ckpt``) whose checkpoint resumes like one written at the
    last batch's ``on_train_batch_end``. A SIGTERM stops Lightning 2.6 after the batch's ``on_advance_end`` (after
    the epoch's end when it is the epoch's last batch), when the batch counts as completed; resumed from that state
    at an epoch's **last** batch, Lightning ran one more batch of the next epoch under the finished epoch's batch
    counter (it treats the state as "restarted on last") and went on one epoch number ahead; found by the SIGTERM
    soak. At an epoch's last batch the checkpoint is therefore written as ``ModelCheckpoint`` writes it at
    ``on_train_batch_end`` (one batch fewer completed, ``_batches_that_stepped`` not yet advanced for it, the epoch
    not yet ended), which Lightning resumes at the next epoch's first batch; the epoch-end hooks have run once,
    before the save. Mid-epoch and mid-validation interruptions are saved unchanged."""

    def __init__(self, dirpath: str | Path, filename: str = "interrupted") -> None:
        super().__init__(dirpath, filename)
        self._interrupted = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if peer_failure(exception):  # saving needs the peers (a barrier): resume from the last periodic checkpoint
            logging.getLogger(__name__).warning("a DDP peer process failed: no interrupted.ckpt (the last periodic "
                                                "checkpoint is kept)")  # fmt: skip
            return
        self._interrupted = True
        try:
            super().on_exception(trainer, pl_module, exception)
        finally:
            self._interrupted = False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if not (self._interrupted and trainer.training):
            return
        epoch_loop = trainer.fit_loop.epoch_loop
        fit_state = checkpoint.get("loops", {}).get("fit_loop", {})
        progress = fit_state.get("epoch_loop.batch_progress")
        if progress is None or not progress.get("is_last_batch"):
            return
        total = progress["total"]
        if not (total["ready"] == total["started"] == total["processed"] == total["completed"] > 0):
            return  # not at a batch boundary: Lightning's own restart logic applies
        for counter in (progress["total"], progress["current"]):
            counter["completed"] -= 1
        if not epoch_loop._should_accumulate():  # on_advance_end advanced it for this batch
            fit_state["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1
        epochs = fit_state.get("epoch_progress", {})
        for counter in (epochs.get("total", {}), epochs.get("current", {})):
            if counter and counter["processed"] == counter["completed"] == counter["started"] > 0:
                counter["processed"] -= 1  # the SIGTERM came after the epoch's end: not counted as ended yet
                counter["completed"] -= 1


def stage_callbacks(callbacks: list, seed: int, experiment: str, checkpoint_dir: Path) -> tuple[list, bool]:
    """``callbacks`` + what every stage carries: per-step re-seeding (exact resume), SIGTERM handling and the
    experiment stamp; with a ``ModelCheckpoint`` among them also ``OnExceptionCheckpoint``, so that an exception or
    SIGTERM mid-run leaves ``<checkpoint_dir>/interrupted.ckpt`` for the next run to resume from (not "last":
    Lightning removes that callback's file at teardown of a successful run). Returns ``(callbacks, checkpointing)``."""
    callbacks = [*callbacks, ReseedEveryStep(int(seed)), Preemption(), RunInfo(experiment)]
    checkpointing = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    if checkpointing:
        callbacks.append(InterruptedCheckpoint(checkpoint_dir, "interrupted"))
    return callbacks, checkpointing


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's console tips that advertise other products (e.g. ``litlogger``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_lightning_logging() -> None:
    """Each Lightning INFO line once: ``import lightning`` attaches its own console handler to the ``lightning``
    logger *and* lets records propagate to the root logger that Hydra configured (console + ``train.log``), so every
    line printed twice. Drop Lightning's handler (Hydra's print it once and keep it in ``train.log``) and filter the
    advertisements on every root handler. Idempotent."""
    root = logging.getLogger()
    if not root.handlers:  # no Hydra logging (a library use): Lightning's own handler is the only one
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # each may have attached its own handler
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in root.handlers:
        if not any(isinstance(f, _NoAdvertisements) for f in handler.filters):
            handler.addFilter(_NoAdvertisements())


def check_resume_compatible(path: str, module: pl.LightningModule) -> None:
    """Before resuming, compare the checkpoint's parameter names and shapes with this model's: a checkpoint from
    another experiment or model size is a one-line ``ConfigError`` naming the first difference (and the experiment
    that wrote it), not a ``size mismatch`` traceback from ``load_state_dict``; an unreadable one, too."""
    ckpt = read_checkpoint(path, mmap=True)
    theirs, own = ckpt["state_dict"], module.state_dict()
    shared = sorted(own.keys() & theirs.keys())
    problems = [f"{k} has shape {tuple(theirs[k].shape)} there, {tuple(own[k].shape)} here"
                for k in shared if tuple(own[k].shape) != tuple(theirs[k].shape)]  # fmt: skip
    problems += [f"{k} is missing there" for k in sorted(own.keys() - theirs.keys())]
    problems += [f"{k} is not in this model" for k in sorted(theirs.keys() - own.keys())]
    if problems:
        raise ConfigError(
            f"checkpoint {path} (experiment={ckpt.get('experiment', '?')}) does not fit this model: {problems[0]}"
            f" ({len(problems)} differences); resume with the config that wrote it, or use another run dir"
        )


def save_final_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """Make ``path`` (the stage's ``last.ckpt``) the state at the end of training (``ModelCheckpoint`` writes it only
    every ``every_n_train_steps``), so a longer re-run continues from the true end and ``last.ckpt`` never lags."""
    callback = trainer.checkpoint_callback
    if not callback or trainer.fast_dev_run:
        return
    # the callback's own record (the same on every rank: `save_checkpoint` is collective under DDP)
    if getattr(callback, "_last_global_step_saved", -1) != trainer.global_step:
        trainer.save_checkpoint(path, weights_only=False)  # full state


def fit_then_validate(
    stage: str, trainer: pl.Trainer, module, dm, ckpt_path: str | None, checkpoint_dir: Path, final_val_batches
) -> dict:
    """Fit (from ``ckpt_path`` when given, after ``check_resume_compatible``), then validate on the *whole*
    validation split (codebook usage needs all of it; ``final_val_batches`` caps it). A SIGTERM (SLURM preemption)
    exits 0 after the interrupted checkpoint, requeueing the SLURM job when asked. Returns the summary fields every
    stage writes."""
    start = time.perf_counter()
    if ckpt_path:
        check_resume_compatible(ckpt_path, module)
    try:
        # weights_only: our checkpoints are plain containers (tokenizer_module.on_save_checkpoint)
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))
        job = slurm_requeue() if preemption.requeue_requested and trainer.is_global_zero else None
        then = f"SLURM job {job} requeued" if job else "re-run the same command to resume"
        ckpt = checkpoint_dir / "interrupted.ckpt"
        print(f"{stage}: stopped by a signal after step {trainer.global_step}; checkpoint {ckpt}; {then}", flush=True)
        raise SystemExit(0) from None
    fit_seconds = time.perf_counter() - start
    if trainer.interrupted:
        raise SystemExit(f"{stage} was interrupted; re-run the same command (same run dir) to resume")
    save_final_checkpoint(trainer, checkpoint_dir / "last.ckpt")
    trainer.limit_val_batches = 1 if trainer.fast_dev_run else (int(final_val_batches) if final_val_batches else 1.0)
    val = {k: float(v) for k, v in trainer.validate(module, datamodule=dm, verbose=False)[0].items() if k != "step"}
    return {
        "stage": stage,
        "steps": int(trainer.global_step),
        "fit_seconds": round(fit_seconds, 2),
        "seconds_per_step": round(fit_seconds / max(1, trainer.global_step), 4),
        "val": val,
    }
