"""The non-finite-loss guard every training module shares (docs/fault-tolerance.md, item 4; docs/gpu.md, "No host
syncs in the training step").

Promise: a NaN/Inf loss or gradient norm skips that optimizer step, so the weights (and the optimiser state) stay
as they were, while at most ``max_nonfinite_skips`` steps were skipped; one more stops the run with a
``FloatingPointError`` that names the step and the values. The count is a buffer (``nonfinite_skips``) of the
module, so it is checkpointed and survives a resume.

How, without stalling a GPU: asking ``if torch.isfinite(loss)`` every step copies a value to the host and waits for
the device (a host sync per step). Instead the verdict stays on the device:

- ``arm(optimizer, finite)`` hands ``1 - finite`` to the **fused** Adam/AdamW as ``found_inf`` (the hook the AMP
  grad scaler uses): the fused kernel skips the whole update on the device — parameters, moments and step counter
  untouched. ``finite`` covers the step's loss terms and gradient norms.
- ``record`` adds ``1 - finite`` to ``nonfinite_skips`` on the device and starts a non-blocking copy of the verdict
  and the values to pinned host memory (a CUDA event marks when it has landed).
- ``poll`` (at the start of every training step, and waiting at the end of training) reads the copies that have
  landed: it warns for a skipped step and raises once the budget is exceeded. The host therefore learns of a skipped
  step a step or so late — the weights are untouched either way, and the run stops at most that much later.

A skipped step still counts as a step (``global_step``, schedules, ``max_steps``), as with the AMP grad scaler.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def total_grad_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients (as ``clip_grad_norm_`` computes it), a device scalar; 0 when there are none."""
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), device=parameters[0].device if parameters else None)
    return torch.nn.utils.get_total_norm(grads)


class NonFiniteGuard:
    """Counts skipped steps in ``module.nonfinite_skips`` (a 0-d int64 buffer registered here)."""

    def __init__(self, module: nn.Module, max_skips: int) -> None:
        self.max_skips = int(max_skips)
        module.register_buffer("nonfinite_skips", torch.zeros((), dtype=torch.long))  # checkpointed
        self._pending: list = []

    @staticmethod
    def finite(*values: torch.Tensor | None) -> torch.Tensor:
        """A device bool scalar: every value is finite (``None`` values are ignored)."""
        flags = [torch.isfinite(v.detach()).all() for v in values if v is not None]
        return torch.stack(flags).all()

    @staticmethod
    def arm(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
        """Make ``optimizer``'s next step a no-op on the device unless ``finite`` (a fused Adam/AdamW only)."""
        if not optimizer.defaults.get("fused"):
            raise ValueError(f"the non-finite guard needs a fused optimiser (fused=True), got {type(optimizer)}")
        optimizer.found_inf = (~finite).to(torch.float32).reshape(())

    def start(self, module: nn.Module) -> None:
        """At the start of a (resumed) fit: one read of the checkpointed count (it may already exceed a lowered
        budget)."""
        self._pending = []
        count = int(module.nonfinite_skips)
        if count > self.max_skips:
            raise FloatingPointError(f"{count} non-finite steps so far, max_nonfinite_skips={self.max_skips}")

    def record(
        self, module: nn.Module, what: str, finite: torch.Tensor, values: dict[str, torch.Tensor], step: int
    ) -> None:
        """Once optimizer step ``step`` (0-based) was armed: count it on the device when it is skipped, and queue
        the verdict and ``values`` (scalars, for the message) for ``poll``."""
        bad = (~finite).reshape(())
        module.nonfinite_skips += bad.long()
        row = [bad.float(), module.nonfinite_skips.float(), *(v.detach().float().mean() for v in values.values())]
        stacked = torch.stack(row)
        event = None
        if stacked.is_cuda:  # a non-blocking copy to pinned memory; the event says when it has landed
            host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
            host.copy_(stacked, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = stacked if stacked.device.type == "cpu" else stacked.cpu()
        self._pending.append((what, int(step), list(values), host, event))

    def poll(self, module: nn.Module, wait: bool = False) -> None:
        """Read the queued verdicts whose copies have landed (all of them with ``wait``): warn for each skipped
        step, raise ``FloatingPointError`` once more than ``max_skips`` steps were skipped."""
        while self._pending:
            what, step, names, host, event = self._pending[0]
            if event is not None and not event.query():
                if not wait:
                    return
                event.synchronize()
            self._pending.pop(0)
            bad, count, *values = host.tolist()
            if not bad:
                continue
            detail = ", ".join(f"{name}={value:.4g}" for name, value in zip(names, values))
            if int(count) > self.max_skips:
                self._pending = []
                raise FloatingPointError(
                    f"non-finite {what} at step {step}: {detail} "
                    f"({int(count)} non-finite steps, max_nonfinite_skips={self.max_skips})"
                )
            print(f"warning: non-finite {what} at step {step}, step skipped: {detail}", flush=True)

    def guard_step(self, module: nn.Module, optimizer: torch.optim.Optimizer, what: str, loss: torch.Tensor) -> None:
        """For Lightning's automatic optimisation (``on_before_optimizer_step``): arm ``optimizer`` with the
        finiteness of ``loss`` and of the gradient norm, and record the verdict."""
        norm = total_grad_norm(module.parameters())
        finite = self.finite(loss, norm)
        self.arm(optimizer, finite)
        self.record(module, what, finite, {"loss": loss, "grad_norm": norm}, step=int(module.global_step))
