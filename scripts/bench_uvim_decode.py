"""UViM Stage II decoding: key/value-cached vs uncached, and vs the lower bound of one decoder pass per token.

    python scripts/bench_uvim_decode.py [--batch 8] [--seq-len 64] [--width 256] [--layers 4] [--repeats 3]

Same model and images for all three (``generation/autoregressive.py``; greedy). Times per image:

- ``cached``: the image encoded once, then ``seq_len`` single-position decoder passes reusing the keys/values;
- ``uncached``: ``seq_len`` decoder passes over the growing prefix (the reference);
- ``bound``: ``seq_len`` × one single-position decoder pass on a warm cache (+ the encoder once): what decoding
  costs if every step did nothing but the unavoidable pass.

Prints the times, ``overhead (cached / bound): <x>`` and, last, ``ratio: <uncached / cached>``.
"""

from __future__ import annotations

import argparse

import torch
from bench_sampler import best_time  # the scripts/ folder is on sys.path when a script runs

from fsq_repro.generation.autoregressive import decode
from fsq_repro.nets.uvim_lm import UViMLanguageModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = UViMLanguageModel(4375, seq_len=args.seq_len, input_size=args.input_size, patch_size=8, width=args.width,
                              num_layers=args.layers, num_heads=4, mlp_dim=4 * args.width).eval()  # fmt: skip
    torch.nn.init.normal_(model.logits.weight, std=0.02)
    image = torch.randn(args.batch, 3, args.input_size, args.input_size)
    with torch.inference_mode():
        same = torch.equal(decode(model, image), decode(model, image, use_cache=False))
        cached = best_time(lambda: decode(model, image), args.repeats)
        uncached = best_time(lambda: decode(model, image, use_cache=False), args.repeats)
        encoded = model.encode(image)
        caches = [{"self": {}} for _ in model.blocks]
        tokens = torch.zeros(args.batch, 1, dtype=torch.long)
        for t in range(args.seq_len // 2):  # a half-full cache: the average step's attention length
            model.decode(encoded, tokens, offset=t, caches=caches)

        def one_step() -> None:
            snapshot = [{"self": dict(c["self"])} for c in caches]
            model.decode(encoded, tokens, offset=args.seq_len // 2, caches=snapshot)

        step = best_time(one_step, max(args.repeats, 20))
        encode_time = best_time(lambda: model.encode(image), args.repeats)
    bound = encode_time + args.seq_len * step
    per = 1e3 / args.batch
    print(f"batch {args.batch}, {args.seq_len} tokens, width {args.width}, {args.layers}+{args.layers} layers: "
          f"cached {cached * per:.2f} ms/image, uncached {uncached * per:.2f} ms/image, "
          f"bound {bound * per:.2f} ms/image; same tokens: {same}")  # fmt: skip
    print(f"overhead (cached / bound): {cached / bound:.2f}")
    print(f"ratio: {uncached / cached:.2f}")


if __name__ == "__main__":
    main()
