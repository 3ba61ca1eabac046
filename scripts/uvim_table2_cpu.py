"""A CPU Table 2 (FSQ paper §4.4): every UViM task on its embedded stand-in, FSQ vs VQ with splitting, plus VQ
without splitting (depth) and FSQ without context (panoptic), over several seeds, mean ± std; then the table and
one line per Table 2 finding (``fsq_repro/evaluation/uvim_report.py: findings``) into ``docs/uvim_table2_cpu.md``.

    python scripts/uvim_table2_cpu.py [--seeds 0 1 2] [--out outputs/uvim_table2_cpu] [--doc docs/uvim_table2_cpu.md]
                                      [--tasks depth panoptic colorization] [--doc-only [--minutes M]]
                                      [--lanes N] [Hydra overrides ...]

Each job is the ``make demo-uvim`` job of its task (``scripts/demo_uvim.py: RUNS`` plus the ablations), with
``seed=`` swept: the seed draws the initialisation, the data order and the code dropout of both stages (the paper's
± is over 3 Stage II runs on one Stage I; here each seed retrains both, which is the larger spread). Finished jobs
are skipped on a re-run (each stage skips when its artifact exists). The tasks run in ``--lanes`` parallel processes
as in the demo (``demo_uvim.py: run_lanes``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from demo_uvim import ROOT, RUNS, run_lanes, run_task  # the scripts/ folder is on sys.path when a script runs

ABLATIONS = {  # Table 2's ablation rows, added to the demo's jobs
    # the demo runs VQ without splitting already; FSQ without code dropout is this project's ablation (docs/uvim-cpu.md)
    "depth": ["experiment=uvim_demo", "quantizer=fsq_125", "model.stage1.autoencoder.code_dropout=none"],
    "panoptic": ["experiment=uvim_demo_panoptic_noctx"],  # FSQ without context
    "colorization": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "uvim_table2_cpu")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "uvim_table2_cpu.md")
    parser.add_argument("--tasks", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--doc-only", action="store_true", help="only rewrite the doc from the finished jobs")
    parser.add_argument("--minutes", type=float, default=None, help="with --doc-only: the wall time to state")
    parser.add_argument("--lanes", type=int, default=2 if (os.cpu_count() or 1) >= 2 else 1,
                        help="tasks run in this many parallel processes (default 2 on >= 2 cores)")  # fmt: skip
    args, overrides = parser.parse_known_args()
    if args.lanes < 1:
        parser.error(f"--lanes must be >= 1, got {args.lanes}")
    seeds = "seed=" + ",".join(map(str, args.seeds))
    jobs = {task: RUNS[task] + ([ABLATIONS[task]] if ABLATIONS[task] else []) for task in args.tasks}
    commands = [run_task(job, args.out / task, [seeds, *overrides], dry=True) for task in jobs for job in jobs[task]]
    dirs = [args.out / task for task in args.tasks]
    start = time.perf_counter()
    if not args.doc_only:
        run_lanes(jobs, args.out, [seeds, *overrides], args.lanes)
    minutes = args.minutes if args.doc_only else (time.perf_counter() - start) / 60

    from fsq_repro.evaluation.uvim_report import findings, table2_markdown, write_uvim_report

    rows = write_uvim_report(dirs, args.out)["rows"]
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    text = [
        "# UViM Table 2 on CPU (FSQ paper §4.4): embedded stand-ins, several seeds",
        "",
        f"`python scripts/uvim_table2_cpu.py --seeds {' '.join(map(str, args.seeds))}` — "
        f"{'?' if minutes is None else f'{minutes:.0f}'} min on this machine ({len(args.seeds)} seeds, "
        f"{min(args.lanes, len(args.tasks))} parallel lane(s); the same "
        "jobs as `make demo-uvim`, 32 px, 4 × 4 guiding codes). "
        "Metric: mean ± std over seeds; oracle, the two baselines and usage: means. The paper's columns are NYU / "
        "COCO / ImageNet at 512 px: compare the pattern, not the values.",
        "",
        table2_markdown(rows),
        "",
        "## Which of Table 2's findings reproduce",
        "",
        *[f"- {line}" for line in findings(rows)],
        "",
        "Commands run:",
        "",
        *[f"    python {c}" for c in commands],
    ]
    args.doc.write_text("\n".join(text) + "\n")
    print("\n".join(text))
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
