"""The MaskGIT transformer: vocabulary layout, label dropout rate, tied head, startup checks; the official details
(tanh GELU, init truncated at ±2σ, per-image loss averaging) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import truncnorm

from fsq_repro.errors import ConfigError
from fsq_repro.lit.maskgit_module import masked_token_loss
from fsq_repro.nets.transformer import ClassEmbedder, MaskGITTransformer, check_vocabulary


def test_vocabulary_and_shapes() -> None:
    model = MaskGITTransformer(1000, 1000, 256, hidden_dim=64, depth=2, num_heads=4, mlp_dim=128)
    assert model.vocab_size == 1000 + 1000 + 1 and model.mask_token_id == 2000
    tokens = torch.randint(0, 1000, (2, 256))
    logits = model(tokens, model.class_embedder(torch.tensor([3, -1])))
    assert logits.shape == (2, 256, 1000)


def test_label_dropout_rate_and_null_class() -> None:
    emb = ClassEmbedder(codebook_size=50, num_classes=10, label_drop_prob=0.1)
    labels = torch.randint(0, 10, (200_000,))
    ids = emb.train()(labels, generator=torch.Generator().manual_seed(0))
    dropped = (ids == emb.null_id).float().mean().item()
    assert abs(dropped - 0.1) < 0.003  # binomial std ~ 7e-4
    kept = ids != emb.null_id
    assert torch.equal(ids[kept], labels[kept] + 50)
    eval_ids = emb.eval()(labels)
    assert torch.equal(eval_ids, labels + 50)  # no dropout outside training
    assert emb(torch.tensor([-1]))[0] == emb.null_id == 60
    with pytest.raises(ValueError):
        emb(torch.tensor([10]))


def test_loss_only_on_masked_positions() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 16, 12)
    targets = torch.randint(0, 12, (4, 16))
    mask = torch.rand(4, 16) < 0.5
    loss, acc = masked_token_loss(logits, targets, mask)
    changed = torch.where(mask, targets, (targets + 1) % 12)  # change every unmasked target
    loss2, acc2 = masked_token_loss(logits, changed, mask)
    assert torch.equal(loss, loss2) and torch.equal(acc, acc2)


def _smoothed_ce(logits: np.ndarray, target: int, smoothing: float) -> float:
    """Label-smoothed cross-entropy of one position, by hand: targets (1 − s)·onehot + s/C."""
    log_p = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    return -(1 - smoothing) * log_p[target] - smoothing * log_p.mean()


def test_loss_averages_each_images_masked_positions_then_the_batch() -> None:
    """Two images with 1 and 5 masked tokens weigh equally (official weighted_sequence_cross_entropy_loss)."""
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(size=(2, 6, 5)) * 2, rng.integers(0, 5, size=(2, 6))
    mask = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=bool)
    per_image = [np.mean([_smoothed_ce(logits[b, i], targets[b, i], 0.1) for i in np.flatnonzero(mask[b])])
                 for b in range(2)]  # fmt: skip
    pooled = np.mean([_smoothed_ce(logits[b, i], targets[b, i], 0.1) for b, i in zip(*np.nonzero(mask))])
    loss, _ = masked_token_loss(torch.tensor(logits), torch.tensor(targets), torch.tensor(mask), 0.1)
    assert loss.item() == pytest.approx(np.mean(per_image), rel=1e-6)
    assert abs(np.mean(per_image) - pooled) > 1e-3  # the two averages really differ here


def test_gelu_is_the_tanh_approximation() -> None:
    model = MaskGITTransformer(8, 2, 4, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))  # jax.nn.gelu default
    for act in (model.blocks[0].mlp[1], model.head[1]):
        torch.testing.assert_close(act(x), tanh_gelu, rtol=0, atol=1e-12)
        assert (act(x) - torch.nn.functional.gelu(x)).abs().max() > 1e-5  # not the erf GELU


def test_init_is_a_normal_truncated_at_two_sigma() -> None:
    torch.manual_seed(0)
    model = MaskGITTransformer(1000, 10, 64, hidden_dim=128, depth=2, num_heads=4, mlp_dim=512)
    kernels = [model.tok_emb.weight, model.pos_emb, model.blocks[0].qkv.weight, model.blocks[1].mlp[0].weight]
    expected_std = 0.02 * truncnorm(-2, 2).std()  # 0.0176: a N(0, 0.02²) cut at ±0.04
    for w in kernels:
        assert w.abs().max().item() <= 0.04 + 1e-7
        assert w.std().item() == pytest.approx(expected_std, rel=0.03)
    assert model.blocks[0].qkv.bias.abs().max() == 0 and model.head_bias.abs().max() == 0


def test_head_is_tied_to_the_token_embedding() -> None:
    model = MaskGITTransformer(8, 2, 4, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    logits = model(torch.randint(0, 8, (1, 4)), torch.tensor([8]))
    logits[0, 0, 5].backward()
    assert model.tok_emb.weight.grad[5].abs().sum() > 0  # the output projection is the embedding row


def test_startup_checks_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="1000 codes but the tokenizer has 1024"):
        check_vocabulary(1000, 1024, 10, 10)
    with pytest.raises(ConfigError, match="10 classes but the data has 1000"):
        check_vocabulary(1000, 1000, 10, 1000)
    with pytest.raises(ConfigError, match="not divisible"):
        MaskGITTransformer(8, 2, 4, hidden_dim=30, num_heads=4)


def test_paper_size_parameter_count_matches_the_official_structure() -> None:
    """24 × 768 MaskGIT with 1 000 codes + 1 000 classes + MASK, counted layer by layer from the official BERT-style
    ``maskgit_transformer.py`` (q/k/v/out dense + LN, MLP 3072 + LN, embeddings + LN, MLM dense + LN + bias)."""
    with torch.device("meta"):
        model = MaskGITTransformer(1000, 1000, 256)
    d, mlp, vocab, positions, depth = 768, 3072, 2001, 257, 24
    per_layer = 4 * (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d) + 2 * d
    expected = vocab * d + positions * d + 2 * d + depth * per_layer + (d * d + d) + 2 * d + vocab
    assert sum(p.numel() for p in model.parameters()) == expected == 172_438_737
