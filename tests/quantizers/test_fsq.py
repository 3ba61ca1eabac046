"""FSQ against closed forms and an independent numpy re-implementation of App. A.1 (not against itself)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fsq_repro.quantizers import FSQ

TABLE1 = {  # FSQ paper Table 1
    240: [8, 6, 5],
    1000: [8, 5, 5, 5],
    4375: [7, 5, 5, 5, 5],
    15360: [8, 8, 8, 6, 5],
    64000: [8, 8, 8, 5, 5, 5],
}


def numpy_app_a1_indices(z: np.ndarray, levels: list[int], eps: float = 1e-3) -> np.ndarray:
    """App. A.1 written again in float64 numpy: bound -> round -> mixed-radix index."""
    L = np.asarray(levels, dtype=np.float64)
    half_l = (L - 1) * (1 - eps) / 2
    offset = np.where(np.asarray(levels) % 2 == 1, 0.0, 0.5)
    shift = np.tan(offset / half_l)
    bounded = np.tanh(z + shift) * half_l - offset
    digits = np.round(bounded) + (np.asarray(levels) // 2)
    basis = np.concatenate([[1], np.cumprod(levels[:-1])])
    return (digits * basis).sum(-1).astype(np.int64)


@pytest.mark.parametrize("L", range(2, 10))
def test_grid_of_every_level_count_is_the_closed_form(L: int) -> None:
    fsq = FSQ([L])
    z = torch.linspace(-30, 30, 200_001)[:, None]
    values = sorted(set(fsq.quantize(z).squeeze(1).tolist()))
    half = L // 2
    if L % 2 == 1:
        expected = [k / half for k in range(-(L - 1) // 2, (L - 1) // 2 + 1)]
    else:
        expected = [k / half for k in range(-half, half)]  # asymmetric: {-L/2 ... L/2-1}/(L/2)
    assert values == pytest.approx(expected, abs=1e-7)  # float32 codes
    assert len(values) == L
    assert min(values) >= -1 and max(values) <= 1
    # The implicit codebook of a 1-d FSQ is exactly that grid, in index order.
    assert fsq.implicit_codebook.squeeze(1).tolist() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("size", sorted(TABLE1))
def test_table1_roundtrip_and_size(size: int) -> None:
    levels = TABLE1[size]
    fsq = FSQ(levels)
    assert fsq.codebook_size == math.prod(levels) == size
    assert fsq.implicit_codebook.shape == (size, len(levels))
    idx = fsq.codes_to_indexes(fsq.implicit_codebook)
    assert idx.dtype == torch.int64
    assert torch.equal(idx, torch.arange(size))
    assert torch.equal(fsq.indexes_to_codes(idx), fsq.implicit_codebook)
    # All codes are distinct.
    assert torch.unique(fsq.implicit_codebook, dim=0).shape[0] == size


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [7, 5, 5, 5, 5], [3, 4]])
def test_index_is_the_hand_computed_mixed_radix_number(levels: list[int]) -> None:
    fsq = FSQ(levels)
    # Enumerate codes with itertools (last channel most significant) and build each index by hand.
    grids = [[(k - L // 2) / (L // 2) for k in range(L)] for L in levels]
    for rank, digits_rev in enumerate(itertools.product(*[range(L) for L in reversed(levels)])):
        digits = list(reversed(digits_rev))
        index, place = 0, 1
        for d, L in zip(digits, levels):
            index += d * place
            place *= L
        assert index == rank
        code = torch.tensor([grids[i][d] for i, d in enumerate(digits)])
        assert int(fsq.codes_to_indexes(code)) == index
        if rank > 300:
            break


def test_worked_example() -> None:
    # [8,5,5,5], digits (3, 1, 4, 2) -> 3 + 1*8 + 4*40 + 2*200 = 571.
    fsq = FSQ([8, 5, 5, 5])
    code = torch.tensor([(3 - 4) / 4, (1 - 2) / 2, (4 - 2) / 2, (2 - 2) / 2])
    assert int(fsq.codes_to_indexes(code)) == 571
    assert torch.equal(fsq.indexes_to_codes(torch.tensor(571)), code)


@pytest.mark.parametrize("levels", [TABLE1[1000], TABLE1[64000], [7, 5, 5, 5, 5], [2, 3, 4, 9]])
def test_indices_equal_numpy_app_a1(levels: list[int]) -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(50_000, len(levels), generator=gen) * 3
    ours = FSQ(levels)(z).indices.numpy()
    ref = numpy_app_a1_indices(z.double().numpy(), levels)
    assert (ours == ref).mean() > 0.9999  # float32 vs float64 may differ only exactly on a rounding edge
    assert ours.min() >= 0 and ours.max() < math.prod(levels)


def test_atanh_port_differs_from_the_paper() -> None:
    """The popular port ((1+eps), atanh) moves some indices; our implementation must be the paper's."""
    levels = [8, 8, 8, 5, 5, 5]
    z = torch.randn(100_000, len(levels), generator=torch.Generator().manual_seed(1)) * 3
    L = np.asarray(levels, dtype=np.float64)
    half_l = (L - 1) * (1 + 1e-3) / 2
    offset = np.where(np.asarray(levels) % 2 == 1, 0.0, 0.5)
    bounded = np.tanh(z.double().numpy() + np.arctanh(offset / half_l)) * half_l - offset
    digits = np.round(bounded) + (np.asarray(levels) // 2)
    port = (digits * np.concatenate([[1], np.cumprod(levels[:-1])])).sum(-1)
    ours = FSQ(levels)(z).indices.numpy()
    assert 0.001 < (ours != port).mean() < 0.05


def test_ste_gradient_equals_dbound_dz() -> None:
    levels = [8, 5, 7, 4]
    fsq = FSQ(levels)
    z = (torch.randn(512, 4, generator=torch.Generator().manual_seed(2)) * 2).requires_grad_(True)
    fsq.quantize(z).sum().backward()
    L = np.asarray(levels, dtype=np.float64)
    half_l = (L - 1) * (1 - 1e-3) / 2
    offset = np.where(np.asarray(levels) % 2 == 1, 0.0, 0.5)
    t = np.tanh(z.detach().double().numpy() + np.tan(offset / half_l))
    closed_form = half_l * (1 - t**2) / (np.asarray(levels) // 2)  # d bound/dz, renormalised by L // 2
    np.testing.assert_allclose(z.grad.double().numpy(), closed_form, rtol=1e-5, atol=1e-6)


def test_no_parameters_and_empty_state_dict() -> None:
    fsq = FSQ([8, 5, 5, 5])
    assert list(fsq.parameters()) == []
    assert fsq.state_dict() == {}
    out = fsq(torch.randn(2, 3, 4))
    assert out.loss.item() == 0.0 and out.codes.shape == (2, 3, 4) and out.indices.shape == (2, 3)


def test_bf16_autocast_matches_fp32_indices() -> None:
    torch.manual_seed(0)
    proj = torch.nn.Linear(16, 4)
    x = torch.randn(20_000, 16) * 2
    fsq = FSQ([8, 5, 5, 5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = proj(x)
        assert z.dtype == torch.bfloat16
        out = fsq(z)
    ref = fsq(z.float())
    assert out.codes.dtype == torch.float32
    assert out.indices.dtype == torch.int64
    assert torch.equal(out.indices, ref.indices)
    # The test can fail: rounding a bf16 bound() really does move indices.
    naive = torch.round(fsq.bound(z.float()).bfloat16().float() * 1.0)
    assert (naive != torch.round(fsq.bound(z.float()))).any()


def test_wrong_channel_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"expects channel-last inputs \(\.\.\., 4\)"):
        FSQ([8, 5, 5, 5])(torch.randn(2, 8, 8, 3))
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])


def test_a_codebook_size_that_is_not_the_product_of_the_levels_is_a_config_error() -> None:
    from fsq_repro.errors import ConfigError

    assert FSQ([8, 5, 5, 5], codebook_size=1000).codebook_size == 1000
    with pytest.raises(ConfigError, match=r"levels=\[8, 5, 5, 5\] give 1000 codes, not quantizer.codebook_size=1024"):
        FSQ([8, 5, 5, 5], codebook_size=1024)


def test_batch_usage_metrics_by_hand_with_out_of_range_indices() -> None:
    """Perplexity exp(H) and share of codes hit, by hand; out-of-range indices (NaN latents) are left out."""
    from fsq_repro.quantizers.base import batch_usage_metrics

    indices = torch.tensor([[0, 0, 1, 3], [3, 3, -1, 7]])  # valid: 0,0,1,3,3,3 of K = 5; -1 and 7 dropped
    m = batch_usage_metrics(indices, 5)
    p = np.array([2, 1, 3]) / 6
    assert m["perplexity"].item() == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)
    assert m["batch_usage"].item() == pytest.approx(3 / 5)


