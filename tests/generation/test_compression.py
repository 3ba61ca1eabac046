"""M2T compression cost: group sizes, the QLDS order, and the two closed-form extremes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from fsq_repro.generation.compression import compression_cost, group_sizes, qlds_ranks
from fsq_repro.nets.transformer import ClassEmbedder


def test_group_sizes_match_m2t() -> None:
    assert group_sizes(256) == [2, 3, 8, 10, 15, 18, 23, 26, 31, 36, 40, 44]  # 16×16, M2T §3.4 schedule
    assert group_sizes(64) == [1, 1, 2, 2, 4, 4, 6, 7, 7, 9, 10, 11]  # 8×8


def test_qlds_is_a_spread_out_permutation() -> None:
    ranks = qlds_ranks(16, 16)
    assert torch.equal(ranks.sort().values, torch.arange(256))
    # low discrepancy: the first 32 cells already touch all sixteen 4×4 blocks, none holding more than 3
    blocks = (ranks < 32).view(4, 4, 4, 4).sum((1, 3))
    assert (blocks > 0).all() and blocks.max() <= 3
    assert torch.equal(qlds_ranks(16, 16), ranks)


class _Model(torch.nn.Module):
    def __init__(self, codebook: int, classes: int, truth: torch.Tensor | None = None) -> None:
        super().__init__()
        self.codebook, self.truth = codebook, truth
        self.class_embedder = ClassEmbedder(codebook, classes).eval()
        self.mask_token_id = codebook + classes
        self.calls = []

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, positions=None) -> torch.Tensor:
        self.calls.append(int((tokens == self.mask_token_id).sum()))
        logits = torch.zeros(*tokens.shape, self.codebook)
        if self.truth is not None:
            logits.scatter_(-1, self.truth[..., None], 60.0)
        return logits if positions is None else logits[:, positions]


def test_uniform_model_costs_exactly_n_log2_c_and_an_oracle_costs_zero() -> None:
    tokens = torch.randint(0, 1000, (3, 64))
    labels = torch.tensor([0, 1, 2])
    uniform = compression_cost(_Model(1000, 3), tokens, labels, (8, 8))
    assert torch.allclose(uniform, torch.full((3,), 64 * math.log2(1000), dtype=torch.float64), rtol=0, atol=1e-9)
    oracle = _Model(1000, 3, truth=tokens)
    cost = compression_cost(oracle, tokens, labels, (8, 8))
    assert (cost >= 0).all() and (cost < 1e-6).all()
    # the deterministic schedule: group i sees the tokens of groups < i, masked counts fall by the group sizes
    sizes = group_sizes(64)
    assert oracle.calls == [3 * (64 - sum(sizes[:i])) for i in range(12)]


def test_cost_of_a_real_transformer_matches_a_numpy_recomputation_from_full_logits() -> None:
    """Independent oracle: each group's full (B, N, C) logits, a numpy float64 log-softmax, its tokens summed."""
    from fsq_repro.generation.compression import group_bounds
    from fsq_repro.nets.transformer import MaskGITTransformer

    torch.manual_seed(0)
    model = MaskGITTransformer(codebook_size=50, num_classes=3, num_tokens=16, hidden_dim=32, depth=2, num_heads=2,
                               mlp_dim=64, dropout=0.1).eval()  # fmt: skip
    tokens, labels = torch.randint(0, 50, (4, 16)), torch.tensor([0, 1, 2, 0])
    cost = compression_cost(model, tokens, labels, (4, 4)).numpy()
    ranks = qlds_ranks(4, 4).numpy()
    bounds = [-1, *group_bounds(16)]
    expected = np.zeros(4)
    with torch.no_grad():
        for lo, hi in itertools.pairwise(bounds):
            masked = torch.where(
                torch.from_numpy(ranks <= lo)[None], tokens, torch.full_like(tokens, model.mask_token_id)
            )
            z = model(masked, model.class_embedder(labels)).double().numpy()  # (B, N, C), all positions
            log_p = z - z.max(-1, keepdims=True)
            log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
            picked = np.take_along_axis(log_p, tokens.numpy()[..., None], -1)[..., 0]
            expected -= (picked * ((ranks > lo) & (ranks <= hi))[None]).sum(1) / np.log(2)
    np.testing.assert_allclose(cost, expected, rtol=1e-6)
