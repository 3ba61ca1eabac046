"""The FSQ op (FSQ paper App. A.1, ``fsq_repro/quantizers/fsq.py``) vs the popular port
(``vector_quantize_pytorch.FSQ``, lucidrains) and vs the elementwise limit.

    python scripts/bench_fsq.py [--shape 64 16 16] [--repeats 200] [--device cpu]

Forward + backward (``codes.sum().backward()``) on the same ``(B, H·W, d)`` tensor, for ``[8,5,5,5]`` and
``[8,8,8,6,5]`` (Table 1 |C| = 1000 and 15 360), in float32 and under bf16 autocast, timed round-robin
(medians; ``interleaved_medians``). Both produce codes and indices. Ours also offers the batch's usage
(perplexity, share of codes hit), which the port does not have: it is computed only when read (``LazyMetrics``), so
"ours" is the op as a caller who does not read them gets it, and "+ usage" reads them as our training modules do.
The elementwise limit is one ``tanh`` forward + backward over the same tensor. Prints a table, the worst ours /
``tanh`` (goal ≤ 4) and, last, ``ratio: <max over the four settings of ours / port>`` (goal ≤ 1.0).
The port is a bench-only dependency (requirements-extra.txt).
"""

from __future__ import annotations

import argparse
import math

import torch
from bench_sampler import interleaved_medians  # the scripts/ folder is on sys.path when a script runs

from fsq_repro.quantizers.fsq import FSQ


def fwd_bwd(fn, base: torch.Tensor, bf16: bool):
    """One forward (under bf16 autocast when asked) and backward of ``fn`` on a fresh leaf copy of ``base``."""

    def run() -> None:
        z = base.clone().requires_grad_()
        with torch.autocast(base.device.type, dtype=torch.bfloat16, enabled=bf16):
            codes = fn(z)
        codes.float().sum().backward()

    return run


def with_usage(fsq: FSQ, z: torch.Tensor) -> torch.Tensor:
    """The op plus its usage metrics, read as the training modules read them (every step)."""
    out = fsq(z)
    dict(out.metrics)
    return out.codes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 16, 16])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        from vector_quantize_pytorch import FSQ as PortFSQ
    except ImportError:
        raise SystemExit(
            "error: bench_fsq.py needs vector-quantize-pytorch (pip install -r requirements-extra.txt)"
        ) from None
    device = torch.device(args.device)
    worst = worst_tanh = 0.0
    for levels in ([8, 5, 5, 5], [8, 8, 8, 6, 5]):
        ours, port = FSQ(levels).to(device), PortFSQ(levels).to(device)
        # (B, H·W, d): the port reads a 4-D tensor as channel-first images, so both get the tokens flattened
        base = torch.randn(args.shape[0], math.prod(args.shape[1:]), len(levels), device=device)
        for bf16 in (False, True):
            fns = {
                "ours": fwd_bwd(lambda z, q=ours: q(z).codes, base, bf16),
                "ours_usage": fwd_bwd(lambda z, q=ours: with_usage(q, z), base, bf16),
                "port": fwd_bwd(lambda z, q=port: q(z)[0], base, bf16),
                "tanh": fwd_bwd(torch.tanh, base, bf16),
            }
            t = interleaved_medians(fns, args.repeats, device)
            t_ours, t_port, t_tanh, t_usage = t["ours"], t["port"], t["tanh"], t["ours_usage"]
            worst, worst_tanh = max(worst, t_ours / t_port), max(worst_tanh, t_ours / t_tanh)
            name = "bf16 autocast" if bf16 else "float32"
            print(f"FSQ{levels} {name:13s} ours {t_ours * 1e6:8.1f} us  port {t_port * 1e6:8.1f} us  "
                  f"tanh {t_tanh * 1e6:7.1f} us  ours/port {t_ours / t_port:.2f}  "
                  f"ours/tanh {t_ours / t_tanh:.2f}  (+ usage: /tanh {t_usage / t_tanh:.2f})")  # fmt: skip
    print(f"worst ours/tanh: {worst_tanh:.2f} (goal <= 4)")
    print(f"ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
