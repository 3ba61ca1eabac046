"""Compression cost of token maps under the Stage II transformer (FSQ paper §4.1 / Fig. 3 d; M2T, arXiv 2304.07313
§3.4): the bits an entropy coder would need to send a token map losslessly, using the bidirectional transformer
with a *deterministic* masking schedule (M2T §3.4).

Positions are ranked by a quantised low-discrepancy sequence (``qlds_ranks``: R2 sequence with the plastic number,
cells already taken are skipped) and split into S = 12 groups with ``c_i = min(floor(N·((i+1)/S)^α), N−1)``,
α = 2.2: group i holds ranks in ``(c_{i−1}, c_i]``. Group i is predicted from the tokens of groups < i (MASK
elsewhere) and the class token (given, as in training — the paper does not say; we state it in results):
``cost = Σ_i Σ_{j ∈ group i} −log2 p(token_j | earlier groups, class)``.

A model that predicts uniformly costs exactly ``N·log2|C|`` bits per image (the "Uniform" line of Fig. 3 d).
Shapes: ``tokens (B, N)``, ``labels (B,)`` → ``(B,)`` bits per image.
"""

from __future__ import annotations

import math

import torch

PLASTIC = 1.32471795724474602596  # M2T / R2 sequence


def qlds_ranks(height: int, width: int) -> torch.Tensor:
    """Rank of every cell (row-major ``(H·W,)``) in the R2 low-discrepancy order; a permutation of ``0..N−1``."""
    a1, a2 = 1 / PLASTIC, 1 / PLASTIC**2
    ranks = torch.full((height * width,), -1, dtype=torch.long)
    rank, n = 0, 1
    while rank < height * width:
        x, y = (0.5 + n * a1) % 1.0, (0.5 + n * a2) % 1.0
        row, col = round(x * height) % height, round(y * width) % width
        cell = row * width + col
        if ranks[cell] < 0:
            ranks[cell] = rank
            rank += 1
        n += 1
    return ranks


def group_bounds(num_tokens: int, num_groups: int = 12, alpha: float = 2.2) -> list[int]:
    """``c_i = min(floor(N·((i+1)/S)^α), N−1)`` for i = 0..S−1 (M2T §3.4; S = 12, α = 2.2)."""
    return [min(math.floor(num_tokens * ((i + 1) / num_groups) ** alpha), num_tokens - 1) for i in range(num_groups)]


def group_sizes(num_tokens: int, num_groups: int = 12, alpha: float = 2.2) -> list[int]:
    bounds = [-1, *group_bounds(num_tokens, num_groups, alpha)]
    return [bounds[i + 1] - bounds[i] for i in range(num_groups)]


@torch.no_grad()
def compression_cost(
    model,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    grid: tuple[int, int],
    num_groups: int = 12,
    alpha: float = 2.2,
) -> torch.Tensor:
    """Bits per image ``(B,)``. ``model`` is a ``MaskGITTransformer`` (anything with ``mask_token_id``,
    ``class_embedder`` and ``forward(tokens, class_ids, positions) -> (B, n, C)`` logits) in eval mode."""
    ranks = qlds_ranks(*grid).to(tokens.device)
    bounds = [-1, *group_bounds(tokens.shape[1], num_groups, alpha)]
    class_ids = model.class_embedder(labels)
    bits = torch.zeros(tokens.shape[0], dtype=torch.float64, device=tokens.device)
    for i in range(num_groups):
        known = ranks <= bounds[i]
        target = (ranks > bounds[i]) & (ranks <= bounds[i + 1])
        if not target.any():
            continue
        inputs = torch.where(known[None], tokens, torch.full_like(tokens, model.mask_token_id))
        # the output layer and the float64 log-softmax at the group's positions only (1/12 of B·N·C)
        logits = model(inputs, class_ids, positions=target).double()  # (B, n_i, C)
        token_lp = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, target, None])[..., 0]  # (B, n_i)
        bits -= token_lp.sum(1) / math.log(2)
    return bits
