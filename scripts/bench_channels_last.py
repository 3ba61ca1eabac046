"""Stage I training step in channels-last vs the default (contiguous NCHW) memory format, on one device: whether the
VQGAN should run channels-last there (docs/gpu.md, "GPU defaults"). `make gpu-check` runs it with ``--device cuda``.

    python scripts/bench_channels_last.py [--device cuda] [--model maskgit_vqgan] [--resolution 256] [--batch 8]

The step: the FSQ paper §4.1 tokenizer's generator step with the GAN term (encoder → FSQ → decoder, L2 + adversarial
+ quantizer loss, backward, Adam) and the discriminator step (non-saturating loss + R1), under autocast in the
device's training dtype (``fsq_repro/hardware.py``), as ``TokenizerModule`` trains it. Channels-last converts the
tokenizer, the discriminator and the input images (``memory_format=torch.channels_last``); convolutions then pick
NHWC kernels, while GroupNorm may convert back — which is why it is measured, not assumed.

Both variants start from the same weights and batch; their first losses are printed (they agree to the dtype's
rounding). The two steps are timed round-robin (``interleaved_medians``); the last line is ``ratio:`` contiguous
seconds / channels-last seconds (> 1: channels-last is faster).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from bench_sampler import interleaved_medians  # the scripts/ folder is on sys.path when a script runs
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fsq_repro.hardware import autocast_dtype
from fsq_repro.losses.stage1 import Stage1Loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def build(model: str, resolution: int):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"model/stage1={model}", f"data.resolution={resolution}",
                                          "quantizer=fsq_1000"])  # fmt: skip
    tokenizer = instantiate(cfg.model.stage1.tokenizer)(quantizer=instantiate(cfg.quantizer))
    return tokenizer, instantiate(cfg.model.stage1.discriminator)


def make_step(tokenizer, disc, images: torch.Tensor, channels_last: bool):
    """One generator + discriminator step of copies of ``tokenizer`` / ``disc`` → ``(step(), first losses)``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tokenizer = copy.deepcopy(tokenizer).to(images.device, memory_format=fmt)
    disc = copy.deepcopy(disc).to(images.device, memory_format=fmt)
    x = images.contiguous(memory_format=fmt)
    loss = Stage1Loss(perceptual_weight=0.0, gan_weight=0.1, gan_start_step=0)
    g_opt = torch.optim.Adam(tokenizer.parameters(), 1e-4, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(disc.parameters(), 1e-4, betas=(0.0, 0.99))
    dtype = autocast_dtype(images.device.type)

    def step() -> tuple[float, float]:
        with torch.autocast(images.device.type, dtype or torch.bfloat16, enabled=dtype is not None):
            recon, q = tokenizer(x)
            g = loss.generator_terms(x, recon, q.loss, 0, disc)["total"]
            g_opt.zero_grad(set_to_none=True)
            g.backward()
            g_opt.step()
            d = loss.discriminator_terms(x, recon.detach(), disc, 0)["total"]
            d_opt.zero_grad(set_to_none=True)
            d.backward()
            d_opt.step()
        return g.detach(), d.detach()

    first = tuple(float(v) for v in step())  # before timing: the same weights and batch in both variants
    return step, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="maskgit_vqgan", help="a model/stage1 config (tiny: the CPU tokenizer)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (medians)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer, disc = build(args.model, args.resolution)
    images = torch.rand(args.batch, 3, args.resolution, args.resolution, device=device) * 2 - 1
    steps, firsts = {}, {}
    for name, channels_last in (("contiguous", False), ("channels_last", True)):
        steps[name], firsts[name] = make_step(tokenizer, disc, images, channels_last)
    times = interleaved_medians(steps, args.steps, device)
    for name in steps:
        g, d = firsts[name]
        print(f"{name}: {times[name]:.4f} s/step (G + D, batch {args.batch} at {args.resolution} px, {args.model}, "
              f"{device.type}); first losses G {g:.5f} D {d:.5f}")  # fmt: skip
    print(f"ratio: {times['contiguous'] / times['channels_last']:.2f}")


if __name__ == "__main__":
    main()
