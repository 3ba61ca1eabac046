"""One Stage II epoch from the token cache vs tokenising every batch on the fly (house style rule 6).

    python scripts/bench_token_cache.py [--images 2048] [--batch 64]

Same tiny tokenizer (model/stage1/tiny, FSQ [5,5,5], 32 px shapes), same tiny MaskGIT (model/stage2/tiny), same
batches; the cache is built first (its build time is printed, not counted: it is paid once per tokenizer).
Last line: ``ratio: <on-the-fly epoch time / cached epoch time>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from fsq_repro.data.embedded import ShapesDataset
from fsq_repro.data.token_cache import TokenCacheDataset, build_token_cache
from fsq_repro.lit.maskgit_module import MaskGITModule
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.nets.transformer import MaskGITTransformer
from fsq_repro.quantizers import FSQ


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = Tokenizer(FSQ([5, 5, 5]), 32, 32, [1, 2, 2], 1, 8).eval()
    images = ShapesDataset("train", size=args.images, resolution=32)
    model = MaskGITTransformer(125, 10, 64, hidden_dim=192, depth=4, num_heads=4, mlp_dim=768)
    module = MaskGITModule(model, lr=1e-3, warmup_steps=10)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def train_step(batch: dict) -> None:
        with torch.autocast("cpu", torch.bfloat16):
            loss, _, _ = module._masked_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return tokenizer.encode(x)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_token_cache(encode, {"train": images}, tmp, tokenizer_hash="bench", data_fingerprint="bench",
                          codebook_size=125, token_grid=(8, 8), num_classes=10, batch_size=args.batch,
                          flip_splits=(), progress=False)  # fmt: skip
        print(f"cache build (once): {time.perf_counter() - start:.2f} s for {args.images} images")
        cached = DataLoader(TokenCacheDataset(tmp, "train"), batch_size=args.batch, shuffle=True, drop_last=True)
        start = time.perf_counter()
        for batch in cached:
            train_step(batch)
        cached_time = time.perf_counter() - start
    raw = DataLoader(images, batch_size=args.batch, shuffle=True, drop_last=True)
    start = time.perf_counter()
    for batch in raw:
        train_step({"tokens": encode(batch["image"]).flatten(1), "label": batch["label"]})
    fly_time = time.perf_counter() - start
    print(f"epoch of {args.images} images: from cache {cached_time:.2f} s, tokenising on the fly {fly_time:.2f} s")
    print(f"ratio: {fly_time / cached_time:.2f}")


if __name__ == "__main__":
    main()
