"""Stage II training step vs the matmul limit of the same machine, at the step's own GEMM shapes.

    python scripts/bench_stage2_flops.py [--preset tiny|mid] [--steps 7] [--dropout 0.1] [--compile] [--device cpu]

- FLOPs of one full training step (masking, forward, masked-token loss, backward) are **counted** with
  ``torch.utils.flop_counter.FlopCounterMode``, not by formula.
- The limit: every matrix multiply (``mm``/``addmm``/``bmm``) the step issues is recorded with its shapes (a
  ``TorchDispatchMode``), then each is timed alone in the step's autocast dtype (bf16 on CUDA and on CPUs with fast
  bf16, else float32: ``fsq_repro/hardware.py``) — achieved matmul FLOP/s at exactly the model's GEMMs.
- ``ratio = (step FLOPs / step time) / (GEMM FLOPs / GEMM time)`` (goal ≥ 0.6), printed last.

Presets: ``tiny`` = model/stage2/tiny (4 × 192, 64 tokens, 125 codes, batch 64); ``mid`` = 8 × 512, 256 tokens,
1000 codes, batch 32. ``--dropout`` overrides the official 0.1 (FSQ paper §4.3 / MaskGIT) to see what it costs;
``--compile`` wraps the transformer in ``torch.compile`` (``model.stage2.compile``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
from bench_sampler import interleaved_medians  # the scripts/ folder is on sys.path when a script runs
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from fsq_repro.hardware import autocast_dtype
from fsq_repro.lit.maskgit_module import MaskGITModule
from fsq_repro.nets.transformer import MaskGITTransformer

PRESETS = {
    "tiny": dict(depth=4, width=192, heads=4, mlp=768, tokens=64, codes=125, classes=10, batch=64),
    "mid": dict(depth=8, width=512, heads=8, mlp=2048, tokens=256, codes=1000, classes=1000, batch=32),
}
GEMMS = {"mm", "addmm", "bmm", "baddbmm"}


class GemmRecorder(TorchDispatchMode):
    """Counts the ``(op, shapes)`` of every matrix multiply dispatched inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in GEMMS:
            mats = [a for a in args if isinstance(a, torch.Tensor)]
            mats = mats[-2:]  # addmm/baddbmm: (bias, a, b)
            self.calls[(name, tuple(mats[0].shape), tuple(mats[1].shape))] += 1
        return func(*args, **(kwargs or {}))


def gemm_calls(calls: Counter, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> dict:
    """``{name: (fn, flops, count)}``: each recorded GEMM shape as a call in ``dtype`` on random operands."""
    out = {}
    for i, ((_op, sa, sb), count) in enumerate(calls.items()):
        a = torch.randn(sa, dtype=dtype, device=device)
        b = torch.randn(sb, dtype=dtype, device=device)
        op = torch.bmm if len(sa) == 3 else torch.mm
        batch = sa[0] if len(sa) == 3 else 1
        out[f"gemm{i}"] = (lambda op=op, a=a, b=b: op(a, b), 2 * batch * sa[-2] * sa[-1] * sb[-1], count)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_step(step, steps: int, device: torch.device, dtype: torch.dtype) -> dict:
    """Time ``step`` against its own GEMMs replayed alone in ``dtype``: one warm-up (and compilation), the FLOPs
    counted, the GEMMs recorded, then the step and every GEMM shape timed round-robin (medians; the shared machine's
    noise hits both alike). Returns ``first`` (s), ``flops``, ``step_time`` (s), ``gemm_flops``, ``gemm_time`` (s),
    ``gemms`` / ``shapes`` (calls / distinct shapes), ``achieved`` and ``limit`` (GFLOP/s)."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    recorder = GemmRecorder()
    with recorder:
        step()
    gemms = gemm_calls(recorder.calls, device, dtype)
    medians = interleaved_medians({"step": step, **{name: fn for name, (fn, _, _) in gemms.items()}}, steps, device)
    gemm_flops = sum(f * count for _, f, count in gemms.values())
    gemm_time = sum(medians[name] * count for name, (_, _, count) in gemms.items())
    return {"first": first, "flops": flops, "step_time": medians["step"], "gemm_flops": gemm_flops,
            "gemm_time": gemm_time, "gemms": sum(recorder.calls.values()), "shapes": len(recorder.calls),
            "achieved": flops / medians["step"] / 1e9, "limit": gemm_flops / gemm_time / 1e9}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--dropout", type=float, default=0.1)  # MaskGIT / FSQ paper §4.3
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    p = PRESETS[args.preset]
    batch, device = args.batch or p["batch"], torch.device(args.device)
    torch.manual_seed(0)
    model = MaskGITTransformer(p["codes"], p["classes"], p["tokens"], hidden_dim=p["width"], depth=p["depth"],
                               num_heads=p["heads"], mlp_dim=p["mlp"], dropout=args.dropout).to(device)  # fmt: skip
    module = MaskGITModule(model, compile=args.compile)
    opt = module.configure_optimizers()["optimizer"]
    data = {"tokens": torch.randint(0, p["codes"], (batch, p["tokens"]), device=device),
            "label": torch.randint(0, p["classes"], (batch,), device=device)}  # fmt: skip

    dtype = autocast_dtype(device.type)  # None: float32, no autocast

    def step() -> None:
        with torch.autocast(device.type, dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _, _ = module._masked_step(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    m = measure_step(step, args.steps, device, dtype or torch.float32)
    achieved, limit = m["achieved"], m["limit"]
    print(f"{args.preset}: {p['depth']} x {p['width']}, {p['tokens']} tokens, batch {batch}, dropout "
          f"{args.dropout}{', compiled' if args.compile else ''}, {dtype or torch.float32}; first step "
          f"{m['first']:.2f} s")  # fmt: skip
    print(f"step: {m['step_time'] * 1e3:.1f} ms (median of {args.steps}, interleaved with the GEMMs), "
          f"{m['flops'] / 1e9:.2f} GFLOP counted -> {achieved:.1f} GFLOP/s")  # fmt: skip
    print(f"its {m['gemms']} GEMMs ({m['shapes']} shapes) alone: {m['gemm_flops'] / 1e9:.2f} GFLOP in "
          f"{m['gemm_time'] * 1e3:.1f} ms -> {limit:.1f} GFLOP/s")  # fmt: skip
    print(f"ratio: {achieved / limit:.2f}")


if __name__ == "__main__":
    main()
