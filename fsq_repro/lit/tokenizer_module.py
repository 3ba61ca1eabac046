"""Lightning module for Stage I: the VQGAN tokenizer with an FSQ or VQ bottleneck (FSQ paper §4.1 / §4.3).

Manual optimisation with two Adam optimisers (β = (0, 0.99), lr 1e-4, linear warm-up; hyperparameters.md):
one generator step (L2 + perceptual + GAN + quantizer loss, ``Stage1Loss``) and, once the GAN is active, one
discriminator step (non-saturating + R1 [+ LeCam]) per batch. Gradients are clipped. Under ``bf16-mixed`` the nets
run in bf16 while the quantizers compute in fp32 internally.

EMA (decay 0.999) covers the **generator only** (encoder, quantizer, decoder): ``self.ema`` is a plain sub-module,
so it is saved and restored with every checkpoint, and the discriminator is never averaged. Validation and export
use the EMA weights. ``global_step`` counts optimiser steps (two per batch once the GAN is on), so schedules here
use ``self.batches_seen``, a buffer that advances once per training batch. The discriminator is stepped through
the raw torch optimiser, so Lightning's ``global_step`` (and ``trainer.max_steps``) counts batches, not optimiser
steps (with two Lightning-wrapped optimisers it would advance twice per batch). This assumes no GradScaler:
use ``bf16-mixed`` or ``32-true``, not ``16-mixed``.
"""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import torch

from fsq_repro.losses.stage1 import Stage1Loss
from fsq_repro.metrics.usage import CodebookUsage
from fsq_repro.nets.discriminator import Discriminator
from fsq_repro.nets.tokenizer import Tokenizer


