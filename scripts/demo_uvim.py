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

Lanes: the tasks run in ``--lanes`` parallel processes (default 2 on ≥ 2 cores), each with ``cores / lanes`` threads;
a task's jobs run one after another in its lane, its output in ``--out/<task>/demo.log``. The demo's models are so
small that a second thread buys little: on 2 cores one Stage II run took 78.8 s with 2 threads and 106.5 s with 1
(`OMP_NUM_THREADS=1`), and the demo's seven jobs took 13.3 min one after another in 2 threads against 8.3 min in
two 1-thread lanes. ``--lanes 1`` runs everything in this process's console, as before.

    python scripts/demo_uvim.py [--out outputs/demo/uvim] [--tasks depth panoptic colorization] [--lanes N]
                                [Hydra overrides ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


def run_task(job: list[str], out: Path, overrides: list[str], dry: bool = False, log: Path | None = None,
             threads: int | None = None) -> str:  # fmt: skip
    """One Hydra multirun of ``train.py`` into ``out`` (a subdir per job, named by its overrides); returns the
    command line (without the interpreter, ``out`` relative to the repository when inside it). ``dry``: only the
    command line. ``log``: append the run's output there instead of the console; ``threads``: its CPU threads."""
    cmd = [sys.executable, "train.py", "-m", *job, f"hydra.sweep.dir={out}",
           "hydra.sweep.subdir=${hydra:job.override_dirname}", *overrides]  # fmt: skip
    line = " ".join(cmd[1:]).replace(f"{ROOT}/", "")
    if dry:
        return line
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if log is None:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, env=env)
        return line
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"error: `python {line}` failed (exit {done.returncode}); its output: {log}")
    return line


def run_lanes(jobs: dict[str, list[list[str]]], out: Path, overrides: list[str], lanes: int) -> dict[str, float]:
    """Each task's jobs (``{task: [overrides, ...]}``) one after another into ``out/<task>``; the tasks spread over
    ``lanes`` parallel processes (module docstring). Returns each task's wall time in seconds."""
    lanes = max(1, min(lanes, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // lanes) if lanes > 1 else None

    def one(task: str) -> float:
        t0, log = time.perf_counter(), (out / task / "demo.log" if lanes > 1 else None)
        if log is not None:
            log.unlink(missing_ok=True)
            print(f"[{task}] started ({len(jobs[task])} multirun(s), {threads} thread(s)); output: {log}", flush=True)
        for job in jobs[task]:
            run_task(job, out / task, overrides, log=log, threads=threads)
        wall = time.perf_counter() - t0
        if log is not None:
            print(f"[{task}] finished in {wall / 60:.1f} min", flush=True)
        return wall

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        walls = dict(zip(jobs, pool.map(one, jobs)))
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo" / "uvim")
    parser.add_argument("--tasks", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--lanes", type=int, default=2 if (os.cpu_count() or 1) >= 2 else 1,
                        help="tasks run in this many parallel processes (default 2 on >= 2 cores)")  # fmt: skip
    args, overrides = parser.parse_known_args()
    if args.lanes < 1:
        parser.error(f"--lanes must be >= 1, got {args.lanes}")
    start = time.perf_counter()
    walls = run_lanes({task: RUNS[task] for task in args.tasks}, args.out, overrides, args.lanes)
    total = time.perf_counter() - start

    from fsq_repro.evaluation.uvim_report import write_uvim_report

    written = write_uvim_report([args.out / task for task in args.tasks], args.out)
    report = written["report"]
    times = ", ".join(f"{task} {wall / 60:.1f}" for task, wall in walls.items())
    lanes = f"{min(args.lanes, len(args.tasks))} parallel lane(s)"
    stamp = (f"\n\n`python scripts/demo_uvim.py` — {total / 60:.1f} min on this machine ({times} min in "
             f"{lanes}; {os.cpu_count()} CPU cores), "
             "embedded data at toy scale (depth scenes, panoptic scenes, shapes in grayscale; 32 px, 4 × 4 guiding "
             "codes); the paper's columns are NYU / COCO / ImageNet at 512 px.\n\n")  # fmt: skip
    report.write_text(report.read_text().replace("\n\n", stamp, 1))
    print(report.read_text())
    print(f"report: {report}")


if __name__ == "__main__":
    main()
