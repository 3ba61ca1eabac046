"""`make demo`, part 2: the whole FSQ pipeline on the embedded shapes on CPU (``train.py experiment=demo``):
tokenizer (FSQ [5,5,5], 4×4 tokens) → token cache → class-conditional MaskGIT with CFG → evaluation in the shapes
classifier's feature space (FD-shapes, precision/recall, IS) and M2T compression cost. Writes
``<out>/report.md`` with the numbers and pictures and prints where it is.

    python scripts/demo_pipeline.py [--out outputs/demo/pipeline] [extra Hydra overrides ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo" / "pipeline")
    args, overrides = parser.parse_known_args()
    start = time.perf_counter()
    cmd = [sys.executable, "train.py", "experiment=demo", f"hydra.run.dir={args.out}", *overrides]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    s1, s2, res = load(args.out / "stage1.json"), load(args.out / "stage2.json"), load(args.out / "results.json")
    rec, smp, comp = res.get("reconstruction", {}), res.get("sampling", {}), res.get("compression", {})
    nan = float("nan")
    rows = [
        ("Stage I val PSNR (dB)", f"{rec.get('psnr', float('nan')):.2f}"),
        ("codebook usage (val)", f"{rec.get('usage', float('nan')):.1%} of {rec.get('codebook_size')}"),
        ("perplexity (val)", f"{rec.get('perplexity', float('nan')):.1f}"),
        ("reconstruction FD-shapes", f"{rec.get('rfd', float('nan')):.1f}"),
        (f"sampling FD-shapes (α = {smp.get('cfg_scale')})", f"{smp.get('fd', float('nan')):.1f}"),
        ("sampling class accuracy (classifier agrees with the asked class)", f"{smp.get('class_accuracy', nan):.1%}"),
        ("sampling precision / recall", f"{smp.get('precision', nan):.3f} / {smp.get('recall', nan):.3f}"),
        ("sampling IS (shapes classifier)", f"{smp.get('is', float('nan')):.2f}"),
        ("compression, bits/token (uniform)",
         f"{comp.get('bits_per_token', float('nan')):.2f} ({comp.get('uniform_bits_per_token', float('nan')):.2f})"),
        ("Stage I / Stage II steps", f"{s1.get('steps')} / {s2.get('steps')}"),
        ("Stage I / Stage II s/step", f"{s1.get('seconds_per_step')} / {s2.get('seconds_per_step')}"),
        ("wall time", f"{wall / 60:.1f} min"),
    ]  # fmt: skip
    table = Table(title="fsq_repro demo (CPU, embedded shapes; FD-shapes is not FID)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    samples = sorted((args.out / "stage2").glob("samples_step*.png"), key=lambda p: int(p.stem.split("step")[1]))
    lines = [
        "# fsq_repro demo report",
        "",
        f"`{' '.join(cmd[1:])}` — {wall / 60:.1f} min on this machine. Feature-space metrics use the shapes classifier",
        f"({rec.get('extractor')}), so they are **FD-shapes**, not FID; reference: {rec.get('reference')}.",
        "",
        "| quantity | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "## Reconstructions (top rows: inputs, bottom rows: EMA tokenizer reconstructions)",
        "",
        "![reconstructions](stage1/reconstructions.png)",
        "",
        "## Class-conditional samples (one row per class)",
        "",
        f"![samples]({samples[-1].relative_to(args.out) if samples else 'stage2/samples.png'})",
        "",
        "## Codebook usage on the validation set",
        "",
        "![usage](usage_histogram.png)",
        "",
        "Raw numbers: `stage1.json`, `stage2.json`, `results.json`.",
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
