"""Inception score (Salimans et al. 2016) as in the ADM suite: softmax over the (1008-way) logits, ``splits``
equal parts, ``exp(E_x KL(p(y|x) ‖ p(y)))`` per part → (mean, std) (reference/evaluation.md).

Shapes: ``logits (N, K)`` array or tensor → ``(mean, std)`` floats. ``probabilities=True`` takes softmax outputs.
"""

from __future__ import annotations

import numpy as np
import torch


def inception_score(logits, splits: int = 10, probabilities: bool = False) -> tuple[float, float]:
    x = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits).detach().cpu().double()
    p = x if probabilities else torch.softmax(x, dim=1)
    if len(p) < splits:
        raise ValueError(f"need at least {splits} predictions for {splits} splits, got {len(p)}")
    scores = []
    for part in torch.tensor_split(p, splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(1)
        scores.append(float(torch.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))