def psnr(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for pixels in [−1, 1] (peak-to-peak 2): ``(B,)``."""
    mse = (recon.float().clamp(-1, 1) - images.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


class TokenizerModule(pl.LightningModule):
    def __init__(
        self,
        tokenizer: Tokenizer,
        loss: Stage1Loss,
        discriminator: Discriminator | None = None,
        lr: float = 1e-4,  # hyperparameters.md (MaskGIT Stage I)
        betas: tuple[float, float] = (0.0, 0.99),  # hyperparameters.md (MaskGIT Stage I)
        warmup_steps: int = 2000,  # hyperparameters.md
        ema_decay: float = 0.999,  # hyperparameters.md
        grad_clip: float = 1.0,
        max_grid_images: int = 16,
        data_fingerprint: str = "",
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.tokenizer, self.loss, self.discriminator = tokenizer, loss, discriminator
        self.ema = copy.deepcopy(tokenizer).requires_grad_(False).eval()
        self.lr, self.betas, self.warmup_steps = lr, tuple(betas), int(warmup_steps)
        self.ema_decay, self.grad_clip, self.max_grid_images = ema_decay, grad_clip, max_grid_images
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self.max_nonfinite_skips = int(max_nonfinite_skips)
        self.register_buffer("nonfinite_skips", torch.zeros((), dtype=torch.long))  # checkpointed
        self.val_usage = CodebookUsage(tokenizer.codebook_size, validate_indices=False)
        self.last_val_grid: torch.Tensor | None = None
        self.data_fingerprint = data_fingerprint

    # --- checkpoints: plain containers only, so `torch.load(weights_only=True)` works and export needs no Hydra ---
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokenizer_config"] = self.tokenizer.config()
        checkpoint["data_fingerprint"] = self.data_fingerprint

    # --- optimisation ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        gen = torch.optim.Adam(self.tokenizer.parameters(), lr=self.lr, betas=self.betas)
        if self.discriminator is None:
            return gen
        disc = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)
        return [gen, disc]

    def _lr_scale(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0

    def _step(self, optimizer, loss: torch.Tensor, params, step: int, count_step: bool = True) -> torch.Tensor:
        """Backward, clip, and step unless the gradient norm is non-finite (then the weights stay untouched and
        ``_nonfinite`` decides between skipping and stopping). Returns the pre-clip gradient norm."""
        for group in optimizer.param_groups:
            group["lr"] = self.lr * self._lr_scale(step)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        grad_norm = torch.nn.utils.clip_grad_norm_(list(params), self.grad_clip)
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            return grad_norm
        # The generator step goes through Lightning (advances global_step); the discriminator's does not.
        (optimizer if count_step else optimizer.optimizer).step()
        return grad_norm

    def _nonfinite(self, what: str, terms: dict[str, torch.Tensor]) -> None:
        """A NaN/Inf ``what`` (reliability issue #9, promise 4): skip this batch (weights untouched) while fewer than
        ``max_nonfinite_skips`` batches were skipped, else stop naming the step and the terms. The checkpoint
        written on the way out (``interrupted.ckpt``) holds the last good weights."""
        self.nonfinite_skips += 1
        detail = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        if int(self.nonfinite_skips) > self.max_nonfinite_skips:
            raise FloatingPointError(
                f"non-finite {what} at step {self.global_step} (batch {int(self.batches_seen)}): {detail} "
                f"({int(self.nonfinite_skips)} non-finite batches, max_nonfinite_skips={self.max_nonfinite_skips})"
            )
        self.print(f"warning: non-finite {what} at step {self.global_step}, batch skipped: {detail}")

    @torch.no_grad()
    def _update_ema(self) -> None:
        for ema_p, p in zip(self.ema.parameters(), self.tokenizer.parameters()):
            ema_p.lerp_(p.detach(), 1 - self.ema_decay)
        for ema_b, b in zip(self.ema.buffers(), self.tokenizer.buffers()):
            ema_b.copy_(b)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        images = batch["image"]
        if images.shape[0] == 0:  # every file of the batch was corrupt
            return None
        step = int(self.batches_seen)
        optimizers = self.optimizers()
        gen_opt, disc_opt = (optimizers, None) if self.discriminator is None else optimizers
        recon, q = self.tokenizer(images)
        g_terms = self.loss.generator_terms(images, recon, q.loss, step, self.discriminator)
        if not torch.isfinite(g_terms["total"]):
            return self._nonfinite("generator loss", g_terms)
        g_norm = self._step(gen_opt, g_terms["total"], self.tokenizer.parameters(), step)
        if not torch.isfinite(g_norm):
            return self._nonfinite("generator gradient norm", {"grad_norm_g": g_norm})
        self._update_ema()
        logs = {f"train/{k}": v.detach() for k, v in g_terms.items()}
        logs["train/grad_norm_g"] = g_norm
        if disc_opt is not None and self.loss.gan_active(step):
            d_terms = self.loss.discriminator_terms(images, recon, self.discriminator, step)
            if not torch.isfinite(d_terms["total"]):
                return self._nonfinite("discriminator loss", d_terms)
            d_norm = self._step(disc_opt, d_terms["total"], self.discriminator.parameters(), step, count_step=False)
            if not torch.isfinite(d_norm):
                return self._nonfinite("discriminator gradient norm", {"grad_norm_d": d_norm})
            logs["train/grad_norm_d"] = d_norm
            logs.update({f"train/{k}": v.detach() for k, v in d_terms.items()})
        logs.update({f"train/{k}": v for k, v in q.metrics.items()})
        logs["train/psnr"] = psnr(images, recon.detach()).mean()
        logs["train/num_corrupt"] = batch["num_corrupt"].float()
        logs["train/lr"] = torch.tensor(self.lr * self._lr_scale(step))
        logs["train/nonfinite_skips"] = self.nonfinite_skips.float()
        batch_size = images.shape[0]
        self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("loss", g_terms["total"].detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        self.batches_seen += 1

    # --- validation (EMA weights) -------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images = batch["image"]
        if images.shape[0] == 0:
            return
        recon, q = self.ema(images)
        self.val_usage.update(q.indices)
        mse = (recon.float().clamp(-1, 1) - images.float()).pow(2).mean()
        self.log("val/mse", mse, sync_dist=True, batch_size=images.shape[0])
        self.log("val/psnr", psnr(images, recon).mean(), sync_dist=True, prog_bar=True, batch_size=images.shape[0])
        if batch_idx == 0:
            n = min(self.max_grid_images, images.shape[0])
            self.last_val_grid = torch.cat([images[:n], recon[:n].clamp(-1, 1)]).detach().float().cpu()

    def on_validation_epoch_end(self) -> None:
        stats = self.val_usage.compute()
        self.log("val/usage", stats["usage"], sync_dist=False)
        self.log("val/perplexity", stats["perplexity"], sync_dist=False)
        self.val_usage.reset()
