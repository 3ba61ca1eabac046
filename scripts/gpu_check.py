"""`make gpu-check`: what to run first on arrival at a GPU machine (≤ 8 min on one GPU). Nothing in this project has
been run on a GPU yet; every check here is one that the CPU cannot answer.

    python scripts/gpu_check.py [--out outputs/gpu_check.md] [--timeout 240] [--only NAME ...]

Checks, each a subprocess with a timeout, so one failure never hides the others:

- ``env``: the device, its capability and memory, bf16 support, which SDPA kernels are enabled (flash / memory
  efficient), and that a fused AdamW builds and steps on it;
- ``smoke_maskgit_fsq``, ``smoke_maskgit_vq``, ``smoke_uvim_depth_fsq``: one training batch of every stage at the
  paper's model size and per-device batch in bf16 (``debug=fast`` on CUDA), on the embedded data at the paper's
  resolution (no ImageNet / NYU here), without LPIPS / Inception weights; it prints the peak CUDA memory of each
  stage and the memory plan's error against it (the plan each stage prints at its start on CUDA);
- ``bench_*``: every ratio benchmark with ``--device cuda`` (its last line, ``ratio: …``);
- ``ddp``: the MaskGIT smoke on two GPUs when two are visible.

Prints one table (check, status, seconds, the check's last output line) and writes it to ``--out``. Without a CUDA
device it exits with status 2 and one ``error:`` line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENV = r"""
import torch
from torch.backends import cuda
d = torch.cuda.get_device_properties(0)
p = torch.nn.Parameter(torch.randn(1024, 1024, device="cuda"))
opt = torch.optim.AdamW([p], lr=1e-3, fused=True)
p.grad = torch.randn_like(p)
opt.step()
torch.cuda.synchronize()
print(f"{d.name}, sm {d.major}.{d.minor}, {d.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible; "
      f"bf16 {torch.cuda.is_bf16_supported()}; SDPA flash {cuda.flash_sdp_enabled()} mem-efficient "
      f"{cuda.mem_efficient_sdp_enabled()}; fused AdamW ok; torch {torch.__version__}")
"""
# Paper-size models on the embedded data at the paper's resolution: one batch of every stage (debug=fast), bf16.
SMOKE = ["debug=fast", "trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=bf16-mixed", "data=shapes",
         "data.train.size=512", "data.val.size=256"]  # fmt: skip
MASKGIT = [
    "data.resolution=256",
    "model.stage1.perceptual_weight=0",
    "eval_tasks=[reconstruction]",
    "metrics.extractor=shapes",
    "metrics.reference_size=256",
    "metrics.num_images=64",
]  # no LPIPS / Inception
PEAK = "+callbacks.cuda_peak._target_=fsq_repro.lit.callbacks.CudaPeakMemory"


def checks(out_dir: Path, gpus: int) -> dict[str, list[str]]:
    """``{name: argv}`` of every check (``gpus`` = visible CUDA devices)."""
    py = sys.executable
    run = lambda name: f"hydra.run.dir={out_dir / name}"  # noqa: E731
    found = {"env": [py, "-c", ENV]}
    uvim = ["data=depth_scenes", "data.resolution=512", "eval_num_images=32"]
    for exp, extra in (("maskgit_fsq", MASKGIT), ("maskgit_vq", MASKGIT), ("uvim_depth_fsq", uvim)):
        found[f"smoke_{exp}"] = [py, "train.py", f"experiment={exp}", *SMOKE, *extra, PEAK, run(exp)]
    for bench in sorted((ROOT / "scripts").glob("bench_*.py")):
        if "--device" in bench.read_text():
            found[bench.stem] = [py, str(bench.relative_to(ROOT)), "--device", "cuda"]
    if gpus >= 2:
        found["ddp"] = [py, "train.py", "experiment=maskgit_fsq", *SMOKE, *MASKGIT, "trainer=ddp",
                        "trainer.devices=2", PEAK, run("ddp")]  # fmt: skip
    return found


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return (lines[-1] if lines else "").replace("|", "/")[:160]


def peak_line(text: str) -> str:
    """``peak <stage>: X GiB (plan Y, +e %)`` per stage: each ``cuda peak`` line (``CudaPeakMemory``, at a fit's end)
    paired in order with the ``memory plan`` line the same stage printed at its start (docs/gpu.md, "Memory plan")."""
    lines = [line.strip() for line in text.splitlines()]
    peaks = [line.removeprefix("cuda peak ") for line in lines if line.startswith("cuda peak ")]
    plans = [float(line.split(": ")[1].split()[0]) for line in lines if line.startswith("memory plan ")]
    out = []
    for i, peak in enumerate(peaks):
        if i < len(plans):
            measured = float(peak.split(": ")[1].split()[0])
            peak += f" (plan {plans[i]:.2f}, {100 * (plans[i] - measured) / measured:+.0f} %)"
        out.append(peak)
    return "peak " + "; ".join(out)


def table(rows: list[dict]) -> str:
    """Markdown table of ``{"check", "status", "seconds", "line"}`` rows, then one summary line."""
    out = ["| check | status | s | last line |", "|---|---|---|---|"]
    out += [f"| {r['check']} | {r['status']} | {r['seconds']:.0f} | {r['line']} |" for r in rows]
    passed = sum(r["status"] == "ok" for r in rows)
    out.append(f"\ngpu-check: {passed} of {len(rows)} checks ok")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check.md")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per check")
    parser.add_argument("--only", nargs="*", default=None, help="run only these checks")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("error: make gpu-check needs a CUDA GPU, and torch sees none on this machine", file=sys.stderr)
        return 2
    rows = []
    for name, argv in checks(args.out.parent / "gpu_check_runs", torch.cuda.device_count()).items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
            status, text = ("ok" if proc.returncode == 0 else f"exit {proc.returncode}"), proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            status, text = f"timeout {args.timeout} s", (err.stdout or b"").decode(errors="replace")
        line = peak_line(text) if status == "ok" and "cuda peak" in text else last_line(text)
        rows.append({"check": name, "status": status, "seconds": time.perf_counter() - start, "line": line})
        print(f"{name}: {status} — {line}", flush=True)
    text = table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text + f"wrote {args.out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
