"""One Stage II epoch from the token cache vs tokenising every batch on the fly (FSQ paper §4.3: Stage II trains on
frozen Stage I tokens).

    python scripts/bench_token_cache.py [--preset tiny|paper] [--images N] [--batch B]

- ``tiny`` (default): the nets of ``experiment=maskgit_shapes`` (model/stage1/tiny with FSQ [5,5,5], 32 px shapes →
  8×8 tokens; model/stage2/tiny), 2 048 images at batch 64. The on-the-fly arm also renders the shapes.
- ``paper``: the nets of ``experiment=maskgit_fsq`` composed from the configs (MaskGIT VQGAN encoder with FSQ
  [8,5,5,5] at 256 px → 16×16 tokens; maskgit_base, 24 × 768, 1 000 classes), 8 images at batch 2 on CPU.
  Images are random tensors already in memory, so JPEG decoding — which the on-the-fly arm would also pay at
  ImageNet scale — is not counted: the ratio is a lower bound for real on-the-fly training.

The cache is built first (its build time is printed, not counted: it is paid once per tokenizer). Both arms run
the same training step (masked CE, backward, AdamW) in bf16 autocast (float32 on a CPU without fast bf16) on the
same batches, after one warm-up step.
Ceiling: ``1 + (load + encode) / step``; the counted FLOPs are printed for the paper preset.
Last line: ``ratio: <on-the-fly epoch time / cached epoch time>``.

``--jpeg`` measures the real workload instead: an ImageFolder of JPEGs (crops of the bundled photos at 1.5× the
tokenizer's resolution — 384 px for the paper preset, ≈ ImageNet's mean image — saved at quality 90) read by the
project's ``ImageFolderDataset`` (decode + MaskGIT train transform) and encoded on the fly, vs the cache. Each part
is also timed alone — loading ``t_load``, encoding ``t_enc``, the cached epoch ``t_cached`` — so the ceiling is
counted in the same run, ``(t_load + t_enc + t_cached) / t_cached`` (what on-the-fly training costs if the
pipeline adds nothing), and the last line becomes ``ratio: <measured ratio / ceiling>`` (goal ≥ 0.9). It also prints
images/s of the JPEG pipeline and token maps/s of the cache loader, one process each (``num_workers=0``), and the
CPU cores per GPU each needs to feed a Stage II step at the counted FLOPs at 35 % of an H100's bf16 peak.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from fsq_repro.data.loading import collate_skip_corrupt
from fsq_repro.data.token_cache import TokenCacheDataset, build_token_cache
from fsq_repro.hardware import autocast_dtype
from fsq_repro.lit.maskgit_module import MaskGITModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


EXPERIMENTS = {"tiny": "maskgit_shapes", "paper": "maskgit_fsq"}


class RandomImages(TensorDataset):
    """ImageNet stand-in already in memory: ``{"image": (3, H, W) in [−1, 1], "label"}``."""

    def __init__(self, count: int, resolution: int, classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(count, 3, resolution, resolution, generator=g) * 2 - 1
        super().__init__(x, torch.randint(0, classes, (count,), generator=g))

    def __getitem__(self, i):
        image, label = super().__getitem__(i)
        return {"image": image, "label": label}


def setup(preset: str, images: int):
    """The tokenizer and transformer of the preset's experiment, built from its configs as the stages build them,
    and its images: the embedded shapes (tiny) or random 256 px tensors for ImageNet's 1 000 classes (paper)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from fsq_repro.data.embedded import ShapesDataset

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={EXPERIMENTS[preset]}"])
    tokenizer = instantiate(cfg.model.stage1.tokenizer)(quantizer=instantiate(cfg.quantizer))
    if preset == "tiny":
        dataset = ShapesDataset("train", size=images, resolution=tokenizer.resolution)
        classes = dataset.num_classes
    else:
        dataset, classes = RandomImages(images, tokenizer.resolution, 1000), 1000
    h, w = tokenizer.token_grid
    model = instantiate(cfg.model.stage2.transformer)(
        codebook_size=tokenizer.codebook_size, num_classes=classes, num_tokens=h * w
    )
    return tokenizer, model, dataset, classes


H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM (NVIDIA datasheet, without sparsity)


