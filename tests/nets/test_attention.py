"""``nets.attention``: the CPU math path with its own dropout mask against the formula written out, the mask's rate
per 16-bit lane, and SDPA wherever no dropout applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsq_repro.nets.attention import attention
from fsq_repro.nets.dropout import Dropout, dropout, keep_mask


def qkv(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 3, 17, 8, generator=gen, dtype=dtype).requires_grad_(True) for _ in range(3))


def test_dropout_path_is_softmax_times_mask_over_keep_rate_times_v() -> None:
    """Same seed → the same mask; output and gradients equal ``softmax(q·kᵀ/√d) ⊙ keep / (1 − p') · v`` computed
    in float64 by hand."""
    q, k, v = qkv()
    torch.manual_seed(5)
    out = attention(q, k, v, 0.1, training=True)
    torch.manual_seed(5)
    keep, rate = keep_mask((2, 3, 17, 17), 0.1, q.device)
    assert rate == 6554 / 65536
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    probs = torch.exp(q2 @ k2.transpose(-1, -2) / 8**0.5)
    probs = probs / probs.sum(-1, keepdim=True)
    expected = (probs * keep / (1 - rate)) @ v2
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-9)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)
    assert not keep.all()  # the mask really drops something here


def test_keep_mask_drops_at_the_rate_in_every_16_bit_lane() -> None:
    """Four lanes come from one 64-bit draw; each must drop at p' (a draw over [0, 2⁶³) would leave the top lane's
    sign bit 0 and drop nothing there)."""
    torch.manual_seed(0)
    n = 4 * 250_000
    keep, rate = keep_mask((n,), 0.1, torch.device("cpu"))
    sigma = (rate * (1 - rate) / (n / 4)) ** 0.5
    for lane in range(4):
        dropped = 1 - keep[lane::4].double().mean().item()
        assert abs(dropped - rate) < 5 * sigma, (lane, dropped)


@pytest.mark.slow
def test_dropout_under_torch_compile_keeps_its_rate_scale_and_fresh_masks() -> None:
    """``model.stage2.compile=true`` on CPU (inductor): the 16-bit-lane mask must survive compilation — per-lane drop
    rate p' = round(0.1·2¹⁶)/2¹⁶ within 5σ, kept values exactly 1/(1 − p'), a new mask per call (~25 s to compile)."""
    torch.manual_seed(0)
    x = torch.ones(256, 4096)
    compiled = torch.compile(lambda t: dropout(t, 0.1, True))
    outs = torch.stack([compiled(x) for _ in range(5)])
    rate = round(0.1 * 2**16) / 2**16
    assert torch.equal(outs[outs != 0].unique(), torch.tensor([1 / (1 - rate)], dtype=torch.float32))
    lanes = (outs == 0).double().reshape(5, -1, 4)  # four lanes per 64-bit draw
    sigma = (rate * (1 - rate) / lanes[..., 0].numel()) ** 0.5
    for lane in range(4):
        assert abs(lanes[..., lane].mean().item() - rate) < 5 * sigma, lane
    assert not torch.equal(outs[0], outs[1])


def test_no_dropout_is_sdpa() -> None:
    q, k, v = qkv(1, torch.float32)
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attention(q, k, v, 0.1, training=False), ref)
    torch.testing.assert_close(attention(q, k, v, 0.0, training=True), ref)


def test_dropout_module_is_where_keep_over_keep_rate_and_identity_in_eval() -> None:
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    drop = Dropout(0.1)
    torch.manual_seed(7)
    y = drop(x)
    torch.manual_seed(7)
    keep, rate = keep_mask((64, 33), 0.1, x.device)
    torch.testing.assert_close(y, x.detach() * keep.double() / (1 - rate), rtol=1e-12, atol=0.0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, keep.double() / (1 - rate), rtol=1e-12, atol=0.0)
    assert torch.equal(drop.eval()(x), x)


def test_bf16_inputs_under_autocast_stay_as_accurate_as_sdpa() -> None:
    """bf16 q, k, v (the CPU trainer's autocast): scores and probabilities in float32 as SDPA's math path; rounding
    them to bf16 gave 8× SDPA's error against float64 at std 2 (0.13 vs 0.016)."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 256, 64, generator=gen).mul(2).bfloat16() for _ in range(3))
    torch.manual_seed(11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v, 0.1, training=True)
    torch.manual_seed(11)
    keep, rate = keep_mask((2, 4, 256, 256), 0.1, q.device)
    q64, k64, v64 = (t.double() for t in (q, k, v))
    probs = torch.softmax(q64 @ k64.transpose(-1, -2) / 8.0, dim=-1)
    expected = (probs * keep / (1 - rate)) @ v64
    assert out.dtype == torch.bfloat16
    error = (out.double() - expected).abs().max().item()
    sdpa_error = (F.scaled_dot_product_attention(q, k, v).double() - probs @ v64).abs().max().item()
    assert error < 2 * sdpa_error + 0.02, (error, sdpa_error)
