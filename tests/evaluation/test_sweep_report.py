"""A Hydra multirun of the demo over two quantizers (FSQ 125 codes, VQ 256 codes) with W&B offline, then
``scripts/report.py``: the report table has one row per run with the metric named by its
space (FD-shapes, never FID), the Fig. 3 and Fig. 4 plots exist, and every W&B run of the sweep (both pipelines'
stages and the report) is in one group, with the metric keys the dashboards need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_ok, run_cli
from tests.lit.wandb_records import summary

TINY = ["experiment=demo", "data.train.size=64", "data.val.size=20", "data.batch_size=16", "trainer.max_steps=3",
        "trainer.log_every_n_steps=1", "model.stage2.batch_size=16", "model.stage2.num_sample_images=2",
        "metrics.reference_size=64", "metrics.num_per_class=2", "metrics.is_splits=2", "metrics.batch_size=20",
        "eval_tasks=[reconstruction,sampling,cfg_sweep,compression]", "cfg_scales=[0,1]"]  # fmt: skip


@pytest.mark.slow
def test_multirun_sweep_report_and_wandb_group(tmp_path: Path, shapes_cache_dir: Path) -> None:
    sweep = tmp_path / "multirun" / "demo" / "sweep1"
    assert_ok(run_cli("train.py", tmp_path / "unused", "hydra.mode=MULTIRUN", *TINY, "quantizer=fsq_125,vq_256",
                      "logger=wandb", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={shapes_cache_dir}"))  # fmt: skip
    runs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    assert [p.name for p in runs] == ["0", "1"]

    proc = subprocess.run([sys.executable, "scripts/report.py", str(sweep), "--wandb"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (sweep / "report" / "report.md").read_text()
    assert "| rFD-shapes | sampling FD-shapes |" in report and "FID |" not in report
    assert "| FSQ [5, 5, 5] | 125 |" in report and "| VQ 256 | 256 |" in report
    rows = json.loads((sweep / "report" / "report.json").read_text())
    assert [r["codebook_size"] for r in rows] == [125, 256] and all(r["fd"] > 0 for r in rows)
    assert all(len(r["curve"]) == 2 for r in rows)
    for png in ("tradeoff.png", "cfg_sweep.png"):
        assert (sweep / "report" / png).stat().st_size > 10_000

    offline = sorted(sweep.rglob("run-*.wandb"))
    infos = [summary(p) for p in offline]
    assert {i["group"] for i in infos} == {"demo-sweep1"}  # one dashboard for the whole sweep
    jobs = sorted(i["job_type"] for i in infos)
    assert jobs == ["eval", "eval", "report", "stage1", "stage1", "stage2", "stage2"]
    stage1 = next(i for i in infos if i["job_type"] == "stage1")
    assert {"train/total", "train/l2", "train/psnr", "val/psnr", "val/usage"} <= stage1["keys"]
    assert {"quantizer", "model", "data"} <= stage1["config_keys"] and "multirun" in stage1["tags"]
    stage2 = next(i for i in infos if i["job_type"] == "stage2")
    assert {"train/loss", "train/masked_accuracy", "val/loss"} <= stage2["keys"]
    evaluation = next(i for i in infos if i["job_type"] == "eval")
    assert {"eval/reconstruction/rfd", "eval/sampling/fd", "eval/compression/bits_per_token",
            "eval/cfg_sweep/fd", "eval/usage_histogram/_type"} <= evaluation["keys"]  # fmt: skip
