"""Inception score (Salimans et al. 2016) as in the ADM suite: softmax over the (1008-way) logits,
``exp(E_x KL(p(y|x) ‖ p(y)))`` per part of the samples → (mean, std) over the parts
(openai/guided-diffusion ``evaluations/evaluator.py``).

Two ways to cut the samples into parts (``results.json`` says which was used):

* ``split_size=5000`` — the ADM evaluator (``guided-diffusion/evaluations/evaluator.py:compute_inception_score``):
  *consecutive* chunks of 5 000 in file order, the last one shorter when N is not a multiple (so 10 parts only at
  N = 50 000, 1 at N = 5 000). Only meaningful when every chunk sees every class: ``samples.npz`` is written
  class-interleaved for that (``generation/sampling_job.py``);
* ``splits=10`` — 10 equal parts (improved-GAN / torch-fidelity).

Shapes: ``logits (N, K)`` array or tensor → ``(mean, std)`` floats. ``probabilities=True`` takes softmax outputs.
"""

from __future__ import annotations

import numpy as np
import torch

ADM_SPLIT_SIZE = 5000


def inception_score(
    logits, splits: int = 10, probabilities: bool = False, split_size: int | None = None
) -> tuple[float, float]:
    x = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits).detach().cpu().double()
    p = x if probabilities else torch.softmax(x, dim=1)
    if split_size is not None:
        parts = torch.split(p, int(split_size))
    else:
        if len(p) < splits:
            raise ValueError(f"need at least {splits} predictions for {splits} splits, got {len(p)}")
        parts = torch.tensor_split(p, splits)
    scores = []
    for part in parts:
        marginal = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(1)
        scores.append(float(torch.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_mode(logits, mode: str = "adm", splits: int = 10) -> dict:
    """``metrics.is_mode``: ``adm`` (consecutive chunks of 5 000, as the paper's evaluator) or ``splits``
    (``splits`` equal parts) → ``{"is", "is_std", "is_mode"}``."""
    if mode == "adm":
        mean, std = inception_score(logits, split_size=ADM_SPLIT_SIZE)
        return {"is": mean, "is_std": std, "is_mode": f"adm: consecutive chunks of {ADM_SPLIT_SIZE} in sample order"}
    if mode == "splits":
        mean, std = inception_score(logits, splits=splits)
        return {"is": mean, "is_std": std, "is_mode": f"splits: {splits} equal parts"}
    from fsq_repro.errors import ConfigError

    raise ConfigError(
        f"metrics.is_mode={mode!r}: choose adm (chunks of {ADM_SPLIT_SIZE}) or splits (metrics.is_splits)"
    )