def test_usage_metrics_are_computed_when_read_and_match_numpy(monkeypatch) -> None:
    """``out.metrics`` is lazy: forward + backward alone never counts the batch; the first read computes the
    perplexity / usage of the batch's own indices once (numpy bincount by hand), later reads reuse them."""
    import fsq_repro.quantizers.fsq as fsq_module

    calls = []
    real = fsq_module.batch_usage_metrics
    monkeypatch.setattr(fsq_module, "batch_usage_metrics", lambda *a: calls.append(1) or real(*a))
    fsq = FSQ([5, 3])
    z = torch.randn(4, 6, 2, requires_grad=True)
    out = fsq(z)
    out.codes.sum().backward()
    assert calls == [] and not out.metrics.computed
    counts = np.bincount(out.indices.numpy().ravel(), minlength=15)
    p = counts[counts > 0] / counts.sum()
    assert out.metrics["perplexity"].item() == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)
    assert dict(out.metrics)["batch_usage"].item() == pytest.approx((counts > 0).sum() / 15)
    assert set(out.metrics) == {"perplexity", "batch_usage"} and calls == [1]


def test_index_mapping_at_64000_codes_equals_numpy_mixed_radix() -> None:
    levels = [8, 8, 8, 5, 5, 5]
    fsq = FSQ(levels)
    rng = np.random.default_rng(0)
    digits = np.stack([rng.integers(0, n, 5000) for n in levels], axis=-1)
    expected = (digits * np.cumprod([1, *levels[:-1]])).sum(-1)
    half = np.array(levels) // 2
    codes = torch.from_numpy((digits - half) / half).float()
    assert np.array_equal(fsq.codes_to_indexes(codes).numpy(), expected)


