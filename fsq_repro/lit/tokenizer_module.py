"""Lightning module for Stage I: the VQGAN tokenizer with an FSQ or VQ bottleneck (FSQ paper §4.1 / §4.3).

Manual optimisation with two Adam optimisers (β = (0, 0.99), lr 1e-4, linear warm-up; google-research/maskgit
``maskgit/configs/vqgan_config.py`` and ``base_config.py``):
per optimizer step, one generator update (L2 + perceptual + GAN + quantizer loss, ``Stage1Loss``) and, once the
GAN is active, one discriminator update (non-saturating + R1 [+ LeCam]). No gradient clipping by default
(MaskGIT's vqgan_config has none); ``grad_clip`` clips both nets' gradient norms. The norms are computed and logged
either way (the NaN/Inf guard needs them). Under ``bf16-mixed`` the nets run in bf16 while the quantizers compute
in fp32 internally.

Gradient accumulation (``accumulate_grad_batches`` = k, set by the stage from ``model.stage1.global_batch_size``;
Lightning's own accumulation does not apply to manual optimisation): every micro-batch back-propagates loss / k for
the generator and, when the GAN is active, the discriminator (under DDP inside ``no_sync`` except for the window's
last micro-batch, so each net's gradients are all-reduced once per step); every k-th micro-batch both nets are
stepped (after the optional clip), the gradients zeroed, the EMA updated. The discriminator is frozen while the
generator's GAN term is computed and back-propagated, so it only ever accumulates its own loss's gradients. Every
term is a per-image mean and the nets are per-image (GroupNorm), so k micro-batches of B equal one batch of k·B (the
LeCam anchors, when on, move once per micro-batch).

No host syncs in the step (docs/gpu.md): the step count that the schedules read is kept on the host as well
(``_steps``, read from the buffer once per fit), and the non-finite guard decides on the device (``NonFiniteGuard``):
a NaN/Inf loss term or gradient norm anywhere in the window makes both fused optimisers skip their update, and the
EMA stay, on the device; the host counts it and stops the run beyond the budget a step or so later.

EMA (decay 0.999) covers the **generator only** (encoder, quantizer, decoder): ``self.ema`` is a plain sub-module,
so it is saved and restored with every checkpoint, and the discriminator is never averaged. Validation and export
use the EMA weights. Schedules (warm-up, ``gan_start_step``, lazy R1) count optimizer steps: ``self.batches_seen``,
a checkpointed buffer that advances once per optimizer step. The generator steps through Lightning's optimizer
wrapper and the discriminator through the raw torch optimiser, so ``global_step`` (and ``trainer.max_steps``)
counts optimizer steps too, not micro-batches (with two Lightning-wrapped optimisers it would advance twice per
step). A non-finite loss or gradient norm skips the window's update (weights untouched; it counts as a step).
Checkpoints hold no accumulated gradients: a run resumed from one written mid-window starts a fresh window. This
assumes no GradScaler: use ``bf16-mixed`` or ``32-true``, not ``16-mixed``.
"""

from __future__ import annotations

import contextlib
import copy

import lightning.pytorch as pl
import torch

from fsq_repro.lit.nonfinite import NonFiniteGuard
from fsq_repro.lit.schedules import lr_multiplier
from fsq_repro.losses.stage1 import Stage1Loss
from fsq_repro.metrics.psnr import psnr
from fsq_repro.metrics.usage import CodebookUsage
from fsq_repro.nets.discriminator import Discriminator
from fsq_repro.nets.tokenizer import Tokenizer


