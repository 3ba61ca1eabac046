"""Batched classifier-free guidance (one forward of 2B rows per step) vs two forward passes of B rows.

    python scripts/bench_sampler.py [--batch 32] [--repeats 3]

Same model (model/stage2/tiny sizes, 8×8 tokens, 125 codes, 10 classes), same labels and seeds, MaskGIT's 12 steps.
Prints both times and, last, ``ratio: <two-pass time / batched time>``.

Batching saves only what two calls cost beyond one call of twice the rows; ``--ceiling`` first prints that bound
for the forward pass alone, ``2·t(B rows) / t(2B rows)``, for B = 1 … 32 (the sampler's other work only dilutes
it): near 2 where a call is overhead-bound (small models on a GPU), near 1 where it is compute-bound.
"""

from __future__ import annotations

import argparse
import time

import torch

from fsq_repro.generation.sampler import sample_with_model
from fsq_repro.nets.transformer import MaskGITTransformer


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_time(model: MaskGITTransformer, rows: int, repeats: int) -> float:
    tokens = torch.full((rows, model.num_tokens), model.mask_token_id)
    ids = model.class_embedder(torch.zeros(rows, dtype=torch.long))
    return best_time(lambda: model(tokens, ids), max(repeats, 20))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ceiling", action="store_true", help="also time the forward pass alone at B and 2B rows")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = MaskGITTransformer(125, 10, 64, hidden_dim=192, depth=4, num_heads=4, mlp_dim=768).eval()
    if args.ceiling:
        with torch.inference_mode():
            for rows in (1, 2, 4, 8, 16, 32):
                one, two = (forward_time(model, n, args.repeats) for n in (rows, 2 * rows))
                print(f"forward only, B = {rows:2d}: t(B) {one * 1e3:7.2f} ms, t(2B) {two * 1e3:7.2f} ms, "
                      f"ceiling 2·t(B)/t(2B) = {2 * one / two:.2f}")  # fmt: skip
    labels = torch.arange(args.batch) % 10

    def run(batched: bool):
        return lambda: sample_with_model(
            model, labels, generator=torch.Generator().manual_seed(0), cfg_scale=1.0, batched_cfg=batched
        )

    with torch.inference_mode():
        same = torch.equal(run(True)(), run(False)())
        batched, two_pass = best_time(run(True), args.repeats), best_time(run(False), args.repeats)
    print(
        f"batch {args.batch}, 12 steps: batched CFG {batched:.3f} s, two passes {two_pass:.3f} s, same tokens: {same}"
    )
    print(f"ratio: {two_pass / batched:.2f}")


if __name__ == "__main__":
    main()
