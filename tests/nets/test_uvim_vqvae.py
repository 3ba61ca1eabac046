"""UViM's guiding-code autoencoder against independent re-derivations of the official big_vision pieces
(``models/proj/uvim/vit.py`` at 21bd6eb): the one-hot ``DenseGeneral`` label embedding, the head's
``b (hn wn) c (hp wp) -> b c (hn hp) (wn wp)`` layout, ``jax.image.resize("linear")`` of the bottleneck, and code
dropout; plus the exported Stage I file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsq_repro.artifacts import load_uvim_stage1, save_uvim_stage1
from fsq_repro.errors import ConfigError
from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder, PatchLabelEmbedding, tokens_to_pixels
from fsq_repro.quantizers import FSQ
from fsq_repro.tasks.depth.task import DepthTask


def tiny(quantizer=None, **kw) -> GuidingCodeAutoencoder:
    args = dict(input_size=32, patch_size=8, code_len=4, width=32, enc_depth=1, dec_depth=1, mlp_dim=64, num_heads=4)
    return GuidingCodeAutoencoder(quantizer or FSQ(levels=[5, 5, 5]), {"depth": 16}, **{**args, **kw})


def test_label_embedding_is_the_official_one_hot_dense_layer() -> None:
    """big_vision: one_hot over axis -2 of (B, N, p², ) → (B, N, C, p²), then DenseGeneral over both axes with a
    kernel (C, p², D). Our table row ``c·p² + j`` is kernel[c, j]."""
    torch.manual_seed(0)
    emb = PatchLabelEmbedding(num_classes=5, patch_size=2, width=3)
    labels = torch.randint(0, 5, (2, 4, 6))
    kernel = emb.table.weight.detach().view(5, 4, 3)  # (C, p², D)
    # the official rearrange "b (hn hp) (wn wp) -> b (hn wn) (hp wp)" written with numpy, then one-hot on axis -2
    lab = labels.numpy()
    patches = lab.reshape(2, 2, 2, 3, 2).transpose(0, 1, 3, 2, 4).reshape(2, 6, 4)
    onehot = np.eye(5)[patches].transpose(0, 1, 3, 2)  # (B, N, C, p²)
    expected = np.einsum("bncj,cjd->bnd", onehot, kernel.numpy()) + emb.bias.detach().numpy()
    assert np.allclose(emb(labels).detach().numpy(), expected, atol=1e-6)


def test_out_of_range_labels_embed_as_an_all_zero_one_hot() -> None:
    """jax.nn.one_hot(-1 or ≥ C) is all zeros, so a 101st instance id (or −1) adds no kernel row: the numpy one-hot
    oracle with such ids dropped. Clamping them would give class C − 1's row instead."""
    torch.manual_seed(1)
    emb = PatchLabelEmbedding(num_classes=4, patch_size=2, width=3)
    labels = torch.randint(0, 4, (1, 2, 4))
    labels[0, 0, 0], labels[0, 1, 3] = 7, -1
    kernel = emb.table.weight.detach().view(4, 4, 3).numpy()
    patches = labels.numpy().reshape(1, 1, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(1, 2, 4)
    onehot = np.concatenate([np.eye(4), np.zeros((4, 4))])[np.where(patches < 0, 4, patches).clip(max=4)]
    expected = np.einsum("bnjc,cjd->bnd", onehot, kernel) + emb.bias.detach().numpy()
    assert np.allclose(emb(labels).detach().numpy(), expected, atol=1e-6)


def test_head_layout_matches_the_official_rearrange() -> None:
    b, g, c, p = 2, 3, 4, 2
    logits = torch.randn(b, g * g, c * p * p)
    # official predict_outputs: "b (hn wn) c (hp wp) -> b (hn hp) (wn wp) c" on a (B, N, C, p²) array
    x = logits.numpy().reshape(b, g, g, c, p, p)  # b hn wn c hp wp
    expected = x.transpose(0, 1, 4, 2, 5, 3).reshape(b, g * p, g * p, c).transpose(0, 3, 1, 2)
    assert np.array_equal(tokens_to_pixels(logits, c, g, p).numpy(), expected)


def linear_resize_oracle(x: np.ndarray, out: int) -> np.ndarray:
    """``jax.image.resize(method="linear")`` along one axis, re-derived: sample at half-pixel centres
    ``(i + 0.5)·in/out − 0.5`` with a triangle kernel widened by ``in/out`` when shrinking (antialiasing), weights
    renormalised at the borders."""
    n = x.shape[-1]
    scale = out / n
    width = max(1.0, 1.0 / scale)
    rows = []
    for i in range(out):
        centre = (i + 0.5) / scale - 0.5
        w = np.maximum(0.0, 1.0 - np.abs(np.arange(n) - centre) / width)
        rows.append(w / w.sum())
    return x @ np.array(rows).T


@pytest.mark.parametrize(("grid", "side"), [(8, 4), (32, 16), (6, 4)])
def test_bottleneck_resize_is_jax_linear_resize(grid: int, side: int) -> None:
    model = tiny(input_size=8 * grid, code_len=side * side)
    x = torch.randn(2, grid * grid, 3, dtype=torch.float64)
    img = x.numpy().transpose(0, 2, 1).reshape(2, 3, grid, grid)
    shrunk = linear_resize_oracle(linear_resize_oracle(img, side).swapaxes(-1, -2), side).swapaxes(-1, -2)
    got = model._shrink(x).numpy().transpose(0, 2, 1).reshape(2, 3, side, side)
    assert np.allclose(got, shrunk, atol=1e-10)
    y = torch.randn(2, side * side, 3, dtype=torch.float64)
    img = y.numpy().transpose(0, 2, 1).reshape(2, 3, side, side)
    grown = linear_resize_oracle(linear_resize_oracle(img, grid).swapaxes(-1, -2), grid).swapaxes(-1, -2)
    got = model._grow(y).numpy().transpose(0, 2, 1).reshape(2, 3, grid, grid)
    assert np.allclose(got, grown, atol=1e-10)


def test_code_dropout_keeps_a_uniform_random_fraction() -> None:
    """Official: keep ``linspace(1, 0, L+2)[1:-1] > u`` (u ~ U(0,1)), i.e. k ~ #{importance > u} codes, then a
    random permutation per sample ("random") — the kept count is uniform over {0..L}, positions are random."""
    model = tiny(code_len=4)
    model.train()
    codes = torch.ones(20000, 4, 3)
    gen = torch.Generator().manual_seed(0)
    kept = model.drop_codes(codes, gen)[..., 0]
    counts = torch.bincount(kept.sum(1).long(), minlength=5).double() / 20000
    # importance = [0.8, 0.6, 0.4, 0.2]: P(k) = 0.2 each for k = 0..4
    assert torch.allclose(counts, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015)
    position = kept.mean(0)  # random positions: each kept with probability E[k]/L = 0.5
    assert torch.allclose(position, torch.full((4,), 0.5), atol=0.02)
    prefix = tiny(code_len=4, code_dropout="prefix")
    kept = prefix.drop_codes(codes[:2000], gen)[..., 0]
    assert (kept.cummin(1).values == kept).all()  # prefix mode keeps the first k codes
    model.eval()
    assert torch.equal(model.decode(torch.zeros(1, 4, 3), torch.zeros(1, 3, 32, 32))["depth"],
                       model.decode(torch.zeros(1, 4, 3), torch.zeros(1, 3, 32, 32))["depth"])  # fmt: skip


def test_heads_start_at_zero_and_context_is_required() -> None:
    model = tiny()
    labels = {"depth": torch.randint(0, 16, (2, 32, 32))}
    logits, q = model(labels, torch.randn(2, 3, 32, 32))
    assert logits["depth"].shape == (2, 16, 32, 32) and torch.count_nonzero(logits["depth"]) == 0
    assert q.indices.shape == (2, 4) and q.codes.shape == (2, 4, 3)
    with pytest.raises(ValueError, match="context"):
        model(labels)
    with pytest.raises(ConfigError, match="multiple"):
        tiny(input_size=30)


def test_small_fit_reconstructs_depth_labels() -> None:
    """A real fit: 4 guiding codes (FSQ [5,5,5]) + image context learn to reconstruct a 16-bin depth ramp whose
    slope and offset vary per image; the cross-entropy falls well below its start (log 16 ≈ 2.77)."""
    torch.manual_seed(0)
    model = tiny()
    task = DepthTask(num_bins=16, min_depth=0.0 + 1e-3, max_depth=10.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rows = torch.linspace(0, 1, 32)[:, None].expand(32, 32)
    losses = []
    for _ in range(120):
        a, b = torch.rand(16, 1, 1) * 5, torch.rand(16, 1, 1) * 4 + 0.5
        depth = (a * rows + b)[:, None]
        labels = task.labels({"depth": depth})
        logits, _ = model(labels, depth.expand(-1, 3, -1, -1) / 5 - 1)
        loss, _ = task.loss(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5 and np.mean(losses[-10:]) < 0.8


def test_stage1_file_round_trip(tmp_path) -> None:
    model = tiny().eval()
    with torch.no_grad():
        for p in model.heads.parameters():
            p.normal_()
    task = DepthTask(num_bins=16)
    path = save_uvim_stage1(tmp_path / "uvim_stage1.pt", model, task.config(), "fp", extra={"x": 1})
    payload = torch.load(path, weights_only=True)
    assert payload["levels"] == [5, 5, 5] and payload["codebook_size"] == 125 and payload["task"]["num_bins"] == 16
    loaded, loaded_task = load_uvim_stage1(path)
    labels = {"depth": torch.randint(0, 16, (2, 32, 32))}
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, qa = model(labels, image)
        b, qb = loaded(labels, image)
    assert torch.equal(qa.indices, qb.indices) and torch.equal(a["depth"], b["depth"])
    assert loaded_task.config() == task.config()
    with torch.no_grad():
        via_indices = loaded.decode_indices(qb.indices, image)["depth"]
    assert torch.allclose(via_indices, b["depth"], atol=1e-5)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="uvim_stage1="):
        load_uvim_stage1(tmp_path / "bad.pt")
