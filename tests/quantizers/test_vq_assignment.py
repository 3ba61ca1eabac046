"""Chunked VQ assignment + entropy loss (quantizers/assignment.py) against independent oracles: numpy brute force,
autograd through the direct (N, K) definition in float64, and finite differences (gradcheck)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsq_repro.quantizers import VectorQuantizer
from fsq_repro.quantizers.assignment import assign_and_entropy, entropy_loss, nearest_codes, squared_distances


def _numpy_entropy(x: np.ndarray, e: np.ndarray, temperature: float) -> float:
    d = ((x[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    logits = -d / temperature
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    sample = -(p * np.log(np.maximum(p, 1e-300))).sum(1).mean()
    avg = p.mean(0)
    return float(sample + (avg * np.log(avg + 1e-5)).sum())


@pytest.mark.parametrize("rows", [7, 4, 1000])  # 7 rows per chunk (ragged tail), 4 rows, one chunk
def test_forward_equals_numpy_and_gradients_equal_autograd_of_the_direct_form(rows: int) -> None:
    torch.manual_seed(0)
    n, k, d, temperature = 50, 13, 4, 0.5
    x = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    e = torch.randn(k, d, dtype=torch.float64, requires_grad=True)
    idx, loss = assign_and_entropy(x, e, temperature, rows=rows)

    xn, en = x.detach().numpy(), e.detach().numpy()
    brute = ((xn[:, None, :] - en[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(idx.numpy(), brute)
    assert loss.item() == pytest.approx(_numpy_entropy(xn, en, temperature), rel=1e-10, abs=1e-12)

    upstream = torch.tensor(0.7, dtype=torch.float64)
    gx, ge = torch.autograd.grad(loss * upstream, (x, e))
    x2, e2 = x.detach().clone().requires_grad_(), e.detach().clone().requires_grad_()
    direct = entropy_loss(squared_distances(x2, e2), temperature)
    rx, re = torch.autograd.grad(direct * upstream, (x2, e2))
    assert torch.allclose(gx, rx, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ge, re, rtol=1e-9, atol=1e-12)


def test_gradients_pass_finite_differences() -> None:
    torch.manual_seed(1)
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    e = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: assign_and_entropy(a, b, 0.3, rows=2)[1], (x, e))


def test_float32_gradient_with_a_codebook_without_grad() -> None:
    torch.manual_seed(2)
    x = torch.randn(20, 3, requires_grad=True)
    e = torch.randn(6, 3)  # EMA codebooks: no grad
    _, loss = assign_and_entropy(x, e, 0.1, rows=2)
    loss.backward()
    x64 = x.detach().double().requires_grad_()
    entropy_loss(squared_distances(x64, e.double()), 0.1).backward()  # float64 direct form
    assert (x.grad.double() - x64.grad).abs().max() < 1e-6  # float32 with no cancellation (|grad| up to 0.09)


def test_nearest_codes_chunks_equal_brute_force() -> None:
    torch.manual_seed(3)
    x, e = torch.randn(101, 6), torch.randn(40, 6)
    brute = torch.cdist(x.double(), e.double()).argmin(1)
    assert torch.equal(nearest_codes(x, e, rows=9), brute)


def test_vq_module_loss_and_grads_match_the_direct_formula() -> None:
    """The whole VQ loss (codebook + commitment + entropy) and its gradients vs a from-scratch direct version."""
    torch.manual_seed(4)
    vq = VectorQuantizer(codebook_size=300, dim=4, beta=0.25, entropy_weight=0.1, entropy_temperature=0.01)
    z = torch.randn(2, 40, 4, requires_grad=True)
    out = vq(z)
    out.loss.backward()

    z2 = z.detach().double().requires_grad_()  # the direct form in float64 (float32 cancels at T = 0.01)
    emb = vq.embedding.detach().double().requires_grad_()
    flat = z2.reshape(-1, 4)
    dist = squared_distances(flat, emb)
    q = emb[dist.argmin(1)]
    direct = ((q - flat.detach()) ** 2).mean() + 0.25 * ((flat - q.detach()) ** 2).mean()
    direct = direct + 0.1 * entropy_loss(dist, 0.01)
    direct.backward()
    assert out.loss.item() == pytest.approx(direct.item(), rel=1e-5)
    assert torch.equal(out.indices.reshape(-1), dist.argmin(1))
    scale = z2.grad.abs().max().item()
    assert (z.grad.double() - z2.grad).abs().max().item() < 1e-4 * scale
    assert (vq.embedding.grad.double() - emb.grad).abs().max().item() < 1e-4 * emb.grad.abs().max().item()


@pytest.mark.parametrize("options", [{}, {"l2_normalize": True}, {"standardize": True, "ema_decay": 0.99}])
def test_tokenization_indices_equal_the_forward_assignment(options: dict) -> None:
    """``indices`` (no entropy loss, used by ``tokenizer.encode``) assigns exactly like ``forward`` and like brute
    force on the vectors the forward compares (standardized / unit-norm)."""
    torch.manual_seed(5)
    vq = VectorQuantizer(codebook_size=2000, dim=6, **options).eval()  # eval: no EMA update in between
    z = torch.randn(3, 7, 11, 6) * 2 + 0.5
    idx = vq.indices(z)
    assert idx.shape == (3, 7, 11) and torch.equal(idx, vq(z).indices)
    flat = z.reshape(-1, 6).double()
    if options.get("standardize"):
        flat = (flat - flat.mean(-1, keepdim=True)) / torch.sqrt(flat.var(-1, unbiased=False, keepdim=True) + 1e-5)
    if options.get("l2_normalize"):
        flat = flat / flat.norm(dim=-1, keepdim=True)
    assert torch.equal(idx.reshape(-1), torch.cdist(flat, vq.codebook().double()).argmin(1))


def test_backward_under_bf16_autocast_stays_float32() -> None:
    """Lightning calls ``.backward()`` inside bf16 autocast: the recomputed distances must still be float32 (a bf16
    recomputation at T = 0.01 turned the entropy gradient into noise and VQ tokenizers lost their colours)."""
    torch.manual_seed(6)
    x = (torch.randn(300, 32) * 0.3).requires_grad_()
    e = (torch.rand(500, 32) * 2 - 1).mul(0.08).requires_grad_()
    _, loss = assign_and_entropy(x, e, 0.01, rows=64)
    gx, ge = torch.autograd.grad(loss, (x, e))
    x2, e2 = x.detach().clone().requires_grad_(), e.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss2 = assign_and_entropy(x2, e2, 0.01, rows=64)
        (loss2 * 1.0).backward()
    assert loss2.dtype == torch.float32 and x2.grad.dtype == torch.float32
    assert torch.allclose(x2.grad, gx, rtol=1e-5, atol=1e-9) and torch.allclose(e2.grad, ge, rtol=1e-5, atol=1e-9)
