"""Lightning module for Stage II: MaskGIT over frozen tokenizer tokens (FSQ paper §4.3; MaskGIT §3.2).

Per batch of cached tokens ``(B, N)``: mask ``max(mask_schedule(r), min_mask_rate)`` of each row (``r ~ U(0,1)``,
``generation/masking.py``), replace them by MASK, predict them with the bidirectional transformer given the class
token (dropped to the null class with p = 0.1 inside the class embedder), cross-entropy with label smoothing 0.1 on
the masked positions only, averaged over each image's masked positions, then over the batch (official
``losses.weighted_sequence_cross_entropy_loss``). AdamW β = (0.9, 0.96), lr 1e-4, weight decay 0.045, 5k linear
warm-up, then ``lr_schedule``: ``constant`` (the official class-conditional config, ``base_config.lr_schedule``; the
paper experiments' default — the FSQ paper does not state its schedule) or ``cosine`` decay to 0 at ``total_steps``
(numbers: google-research/maskgit ``maskgit/configs/maskgit_class_cond_config.py``). Logs loss and masked-token
accuracy; at validation, also class-conditional samples decoded by the tokenizer when one is attached (the tokenizer
is never part of the training loop or the checkpoint).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from fsq_repro.generation.masking import random_token_mask
from fsq_repro.generation.sampler import sample_with_model
from fsq_repro.lit.nonfinite import NonFiniteGuard
from fsq_repro.lit.schedules import LR_SCHEDULES, lr_multiplier
from fsq_repro.nets.transformer import MaskGITTransformer


def masked_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, label_smoothing: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (with label smoothing) over the masked positions only, averaged over each image's masked
    positions, then over the images (official ``weighted_sequence_cross_entropy_loss`` with the mask as weights: an
    image with 200 masked tokens weighs as much as one with 115). Accuracy: all masked positions pooled (logging).

    ``logits (B, N, C)``, ``targets (B, N)``, ``mask (B, N)`` bool, at least one True per row → two scalars.
    Computed over all positions and weighted by the mask: selecting the masked rows (``logits[mask]``) has a
    data-dependent shape, a device→host sync every step (docs/gpu.md)."""
    weights = mask.float()
    per_token = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), label_smoothing=label_smoothing, reduction="none"
    ).view(mask.shape)
    loss = ((per_token * weights).sum(1) / weights.sum(1).clamp_min(1)).mean()
    correct = (logits.argmax(-1) == targets).float()
    accuracy = (correct * weights).sum() / weights.sum().clamp_min(1)
    return loss, accuracy


