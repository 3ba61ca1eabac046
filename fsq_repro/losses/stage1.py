"""The Stage I objective (FSQ paper §4.1: "L2 + perceptual + GAN losses", MaskGIT VQGAN recipe).

Generator: ``l2_weight · ‖x − x̂‖² + perceptual_weight · LPIPS(x, x̂) + [step ≥ gan_start_step] · gan_weight ·
softplus(−D(x̂)) + quantizer loss`` (VQ: codebook + β·commitment + entropy; FSQ: 0).
Discriminator (from ``gan_start_step`` on): ``softplus(−D(x)) + softplus(D(x̂)) + γ/2 · R1`` (R1 every
``r1_every`` steps, scaled by ``r1_every`` — lazy regularisation, StyleGAN2) ``+ lecam_weight · LeCam``.

Every method returns a dict of scalar tensors whose ``"total"`` is what to backpropagate; the other entries are
for logging.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fsq_repro.losses.gan import discriminator_loss, generator_loss, lecam_regularizer, r1_penalty
from fsq_repro.losses.perceptual import LPIPSLoss


class Stage1Loss(nn.Module):
    def __init__(
        self,
        l2_weight: float = 1.0,
        perceptual_weight: float = 0.1,
        perceptual: Mapping | None = None,
        gan_weight: float = 0.1,
        gan_start_step: int = 0,
        r1_gamma: float = 10.0,
        r1_every: int = 1,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.99,
    ) -> None:
        super().__init__()
        self.l2_weight, self.perceptual_weight, self.gan_weight = l2_weight, perceptual_weight, gan_weight
        self.gan_start_step, self.r1_gamma, self.r1_every = int(gan_start_step), r1_gamma, max(1, int(r1_every))
        self.lecam_weight, self.lecam_decay = lecam_weight, lecam_decay
        # ``perceptual = {"weights": path}``: the VGG-16 backbone file (``loss.perceptual.weights=...`` on the CLI)
        weights = (perceptual or {}).get("weights")
        self.perceptual = LPIPSLoss(weights) if perceptual_weight > 0 else None
        self.register_buffer("ema_real_logit", torch.zeros(()))
        self.register_buffer("ema_fake_logit", torch.zeros(()))

    def gan_active(self, step: int) -> bool:
        return self.gan_weight > 0 and step >= self.gan_start_step

    def generator_terms(
        self,
        images: torch.Tensor,
        recon: torch.Tensor,
        quantizer_loss: torch.Tensor,
        step: int,
        discriminator: nn.Module | None = None,
    ) -> dict[str, torch.Tensor]:
        terms = {"l2": F.mse_loss(recon.float(), images.float()), "quantizer": quantizer_loss.float()}
        total = self.l2_weight * terms["l2"] + terms["quantizer"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(recon, images)
            total = total + self.perceptual_weight * terms["perceptual"]
        if discriminator is not None and self.gan_active(step):
            terms["gan"] = generator_loss(discriminator(recon).float())
            total = total + self.gan_weight * terms["gan"]
        terms["total"] = total
        return terms

    def discriminator_terms(
        self, images: torch.Tensor, recon: torch.Tensor, discriminator: nn.Module, step: int
    ) -> dict[str, torch.Tensor]:
        do_r1 = self.r1_gamma > 0 and step % self.r1_every == 0
        real = images.detach().requires_grad_(do_r1)
        real_logits = discriminator(real).float()
        fake_logits = discriminator(recon.detach()).float()
        terms = {"d_loss": discriminator_loss(real_logits, fake_logits)}
        total = terms["d_loss"]
        if do_r1:
            terms["r1"] = r1_penalty(real, real_logits)
            total = total + self.r1_gamma / 2 * self.r1_every * terms["r1"]
        if self.lecam_weight > 0:
            terms["lecam"] = lecam_regularizer(real_logits, fake_logits, self.ema_real_logit, self.ema_fake_logit)
            total = total + self.lecam_weight * terms["lecam"]
            with torch.no_grad():
                self.ema_real_logit.lerp_(real_logits.mean(), 1 - self.lecam_decay)
                self.ema_fake_logit.lerp_(fake_logits.mean(), 1 - self.lecam_decay)
        terms["real_logit"] = real_logits.detach().mean()
        terms["fake_logit"] = fake_logits.detach().mean()
        terms["total"] = total
        return terms
