"""VQ assignment + MaskGIT entropy loss: the direct ``(N, K)`` form vs the chunked one (quantizers/assignment.py).

    python scripts/bench_vq.py [--codes 16384] [--rows 1024] [--dim 256] [--repeats 3] [--device cpu]

Forward + backward of the distances, argmin and entropy loss for ``N = rows`` encoder vectors against ``K = codes``
codes (1024 rows = a 64 px batch of 16 at 8×8 tokens, the CPU trade-off study's Stage I step). Prints both times,
the peak extra memory on CUDA, and, last, ``ratio: <chunked time / direct time>`` (lower is better).
"""

from __future__ import annotations

import argparse

import torch
from bench_sampler import best_time  # the scripts/ folder is on sys.path when a script runs

from fsq_repro.quantizers.assignment import assign_and_entropy, entropy_loss, squared_distances


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=int, default=16384)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=256)  # MaskGIT VQGAN embedding dim (quantizer/vq_*.yaml)
    parser.add_argument("--temperature", type=float, default=0.01)  # MaskGIT's entropy-loss temperature
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.dim, device=device, requires_grad=True)
    bound = (3.0 / args.codes) ** 0.5  # the VQ codebook init (quantizers/vq.py)
    codebook = torch.empty(args.codes, args.dim, device=device).uniform_(-bound, bound).requires_grad_()

    def direct():
        dist = squared_distances(x, codebook)
        dist.argmin(dim=1)
        entropy_loss(dist, args.temperature).backward()

    def chunked():
        assign_and_entropy(x, codebook, args.temperature)[1].backward()

    results = {}
    for name, fn in (("direct", direct), ("chunked", chunked)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        results[name] = best_time(fn, args.repeats, device)
        peak = f", peak extra memory {(torch.cuda.max_memory_allocated(device) - base) / 2**20:.0f} MiB" if (
            device.type == "cuda") else ""  # fmt: skip
        print(f"{name:8s}: {results[name] * 1e3:8.1f} ms forward + backward (N={args.rows}, K={args.codes}){peak}")
    print(f"ratio: {results['chunked'] / results['direct']:.2f}")


if __name__ == "__main__":
    main()
