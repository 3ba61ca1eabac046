"""MaskGIT decoding: reveal counts follow the schedule, no MASK at the end, CFG algebra, batched == two-pass."""

from __future__ import annotations

import itertools
import math

import torch

from fsq_repro.generation.sampler import guided_logits, maskgit_sample, sample_with_model
from fsq_repro.nets.transformer import MaskGITTransformer


def _model(seed: int = 0, num_tokens: int = 16) -> MaskGITTransformer:
    torch.manual_seed(seed)
    return MaskGITTransformer(
        codebook_size=12, num_classes=3, num_tokens=num_tokens, hidden_dim=32, depth=2, num_heads=4, mlp_dim=64
    ).eval()


def test_no_mask_remains_and_reveals_follow_the_schedule() -> None:
    n, steps = 64, 12
    model = _model(num_tokens=n)
    labels = torch.tensor([0, 1, 2, 1])
    tokens, history = sample_with_model(
        model, labels, generator=torch.Generator().manual_seed(0), steps=steps, cfg_scale=0.5, return_history=True
    )
    assert tokens.shape == (4, n)
    assert (tokens != model.mask_token_id).all() and tokens.max() < 12 and tokens.min() >= 0
    masked_after = [int(h.sum(1)[0]) for h in history]
    assert all(int(h.sum(1).min()) == int(h.sum(1).max()) for h in history)  # same count in every row
    # independent MaskGIT arithmetic: floor(N cos(pi/2 (t+1)/T)) clipped to [1, remaining - 1], 0 at the end
    remaining, expected = n, []
    for t in range(steps):
        if t == steps - 1:
            expected.append(0)
            break
        target = math.floor(n * math.cos(math.pi / 2 * (t + 1) / steps))
        remaining = max(1, min(remaining - 1, target))
        expected.append(remaining)
    assert masked_after == expected
    assert all(a > b for a, b in itertools.pairwise(masked_after))  # every step reveals at least one token


def test_guidance_algebra() -> None:
    cond, uncond = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    assert torch.equal(guided_logits(cond, uncond, 0.0), cond)
    torch.testing.assert_close(guided_logits(cond, uncond, 0.3), 1.3 * cond - 0.3 * uncond)


def test_batched_cfg_equals_two_pass_cfg() -> None:
    model = _model(seed=3)
    labels = torch.tensor([0, 2, 1])
    calls = []

    def recording(tokens, class_ids):
        out = model(tokens, class_ids)
        calls.append(tokens.shape[0])
        return out

    def run(batched: bool) -> torch.Tensor:
        return maskgit_sample(
            recording, labels, num_tokens=16, mask_token_id=model.mask_token_id, class_ids=model.class_embedder,
            null_class_id=model.class_embedder.null_id, cfg_scale=2.0, batched_cfg=batched,
            generator=torch.Generator().manual_seed(7),
        )  # fmt: skip

    batched = run(True)
    assert set(calls) == {6}  # one batch of 2B per step
    calls.clear()
    two_pass = run(False)
    assert set(calls) == {3}
    assert torch.equal(batched, two_pass)
    # and the logits themselves agree numerically
    tokens = torch.full((3, 16), model.mask_token_id)
    ids = model.class_embedder(labels)
    null = torch.full_like(ids, model.class_embedder.null_id)
    both = model(torch.cat([tokens, tokens]), torch.cat([ids, null]))
    torch.testing.assert_close(both[:3], model(tokens, ids), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[3:], model(tokens, null), atol=1e-5, rtol=1e-5)
