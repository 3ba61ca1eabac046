"""``evaluation/reporting.py`` on hand-written run dirs: one row per run, the metric named by its feature space,
Fig. 10 only when min L_i varies, Fig. 4 only with a cfg_sweep, and a clear error for a dir without runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fsq_repro.errors import ConfigError
from fsq_repro.evaluation.reporting import collect, write_report


def fake_run(root: Path, name: str, quantizer: dict, fid: float, curve: list | None = None) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "stage1.json").write_text(json.dumps({"quantizer": quantizer}))
    results = {
        "reconstruction": {"rfd": fid / 2, "usage": 0.9, "psnr": 20.0, "metric_space": "FID"},
        "sampling": {"fd": fid, "precision": 0.8, "recall": 0.5, "is": 100.0, "cfg_scale": 0.2, "metric_space": "FID"},
        "compression": {"bits_per_token": 7.5},
    }
    if curve:
        results["cfg_sweep"] = {"curve": curve}
    (run / "results.json").write_text(json.dumps(results))


def test_report_rows_figures_and_names(tmp_path: Path) -> None:
    fake_run(tmp_path, "0", {"name": "fsq", "levels": [8, 5, 5, 5]}, 5.0)
    fake_run(tmp_path, "1", {"name": "fsq", "levels": [4, 4, 4, 4, 4]}, 6.0)
    fake_run(tmp_path, "2", {"name": "vq", "codebook_size": 1024}, 5.5)
    rows = collect([tmp_path])
    assert [(r["quantizer"], r["codebook_size"], r["min_level"]) for r in rows] == [
        ("FSQ [8, 5, 5, 5]", 1000, 5), ("FSQ [4, 4, 4, 4, 4]", 1024, 4), ("VQ 1024", 1024, None)]  # fmt: skip
    assert rows[0]["log2_codebook"] == pytest.approx(math.log(1000, 2))
    written = write_report([tmp_path], tmp_path / "report")
    text = written["report"].read_text()
    assert "| rFID | sampling FID |" in text and "| FSQ [4, 4, 4, 4, 4] | 1024 | 10 | 0.9 | 20 | 3 | 6 |" in text
    assert set(written["figures"]) == {"tradeoff", "levels"}  # no cfg_sweep in these runs

    curve = [{"cfg_scale": a, "fd": 5 - a, "precision": 0.7 + a / 10, "recall": 0.5 - a / 10} for a in (0, 0.5, 1)]
    fake_run(tmp_path / "more", "3", {"name": "fsq", "levels": [5, 5, 5]}, 9.0, curve)
    written = write_report([tmp_path / "more"], tmp_path / "report2")
    assert set(written["figures"]) == {"tradeoff", "cfg"}


def test_a_dir_without_results_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no results\.json under"):
        collect([tmp_path])
