"""A run interrupted at an epoch's last batch resumes exactly (docs/fault-tolerance.md, item 1): the final weights
equal an uninterrupted run's, bit for bit, for the two ways a checkpoint lands there — a SIGTERM (``interrupted.ckpt``,
``InterruptedCheckpoint``) and a step-interval ``ModelCheckpoint`` followed by a SIGKILL. Both were found by the
SIGTERM soak: the first resumed one epoch number ahead with one batch of the finished epoch's counter, the second
skipped a whole epoch of data (``ResumableLoader``). The oracle is the uninterrupted run of the same seed.

In-process, on a one-weight regression whose every step depends on which batch it saw, so any replayed, skipped or
re-ordered batch changes the weights."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import TensorDataset

from fsq_repro.data.loading import train_loader
from fsq_repro.lit.trainer import InterruptedCheckpoint, stage_callbacks

BATCHES_PER_EPOCH, MAX_STEPS = 5, 13


class _Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        x = batch[0].float()
        return ((self.w * x - 0.3 * x.square()) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        data = TensorDataset(torch.arange(8 * BATCHES_PER_EPOCH, dtype=torch.float32).view(-1, 1) / 10)
        return train_loader(data, batch_size=8, seed=5)


class _Interrupt(pl.Callback):
    """Mark a SIGTERM after the batch that reaches ``step`` (Lightning stops at the batch boundary), or stop the
    process at the start of the next batch, after the checkpoint of ``step`` was written, the way a SIGKILL would
    (the step checkpoint is what the rerun resumes from)."""

    def __init__(self, step: int, kind: str) -> None:
        self.step, self.kind = step, kind

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.kind == "sigterm" and trainer.global_step == self.step:
            trainer._signal_connector.received_sigterm = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.kind == "sigkill" and trainer.global_step == self.step:
            raise _Killed


class _Killed(BaseException):
    pass


def _trainer(ckpt_dir: Path, extra: list, checkpoint_cls=InterruptedCheckpoint) -> pl.Trainer:
    saver = pl.callbacks.ModelCheckpoint(ckpt_dir, every_n_train_steps=BATCHES_PER_EPOCH, save_last=True)
    callbacks, _ = stage_callbacks([saver, *extra], seed=0, experiment="t", checkpoint_dir=ckpt_dir)
    callbacks = [c for c in callbacks if not isinstance(c, InterruptedCheckpoint)]
    callbacks.append(checkpoint_cls(ckpt_dir, "interrupted"))
    return pl.Trainer(max_steps=MAX_STEPS, callbacks=callbacks, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)  # fmt: skip


def _run(tmp_path: Path, kind: str | None, checkpoint_cls=InterruptedCheckpoint) -> tuple[torch.Tensor, int]:
    """Final weight and final epoch, interrupted once (at the end of epoch 0) when ``kind`` is given."""
    ckpt_dir = tmp_path / "ckpt"
    if kind is not None:
        with pytest.raises((SIGTERMException, _Killed)):
            pl.seed_everything(0)
            _trainer(ckpt_dir, [_Interrupt(BATCHES_PER_EPOCH, kind)], checkpoint_cls).fit(_Regression())
        resume = ckpt_dir / ("interrupted.ckpt" if kind == "sigterm" else f"epoch=0-step={BATCHES_PER_EPOCH}.ckpt")
        assert resume.is_file()
    pl.seed_everything(0)
    trainer, module = _trainer(ckpt_dir, [], checkpoint_cls), _Regression()
    trainer.fit(module, ckpt_path=str(resume) if kind is not None else None)
    assert trainer.global_step == MAX_STEPS
    return module.w.detach().clone(), trainer.current_epoch


@pytest.mark.parametrize("kind", ["sigterm", "sigkill"])
def test_a_run_interrupted_at_an_epoch_end_resumes_exactly(tmp_path: Path, kind: str) -> None:
    reference, epoch = _run(tmp_path / "full", None)
    resumed, resumed_epoch = _run(tmp_path / kind, kind)
    assert torch.equal(resumed, reference)
    assert resumed_epoch == epoch


def test_lightnings_own_exception_checkpoint_resumes_an_epoch_ahead(tmp_path: Path) -> None:
    """The broken variant the fix replaces: Lightning's ``OnExceptionCheckpoint`` at the same point."""
    reference, epoch = _run(tmp_path / "full", None, pl.callbacks.OnExceptionCheckpoint)
    resumed, resumed_epoch = _run(tmp_path / "sigterm", "sigterm", pl.callbacks.OnExceptionCheckpoint)
    assert resumed_epoch == epoch + 1 or not torch.equal(resumed, reference)
