"""The non-finite-loss guard every training module shares (docs/fault-tolerance.md): a NaN/Inf loss or gradient
norm skips that optimizer step, so the weights stay finite, while at most ``max_nonfinite_skips`` steps were skipped;
one more stops the run with a ``FloatingPointError`` that names the step and the values. The count is a buffer
(``nonfinite_skips``) of the module, so it is checkpointed and survives a resume.
"""

from __future__ import annotations

import torch
from torch import nn


class NonFiniteGuard:
    """Counts skipped steps in ``module.nonfinite_skips`` (a 0-d int64 buffer registered here)."""

    def __init__(self, module: nn.Module, max_skips: int) -> None:
        self.max_skips = int(max_skips)
        module.register_buffer("nonfinite_skips", torch.zeros((), dtype=torch.long))  # checkpointed

    def skip(self, module: nn.Module, what: str, detail: str) -> None:
        """Count one skipped step of ``module`` (a LightningModule: its ``global_step`` names the step); raise once
        more than ``max_skips`` steps were skipped. ``detail`` follows the step in the message (the values)."""
        module.nonfinite_skips += 1
        count = int(module.nonfinite_skips)
        if count > self.max_skips:
            raise FloatingPointError(
                f"non-finite {what} at step {module.global_step}{detail} "
                f"({count} non-finite steps, max_nonfinite_skips={self.max_skips})"
            )

    def bad(self, module: nn.Module, value: torch.Tensor, what: str) -> bool:
        """True (and the step counted, see ``skip``) when ``value`` is NaN or Inf; the caller then skips the step."""
        if torch.isfinite(value):
            return False
        self.skip(module, f"{what} ({value.item()})", "")
        return True
