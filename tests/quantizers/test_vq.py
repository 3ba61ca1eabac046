"""VQ baseline against brute force and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fsq_repro.quantizers import VectorQuantizer


def test_lookup_equals_brute_force_argmin() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=37, dim=5)
    vq.embedding.data.normal_()
    z = torch.randn(4, 6, 5)
    out = vq(z)
    e = vq.embedding.detach().double().numpy()
    for flat_i, vec in enumerate(z.reshape(-1, 5).double().numpy()):
        brute = int(np.argmin([((vec - e[k]) ** 2).sum() for k in range(37)]))
        assert int(out.indices.reshape(-1)[flat_i]) == brute
    assert torch.equal(out.codes.detach(), vq.indexes_to_codes(out.indices).detach())
    assert torch.equal(vq.codes_to_indexes(vq.indexes_to_codes(torch.arange(37))), torch.arange(37))


def _hand_entropy(d: np.ndarray, temperature: float) -> float:
    logits = -d / temperature
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    sample = -(p * np.log(p)).sum(1).mean()
    avg = p.mean(0)
    return sample - (-(avg * np.log(avg + 1e-5)).sum())


def test_losses_equal_hand_computation() -> None:
    vq = VectorQuantizer(codebook_size=2, dim=2, beta=0.25, entropy_weight=0.1, entropy_temperature=1.0)
    vq.embedding.data = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.2, 0.1], [0.9, 1.2]])
    out = vq(z)
    assert out.indices.tolist() == [0, 1]
    mse = ((0.2**2 + 0.1**2) + (0.1**2 + 0.2**2)) / 4  # = 0.025
    d = np.array([[0.05, 0.8**2 + 0.9**2], [0.9**2 + 1.2**2, 0.1**2 + 0.2**2]])
    expected = mse + 0.25 * mse + 0.1 * _hand_entropy(d, 1.0)
    assert out.metrics["commitment"].item() == pytest.approx(mse, rel=1e-6)
    assert out.metrics["codebook_loss"].item() == pytest.approx(mse, rel=1e-6)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert not out.metrics.computed  # the losses are ready; the usage histogram waits until read
    assert out.metrics["perplexity"].item() == pytest.approx(2.0) and out.metrics["batch_usage"].item() == 1.0


def test_entropy_loss_is_minimal_for_uniform_usage() -> None:
    K = 8
    vq = VectorQuantizer(codebook_size=K, dim=3, entropy_weight=1.0, beta=0.0, entropy_temperature=0.01)
    vq.embedding.data = torch.randn(K, 3) * 3
    uniform = vq.embedding.detach().repeat(4, 1)  # every code hit equally, confidently
    collapsed = vq.embedding.detach()[:1].repeat(4 * K, 1)  # one code only
    h_uniform = vq(uniform).metrics["entropy_loss"].item()
    h_collapsed = vq(collapsed).metrics["entropy_loss"].item()
    assert h_uniform == pytest.approx(-math.log(K), abs=1e-3)  # its lower bound: 0 - log K
    assert h_collapsed == pytest.approx(0.0, abs=1e-3)
    assert h_uniform < h_collapsed


def test_gradients_reach_the_input_through_the_ste() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=16, dim=4)
    z = torch.randn(10, 4, requires_grad=True)
    out = vq(z)
    out.codes.sum().backward(retain_graph=True)
    assert torch.equal(z.grad, torch.ones_like(z))  # straight-through: identity
    z.grad = None
    out.loss.backward()
    assert z.grad.abs().sum() > 0 and vq.embedding.grad.abs().sum() > 0


def test_bf16_autocast_lookup_is_fp32() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=64, dim=8)
    proj = torch.nn.Linear(8, 8)
    x = torch.randn(500, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = proj(x)
        out = vq(z)
    assert out.codes.dtype == torch.float32
    assert torch.equal(out.indices, vq(z.float()).indices)


def test_ema_codebook_moves_to_cluster_means() -> None:
    torch.manual_seed(0)
    centers = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    vq = VectorQuantizer(codebook_size=3, dim=2, ema_decay=0.9, entropy_weight=0.0)
    vq.embedding.data = centers + 0.5
    vq.ema_embed_sum.copy_(vq.embedding.data)
    for _ in range(100):
        z = centers.repeat(50, 1) + 0.05 * torch.randn(150, 2)
        vq(z)
    assert torch.allclose(vq.embedding.data, centers, atol=0.05)
    assert not vq.embedding.requires_grad


def test_dead_code_reseeding_revives_unused_codes() -> None:
    torch.manual_seed(0)
    data = torch.randn(256, 2) * 3

    def usage(vq: VectorQuantizer) -> float:
        return torch.unique(vq(data).indices).numel() / vq.codebook_size

    plain = VectorQuantizer(codebook_size=32, dim=2, entropy_weight=0.0)
    plain.embedding.data = torch.randn(32, 2) * 0.01 + 100  # all codes far away: collapse to one
    reseed = VectorQuantizer(codebook_size=32, dim=2, entropy_weight=0.0, dead_code_threshold=0.5)
    reseed.embedding.data = plain.embedding.data.clone()
    for _ in range(150):  # usage EMA (decay 0.99) falls below 0.5 after ~69 steps
        plain.train()(data)
        reseed.train()(data)
    assert usage(plain.eval()) <= 1 / 32
    assert usage(reseed.eval()) > 0.5


def test_l2_normalised_codes_have_unit_norm() -> None:
    vq = VectorQuantizer(codebook_size=16, dim=4, l2_normalize=True)
    out = vq(torch.randn(32, 4) * 5)
    assert torch.allclose(out.codes.norm(dim=-1), torch.ones(32), atol=1e-5)


def test_code_counts_equal_numpys_bincount_with_a_fixed_shape() -> None:
    """``code_counts`` replaces ``torch.bincount`` in the VQ's EMA update: the same counts (numpy's bincount as the
    oracle), and an output shape that does not depend on the data (no host sync on a GPU; fake tensors run it)."""
    import numpy as np
    from torch._subclasses.fake_tensor import FakeTensorMode

    from fsq_repro.quantizers.vq import code_counts

    g = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 37, (5, 91), generator=g)
    got = code_counts(indices, 50)
    assert got.dtype == torch.float32 and got.shape == (50,)
    np.testing.assert_array_equal(got.numpy(), np.bincount(indices.numpy().ravel(), minlength=50))
    with FakeTensorMode():
        assert code_counts(torch.zeros(7, dtype=torch.long), 50).shape == (50,)
