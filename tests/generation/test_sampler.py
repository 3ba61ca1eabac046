"""MaskGIT decoding against an independent numpy port of the official ``parallel_decode.decode``
(google-research/maskgit), Gumbel moments, decoded tokens never change, CFG algebra, batched == two-pass."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fsq_repro.generation import sampler as sampler_module
from fsq_repro.generation.masking import tokens_masked_after_step
from fsq_repro.generation.sampler import guided_logits, gumbel, maskgit_sample, sample_with_model
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


# --- the official algorithm, ported to numpy from maskgit/libml/parallel_decode.py (decode, mask_by_random_topk)
def official_decode(tokens_to_logits, inputs, mask_id, num_iter, choice_temperature, noise, float32=False):
    """Argmax instead of ``jax.random.categorical``; ``noise(step, shape)`` stands in for ``jax.random.gumbel``.
    ``float32`` = JAX's default arithmetic for ratio, cosine and ``unknown · ratio``; else float64."""
    cur = inputs.copy()
    unknown_at_start = (cur == mask_id).sum(-1)
    ft = np.float32 if float32 else np.float64
    for step in range(num_iter):
        logits = tokens_to_logits(cur).astype(np.float64)
        unknown = cur == mask_id
        sampled = np.where(unknown, logits.argmax(-1), cur)
        ratio = ft(step + 1) / ft(num_iter)
        mask_ratio = np.clip(np.cos(ft(math.pi / 2) * ratio), ft(1e-6), ft(1.0))
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        selected = np.take_along_axis(probs, sampled[..., None], -1)[..., 0]
        selected = np.where(unknown, selected, np.inf)  # _CONFIDENCE_OF_KNOWN_TOKENS
        mask_len = np.floor(unknown_at_start.astype(ft) * mask_ratio)[:, None]
        mask_len = np.maximum(1, np.minimum(unknown.sum(-1, keepdims=True) - 1, mask_len)).astype(np.int64)
        temperature = choice_temperature * (1.0 - float(ratio))
        confidence = np.log(selected) + temperature * noise(step, selected.shape)
        cut_off = np.take_along_axis(np.sort(confidence, -1), mask_len, -1)
        masking = confidence < cut_off
        final = sampled  # final_seqs[:, step] holds the sampled ids, before re-masking
        cur = np.where(masking, mask_id, sampled)
    return final


class RecordedNoise:
    """The sampler's Gumbel draws (patched ``gumbel``), replayed to the numpy port step by step. The sampler draws
    none at the last step, where the official ``τ_t = 0`` multiplies its draw by zero."""

    def __init__(self, seed: int) -> None:
        self.rng, self.draws = np.random.default_rng(seed), []

    def torch_side(self, shape, generator, device) -> torch.Tensor:
        self.draws.append(self.rng.gumbel(size=tuple(shape)).astype(np.float32))
        return torch.from_numpy(self.draws[-1])

    def numpy_side(self, step: int, shape) -> np.ndarray:
        return self.draws[step].astype(np.float64) if step < len(self.draws) else np.zeros(shape)


def test_gumbel_noise_is_finite_with_the_gumbel_moments() -> None:
    g = gumbel(torch.Size([1_000_000]), torch.Generator().manual_seed(0), torch.device("cpu")).double()
    assert torch.isfinite(g).all()
    assert g.mean().item() == pytest.approx(0.5772, abs=0.01)  # Euler-Mascheroni constant
    assert g.std().item() == pytest.approx(math.pi / math.sqrt(6), abs=0.02)  # 1.2825


