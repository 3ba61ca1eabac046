"""Lightning modules for UViM's two stages (FSQ paper §4.4; big_vision ``trainers/proj/uvim/{vqvae,train}.py``).

``UViMStage1Module`` trains the guiding-code autoencoder (``nets/uvim_vqvae.py``) on the task's labels with the
image as context: loss = the task loss (``tasks/base.py``) + the quantizer's auxiliary loss (zero for FSQ;
UViM's VQ has commitment weight 0 and learns its dictionary by EMA, so zero there too). Validation logs the loss,
codebook usage of the guiding codes (``CodebookUsage``) and the *oracle* task metrics: the Stage I decoder's
reconstruction from the true codes, measured like the final predictions (``task.metric``; panoptic PQ is computed on
each rank's share of the val set, not reduced across ranks; ``uvim_eval`` scores the whole set on rank 0).

``UViMStage2Module`` trains the encoder-decoder language model (``nets/uvim_lm.py``) to predict the guiding code of
an image with teacher forcing (token cross-entropy); validation logs loss and token accuracy, and — when a Stage I
model is attached — decodes a few images autoregressively for a grid (image | ground truth | prediction).

Optimiser (both stages): AdamW with β = (0.9, 0.95), decoupled weight decay on weight matrices only, linear warm-up
then cosine decay, gradient clipping by global norm. The official recipe uses big_vision's Adafactor variant
(factored second moment, momentum 0.9, β₂ capped at 0.95, weight decay ``wd · lr_t`` on kernels only): the cap is
kept as Adam's β₂ and the decay rule is AdamW's; the factored second moment only saves memory, which at ≤ 0.3 B
parameters we do not need (``torch.optim.Adafactor`` has no momentum and no β₂ cap, so it is not closer).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from fsq_repro.lit.nonfinite import NonFiniteGuard
from fsq_repro.lit.schedules import warmup_cosine
from fsq_repro.metrics.usage import CodebookUsage
from fsq_repro.tasks.base import task_grid


def adamw_with_schedule(module: pl.LightningModule, groups: list[dict], warmup_steps: int, total_steps: int,
                        betas: tuple[float, float]) -> dict:  # fmt: skip
    opt = torch.optim.AdamW(groups, betas=tuple(betas), fused=True)  # fused: the device-side NaN skip
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, warmup_steps, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def decay_groups(named_params, lr: float, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices / kernels only (big_vision ``wd_mults`` default ``.*/kernel$``)."""
    decay, rest = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        is_kernel = p.ndim >= 2 and "pos" not in name and "table" not in name and "embed.weight" not in name
        (decay if is_kernel else rest).append(p)
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": rest, "lr": lr, "weight_decay": 0.0}]


class UViMStage1Module(pl.LightningModule):
    def __init__(
        self,
        model,
        task,
        lr: float = 1e-3,  # official vqvae_nyu_depth.py
        betas: tuple[float, float] = (0.9, 0.95),  # big_vision Adafactor momentum 0.9, beta2_cap 0.95
        weight_decay: float = 1e-5,  # official
        warmup_steps: int = 4000,  # official
        total_steps: int = 100_000,
        grad_clip: float | None = 1.0,  # official grad_clip_norm
        num_grid_images: int = 8,
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        self.model, self.task = model, task
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.warmup_steps, self.total_steps, self.grad_clip = int(warmup_steps), int(total_steps), grad_clip
        self.num_grid_images = num_grid_images
        self.guard = NonFiniteGuard(self, max_nonfinite_skips)
        self.usage = CodebookUsage(model.codebook_size)
        self.oracle = task.validation_metric()  # Stage I reconstruction scored like the final predictions
        self.last_val_grid: torch.Tensor | None = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["uvim_stage1_config"] = self.model.config()
        checkpoint["task_config"] = self.task.config()

    def configure_optimizers(self):
        groups = decay_groups(self.model.named_parameters(), self.lr, self.weight_decay)
        return adamw_with_schedule(self, groups, self.warmup_steps, self.total_steps, self.betas)

    def on_train_start(self) -> None:
        self.guard.start(self)

    def on_train_end(self) -> None:
        self.guard.poll(self, wait=True)  # the last steps' non-finite verdicts

    def on_before_optimizer_step(self, optimizer) -> None:
        """A NaN/Inf loss or gradient makes the fused AdamW skip this update on the device (``NonFiniteGuard``)."""
        self.guard.guard_step(self, optimizer, "Stage I loss", self._train_loss)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip or float("inf"))
        self.log("train/grad_norm", norm, batch_size=1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.guard.poll(self)  # earlier steps' non-finite verdicts, as far as they have reached the host
        labels = self.task.labels(batch)
        logits, q = self.model(labels, batch["image"])
        task_loss, logs = self.task.loss(logits, labels)
        loss = task_loss + q.loss
        b = batch["image"].shape[0]
        self._train_loss = loss.detach()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in {**logs, **q.metrics}.items()}, batch_size=b)
        return loss

    def on_validation_epoch_start(self) -> None:
        """Score against the val set's native ground truth when the data module has one (panoptic: crowd, VOID)."""
        val_set = getattr(getattr(self.trainer, "datamodule", None), "val_set", None)
        self.oracle = self.task.validation_metric(val_set)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        labels = self.task.labels(batch)
        image = batch["image"]
        logits, q = self.model(labels, image)
        loss, _ = self.task.loss(logits, labels)
        self.log("val/loss", loss, sync_dist=True, prog_bar=True, batch_size=image.shape[0])
        self.usage.update(q.indices)
        pred = self.task.predict(logits)
        self.oracle.update(pred, batch)
        if batch_idx == 0 and self.trainer.is_global_zero:
            n = self.num_grid_images
            self.last_val_grid = task_grid(self.task, image[:n], [self.task.truth(batch)[:n], pred[:n]])

    def on_validation_epoch_end(self) -> None:
        usage = self.usage.compute()
        self.log_dict({"val/usage": usage["usage"], "val/perplexity": usage["perplexity"]})
        oracle = self.oracle.compute()
        counts = [k for k in oracle if k == "n" or k.startswith(("num_", "n_"))]
        self.log_dict({f"val/oracle_{k}": float(v) for k, v in oracle.items() if k not in counts})
        self.usage.reset()
        self.oracle.reset()


