"""Memory plan per device (docs/gpu.md, "Memory plan"): the peak memory of one training step of every training
stage of an experiment, at its configured per-device batch and precision, measured on fake tensors on the CPU
(``fsq_repro/pipeline/memory_plan.py``: nothing of that size is allocated).

    python scripts/plan_memory.py experiment=maskgit_fsq --gpu-memory 80
    python scripts/plan_memory.py experiment=uvim_depth_fsq --gpu-memory 40 --devices 8 --checkpointing
    python scripts/plan_memory.py experiment=maskgit_fsq experiment=tradeoff_fsq ... --markdown   # several

Arguments without ``--`` are ``train.py`` overrides (one experiment, or several ``experiment=`` for one table).
The table: stage, per-device batch, peak GiB, whether it fits 40 / 80 / 141 GB (with 10 % kept free), the
largest per-device batch that fits ``--gpu-memory``, and the accumulation that keeps the paper's global batch on
``--devices`` devices (the fewest micro-batches whose batch fits). ``--checkpointing`` adds Stage I's rows with
``model.stage1.checkpoint_activations=true``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from fsq_repro.pipeline.memory_plan import (
    GIB,
    compose_train_config,
    per_device_batch,
    plan_stage,
    plan_stages,
    with_checkpointing,
)

DEVICES_GB = (40, 80, 141)  # A100-40GB, A100/H100-80GB, H200


def rows_for(overrides: list[str], gpu_gb: float, devices: int, checkpointing: bool) -> list[dict]:
    cfg = compose_train_config(overrides)
    name = str(cfg.get("experiment_name"))
    variants = [("", cfg)]
    if checkpointing and "stage1" in plan_stages(cfg):  # the VQGAN's res blocks (MaskGIT Stage I only)
        variants.append((" + checkpointing", with_checkpointing(cfg)))
    rows = []
    for stage in plan_stages(cfg):
        for suffix, c in variants:
            if suffix and stage != "stage1":
                continue
            plan = plan_stage(c, stage, per_device_batch(c, stage))
            largest = plan.largest_batch(gpu_gb * 1e9)
            rows.append({
                "experiment": name, "stage": stage + suffix, "batch": plan.batch,
                "precision": str(c.trainer.get("precision")), "peak_gib": plan.peak / GIB,
                "state_gib": (plan.parts["parameters"] + plan.parts["optimizer state"]) / GIB,
                "fits": {gb: plan.fits(gb * 1e9) for gb in DEVICES_GB}, "largest": largest,
                "global": plan.global_batch, "layout": plan.layout(gpu_gb * 1e9, devices),
            })  # fmt: skip
    return rows


def table(rows: list[dict], gpu_gb: float, devices: int) -> str:
    head = ["experiment", "stage", "batch / device", "precision", "peak GiB", "params + Adam GiB",
            *(f"fits {gb} GB" for gb in DEVICES_GB), f"largest batch ({gpu_gb:g} GB)",
            f"global batch on {devices} devices: batch × accumulation"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = "—" if r["layout"] is None else f"{r['global']} = {r['layout'][0]} × {r['layout'][1]}"
        cells = [r["experiment"], r["stage"], str(r["batch"]), r["precision"], f"{r['peak_gib']:.1f}",
                 f"{r['state_gib']:.2f}", *("yes" if r["fits"][gb] else "no" for gb in DEVICES_GB),
                 str(r["largest"]), acc]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. experiment=maskgit_fsq")
    parser.add_argument("--gpu-memory", type=float, default=80.0, help="GB per device (default 80)")
    parser.add_argument("--devices", type=int, default=8, help="devices for the accumulation column (default 8)")
    parser.add_argument("--checkpointing", action="store_true", help="add Stage I with activation checkpointing")
    args = parser.parse_args(argv)
    if args.gpu_memory <= 0 or args.devices < 1:
        parser.error("--gpu-memory and --devices must be positive")
    experiments = [o for o in args.overrides if o.startswith("experiment=")] or ["experiment=maskgit_fsq"]
    others = [o for o in args.overrides if not o.startswith("experiment=")]
    warnings.filterwarnings("ignore")  # LPIPS' head loading into meta tensors warns once per layer
    start, rows = time.perf_counter(), []
    for experiment in experiments:
        rows += rows_for([experiment, *others], args.gpu_memory, args.devices, args.checkpointing)
    print(table(rows, args.gpu_memory, args.devices))
    print(f"plan: {len(rows)} stages in {time.perf_counter() - start:.0f} s (fake tensors; not counted: CUDA context, "
          "kernel workspaces, allocator fragmentation, torch.compile buffers)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
