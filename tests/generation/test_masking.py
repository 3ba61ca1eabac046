"""The masking schedule against closed forms (MaskGIT §3.2, FSQ paper §4.3 minimum masking rate)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fsq_repro.generation.masking import (
    expected_mask_ratio,
    mask_schedule,
    random_token_mask,
    sample_mask_ratio,
    tokens_masked_after_step,
)


def test_schedules_match_their_formulas() -> None:
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    np.testing.assert_allclose(mask_schedule(r, "cosine"), np.cos(np.pi / 2 * r.numpy()), atol=1e-12)
    np.testing.assert_allclose(mask_schedule(r, "linear"), 1 - r.numpy(), atol=1e-12)
    np.testing.assert_allclose(mask_schedule(r, "square"), 1 - r.numpy() ** 2, atol=1e-12)
    with pytest.raises(ValueError, match="unknown mask schedule"):
        mask_schedule(r, "exp")


def test_ratio_never_below_min_mask_rate_and_mean_is_analytic() -> None:
    g = torch.Generator().manual_seed(0)
    ratios = sample_mask_ratio(400_000, 0.45, generator=g).double()
    assert ratios.min() >= 0.45 and ratios.max() <= 1
    # independent numeric integral of max(cos(pi r / 2), 0.45) over [0, 1] (midpoint rule)
    r = (np.arange(1_000_000) + 0.5) / 1_000_000
    numeric = np.maximum(np.cos(np.pi / 2 * r), 0.45).mean()
    assert expected_mask_ratio(0.45) == pytest.approx(numeric, abs=1e-9)
    assert float(ratios.mean()) == pytest.approx(numeric, abs=2e-3)  # 400k draws: std err ~3e-4


@pytest.mark.parametrize("num_tokens", [1, 16, 20, 256])
def test_token_mask_counts(num_tokens: int) -> None:
    g = torch.Generator().manual_seed(1)
    mask = random_token_mask(2000, num_tokens, 0.45, generator=g)
    counts = mask.sum(1)
    assert counts.min() >= max(1, math.floor(0.45 * num_tokens))  # at least one, never below the minimum rate
    assert counts.max() <= num_tokens
    if num_tokens == 256:  # positions are uniformly chosen: every position is masked at a similar rate
        per_position = mask.float().mean(0)
        assert per_position.std() < 0.03


def test_tokens_masked_after_step_follows_cosine() -> None:
    n, steps = 256, 12
    expected = [math.floor(n * math.cos(math.pi / 2 * (t + 1) / steps)) for t in range(steps)]
    assert [tokens_masked_after_step(n, t, steps) for t in range(steps)] == expected
    assert expected[-1] == 0