def write_jpegs(root: Path, count: int, size: int, classes: int) -> None:
    """``count`` JPEGs (quality 90) of random ``size``² crops of the bundled photos in ``root/train/class_XX``."""
    import numpy as np
    from PIL import Image

    from fsq_repro.data.photos import load_embedded_photos

    rng = np.random.default_rng(0)
    photos = [Image.fromarray(p) for p in load_embedded_photos()]
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        scale = max(1.0, size / min(photo.size))
        if scale > 1:
            photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        left, top = rng.integers(photo.width - size + 1), rng.integers(photo.height - size + 1)
        folder = root / "train" / f"class_{i % classes:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        photo.crop((left, top, left + size, top + size)).save(folder / f"{i:06d}.jpg", quality=90)


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--images", type=int, default=None, help="default: 2048 (tiny), 8 (paper)")
    parser.add_argument("--batch", type=int, default=None, help="default: 64 (tiny), 2 (paper)")
    parser.add_argument("--jpeg", action="store_true", help="real JPEGs through ImageFolderDataset (docstring)")
    args = parser.parse_args()
    images = args.images or (2048 if args.preset == "tiny" else 8)
    batch_size = args.batch or (64 if args.preset == "tiny" else 2)
    torch.manual_seed(0)
    tokenizer, model, dataset, classes = setup(args.preset, images)
    jpeg_dir = tempfile.TemporaryDirectory() if args.jpeg else None
    if jpeg_dir is not None:
        from fsq_repro.data.imagenet import ImageFolderDataset

        classes = min(classes, images)
        write_jpegs(Path(jpeg_dir.name), images, tokenizer.resolution * 3 // 2, classes)
        dataset = ImageFolderDataset(jpeg_dir.name, "train", resolution=tokenizer.resolution)
    tokenizer.eval()
    grid = tokenizer.token_grid
    module = MaskGITModule(model, lr=1e-4, warmup_steps=10)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    dtype = autocast_dtype("cpu")  # bf16 where this CPU has fast bf16, else float32 (fsq_repro/hardware.py)

    def train_step(batch: dict) -> None:
        with torch.autocast("cpu", dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _, _ = module._masked_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype or torch.bfloat16, enabled=dtype is not None):
            return tokenizer.encode(x)

    def epoch(loader, on_the_fly: bool) -> float:
        batches = iter(loader)
        first = next(batches)  # warm-up step, not timed
        train_step({"tokens": encode(first["image"]).flatten(1), "label": first["label"]} if on_the_fly else first)
        start = time.perf_counter()
        for batch in batches:
            if on_the_fly:
                batch = {"tokens": encode(batch["image"]).flatten(1), "label": batch["label"]}
            train_step(batch)
        return time.perf_counter() - start

    step_gflop = None
    if args.preset == "paper" or args.jpeg:
        x = dataset[0]["image"][None]
        tokens = encode(x).flatten(1)
        enc = count_flops(lambda: encode(x))
        step_gflop = count_flops(lambda: train_step({"tokens": tokens, "label": torch.zeros(1, dtype=torch.long)}))
        print(f"counted per image: encoder forward {enc:.1f} GFLOP, Stage II training step {step_gflop:.1f} GFLOP "
              f"-> compute ceiling of the ratio {1 + enc / step_gflop:.2f}")  # fmt: skip
    loader_kw = {"collate_fn": collate_skip_corrupt} if args.jpeg else {}

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_token_cache(encode, {"train": dataset}, tmp, tokenizer_hash="bench", data_fingerprint="bench",
                          codebook_size=tokenizer.codebook_size, token_grid=tuple(grid), num_classes=classes,
                          batch_size=batch_size, flip_splits=(), progress=False)  # fmt: skip
        print(f"cache build (once): {time.perf_counter() - start:.2f} s for {images} images")
        g = torch.Generator().manual_seed(0)
        cached = DataLoader(TokenCacheDataset(tmp, "train"), batch_size=batch_size, shuffle=True, drop_last=True,
                            generator=g)  # fmt: skip
        cached_time = epoch(cached, on_the_fly=False)
        start = time.perf_counter()
        cache_batches = sum(1 for _ in cached)
        cache_load = time.perf_counter() - start
    g = torch.Generator().manual_seed(0)
    raw = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=g, **loader_kw)
    fly_time = epoch(raw, on_the_fly=True)
    steps = images // batch_size - 1
    print(f"{args.preset}: {steps} timed steps of batch {batch_size}: from cache {cached_time:.2f} s, "
          f"tokenising on the fly {fly_time:.2f} s")  # fmt: skip
    ratio = fly_time / cached_time
    if jpeg_dir is None:
        print(f"ratio: {ratio:.2f}")
        return
    # the parts alone, over the same timed batches (the first batch is the warm-up in `epoch`)
    start = time.perf_counter()
    loaded = list(raw)[1:]
    load_time = time.perf_counter() - start
    start = time.perf_counter()
    for batch in loaded:
        encode(batch["image"])
    enc_time = time.perf_counter() - start
    jpeg_dir.cleanup()
    ceiling = (load_time * steps / (steps + 1) + enc_time + cached_time) / cached_time
    per_s_jpeg, per_s_cache = images / load_time, cache_batches * batch_size / max(cache_load, 1e-9)
    threads = torch.get_num_threads()
    print(f"alone: JPEG load {load_time:.2f} s ({per_s_jpeg:.1f} images/s, one process, {threads} torch threads), "
          f"encode {enc_time:.2f} s, cache loader {per_s_cache:.0f} token maps/s")  # fmt: skip
    print(f"ceiling (t_load + t_enc + t_cached) / t_cached = {ceiling:.2f}; measured {ratio:.2f}")
    if step_gflop:
        need = 0.35 * H100_BF16_PEAK / (step_gflop * 1e9)  # images/s one GPU trains on at 35 % of peak
        print(f"an H100 at 35 % of bf16 peak trains {need:.0f} images/s of this Stage II: JPEG pipeline needs "
              f"{need / per_s_jpeg:.1f} such processes per GPU, the cache loader {need / per_s_cache:.3f}")  # fmt: skip
    print(f"ratio: {ratio / ceiling:.2f}")


if __name__ == "__main__":
    main()
