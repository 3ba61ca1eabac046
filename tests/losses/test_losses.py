"""Stage I losses against hand computations on both pixel scales ([0, 1] official, [-1, 1] ours); R1 against a
closed form; LPIPS backbone loading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from fsq_repro.errors import ConfigError
from fsq_repro.losses.gan import discriminator_loss, generator_loss, lecam_regularizer, r1_penalty
from fsq_repro.losses.perceptual import LPIPSLoss
from fsq_repro.losses.stage1 import Stage1Loss


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_gan_losses_by_hand() -> None:
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    assert generator_loss(fake).item() == pytest.approx((softplus(-0.5) + softplus(3.0)) / 2, rel=1e-6)
    expected = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    lecam = lecam_regularizer(real, fake, torch.tensor(0.3), torch.tensor(0.1))
    assert lecam.item() == pytest.approx(((2.0 - 0.1) ** 2 + 0) / 2 + (0 + (0.3 + 3.0) ** 2) / 2, rel=1e-6)


def test_r1_equals_the_squared_gradient_norm() -> None:
    torch.manual_seed(0)
    # Linear discriminator D(x) = <w, x>: the gradient is w, so R1 = ||w||^2 exactly.
    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * w).flatten(1).sum(1)
    assert r1_penalty(x, logits).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-6)
    # A non-linear D: compare with per-sample autograd computed separately.
    disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x2 = torch.randn(4, 3, 4, 4, requires_grad=True)
    r1 = r1_penalty(x2, disc(x2).squeeze(1))
    per_sample = []
    for b in range(4):
        xb = x2[b : b + 1].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(disc(xb).sum(), xb)
        per_sample.append(g.pow(2).sum())
    assert r1.item() == pytest.approx(torch.stack(per_sample).mean().item(), rel=1e-5)
    r1.backward()  # differentiable (create_graph) so the discriminator can be penalised
    assert disc[1].weight.grad is not None


def test_stage1_loss_combines_terms_with_their_weights() -> None:
    torch.manual_seed(0)
    loss = Stage1Loss(perceptual_weight=0.0, gan_weight=0.1, gan_start_step=10, r1_cost=10.0, r1_every=2)
    disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1), torch.nn.Flatten(0))
    x, recon = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    q_loss = torch.tensor(0.7)
    early = loss.generator_terms(x, recon, q_loss, step=5, discriminator=disc)
    assert "gan" not in early
    assert early["total"].item() == pytest.approx(((x - recon) ** 2).mean().item() / 4 + 0.7, rel=1e-6)
    late = loss.generator_terms(x, recon, q_loss, step=10, discriminator=disc)
    assert late["total"].item() == pytest.approx(early["total"].item() + 0.1 * late["gan"].item(), rel=1e-6)
    d = loss.discriminator_terms(x, recon, disc, step=4)
    w2 = disc[1].weight.pow(2).sum().item()
    assert d["r1"].item() == pytest.approx(4 * w2, rel=1e-5)
    assert d["total"].item() == pytest.approx(d["d_loss"].item() + 10 * 2 * 4 * w2, rel=1e-5)  # lazy R1 scaled
    assert "r1" not in loss.discriminator_terms(x, recon, disc, step=5)


class LinearD(torch.nn.Module):
    """``D(x) = <w, x> + b`` per image: ``∇_x D = w`` in closed form."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = torch.nn.Parameter(w), torch.nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1) + self.b