class MaskGITModule(pl.LightningModule):
    def __init__(
        self,
        model: MaskGITTransformer,
        lr: float = 1e-4,  # MaskGIT class-conditional config (lr)
        betas: tuple[float, float] = (0.9, 0.96),  # MaskGIT class-conditional config (beta1, beta2)
        weight_decay: float = 0.045,  # MaskGIT class-conditional config (weight_decay)
        warmup_steps: int = 5000,  # MaskGIT class-conditional config (warmup_steps)
        total_steps: int = 1_000_000,
        lr_schedule: str = "constant",  # official MaskGIT class-conditional config
        min_mask_rate: float = 0.45,  # FSQ paper §4.3
        mask_schedule: str = "cosine",  # MaskGIT §3.2
        label_smoothing: float = 0.1,  # MaskGIT
        sampler: dict | None = None,
        num_sample_images: int = 4,
        max_sample_classes: int = 16,
        compile: bool = False,
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        self.guard = NonFiniteGuard(self, max_nonfinite_skips)
        self.model = model
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose one of {LR_SCHEDULES}")
        self.lr_schedule = lr_schedule
        self.min_mask_rate, self.mask_schedule, self.label_smoothing = min_mask_rate, mask_schedule, label_smoothing
        self.sampler = dict(sampler or {})
        self.num_sample_images, self.max_sample_classes = num_sample_images, max_sample_classes
        # a plain attribute, not a sub-module: the weights are checkpointed once, under `model.`
        object.__setattr__(self, "forward_fn", torch.compile(model) if compile else model)
        self.tokenizer = None  # optional, attached with `attach_tokenizer` for sample grids; not a sub-module
        self.last_val_grid: torch.Tensor | None = None

    def attach_tokenizer(self, tokenizer) -> None:
        object.__setattr__(self, "tokenizer", tokenizer)  # bypass nn.Module registration: not in state_dict

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["model_config"] = self.model.config()

    def configure_optimizers(self):
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "norm" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
            betas=self.betas,
            fused=True,  # one kernel per step on CUDA; the device-side skip of a non-finite step (``found_inf``)
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_multiplier(step, self.warmup_steps, self.total_steps, self.lr_schedule)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _masked_step(
        self, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = batch["tokens"]
        b, n = tokens.shape
        mask = random_token_mask(b, n, self.min_mask_rate, self.mask_schedule, generator, device=tokens.device)
        inputs = torch.where(mask, torch.full_like(tokens, self.model.mask_token_id), tokens)
        class_ids = self.model.class_embedder(batch["label"])  # label dropout while training
        logits = self.forward_fn(inputs, class_ids)
        loss, accuracy = masked_token_loss(logits, tokens, mask, self.label_smoothing)
        return loss, accuracy, mask.float().mean()

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Labels are checked here, on the host before the batch goes to the device (the class embedder checks
        them itself outside training; on the device the check would be a host sync every step)."""
        labels = batch.get("label") if isinstance(batch, dict) else None
        if isinstance(labels, torch.Tensor) and labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if hi >= self.model.num_classes or lo < -1:
                raise ValueError(f"labels must be in [-1, {self.model.num_classes}), got [{lo}, {hi}]")
        return batch

    def on_train_start(self) -> None:
        self.guard.start(self)

    def on_train_end(self) -> None:
        self.guard.poll(self, wait=True)  # the last steps' non-finite verdicts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.guard.poll(self)  # earlier steps' non-finite verdicts, as far as they have reached the host
        loss, accuracy, ratio = self._masked_step(batch)
        b = batch["tokens"].shape[0]
        self._train_loss = loss.detach()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.log_dict({"train/masked_accuracy": accuracy, "train/mask_ratio": ratio}, batch_size=b)
        self.log("train/nonfinite_skips", self.nonfinite_skips.float(), batch_size=b)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """A NaN/Inf loss or gradient makes the fused AdamW skip this update on the device (``NonFiniteGuard``)."""
        self.guard.guard_step(self, optimizer, "masked-token loss", self._train_loss)

    def on_validation_epoch_start(self) -> None:
        """Every validation masks with the same draws (a generator seeded with 0), independent of the global RNG:
        the val loss of step k is then a function of the weights alone — comparable across validations, and the
        same whether or not the run was interrupted and resumed (the soak found it differing)."""
        self._val_generator = torch.Generator(device=self.device).manual_seed(0)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, accuracy, _ = self._masked_step(batch, getattr(self, "_val_generator", None))
        b = batch["tokens"].shape[0]
        self.log("val/loss", loss, sync_dist=True, prog_bar=True, batch_size=b)
        self.log("val/masked_accuracy", accuracy, sync_dist=True, batch_size=b)
        # samples here, not in on_validation_epoch_end: callbacks' epoch-end hooks (the grid writer) run first
        if batch_idx == 0 and self.tokenizer is not None and self.trainer.is_global_zero:
            self.last_val_grid = self.sample_images(self.num_sample_images, generator_seed=0)

    @torch.no_grad()
    def sample_images(self, per_class: int, generator_seed: int = 0, **sampler_overrides) -> torch.Tensor:
        """``per_class`` samples of each of the first ``max_sample_classes`` classes, decoded:
        ``(K·per_class, 3, H, W)``, one class per row of ``per_class`` images."""
        k = min(self.model.num_classes, self.max_sample_classes)
        labels = torch.arange(k, device=self.device).repeat_interleave(per_class)
        generator = torch.Generator(device=self.device).manual_seed(generator_seed)
        tokens = sample_with_model(self.model, labels, generator=generator, **{**self.sampler, **sampler_overrides})
        h, w = self.tokenizer.token_grid
        return self.tokenizer.decode(tokens.view(-1, h, w)).clamp(-1, 1).float().cpu()


class TokenizerToDevice(pl.Callback):
    """Keep the attached (non-module) tokenizer on the module's device for sample grids."""

    def on_validation_start(self, trainer: pl.Trainer, pl_module: MaskGITModule) -> None:
        if pl_module.tokenizer is not None:
            pl_module.tokenizer.to(pl_module.device)
