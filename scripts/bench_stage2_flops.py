"""Achieved GFLOP/s of a Stage II training step (FLOPs counted analytically) next to a plain matmul's GFLOP/s.

    python scripts/bench_stage2_flops.py [--batch 64] [--steps 5] [--depth 4 --width 192]

Training FLOPs = 3 × forward FLOPs (backward ≈ 2 × forward); forward FLOPs per sequence position come from
``MaskGITTransformer.flops_per_token`` (dense layers, attention scores and values, tied head). The matmul reference
is a square fp32 (and bf16) ``torch.mm`` of the same machine. Last line: ``ratio: <step GFLOP/s / matmul GFLOP/s>``.
"""

from __future__ import annotations

import argparse
import time

import torch

from fsq_repro.lit.maskgit_module import MaskGITModule
from fsq_repro.nets.transformer import MaskGITTransformer


def matmul_gflops(n: int = 1024, dtype=torch.float32, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=192)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = MaskGITTransformer(125, 10, args.tokens, hidden_dim=args.width, depth=args.depth,
                               num_heads=max(1, args.width // 48), mlp_dim=4 * args.width)  # fmt: skip
    module = MaskGITModule(model)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    batch = {"tokens": torch.randint(0, 125, (args.batch, args.tokens)), "label": torch.randint(0, 10, (args.batch,))}
    results = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        times = []
        for step in range(args.steps + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss, _, _ = module._masked_step(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step:
                times.append(time.perf_counter() - start)
        flops = 3 * model.flops_per_token() * (args.tokens + 1) * args.batch
        sec = sum(times) / len(times)
        results[name] = flops / sec / 1e9
        mm = matmul_gflops(dtype=torch.bfloat16 if bf16 else torch.float32)
        results[f"mm_{name}"] = mm
        print(f"{name}: {sec:.3f} s/step, {flops / 1e9:.1f} GFLOP/step -> {results[name]:.1f} GFLOP/s; "
              f"1024² matmul {mm:.1f} GFLOP/s")  # fmt: skip
    print(f"ratio: {results['bf16'] / results['mm_bf16']:.2f}")


if __name__ == "__main__":
    main()