def test_every_term_by_hand_on_both_pixel_scales() -> None:
    """A 1x1x2x2 image in [-1, 1] and a linear D, every number written out by hand. The official MaskGIT losses are
    on [0, 1] images: the L2 value must equal the [0, 1]-scale MSE (1/4 of the [-1, 1] MSE), and R1 must equal
    4x the [-1, 1]-scale squared gradient norm, times the cost 10 (no 1/2)."""
    x = torch.tensor([[[[-1.0, 0.0], [0.5, 1.0]]]])
    x_hat = torch.tensor([[[[-0.5, 0.0], [1.0, 0.0]]]])
    disc = LinearD(torch.tensor([[[1.0, -2.0], [0.5, 3.0]]]), 0.1)
    loss = Stage1Loss(l2_weight=1.0, perceptual_weight=0.0, gan_weight=0.1, gan_start_step=0, r1_cost=10.0)

    # L2. [-1, 1] differences 0.5, 0, 0.5, -1 -> MSE (0.25 + 0 + 0.25 + 1)/4 = 0.375.
    # [0, 1] images: x01 = 0, 0.5, 0.75, 1 and x_hat01 = 0.25, 0.5, 1, 0.5 -> differences 0.25, 0, 0.25, -0.5
    # -> MSE (0.0625 + 0 + 0.0625 + 0.25)/4 = 0.09375 = 0.375/4.
    g = loss.generator_terms(x, x_hat, torch.tensor(0.0), step=0, discriminator=disc)
    assert g["l2"].item() == pytest.approx(0.09375, rel=1e-7)
    assert g["l2"].item() == pytest.approx(((x_hat + 1) / 2 - (x + 1) / 2).pow(2).mean().item(), rel=1e-7)
    assert g["l2"].item() == pytest.approx(((x_hat - x) ** 2).mean().item() / 4, rel=1e-7)
    # Generator GAN term. D(x_hat) = 1(-0.5) - 2(0) + 0.5(1) + 3(0) + 0.1 = 0.1 -> softplus(-0.1).
    assert g["gan"].item() == pytest.approx(softplus(-0.1), rel=1e-6)
    assert g["total"].item() == pytest.approx(1.0 * 0.09375 + 0.1 * softplus(-0.1), rel=1e-6)

    # Discriminator. D(x) = 1(-1) - 2(0) + 0.5(0.5) + 3(1) + 0.1 = 2.35, D(x_hat) = 0.1.
    d = loss.discriminator_terms(x, x_hat, disc, step=0)
    assert d["d_loss"].item() == pytest.approx(softplus(-2.35) + softplus(0.1), rel=1e-6)
    # R1. On [-1, 1]: grad_x D = w, |w|^2 = 1 + 4 + 0.25 + 9 = 14.25. On [0, 1]: D(2 x01 - 1) has gradient 2w,
    # |2w|^2 = 57 = 4 x 14.25; weighted by the cost 10: 570.
    assert d["r1"].item() == pytest.approx(57.0, rel=1e-6)
    x01 = ((x + 1) / 2).requires_grad_(True)  # the same number by autograd on the [0, 1] image itself
    (grad01,) = torch.autograd.grad(disc(2 * x01 - 1).sum(), x01)
    assert d["r1"].item() == pytest.approx(grad01.pow(2).sum().item(), rel=1e-6)
    assert d["total"].item() == pytest.approx(softplus(-2.35) + softplus(0.1) + 10 * 4 * 14.25, rel=1e-6)

    # Lazy R1 (r1_every = 3): only on steps divisible by 3, then multiplied by 3.
    lazy = Stage1Loss(perceptual_weight=0.0, gan_weight=0.1, r1_cost=10.0, r1_every=3)
    assert "r1" not in lazy.discriminator_terms(x, x_hat, disc, step=4)
    on = lazy.discriminator_terms(x, x_hat, disc, step=6)
    assert on["total"].item() == pytest.approx(softplus(-2.35) + softplus(0.1) + 3 * 570.0, rel=1e-6)
    # r1_cost = 0 turns R1 off and needs no input gradient.
    assert "r1" not in Stage1Loss(perceptual_weight=0.0, r1_cost=0.0).discriminator_terms(x, x_hat, disc, step=0)


def test_r1_gradient_reaches_the_discriminator_with_the_cost() -> None:
    """d(total)/dw of the R1 part: 10 * d(|2w|^2)/dw = 10 * 8w (plus the logistic terms' gradient)."""
    x = torch.tensor([[[[-1.0, 0.0], [0.5, 1.0]]]])
    x_hat = torch.tensor([[[[-0.5, 0.0], [1.0, 0.0]]]])
    w = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])
    disc = LinearD(w.clone(), 0.1)
    d = Stage1Loss(perceptual_weight=0.0, r1_cost=10.0).discriminator_terms(x, x_hat, disc, step=0)
    d["total"].backward()
    sig = torch.sigmoid
    logistic = -sig(torch.tensor(-2.35)) * x + sig(torch.tensor(0.1)) * x_hat  # d/dw softplus(-D(x)) + softplus(D)
    torch.testing.assert_close(disc.w.grad, logistic[0] + 10 * 8 * w, rtol=1e-6, atol=1e-5)


def test_lpips_needs_a_local_backbone_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"loss\.perceptual\.weights=.*or set loss\.perceptual_weight=0"):
        LPIPSLoss(None)
    with pytest.raises(ConfigError, match="is not a file"):
        Stage1Loss(perceptual_weight=0.1, perceptual={"weights": str(tmp_path / "missing.pth")})
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 - torch raises UnpicklingError/RuntimeError here
        LPIPSLoss(str(tmp_path / "bad.pth"))


def test_lpips_loads_the_given_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # a stand-in for the ImageNet VGG-16 (random weights, never a metric)
    path = tmp_path / "vgg16_features.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    lp = LPIPSLoss(str(path))
    assert torch.equal(lp.lpips.net.slice1[0].weight, features[0].weight)
    assert torch.equal(getattr(lp.lpips.net.slice5, "28").weight, features[28].weight)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert lp(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert lp(x, torch.rand(2, 3, 32, 32) * 2 - 1).item() > 0
    assert not any(p.requires_grad for p in lp.parameters())
