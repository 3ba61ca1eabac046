"""Learning-rate multipliers shared by the stages' Lightning modules (pure Python, stepped per optimizer step).

``constant``: linear warm-up over ``warmup_steps``, then 1 (the official MaskGIT configs, Stage I and II);
``cosine``: warm-up, then cosine decay to 0 at ``total_steps`` (a short-run choice: the CPU configs, UViM's recipe).
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, final_fraction: float = 0.0) -> float:
    """LR multiplier: linear warm-up over ``warmup_steps``, then cosine from 1 to ``final_fraction`` at
    ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str = "constant") -> float:
    """``constant``: linear warm-up, then 1 (official MaskGIT); ``cosine``: ``warmup_cosine``."""
    if schedule == "constant":
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "cosine":
        return warmup_cosine(step, warmup_steps, total_steps)
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {LR_SCHEDULES}")
