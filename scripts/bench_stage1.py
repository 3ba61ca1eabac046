"""Stage I step time and size: the tiny CPU tokenizer vs MaskGIT's full-size VQGAN (model/stage1/*), batch 8.

    python scripts/bench_stage1.py [--batch 8] [--steps 3] [--precision bf16|fp32]

One generator step (L2 + GAN + quantizer loss, backward, Adam) plus one discriminator step (NS + R1), as in
``TokenizerModule`` with the GAN active. Prints parameter counts, seconds per step of each, and the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fsq_repro.losses.stage1 import Stage1Loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def build(model: str, resolution: int):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"model/stage1={model}", f"data.resolution={resolution}"])
    tokenizer = instantiate(cfg.model.stage1.tokenizer)(quantizer=instantiate(cfg.quantizer))
    return tokenizer, instantiate(cfg.model.stage1.discriminator)


def time_steps(tokenizer, disc, batch: int, steps: int, bf16: bool) -> float:
    loss = Stage1Loss(perceptual_weight=0.0, gan_weight=0.1, gan_start_step=0)
    g_opt = torch.optim.Adam(tokenizer.parameters(), 1e-4, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(disc.parameters(), 1e-4, betas=(0.0, 0.99))
    x = torch.rand(batch, 3, tokenizer.resolution, tokenizer.resolution) * 2 - 1
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            recon, q = tokenizer(x)
            g = loss.generator_terms(x, recon, q.loss, step, disc)["total"]
            g_opt.zero_grad()
            g.backward()
            g_opt.step()
            d = loss.discriminator_terms(x, recon, disc, step)["total"]
            d_opt.zero_grad()
            d.backward()
            d_opt.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps  # the first step warms up allocators


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {}
    for model, resolution in (("tiny", 32), ("maskgit_vqgan", 256)):
        tokenizer, disc = build(model, resolution)
        count = {n: sum(p.numel() for p in m.parameters()) for n, m in
                 (("encoder", tokenizer.encoder), ("decoder", tokenizer.decoder), ("discriminator", disc))}  # fmt: skip
        sec = time_steps(tokenizer, disc, args.batch, args.steps, args.precision == "bf16")
        results[model] = sec
        print(f"{model} @ {resolution}px batch {args.batch} {args.precision}: {sec:.3f} s/step; parameters {count}")
    print(f"ratio: {results['maskgit_vqgan'] / results['tiny']:.1f}")


if __name__ == "__main__":
    main()
