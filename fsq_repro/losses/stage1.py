"""The Stage I objective (FSQ paper §4.1: "L2 + perceptual + GAN losses", MaskGIT's VQGAN recipe).

Pixel scale, the one place it is defined: images are in [−1, 1] everywhere in this repo (data, tokenizer,
discriminator input, LPIPS), while the official MaskGIT losses (``maskgit/libml/losses.py`` with
``configs/vqgan_config.py``) are computed on images in [0, 1]. The two terms that depend on the pixel scale are
therefore evaluated on ``x₀₁ = (x + 1)/2``, so every weight means what the official config means:

- ``l2 = mean((x̂₀₁ − x₀₁)²) = mean((x̂ − x)²) / 4``: the official ``l2_loss``, weight ``l2_weight`` = 1;
- ``r1 = mean_b ‖∇_{x₀₁} D‖² = 4 · mean_b ‖∇_x D‖²`` (``x = 2·x₀₁ − 1``, so ``∇_{x₀₁} = 2·∇_x``): the official
  ``r1_gradient_penalty`` before its cost, added as ``r1_cost · r1`` with ``r1_cost`` = MaskGIT's
  ``grad_penalty_cost`` = 10 (no ½). On the [−1, 1] scale that is ``40 · mean_b ‖∇_x D‖²``.

The GAN terms and LeCam act on logits, the quantizer loss on latents and LPIPS has its own [−1, 1] input
convention, so none of them depends on this choice. (The discriminator itself sees [−1, 1] images, a fixed affine
map of the official [0, 1] input that its stem can absorb; R1 is measured on the [0, 1] scale all the same.)

Generator: ``l2_weight · l2 + perceptual_weight · LPIPS(x, x̂) + [step ≥ gan_start_step] · gan_weight ·
mean softplus(−D(x̂)) + quantizer loss`` (VQ: codebook + β·commitment + entropy; FSQ: 0).
Discriminator (from ``gan_start_step`` on): ``mean softplus(−D(x)) + mean softplus(D(x̂)) + r1_cost · r1 +
lecam_weight · LeCam``; R1 only every ``r1_every`` steps and then multiplied by ``r1_every`` (lazy
regularisation, StyleGAN2; 1 = every step, as MaskGIT).

Every method returns a dict of scalar tensors whose ``"total"`` is what to backpropagate; the other entries
(``l2`` and ``r1`` on the [0, 1] scale, as above) are for logging.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fsq_repro.losses.gan import discriminator_loss, generator_loss, lecam_regularizer, r1_penalty
from fsq_repro.losses.perceptual import LPIPSLoss

PIXEL_SCALE = 2.0  # x = PIXEL_SCALE · x₀₁ − 1: the [−1, 1] images are the official [0, 1] ones stretched by 2


class Stage1Loss(nn.Module):
    def __init__(
        self,
        l2_weight: float = 1.0,
        perceptual_weight: float = 0.1,
        perceptual: Mapping | None = None,
        gan_weight: float = 0.1,
        gan_start_step: int = 0,
        r1_cost: float = 10.0,
        r1_every: int = 1,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.99,
    ) -> None:
        super().__init__()
        self.l2_weight, self.perceptual_weight, self.gan_weight = l2_weight, perceptual_weight, gan_weight
        self.gan_start_step, self.r1_cost, self.r1_every = int(gan_start_step), r1_cost, max(1, int(r1_every))
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
        l2 = F.mse_loss(recon.float(), images.float()) / PIXEL_SCALE**2  # = MSE of the [0, 1] images
        terms = {"l2": l2, "quantizer": quantizer_loss.float()}
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
        do_r1 = self.r1_cost > 0 and step % self.r1_every == 0
        real = images.detach().requires_grad_(do_r1)
        real_logits = discriminator(real).float()
        fake_logits = discriminator(recon.detach()).float()
        terms = {"d_loss": discriminator_loss(real_logits, fake_logits)}
        total = terms["d_loss"]
        if do_r1:
            terms["r1"] = PIXEL_SCALE**2 * r1_penalty(real, real_logits)  # = mean_b ‖∇_{x₀₁} D‖²
            total = total + self.r1_cost * self.r1_every * terms["r1"]
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