@pytest.mark.parametrize("shape", [(4096,), (3, 7, 11)])  # rows tiled 64 at a time (``_bound_round``), and odd
def test_fused_node_equals_the_composed_app_a1_ops_forward_and_backward(shape: tuple[int, ...]) -> None:
    """``quantize`` runs as one autograd node; its codes equal App. A.1's composed ``round_ste(bound(z)) / (L//2)``
    bit for bit, the indices equal ``codes_to_indexes(codes)``, and the gradient equals autograd's through the
    composed ops, also for a bf16 input under autocast (the gradient reaches the input in its dtype)."""
    levels = [8, 8, 8, 6, 5]
    fsq = FSQ(levels)
    z = torch.randn(*shape, len(levels), generator=torch.Generator().manual_seed(3)) * 3
    weight = torch.rand(*shape, len(levels), generator=torch.Generator().manual_seed(4))
    for dtype in (torch.float32, torch.bfloat16):
        a = z.to(dtype).clone().requires_grad_(True)
        b = a.detach().clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = fsq(a)
        composed = fsq_round_ste_reference(fsq, b)
        assert out.codes.dtype == torch.float32 and torch.equal(out.codes, composed)
        assert torch.equal(out.indices, fsq.codes_to_indexes(composed.detach()))
        (out.codes * weight).sum().backward()
        (composed * weight).sum().backward()
        assert a.grad.dtype == dtype
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)


def fsq_round_ste_reference(fsq: FSQ, z: torch.Tensor) -> torch.Tensor:
    """App. A.1's ops one by one, autograd through each: ``round_ste(tanh(z + shift)·half_l − offset) / (L // 2)``."""
    from fsq_repro.quantizers import round_ste

    bounded = torch.tanh(z.float() + fsq._shift) * fsq._half_l - fsq._offset
    return round_ste(bounded) / fsq._half_width


def test_fused_node_edge_cases_inference_mode_first_odd_tiling_noncontiguous_and_dtype_moves() -> None:
    """The tile cache must not keep inference tensors (Lightning validates under inference mode, then trains), must
    follow ``.double()``/``.to()``, and every tiling (here k = 4 and a non-contiguous input) gives App. A.1's codes."""
    fsq = FSQ([8, 6, 5])
    with torch.inference_mode():
        fsq(torch.randn(64, 3))
    z = torch.randn(64, 3, requires_grad=True)
    fsq(z).codes.sum().backward()  # raised "Inference tensors cannot be saved for backward" with a naive cache
    assert z.grad is not None
    for x in (torch.randn(12, 3) * 3, (torch.randn(3, 40) * 3).t()[:20]):  # 12 rows: k = 4; a transposed view
        torch.testing.assert_close(fsq.quantize(x), fsq_round_ste_reference(fsq, x), rtol=0, atol=0)
    fsq64 = fsq.double()
    assert not fsq64._tiles  # rebuilt from the converted buffers
    with pytest.raises(ValueError, match="expects channel-last"):
        fsq.quantize(torch.randn(4, 4))
