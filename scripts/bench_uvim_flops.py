"""UViM training steps vs the matmul limit of the same machine, at the steps' own GEMM shapes (FSQ paper §4.4).

    python scripts/bench_uvim_flops.py [--task depth|panoptic|colorization] [--resolution 32] [--batch 32]
                                       [--lm-batch 64] [--steps 7] [--device cpu]

Built like ``bench_stage2_flops.py``: for the Stage I guiding-code autoencoder's training step (label embedding,
ViT encoder, FSQ bottleneck, ViT decoder, per-pixel task loss, backward, AdamW) and the Stage II language model's
(teacher-forced encoder-decoder, token cross-entropy, backward, AdamW):

- FLOPs of one full step are **counted** with ``torch.utils.flop_counter.FlopCounterMode``;
- every matrix multiply the step issues is recorded with its shapes, then each is timed alone in the steps' dtype
  (bf16 autocast on CUDA and on CPUs with fast bf16, else float32: ``fsq_repro/hardware.py``): achieved matmul
  FLOP/s at exactly the models' GEMMs;
- ``ratio = (step FLOPs / step time) / (GEMM FLOPs / GEMM time)``, timed round-robin with the GEMMs (the shared
  machine's noise hits both alike). One line per stage, and the smaller of the two last as ``ratio:``.

Defaults are ``make demo-uvim``'s sizes (``configs/model/stage{1,2}/uvim_tiny.yaml`` at 32 px, FSQ [5, 5, 5]).
"""

from __future__ import annotations

import argparse

import torch
from bench_stage2_flops import measure_step  # the scripts/ folder is on sys.path when a script runs

from fsq_repro.hardware import autocast_dtype
from fsq_repro.lit.uvim_module import UViMStage1Module, UViMStage2Module
from fsq_repro.nets.uvim_lm import UViMLanguageModel
from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder
from fsq_repro.quantizers import FSQ
from fsq_repro.tasks.base import build_task

TASKS = {
    "depth": {"name": "depth", "num_bins": 64},
    "panoptic": {"name": "panoptic", "num_semantic": 8, "num_instances": 16},
    "colorization": {"name": "colorization", "extractor": "shapes"},
}


def fake_batch(task_name: str, batch: int, res: int, device: torch.device) -> dict:
    image = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    if task_name == "depth":
        return {"image": image, "depth": torch.rand(batch, 1, res, res, device=device) * 9 + 1}
    if task_name == "panoptic":
        return {"image": image, "semantics": torch.randint(0, 8, (batch, res, res), device=device),
                "instances": torch.randint(0, 16, (batch, res, res), device=device)}  # fmt: skip
    return {"image": image, "color": torch.rand(batch, 3, res, res, device=device) * 2 - 1}


def measure(name: str, step, steps: int, device: torch.device, dtype: torch.dtype) -> float:
    """Time ``step`` against its own GEMMs (``bench_stage2_flops.measure_step``); print one line; return the ratio."""
    m = measure_step(step, steps, device, dtype)
    print(f"{name}: step {m['step_time'] * 1e3:.1f} ms (first {m['first']:.2f} s), {m['flops'] / 1e9:.3f} GFLOP "
          f"counted -> {m['achieved']:.1f} GFLOP/s; its {m['gemms']} GEMMs alone: {m['limit']:.1f} GFLOP/s; "
          f"ratio {m['achieved'] / m['limit']:.2f}")  # fmt: skip
    return m["achieved"] / m["limit"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="depth")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32, help="Stage I batch (make demo-uvim: 32)")
    parser.add_argument("--lm-batch", type=int, default=64, help="Stage II batch (uvim_tiny: 64)")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device, res = torch.device(args.device), args.resolution
    dtype = autocast_dtype(device.type)  # None: float32, no autocast
    torch.manual_seed(0)
    task = build_task(TASKS[args.task])
    arch = dict(patch_size=8, code_len=16, width=128, enc_depth=2, dec_depth=2, mlp_dim=256, num_heads=4)
    ae = GuidingCodeAutoencoder(FSQ([5, 5, 5]), task.label_classes, input_size=res,
                                label_channels=task.label_channels, **arch).to(device)  # fmt: skip
    stage1 = UViMStage1Module(ae, task, warmup_steps=10, total_steps=1000)
    opt1 = stage1.configure_optimizers()["optimizer"]
    data1 = fake_batch(args.task, args.batch, res, device)

    def step1() -> None:
        with torch.autocast(device.type, dtype or torch.bfloat16, enabled=dtype is not None):
            labels = task.labels(data1)
            logits, q = ae(labels, data1["image"])
            loss = task.loss(logits, labels)[0] + q.loss
        opt1.zero_grad(set_to_none=True)
        loss.backward()
        opt1.step()

    lm = UViMLanguageModel(ae.codebook_size, seq_len=16, input_size=res, patch_size=8, width=128, num_layers=2,
                           num_heads=4, mlp_dim=256).to(device)  # fmt: skip
    stage2 = UViMStage2Module(lm, warmup_steps=10, total_steps=1000)
    opt2 = stage2.configure_optimizers()["optimizer"]
    data2 = {"image": torch.rand(args.lm_batch, 3, res, res, device=device) * 2 - 1,
             "tokens": torch.randint(0, ae.codebook_size, (args.lm_batch, 16), device=device)}  # fmt: skip

    def step2() -> None:
        with torch.autocast(device.type, dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _ = stage2._step(data2)
        opt2.zero_grad(set_to_none=True)
        loss.backward()
        opt2.step()

    print(f"{args.task} at {res} px: Stage I batch {args.batch}, Stage II batch {args.lm_batch}, {args.device}, "
          f"{dtype or torch.float32}")  # fmt: skip
    gemm_dtype = dtype or torch.float32
    ratios = [measure(f"stage {n}", fn, args.steps, device, gemm_dtype) for n, fn in (("I", step1), ("II", step2))]
    print(f"ratio: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
