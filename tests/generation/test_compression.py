"""M2T compression cost: group sizes, the QLDS order, and the two closed-form extremes."""

from __future__ import annotations

import math

import torch

from fsq_repro.generation.compression import compression_cost, group_sizes, qlds_ranks
from fsq_repro.nets.transformer import ClassEmbedder


def test_group_sizes_match_m2t() -> None:
    assert group_sizes(256) == [2, 3, 8, 10, 15, 18, 23, 26, 31, 36, 40, 44]  # 16×16, reference/evaluation.md
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

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(int((tokens == self.mask_token_id).sum()))
        logits = torch.zeros(*tokens.shape, self.codebook)
        if self.truth is not None:
            logits.scatter_(-1, self.truth[..., None], 60.0)
        return logits


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
