"""The MaskGIT transformer: vocabulary layout, label dropout rate, tied head, startup checks."""

from __future__ import annotations

import pytest
import torch

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
    # independent computation: label-smoothed CE over masked positions
    lp = torch.log_softmax(logits[mask], -1)
    t = targets[mask]
    expected = (0.9 * -lp.gather(1, t[:, None])[:, 0] + 0.1 * -lp.mean(1)).mean()
    torch.testing.assert_close(loss, expected)


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
