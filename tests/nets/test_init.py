"""The truncated-normal initialisers (fsq_repro/nets/init.py) against their closed forms: cut at ±2σ (not ±2
absolute), LeCun variance exactly 1/fan_in after the truncation correction, and draw-for-draw equal to
``torch.nn.init.trunc_normal_`` with the official parameters (so models initialise as before the refactor)."""

from __future__ import annotations

import math

import torch

from fsq_repro.nets.init import TRUNCATED_STD, lecun_normal_, truncated_normal_


def test_truncated_normal_cuts_at_two_sigma_with_the_uncorrected_std() -> None:
    w = truncated_normal_(torch.empty(400, 500), std=0.02)
    assert w.abs().max() <= 0.04 and w.abs().max() > 0.039  # ±2σ, reached
    assert abs(w.std().item() - 0.02 * TRUNCATED_STD) < 2e-4  # std of the truncated draw: 0.8796·σ


def test_lecun_normal_has_variance_one_over_fan_in() -> None:
    w = lecun_normal_(torch.empty(256, 64, 3, 3))  # a conv: fan_in = 64·3·3 = 576
    assert abs(w.var().item() * 576 - 1.0) < 0.01
    sigma = math.sqrt(1 / 576) / TRUNCATED_STD
    assert w.abs().max() <= 2 * sigma


def test_draws_equal_torch_trunc_normal_with_the_official_bounds() -> None:
    torch.manual_seed(3)
    ours = lecun_normal_(torch.empty(32, 48))
    torch.manual_seed(3)
    std = math.sqrt(1 / 48) / 0.87962566103423978
    assert torch.equal(ours, torch.nn.init.trunc_normal_(torch.empty(32, 48), std=std, a=-2 * std, b=2 * std))
