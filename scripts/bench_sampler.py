"""Sampler overhead: a 12-step MaskGIT decode with batched classifier-free guidance vs 12 transformer forwards of the
same 2B rows (the sampler's own work — softmax over B×N×C, multinomial, Gumbel, argsorts — is the difference).

    python scripts/bench_sampler.py [--nets shapes|fsq] [--batch 32] [--repeats 3] [--device cpu] [--profile]

``--nets shapes``: the ``maskgit_shapes`` nets (model/stage2/tiny: 4 × 192, 8×8 tokens, 125 codes, 10 classes),
default batch 32; ``--nets fsq``: the ``maskgit_fsq`` nets (model/stage2/maskgit_base: 24 × 768, 16×16 tokens,
1000 codes, 1000 classes), default batch 2. Prints both times and, last,
``ratio: <sampler time / (12 × forward time of 2B rows)>`` (goal ≤ 1.05). ``--profile`` prints the top ops of one
decode (torch.profiler); ``--two-pass`` also times the unbatched guidance (two forwards of B rows per step).
"""

from __future__ import annotations

import argparse
import time

import torch

from fsq_repro.generation.sampler import sample_with_model
from fsq_repro.nets.transformer import MaskGITTransformer

NETS = {  # (codebook_size, num_classes, num_tokens, hidden, depth, heads, mlp), default batch
    "shapes": ((125, 10, 64, 192, 4, 4, 768), 32),
    "fsq": ((1000, 1000, 256, 768, 24, 16, 3072), 2),
}


def timed_call(fn, device: torch.device | None = None) -> float:
    """Seconds of one call of ``fn``, with CUDA synchronised before and after."""
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def best_time(fn, repeats: int, device: torch.device | None = None, median: bool = False) -> float:
    """Seconds per call of ``fn`` after one warm-up: the minimum (or the median) of ``repeats`` timed calls.
    Shared by the other ``bench_*.py`` scripts."""
    fn()  # warm-up
    times = sorted(timed_call(fn, device) for _ in range(repeats))
    return times[len(times) // 2] if median else times[0]


def interleaved_medians(fns: dict, repeats: int, device: torch.device | None = None) -> dict[str, float]:
    """Median seconds per call of each of ``fns`` ({name: fn}), timed round-robin (one call of each per round,
    after one warm-up round): a shared, noisy machine then slows all of them alike, and their ratios hold."""
    for fn in fns.values():
        fn()  # warm-up round
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed_call(fn, device))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nets", choices=sorted(NETS), default="shapes")
    parser.add_argument("--batch", type=int, default=None, help="default: 32 (shapes), 2 (fsq)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)  # MaskGIT §3.2 / FSQ paper §4.3
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--two-pass", action="store_true", help="also time guidance as two forwards of B rows")
    args = parser.parse_args()
    device = torch.device(args.device)
    (codes, classes, tokens, hidden, depth, heads, mlp), default_batch = NETS[args.nets]
    batch = args.batch or default_batch
    torch.manual_seed(0)
    model = MaskGITTransformer(codes, classes, tokens, hidden_dim=hidden, depth=depth, num_heads=heads, mlp_dim=mlp)
    model = model.to(device).eval()
    labels = torch.arange(batch, device=device) % classes

    def decode(batched: bool = True):
        return lambda: sample_with_model(model, labels, generator=torch.Generator(device).manual_seed(0),
                                         cfg_scale=1.0, batched_cfg=batched, steps=args.steps)  # fmt: skip

    rows = torch.full((2 * batch, tokens), model.mask_token_id, device=device)
    rows[:, ::3] = torch.randint(0, codes, (2 * batch, len(range(0, tokens, 3))), device=device)
    ids = torch.cat([model.class_embedder(labels), torch.full_like(labels, model.class_embedder.null_id)])
    with torch.inference_mode():
        t_forward = best_time(lambda: model(rows, ids), max(args.repeats, 5), device)
        t_sampler = best_time(decode(), args.repeats, device)
        if args.two_pass:
            print(f"two passes of B rows per step: {best_time(decode(False), args.repeats, device):.3f} s")
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=activities) as prof:
                decode()()
            key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=15))
    forwards = args.steps * t_forward
    print(f"{args.nets} nets, batch {batch} ({2 * batch} rows with guidance), {args.steps} steps: sampler "
          f"{t_sampler:.3f} s, {args.steps} forwards {forwards:.3f} s, "
          f"overhead {t_sampler - forwards:+.3f} s")  # fmt: skip
    print(f"ratio: {t_sampler / forwards:.2f}")


if __name__ == "__main__":
    main()
