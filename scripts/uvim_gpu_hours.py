"""Estimated GPU-hours of every UViM row of FSQ paper Table 2 (§4.4), from FLOPs *counted* on the paper-size models.

For each experiment, one training sample's forward FLOPs are counted with ``torch.utils.flop_counter`` (matmuls,
convolutions, attention) on the composed config's Stage I autoencoder (labels + context at 512 px) and Stage II
language model (image + 256 codes); a training step costs 3 × forward (forward + backward). Total = 3 · forward ·
global batch · steps (the configs' ``max_steps``: the official epochs), plus the evaluation's greedy decoding,
taken as one Stage II forward per val image (with the KV cache the 256 single-token steps do the matmuls of one
teacher-forced pass; the Stage I decoder adds less than that). GPU-hours assume
``--mfu`` (default 35 %) of an H100's dense bf16 peak (989 TFLOP/s).

    python scripts/uvim_gpu_hours.py [--mfu 0.35] [--experiments uvim_depth_fsq ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsq_repro.tasks.base import build_task  # noqa: E402

H100_BF16 = 989e12  # dense bf16 FLOP/s (H100 SXM)
EXPERIMENTS = ("uvim_depth_fsq", "uvim_depth_vq", "uvim_panoptic_fsq", "uvim_panoptic_fsq_noctx",
               "uvim_color_fsq")  # fmt: skip
VAL_IMAGES = {"nyu_depth": 654, "coco_panoptic": 5000, "imagenet_colorization": 5000}


def count(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def sample_labels(task, size: int) -> dict[str, torch.Tensor]:
    labels = {k: torch.randint(0, c, (1, size, size)) for k, c in task.label_classes.items()}
    labels |= {k: torch.rand(1, c, size, size) * 2 - 1 for k, c in task.label_channels.items()}
    return labels


def estimate(experiment: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    task = build_task({k: cfg.data.task[k] for k in cfg.data.task if k != "cache_dir"})  # no paths needed
    size = int(cfg.data.resolution)
    stage1 = instantiate(cfg.model.stage1.autoencoder)(
        quantizer=instantiate(cfg.quantizer), label_classes=task.label_classes, input_size=size,
        label_channels=task.label_channels,
    )  # fmt: skip
    image = torch.rand(1, 3, size, size) * 2 - 1
    s1 = count(lambda: stage1(sample_labels(task, size), image))
    lm = instantiate(cfg.model.stage2.lm)(codebook_size=stage1.codebook_size, seq_len=stage1.code_len, input_size=size)
    codes = torch.randint(0, stage1.codebook_size, (1, stage1.code_len))
    s2 = count(lambda: lm(image, codes))
    infer = s2 + s1
    b1, b2 = int(cfg.model.stage1.global_batch_size), int(cfg.model.stage2.global_batch_size)
    n1, n2 = int(cfg.model.stage1.max_steps), int(cfg.model.stage2.max_steps)
    train1, train2 = 3 * s1 * b1 * n1, 3 * s2 * b2 * n2
    evaluation = infer * VAL_IMAGES.get(cfg.data.name, 5000)
    return {"experiment": experiment, "stage1_fwd": s1, "stage2_fwd": s2, "decode": infer, "stage1": train1,
            "stage2": train2, "eval": evaluation, "steps": (n1, n2), "batch": (b1, b2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.35)
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    args = parser.parse_args()
    rate = args.mfu * H100_BF16 * 3600  # FLOPs per GPU-hour
    print(f"| experiment | Stage I fwd / sample | Stage II fwd / sample | steps (I, II) | Stage I | Stage II | eval | "
          f"total (H100-hours at {100 * args.mfu:.0f} % MFU) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for experiment in args.experiments:
        r = estimate(experiment)
        total = (r["stage1"] + r["stage2"] + r["eval"]) / rate
        steps = f"{r['steps'][0]:,} × {r['batch'][0]}, {r['steps'][1]:,} × {r['batch'][1]}"
        print(f"| {experiment} | {r['stage1_fwd'] / 1e9:.0f} GFLOP | {r['stage2_fwd'] / 1e9:.0f} GFLOP | {steps} | "
              f"{r['stage1'] / rate:,.0f} h | {r['stage2'] / rate:,.0f} h | {r['eval'] / rate:,.1f} h | "
              f"**{total:,.0f} h** |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