class UViMStage2Module(pl.LightningModule):
    def __init__(
        self,
        model,
        lr: float = 1e-3,  # official train_nyu_depth_pretrained.py
        betas: tuple[float, float] = (0.9, 0.95),  # big_vision Adafactor momentum 0.9, beta2_cap 0.95
        weight_decay: float = 1e-6,  # official
        encoder_lr_mult: float = 0.1,  # official lr_mults: pos_embedding_encoder, EmbedPatches, encoder
        warmup_steps: int = 4000,  # official
        total_steps: int = 100_000,
        grad_clip: float | None = None,  # official: no clipping in Stage II
        num_grid_images: int = 8,
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr, self.betas, self.weight_decay, self.encoder_lr_mult = lr, tuple(betas), weight_decay, encoder_lr_mult
        self.warmup_steps, self.total_steps, self.grad_clip = int(warmup_steps), int(total_steps), grad_clip
        self.num_grid_images = num_grid_images
        self.guard = NonFiniteGuard(self, max_nonfinite_skips)
        self.stage1 = None  # attached for validation grids; not a sub-module (not trained, not checkpointed)
        self.task = None
        self.last_val_grid: torch.Tensor | None = None

    def attach_stage1(self, stage1, task) -> None:
        object.__setattr__(self, "stage1", stage1)
        self.task = task

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["uvim_lm_config"] = self.model.config()

    def configure_optimizers(self):
        encoder = set(self.model.encoder_parameter_names())
        enc = [(n, p) for n, p in self.model.named_parameters() if n in encoder]
        dec = [(n, p) for n, p in self.model.named_parameters() if n not in encoder]
        groups = decay_groups(enc, self.lr * self.encoder_lr_mult, self.weight_decay)
        groups += decay_groups(dec, self.lr, self.weight_decay)
        return adamw_with_schedule(self, [g for g in groups if g["params"]], self.warmup_steps, self.total_steps,
                                   self.betas)  # fmt: skip

    def on_train_start(self) -> None:
        self.guard.start(self)

    def on_train_end(self) -> None:
        self.guard.poll(self, wait=True)  # the last steps' non-finite verdicts

    def on_before_optimizer_step(self, optimizer) -> None:
        """A NaN/Inf loss or gradient makes the fused AdamW skip this update on the device (``NonFiniteGuard``)."""
        self.guard.guard_step(self, optimizer, "Stage II loss", self._train_loss)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip or float("inf"))
        self.log("train/grad_norm", norm, batch_size=1)

    def _step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        codes = batch["tokens"]
        logits = self.model(batch["image"], codes)
        loss = self.model.loss(logits, codes)
        accuracy = (logits[..., 1:].argmax(-1) == codes).float().mean()
        return loss, accuracy

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.guard.poll(self)  # earlier steps' non-finite verdicts, as far as they have reached the host
        loss, accuracy = self._step(batch)
        b = batch["tokens"].shape[0]
        self._train_loss = loss.detach()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.log("train/token_accuracy", accuracy, batch_size=b)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, accuracy = self._step(batch)
        b = batch["tokens"].shape[0]
        self.log("val/loss", loss, sync_dist=True, prog_bar=True, batch_size=b)
        self.log("val/token_accuracy", accuracy, sync_dist=True, batch_size=b)
        if batch_idx == 0 and self.stage1 is not None and self.trainer.is_global_zero:
            from fsq_repro.generation.autoregressive import decode

            n = self.num_grid_images
            image = batch["image"][:n]
            self.stage1.to(self.device)
            pred = self.task.predict(self.stage1.decode_indices(decode(self.model, image), image))
            truth = self.task.predict(self.stage1.decode_indices(batch["tokens"][:n], image))
            self.last_val_grid = task_grid(self.task, image, [self.task.truth(batch)[:n], truth, pred])