class TokenizerModule(pl.LightningModule):
    def __init__(
        self,
        tokenizer: Tokenizer,
        loss: Stage1Loss,
        discriminator: Discriminator | None = None,
        lr: float = 1e-4,  # MaskGIT vqgan_config (g_lr, d_lr)
        betas: tuple[float, float] = (0.0, 0.99),  # MaskGIT vqgan_config (beta1, beta2)
        warmup_steps: int = 2000,  # MaskGIT base_config (lr_warmup_steps)
        ema_decay: float = 0.999,  # MaskGIT base_config (polyak_decay)
        grad_clip: float | None = None,  # MaskGIT vqgan_config: no gradient clipping
        max_grid_images: int = 16,
        data_fingerprint: str = "",
        max_nonfinite_skips: int = 0,
        accumulate_grad_batches: int = 1,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.tokenizer, self.loss, self.discriminator = tokenizer, loss, discriminator
        self.ema = copy.deepcopy(tokenizer).requires_grad_(False).eval()
        self.lr, self.betas, self.warmup_steps = lr, tuple(betas), int(warmup_steps)
        self.ema_decay, self.grad_clip, self.max_grid_images = ema_decay, grad_clip, max_grid_images
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))  # optimizer steps (checkpointed)
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.micro_batch = 0  # position in the accumulation window; not checkpointed (windows restart on resume)
        self._window_logs: dict[str, torch.Tensor] = {}
        self.guard = NonFiniteGuard(self, max_nonfinite_skips)
        self.val_usage = CodebookUsage(tokenizer.codebook_size, validate_indices=False)
        self.last_val_grid: torch.Tensor | None = None
        self.data_fingerprint = data_fingerprint

    # --- checkpoints: plain containers only, so `torch.load(weights_only=True)` works and export needs no Hydra ---
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokenizer_config"] = self.tokenizer.config()
        checkpoint["data_fingerprint"] = self.data_fingerprint

    # --- optimisation ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        # fused: one kernel per step on CUDA, and the device-side skip of a non-finite step (``found_inf``)
        gen = torch.optim.Adam(self.tokenizer.parameters(), lr=self.lr, betas=self.betas, fused=True)
        if self.discriminator is None:
            return gen
        disc = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas, fused=True)
        return [gen, disc]

    def _lr_scale(self, step: int) -> float:
        return lr_multiplier(step, self.warmup_steps, 0, "constant")  # MaskGIT Stage I: warm-up, then constant

    def _grad_norm(self, module: torch.nn.Module) -> torch.Tensor:
        """Total gradient norm of ``module``'s parameters, clipped in place to ``grad_clip`` when that is set
        (``inf``: the norm alone; the gradients are multiplied by exactly 1)."""
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.device)
        max_norm = float("inf") if self.grad_clip is None else float(self.grad_clip)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def _zero_grads(self) -> None:
        self.tokenizer.zero_grad(set_to_none=True)
        if self.discriminator is not None:
            self.discriminator.zero_grad(set_to_none=True)

    def _frozen_discriminator(self):
        """No discriminator gradients from the generator's loss (they would pile up with its own accumulated ones)."""
        disc = self.discriminator
        if disc is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def frozen():
            flags = [p.requires_grad for p in disc.parameters()]
            disc.requires_grad_(False)
            try:
                yield
            finally:
                for p, flag in zip(disc.parameters(), flags):
                    p.requires_grad_(flag)

        return frozen()

    @torch.no_grad()
    def _update_ema(self, finite: torch.Tensor) -> None:
        """EMA step towards the generator's weights; a skipped (non-finite) step leaves the EMA as it was too."""
        weight = (1 - self.ema_decay) * finite.float()
        for ema_p, p in zip(self.ema.parameters(), self.tokenizer.parameters()):
            ema_p.lerp_(p.detach(), weight.to(ema_p.dtype))
        for ema_b, b in zip(self.ema.buffers(), self.tokenizer.buffers()):
            ema_b.copy_(b)

    def on_train_start(self) -> None:
        self.micro_batch, self._window_logs = 0, {}  # a (resumed) fit starts a fresh accumulation window
        self._zero_grads()
        self._steps = int(self.batches_seen)  # the host's copy of the step count: read once, not every step
        self.guard.start(self)

    def on_train_end(self) -> None:
        self.guard.poll(self, wait=True)  # the last steps' verdicts

    def _backward(self, loss: torch.Tensor, sync: bool) -> None:
        """``manual_backward``; under DDP the gradients are all-reduced only when ``sync`` (the window's last
        micro-batch): the others accumulate locally (DDP ``no_sync``), so each net is all-reduced once per step."""
        strategy = self.trainer.strategy
        blocked = not sync and hasattr(strategy, "block_backward_sync")
        with strategy.block_backward_sync() if blocked else contextlib.nullcontext():
            self.manual_backward(loss)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        images, weight = batch["image"], 1.0
        if images.shape[0] == 0:  # every file of the batch was corrupt
            if self.trainer.world_size == 1:
                return None
            # under DDP every rank must take part in the step's all-reduces, or the others wait for it forever:
            # a zero-weight stand-in image keeps this rank in step, with zero gradients of its own
            r = self.tokenizer.resolution
            images, weight = torch.zeros(1, 3, r, r, device=self.device), 0.0
        self.guard.poll(self)  # earlier steps' non-finite verdicts, as far as they have reached the host
        accum = max(1, int(self.accumulate_grad_batches))
        step = self._steps  # optimizer steps so far: every schedule counts these
        optimizers = self.optimizers()
        gen_opt, disc_opt = (optimizers, None) if self.discriminator is None else optimizers
        gan_on = disc_opt is not None and self.loss.gan_active(step)
        if self.micro_batch == 0:
            self._zero_grads()
            self._window_finite = torch.ones((), dtype=torch.bool, device=images.device)
        recon, q = self.tokenizer(images)
        with self._frozen_discriminator():
            g_terms = self.loss.generator_terms(images, recon, q.loss, step, self.discriminator)
            self._backward(weight * g_terms["total"] / accum, sync=self.micro_batch == accum - 1)
        logs = {k: v.detach() for k, v in g_terms.items()}
        terms = dict(g_terms)
        if gan_on:
            d_terms = self.loss.discriminator_terms(images, recon, self.discriminator, step)
            self._backward(weight * d_terms["total"] / accum, sync=self.micro_batch == accum - 1)
            d_logs = {f"d_{k}" if k == "total" else k: v.detach() for k, v in d_terms.items()}
            logs.update(d_logs)
            terms.update(d_logs)
        self._window_finite &= self.guard.finite(g_terms["total"], d_terms["total"] if gan_on else None)
        self._window_terms = {k: v.detach() for k, v in terms.items()}  # the message's values (last micro-batch)
        logs.update({k: v.detach().float() for k, v in q.metrics.items()})
        logs["psnr"] = psnr(images, recon.detach()).mean()
        for key, value in logs.items():  # the step's logs: means over its micro-batches (a stand-in adds 0)
            self._window_logs[key] = self._window_logs.get(key, 0.0) + weight * value.float() / accum
        self._window_logs["num_corrupt"] = self._window_logs.get("num_corrupt", 0.0) + batch["num_corrupt"].float()
        self.micro_batch += 1
        if self.micro_batch < accum:
            return None

        # --- the optimizer step, every k-th micro-batch; skipped on the device when anything was non-finite ---
        self.micro_batch = 0
        g_norm = self._grad_norm(self.tokenizer)
        d_norm = self._grad_norm(self.discriminator) if gan_on else None
        finite = self._window_finite & self.guard.finite(g_norm, d_norm)
        lr = self.lr * self._lr_scale(step)
        for opt in (gen_opt, disc_opt) if gan_on else (gen_opt,):
            for group in opt.param_groups:
                group["lr"] = lr
        self.guard.arm(gen_opt.optimizer, finite)
        gen_opt.step()  # through Lightning: advances global_step
        if gan_on:
            self.guard.arm(disc_opt.optimizer, finite)
            disc_opt.optimizer.step()  # the raw optimiser: global_step counts optimizer steps, not optimisers
        self._zero_grads()
        self._update_ema(finite)
        norms = {"grad_norm_g": g_norm} | ({"grad_norm_d": d_norm} if d_norm is not None else {})
        self.guard.record(self, "loss or gradient norm", finite, {**self._window_terms, **norms}, step=step)
        window, self._window_logs = self._window_logs, {}
        logs = {f"train/{key}": value for key, value in window.items()}
        logs.update({f"train/{key}": value for key, value in norms.items()})
        logs["train/lr"] = torch.tensor(lr)
        logs["train/nonfinite_skips"] = self.nonfinite_skips.float()
        batch_size = images.shape[0] * accum
        self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("loss", window["total"], prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        self._log_step_axis(on_step=True, on_epoch=False, batch_size=batch_size)
        self.batches_seen += 1
        self._steps += 1

    def _log_step_axis(self, **kwargs) -> None:
        """With accumulation, Lightning's logging step counts micro-batches here (manual optimisation): log ``step``
        (the loggers' x-axis; also what checkpoint names show) = ``global_step``, the optimizer steps done, as the
        image grids and checkpoints count them. Without accumulation Lightning's own step is kept."""
        if max(1, int(self.accumulate_grad_batches)) > 1 and self._trainer is not None:
            self.log("step", float(self.global_step), **kwargs)

    # --- validation (EMA weights) -------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images = batch["image"]
        if images.shape[0] == 0:
            return
        recon, q = self.ema(images)
        self.val_usage.update(q.indices)
        mse = (recon.float().clamp(-1, 1) - images.float()).pow(2).mean()
        self.log("val/mse", mse, sync_dist=True, batch_size=images.shape[0])
        val_psnr = psnr(recon.clamp(-1, 1), images, min_mse=1e-10).float().mean()
        self.log("val/psnr", val_psnr, sync_dist=True, prog_bar=True, batch_size=images.shape[0])
        if batch_idx == 0:
            n = min(self.max_grid_images, images.shape[0])
            self.last_val_grid = torch.cat([images[:n], recon[:n].clamp(-1, 1)]).detach().float().cpu()

    def on_validation_epoch_end(self) -> None:
        stats = self.val_usage.compute()
        self.log("val/usage", stats["usage"], sync_dist=False)
        self.log("val/perplexity", stats["perplexity"], sync_dist=False)
        self._log_step_axis(sync_dist=False)
        self.val_usage.reset()
