"""The CPU trade-off study in one command (FSQ paper §5.1, Fig. 3; issue: reproduce where it can be run):
``train.py -m experiment=tradeoff_shapes`` (9 jobs: FSQ at the Table 1 level sets 2^8…2^16, VQ with entropy loss at
2^8…2^14), then ``scripts/report.py`` on the multirun → ``report.md``, ``tradeoff.png`` and ``report.json``.

    python scripts/tradeoff_shapes.py [--out outputs/tradeoff_shapes] [extra Hydra overrides ...]

Numbers are FD-shapes (the embedded classifier's feature space), never FID. Prints the wall time of the whole study.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="outputs/tradeoff_shapes", help="multirun dir; the report goes to <out>/report"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    start = time.perf_counter()
    cmd = [sys.executable, "train.py", "-m", "experiment=tradeoff_shapes", f"hydra.sweep.dir={out}", *args.overrides]
    subprocess.run(cmd, cwd=ROOT, check=True)
    minutes = (time.perf_counter() - start) / 60
    subprocess.run([sys.executable, "scripts/report.py", str(out), "--out", str(out / "report")], cwd=ROOT, check=True)
    print(f"trade-off study: {minutes:.1f} min for the multirun; report in {out / 'report'}")


if __name__ == "__main__":
    main()
