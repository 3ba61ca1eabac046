"""UViM's VQ (``ema_style="uvim"``) against a numpy port of the official dictionary learning and
``split_the_most_frequent_embedding`` (big_vision ``models/proj/uvim/vit.py`` at 21bd6eb)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsq_repro.quantizers import VectorQuantizer, build_quantizer


def uvim_vq(k: int = 4, d: int = 3, split: bool = True, decay: float = 0.995, **kw) -> VectorQuantizer:
    return VectorQuantizer(k, d, beta=0.0, entropy_weight=0.0, ema_decay=decay, ema_style="uvim", standardize=True,
                           split_dead_codes=split, **kw)  # fmt: skip


def official_split(e: np.ndarray, c: np.ndarray, min_count: float, noise) -> tuple[np.ndarray, np.ndarray]:
    """The official while loop; ``noise(i)`` gives the i-th split's multiplicative perturbation."""
    e, c, i = e.copy(), c.copy(), 0
    while np.any(c < min_count):
        i_max, i_min = np.argmax(c), np.argmin(c)
        e[i_min] = e[i_max] * noise(i)
        c[i_min] = c[i_max] / 2.0
        c[i_max] = c[i_max] / 2.0
        e[i_min] = e[i_min] / 2.0
        e[i_max] = e[i_max] / 2.0
        i += 1
    return e, c


def test_a_dead_code_becomes_half_of_the_most_used_one() -> None:
    vq = uvim_vq(split_perturb=0.0)
    sums = torch.tensor([[4.0, 2.0, 0.0], [0.0, 0.0, 0.1], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    vq.ema_cluster_size.copy_(torch.tensor([5.0, 0.05, 1.0, 2.0]))
    vq.ema_embed_sum.copy_(sums)
    assert vq._split() == 1
    assert vq.ema_cluster_size.tolist() == [2.5, 2.5, 1.0, 2.0]
    assert torch.equal(vq.ema_embed_sum[1], sums[0] / 2) and torch.equal(vq.ema_embed_sum[0], sums[0] / 2)
    # the revived code is a copy of code 0: inputs near code 0 now land on 0 or 1, and keep code 1 alive
    vq.embedding.data.copy_(torch.nn.functional.normalize(vq.ema_embed_sum / vq.ema_cluster_size[:, None], dim=-1))
    assert torch.allclose(vq.codebook()[1], vq.codebook()[0])


def test_repeated_splits_match_the_official_loop() -> None:
    rng = np.random.default_rng(0)
    k, d = 8, 5
    e, c = rng.normal(size=(k, d)), np.array([9.0, 0.01, 3.0, 0.02, 0.5, 0.0, 7.0, 0.09])
    vq = uvim_vq(k, d)
    vq.ema_cluster_size.copy_(torch.from_numpy(c))
    vq.ema_embed_sum.copy_(torch.from_numpy(e))
    steps_before = int(vq.split_steps)
    splits = vq._split()
    # the same perturbations, replayed from the quantizer's generator
    gen = torch.Generator().manual_seed(steps_before + 1)
    draws = [torch.empty(d).uniform_(0.999, 1.001, generator=gen).double().numpy() for _ in range(splits)]
    e_ref, c_ref = official_split(e, c, 0.1, lambda i: draws[i])
    assert splits == 4
    assert np.allclose(vq.ema_cluster_size.double().numpy(), c_ref)
    assert np.allclose(vq.ema_embed_sum.double().numpy(), e_ref, atol=1e-6)
    assert all(np.all(np.abs(x - 1) <= 1e-3) for x in draws)


def test_one_update_matches_the_official_dictionary_learning() -> None:
    torch.manual_seed(0)
    k, d, m = 16, 6, 0.9
    vq = uvim_vq(k, d, split=False, decay=m)
    e0, c0 = vq.ema_embed_sum.double().numpy().copy(), vq.ema_cluster_size.double().numpy().copy()
    z = torch.randn(5, 7, d) * 3 + 1
    out = vq(z)
    # official: standardize, codewords = normalize(dict / counts), argmin distance, discounted counts and sums
    x = z.double().numpy().reshape(-1, d)
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    w = e0 / c0[:, None]
    w = w / np.linalg.norm(w, axis=-1, keepdims=True)
    dist = (x * x).sum(1)[:, None] - 2 * x @ w.T + (w * w).sum(1)[None]
    idx = dist.argmin(1)
    assert np.array_equal(out.indices.reshape(-1).numpy(), idx)
    counts = np.bincount(idx, minlength=k)
    sums = np.zeros_like(e0)
    np.add.at(sums, idx, x)
    assert np.allclose(vq.ema_cluster_size.double().numpy(), c0 * m + counts, atol=1e-5)
    assert np.allclose(vq.ema_embed_sum.double().numpy(), e0 * m + sums, atol=1e-4)
    assert np.allclose(out.codes.reshape(-1, d).detach().double().numpy(), w[idx], atol=1e-5)
    assert out.loss.item() == 0.0 and "codebook_zeros_ratio" in out.metrics


def _fit_usage(split: bool) -> float:
    """Inputs from 32 clusters; the dictionary starts collapsed (every codeword the same data point, so every
    input picks code 0 and the others never move): only splitting can spread it."""
    torch.manual_seed(0)
    centres = torch.randn(32, 8) * 3
    vq = uvim_vq(32, 8, split=split, decay=0.8)
    vq.ema_embed_sum.copy_(centres[0].expand(32, 8))
    vq.embedding.data.copy_(torch.nn.functional.normalize(vq.ema_embed_sum, dim=-1))
    for _ in range(300):
        vq(centres[torch.randint(0, 32, (256,))] + 0.1 * torch.randn(256, 8))
    vq.eval()
    idx = vq(centres[torch.arange(32).repeat(8)] + 0.1 * torch.randn(256, 8)).indices
    return torch.unique(idx).numel() / 32


def test_splitting_revives_a_collapsed_codebook() -> None:
    with_split, without = _fit_usage(True), _fit_usage(False)
    assert with_split >= 0.9 and without <= 0.4


def test_config_round_trip_and_validation() -> None:
    vq = uvim_vq(8, 4)
    again = build_quantizer(vq.config())
    assert again.config() == vq.config() and again.split_dead_codes and again.ema_style == "uvim"
    assert "split_steps" in vq.state_dict()
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(8, 4, ema_style="uvim")
