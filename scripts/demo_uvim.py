"""`make demo-uvim`: UViM (FSQ paper §4.4, Table 2) on CPU on the embedded data, all three tasks, ≤ 10 min:

- depth (embedded depth scenes): FSQ vs VQ with codebook splitting vs VQ without splitting (``experiment=uvim_demo``);
- panoptic segmentation (embedded panoptic scenes): FSQ vs VQ with splitting (``experiment=uvim_demo_panoptic``);
  the no-context ablation runs in ``scripts/uvim_table2_cpu.py``, over seeds, where its small effect can be told
  from the spread;
- colorization (embedded shapes in grayscale, hue independent of the shape): FSQ vs VQ
  (``experiment=uvim_demo_color``).

Every job also scores two baselines (``evaluation/uvim.py: evaluate``): the constant prediction and the Stage I decoder
with every code dropped (the image context alone); the report says per task whether FSQ ≈ VQ at this scale.

One Hydra multirun per task into ``--out/<task>``, then the Table 2-style report over all of them
(``fsq_repro/evaluation/uvim_report.py``) with one grid per task.

    python scripts/demo_uvim.py [--out outputs/demo/uvim] [--tasks depth panoptic colorization] [Hydra overrides ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # task -> Hydra multiruns (each a list of overrides)
    "depth": [
        ["experiment=uvim_demo", "quantizer=fsq_125,vq_128_uvim"],
        # the collapse shows in Stage I's codes (usage); a short Stage II is enough for its row
        ["experiment=uvim_demo", "quantizer=vq_128_uvim_nosplit", "model.stage2.max_steps=60"],
    ],
    "panoptic": [["experiment=uvim_demo_panoptic", "quantizer=fsq_125,vq_128_uvim"]],
    "colorization": [["experiment=uvim_demo_color", "quantizer=fsq_125,vq_128_uvim"]],
}


def run_task(job: list[str], out: Path, overrides: list[str], dry: bool = False) -> str:
    """One Hydra multirun of ``train.py`` into ``out`` (a subdir per job, named by its overrides); returns the
    command line (without the interpreter, ``out`` relative to the repository when inside it). ``dry``: only the
    command line."""
    cmd = [sys.executable, "train.py", "-m", *job, f"hydra.sweep.dir={out}",
           "hydra.sweep.subdir=${hydra:job.override_dirname}", *overrides]  # fmt: skip
    if not dry:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return " ".join(cmd[1:]).replace(f"{ROOT}/", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo" / "uvim")
    parser.add_argument("--tasks", nargs="+", default=list(RUNS), choices=list(RUNS))
    args, overrides = parser.parse_known_args()
    start, walls = time.perf_counter(), {}
    for task in args.tasks:
        t0 = time.perf_counter()
        for job in RUNS[task]:
            run_task(job, args.out / task, overrides)
        walls[task] = time.perf_counter() - t0
    total = time.perf_counter() - start

    from fsq_repro.evaluation.uvim_report import write_uvim_report

    written = write_uvim_report([args.out / task for task in args.tasks], args.out)
    report = written["report"]
    times = ", ".join(f"{task} {wall / 60:.1f}" for task, wall in walls.items())
    stamp = (f"\n\n`python scripts/demo_uvim.py` — {total / 60:.1f} min on this machine ({times} min; 2 CPU cores), "
             "embedded data at toy scale (depth scenes, panoptic scenes, shapes in grayscale; 32 px, 4 × 4 guiding "
             "codes); the paper's columns are NYU / COCO / ImageNet at 512 px.\n\n")  # fmt: skip
    report.write_text(report.read_text().replace("\n\n", stamp, 1))
    print(report.read_text())
    print(f"report: {report}")


if __name__ == "__main__":
    main()
