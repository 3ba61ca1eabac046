"""The CPU trade-off study in one command (FSQ paper §5.1, Fig. 3, where it can be run on a CPU):
``train.py -m experiment=tradeoff_shapes`` (FSQ at the Table 1 level sets 2^8…2^16, VQ with entropy loss at
2^8…2^14, and 2^16 with ``--with-vq-65536``), then ``scripts/report.py`` on the multirun → ``report.md``,
``tradeoff.png`` and ``report.json``, and ``table.md``: the table of ``docs/tradeoff-shapes.md`` (usage, codes used,
the uniform ceiling, PSNR, rFD / rPrecision / rRecall, bits per token, minutes per job).

    python scripts/tradeoff_shapes.py [--out outputs/tradeoff_shapes] [--with-vq-65536] [--doc] [overrides ...]
    python scripts/tradeoff_shapes.py --table-only --out <multirun dir> [--doc]   # tables of finished jobs

``--doc`` (or its older name ``--readme``) replaces the block between ``<!-- tradeoff-table -->`` markers in
``docs/tradeoff-shapes.md``. Numbers are FD-shapes (the embedded classifier's feature space), never FID. Prints the
wall time of the whole study.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- tradeoff-table -->", "<!-- /tradeoff-table -->"
EXPERIMENT = ROOT / "configs" / "experiment" / "tradeoff_shapes.yaml"
DOC = ROOT / "docs" / "tradeoff-shapes.md"


def job_minutes(job: Path) -> float | None:
    """Wall minutes of one job: its Hydra config written → its ``results.json`` written."""
    start, end = job / ".hydra" / "config.yaml", job / "results.json"
    return (end.stat().st_mtime - start.stat().st_mtime) / 60 if start.is_file() and end.is_file() else None


def table(out: Path) -> str:
    """The table of ``docs/tradeoff-shapes.md`` from ``<out>/report/report.json`` and each job's ``results.json``."""
    rows = json.loads((out / "report" / "report.json").read_text())
    lines = ["| quantizer | \\|C\\| | val usage | codes used | uniform ceiling | PSNR (dB) | rFD-shapes | "
             "rPrecision / rRecall | bits/token (uniform) | job (min) |", "|---" * 10 + "|"]  # fmt: skip
    for row in sorted(rows, key=lambda r: int(r["run"])):
        job = out / row["run"]
        res = json.loads((job / "results.json").read_text())
        rec, comp = res.get("reconstruction", {}), res.get("compression", {})
        grid = json.loads((job / "tokens" / "meta.json").read_text())["token_grid"]
        size, tokens = row["codebook_size"], rec.get("num_images", 0) * grid[0] * grid[1]
        ceiling = 1 - (1 - 1 / size) ** tokens
        minutes = job_minutes(job)
        lines.append(
            f"| {row['quantizer']} | {size} | {row['usage']:.1%} | {round(row['usage'] * size)} | {ceiling:.1%} | "
            f"{row['psnr']:.2f} | {row['rfd']:.0f} | {rec.get('rprecision', float('nan')):.2f} / "
            f"{rec.get('rrecall', float('nan')):.2f} | {comp.get('bits_per_token', float('nan')):.2f} "
            f"({comp.get('uniform_bits_per_token', float('nan')):.2f}) | "
            f"{'–' if minutes is None else f'{minutes:.1f}'} |"
        )
    return "\n".join(lines) + "\n"


def update_doc(text: str, doc: Path = DOC) -> None:
    """Replace the block between the ``<!-- tradeoff-table -->`` markers of ``doc`` with ``text``."""
    body = doc.read_text()
    pattern = re.compile(re.escape(MARK[0]) + r"\n.*?" + re.escape(MARK[1]), re.S)
    if not pattern.search(body):
        raise SystemExit(f"error: {doc} has no {MARK[0]} … {MARK[1]} block")
    doc.write_text(pattern.sub(lambda _: f"{MARK[0]}\n{text}{MARK[1]}", body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="outputs/tradeoff_shapes", help="multirun dir; the report goes to <out>/report"
    )
    parser.add_argument("--table-only", action="store_true", help="only (re)write the report and table of <out>")
    parser.add_argument("--doc", "--readme", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    parser.add_argument("--with-vq-65536", action="store_true", help="a 10th job: VQ 2^16 (about 25 min more)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if not args.table_only:
        start = time.perf_counter()
        cmd = [sys.executable, "train.py", "-m", "experiment=tradeoff_shapes", f"hydra.sweep.dir={out}",
               *args.overrides]  # fmt: skip
        if args.with_vq_65536:
            import yaml

            study = yaml.safe_load(EXPERIMENT.read_text())["hydra"]["sweeper"]["params"]["quantizer"]
            cmd.append(f"quantizer={study},vq_65536")  # a CLI sweep override wins over the params
        subprocess.run(cmd, cwd=ROOT, check=True)
        print(f"trade-off study: {(time.perf_counter() - start) / 60:.1f} min for the multirun", flush=True)
    subprocess.run([sys.executable, "scripts/report.py", str(out), "--out", str(out / "report")], cwd=ROOT, check=True)
    text = table(out)
    (out / "report" / "table.md").write_text(text)
    print(text + f"report in {out / 'report'}")
    if args.doc:
        update_doc(text)


if __name__ == "__main__":
    main()