@pytest.mark.parametrize("choice_temperature", [0.0, 4.5])
def test_greedy_decode_equals_the_official_algorithm(monkeypatch, choice_temperature: float) -> None:
    """Token for token, with the same Gumbel draws on both sides (τ = 0: no noise at all)."""
    n, steps = 64, 12
    model = _model(seed=5, num_tokens=n)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    cond = model.class_embedder(labels)
    noise = RecordedNoise(seed=11)
    monkeypatch.setattr(sampler_module, "gumbel", noise.torch_side)
    ours = sample_with_model(model, labels, steps=steps, choice_temperature=choice_temperature, greedy=True)
    with torch.no_grad():
        to_logits = lambda ids: model(torch.from_numpy(ids), cond).numpy()  # noqa: E731
        start = np.full((len(labels), n), model.mask_token_id, dtype=np.int64)
        theirs = official_decode(to_logits, start, model.mask_token_id, steps, choice_temperature, noise.numpy_side)
    np.testing.assert_array_equal(ours.numpy(), theirs)
    assert len(noise.draws) == (steps - 1 if choice_temperature > 0 else 0)  # no draw where τ_t = 0


def test_official_float32_schedule_matches_the_official_arithmetic(monkeypatch) -> None:
    """N = 256, T = 12: float32 keeps 127 masked after the 8th step where the exact formula keeps 128."""
    assert tokens_masked_after_step(256, 7, 12, float32=True) == 127
    assert tokens_masked_after_step(256, 7, 12) == 128 == math.floor(256 * 0.5)
    n, steps = 256, 12
    model = _model(seed=2, num_tokens=n)
    labels = torch.tensor([1, 0])
    cond = model.class_embedder(labels)
    with torch.no_grad():
        to_logits = lambda ids: model(torch.from_numpy(ids), cond).numpy()  # noqa: E731
        start = np.full((2, n), model.mask_token_id, dtype=np.int64)
        zero = lambda step, shape: np.zeros(shape)  # noqa: E731
        official = official_decode(to_logits, start, model.mask_token_id, steps, 0.0, zero, float32=True)
    tokens, history = sample_with_model(
        model, labels, steps=steps, choice_temperature=0.0, greedy=True, official_float32=True, return_history=True
    )
    np.testing.assert_array_equal(tokens.numpy(), official)
    assert int(history[7].sum(1)[0]) == 127
    _, history64 = sample_with_model(model, labels, steps=steps, choice_temperature=0.0, greedy=True,
                                     return_history=True)  # fmt: skip
    assert int(history64[7].sum(1)[0]) == 128


def test_a_decoded_token_is_never_changed_or_remasked() -> None:
    n, steps = 64, 12
    model = _model(seed=1, num_tokens=n)
    seen = []

    def recording(tokens, class_ids):
        seen.append(tokens[: tokens.shape[0] // 2].clone() if tokens.shape[0] == 8 else tokens.clone())
        return model(tokens, class_ids)

    labels = torch.tensor([0, 1, 2, 1])
    final = maskgit_sample(
        recording, labels, num_tokens=n, mask_token_id=model.mask_token_id, class_ids=model.class_embedder,
        null_class_id=model.class_embedder.null_id, steps=steps, cfg_scale=2.0,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert len(seen) == steps
    for t, inputs in enumerate(seen):
        known = inputs != model.mask_token_id
        for later in [*seen[t + 1 :], final]:
            assert torch.equal(later[known], inputs[known]), f"a token known at step {t} changed later"
    revealed = [int((s != model.mask_token_id).sum()) for s in seen]
    assert all(a < b for a, b in itertools.pairwise(revealed))


def _remasked_sets(choice_temperature: float, seed: int) -> list[torch.Tensor]:
    model = _model(seed=4, num_tokens=32)
    _, history = sample_with_model(
        model, torch.tensor([0, 1, 2]), generator=torch.Generator().manual_seed(seed), greedy=True,
        choice_temperature=choice_temperature, return_history=True,
    )  # fmt: skip
    return history


def test_choice_temperature_decides_whether_the_seed_moves_the_remasked_positions() -> None:
    cold = [_remasked_sets(0.0, seed) for seed in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(*cold))
    hot = [_remasked_sets(4.5, seed) for seed in (0, 1)]
    assert not all(torch.equal(a, b) for a, b in zip(*hot))
