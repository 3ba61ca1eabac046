"""Collect a sweep's runs into the FSQ paper's Table 1 / Fig. 3 / Fig. 4 / Fig. 10 (``evaluation/reporting.py``).

    python scripts/report.py outputs/multirun/tradeoff_fsq/<time> outputs/multirun/tradeoff_vq/<time>
    python scripts/report.py outputs/multirun/demo/<time> --out report/ --wandb
    python scripts/report.py outputs/multirun/uvim_depth_shapes/<time>     # UViM: Table 2 depth rows, Fig. 6

Writes ``report.md`` (Markdown table + figures), ``report.json`` and PNGs into ``--out`` (default: ``<first
dir>/report``). ``--wandb`` also logs the table and figures to W&B (offline unless ``--wandb-online``), in the
group named after the first directory, so they sit next to the sweep's runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fsq_repro.evaluation.reporting import COLUMNS, write_report
from fsq_repro.evaluation.uvim_report import find_uvim_runs, write_uvim_report
from fsq_repro.pipeline.entry import one_line_errors


def log_to_wandb(written: dict, group: str, online: bool, project: str) -> None:
    import wandb

    run = wandb.init(project=project, group=group, job_type="report", name=f"{group}-report",
                     mode="online" if online else "offline", dir=str(written["report"].parent))  # fmt: skip
    keys = [k for k, _ in COLUMNS]
    table = wandb.Table(columns=keys, data=[[row.get(k) for k in keys] for row in written["rows"]])
    run.log({"report/table": table, **{f"report/{k}": wandb.Image(str(p)) for k, p in written["figures"].items()}})
    run.finish()


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="multirun dirs (or single run dirs) holding results.json files")
    parser.add_argument("--out", default=None, help="output dir (default: <first dir>/report)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and figures to W&B")
    parser.add_argument("--wandb-online", action="store_true", help="sync to the W&B server (needs a key)")
    parser.add_argument("--wandb-project", default="fsq_repro")
    args = parser.parse_args()
    out = Path(args.out or Path(args.dirs[0]) / "report")
    if find_uvim_runs(args.dirs):  # UViM runs (uvim_eval.json): FSQ paper Table 2 depth rows + Fig. 6 grid
        uvim = write_uvim_report(args.dirs, out)
        print(uvim["report"].read_text())
        if not any(next(Path(d).rglob("results.json"), None) for d in args.dirs):
            return
    written = write_report(args.dirs, out)
    print(written["report"].read_text())
    print(f"\nwrote {written['report']} and {', '.join(str(p) for p in written['figures'].values())}")
    if args.wandb:
        sweep = Path(args.dirs[0]).resolve()  # outputs/multirun/<experiment>/<time>: the training runs' group
        log_to_wandb(written, f"{sweep.parent.name}-{sweep.name}", args.wandb_online, args.wandb_project)


if __name__ == "__main__":
    main()
