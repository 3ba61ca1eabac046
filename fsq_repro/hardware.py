"""What the machine can do fast: the one place that picks the device and decides whether bf16 pays on it.

bf16 autocast is the precision of the GPU recipes (and of ``trainer=cpu`` on CPUs with native bf16 matrix
instructions: AVX512-BF16 or AMX, where oneDNN runs bf16 GEMMs at or above the float32 rate). A CPU without them
(AVX2-only x86, for example) falls back to a reference bf16 path that is two orders of magnitude slower than its
float32 GEMMs (``python scripts/bench_uvim_flops.py`` prints both rates), so on such a CPU the project trains in
float32 instead and says so once.
"""

from __future__ import annotations

import functools
import os

import torch


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def launch_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process as the launcher (torchrun, Lightning DDP, SLURM via submitit) set them
    in the environment, before any process group exists; ``(0, 1)`` for a single process."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    return (int(os.environ.get("RANK", 0)) if world > 1 else 0), world


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX, or AVX512 emulation)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype for CPU autocast: ``torch.bfloat16`` where it is fast, else ``None`` (stay in float32)."""
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype of a training step on ``device_type``: bf16 on CUDA and on CPUs with fast bf16, else
    ``None`` (float32, autocast off): ``torch.autocast(device_type, dtype or torch.bfloat16, enabled=dtype is not
    None)``."""
    return torch.bfloat16 if device_type == "cuda" else cpu_autocast_dtype()


def resolve_precision(precision: str | int | None, on_cpu: bool) -> tuple[str | int | None, str | None]:
    """Lightning ``precision`` for this machine: a bf16 setting on a CPU without fast bf16 becomes ``32-true``.
    Returns ``(precision, note)`` where ``note`` is the one line to print when it changed (else ``None``)."""
    if on_cpu and str(precision).startswith("bf16") and not cpu_has_fast_bf16():
        return "32-true", (f"precision: {precision} -> 32-true: this CPU has no native bf16 (AVX512-BF16 / AMX), "
                           "where bf16 matrix multiplies run far slower than float32")  # fmt: skip
    return precision, None
