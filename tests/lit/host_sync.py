"""Recording device→host synchronisations on the CPU (docs/gpu.md, "No host syncs in the training step").

A ``TorchDispatchMode`` sees every aten call, so on the CPU it counts exactly the calls that would stall a GPU
stream: reading a tensor's value on the host (``aten._local_scalar_dense``: ``.item()``, ``int(t)``, ``float(t)``,
``bool(t)``, ``if torch.isfinite(loss)``), ``aten.equal`` (returns a Python bool) and the ops whose output shape
depends on the data (``nonzero``, ``masked_select``, ``unique``, ``repeat_interleave`` without ``output_size``,
boolean-mask indexing). Excluded: calls made by ``torch/optim``'s own code (not by the closure it runs) — a
non-fused optimiser keeps its step counter on the host by design (reading it costs no device sync), and the fused
one keeps it on the device.

``RecordHostSyncs`` is a callback (``+callbacks.host_sync._target_=tests.lit.host_sync.RecordHostSyncs``): it records
during training batches ``first .. first + count - 1`` (after the first ones, which build lazily) and writes
``<default_root_dir>/host_syncs_<stage>.json``: ``{"batches": [...], "syncs": [{"op", "where"}, ...]}``.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SYNC_OPS = {
    aten._local_scalar_dense.default,
    aten.equal.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
}
MASK_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
HOST_SIDE = ("/torch/optim/",)  # a non-fused optimiser's step counter lives on the host


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def _frames() -> list[traceback.FrameSummary]:
    """The Python stack, innermost first, without this file's and the dispatch machinery's frames."""
    frames = []
    for frame in reversed(traceback.extract_stack()):
        name = frame.filename.replace("\\", "/")
        if name.endswith("host_sync.py") or "/torch/utils/_python_dispatch" in name:
            continue
        frames.append(frame)
    return frames


def _host_side(frames: list[traceback.FrameSummary]) -> bool:
    """Asked for by an optimiser's own code (its host-side step counter), not by code it called (the closure)."""
    return bool(frames) and any(part in frames[0].filename.replace("\\", "/") for part in HOST_SIDE)


def _caller(frames: list[traceback.FrameSummary]) -> str:
    """The innermost frame outside torch and Lightning: where the sync was asked for."""
    for frame in frames:
        name = frame.filename.replace("\\", "/")
        if "/torch/" in name or "/lightning/" in name:
            continue
        return f"{Path(name).name}:{frame.lineno} {frame.line}"
    return "?"


class HostSyncs(TorchDispatchMode):
    """Records ``(op, caller)`` for every host synchronisation while ``active``."""

    def __init__(self) -> None:
        super().__init__()
        self.active, self.events = False, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.active and (func in SYNC_OPS or (func in MASK_INDEXING and _bool_index(args))):
            frames = _frames()
            if not _host_side(frames):
                self.events.append({"op": str(func), "where": _caller(frames)})
        return func(*args, **(kwargs or {}))


class RecordHostSyncs(pl.Callback):
    def __init__(self, first: int = 2, count: int = 2) -> None:
        self.first, self.count = int(first), int(count)
        self.mode, self.batches, self.seen = HostSyncs(), [], 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.mode.__enter__()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += 1
        self.mode.active = self.first <= self.seen < self.first + self.count
        if self.mode.active:
            self.batches.append(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.mode.active = False

    def on_train_end(self, trainer, pl_module) -> None:
        self.mode.__exit__(None, None, None)
        stage = Path(trainer.default_root_dir).name
        out = Path(trainer.default_root_dir) / f"host_syncs_{stage}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"batches": self.batches, "syncs": self.mode.events}, indent=1))
