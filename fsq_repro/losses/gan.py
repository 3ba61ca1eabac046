"""GAN losses of the Stage I tokenizer (FSQ paper §4.1 uses MaskGIT's VQGAN training;
google-research/maskgit ``maskgit/configs/vqgan_config.py``, ``maskgit/libml/losses.py``).

- non-saturating generator loss ``E[softplus(−D(x̂))]`` (weight 0.1, after ``gan_start_step``),
- discriminator loss ``E[softplus(−D(x))] + E[softplus(D(x̂))]``,
- R1 penalty (Mescheder et al. 2018) ``E[‖∇ₓ D(x)‖²]`` on real images, w.r.t. the images it is given
  (``Stage1Loss`` rescales it to [0, 1] pixels and weights it, see ``fsq_repro/losses/stage1.py``),
- LeCam regularisation (Tseng et al. 2021) ``E[relu(D(x) − μ_fake)²] + E[relu(μ_real − D(x̂))²]`` with EMA anchors.

Logits are ``(B,)``; images ``(B, 3, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean(softplus(−D(x̂)))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating discriminator loss ``mean(softplus(−D(x))) + mean(softplus(D(x̂)))``."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """``mean_b ‖∂ D(x_b) / ∂ x_b‖²`` w.r.t. ``real_images`` as given (no scale, no cost); ``real_images`` must
    require grad; differentiable (create_graph)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def lecam_regularizer(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, ema_real: torch.Tensor, ema_fake: torch.Tensor
) -> torch.Tensor:
    """LeCam: ``mean(relu(D(x) − ema_fake)²) + mean(relu(ema_real − D(x̂))²)``."""
    return F.relu(real_logits - ema_fake).pow(2).mean() + F.relu(ema_real - fake_logits).pow(2).mean()
