"""`make gpu-check` (scripts/gpu_check.py) on a machine without CUDA: one `error:` line and exit 2; its table code;
and every check's train.py command line composes with the configs (so the first GPU user does not meet a typo)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_without_cuda_it_exits_2_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: make gpu-check needs a CUDA GPU, and torch sees none on this machine"
    ]


def test_table_lists_every_check_and_counts_the_ok_ones() -> None:
    rows = [
        {"check": "env", "status": "ok", "seconds": 2.4, "line": "H100, sm 9.0"},
        {"check": "smoke_maskgit_fsq", "status": "exit 1", "seconds": 61.0, "line": "CUDA out of memory"},
    ]
    text = gpu_check.table(rows)
    assert (
        "| env | ok | 2 | H100, sm 9.0 |" in text and "| smoke_maskgit_fsq | exit 1 | 61 | CUDA out of memory |" in text
    )
    assert text.strip().endswith("gpu-check: 1 of 2 checks ok")
    assert gpu_check.last_line("a\r\nb | c\n\n") == "b / c"  # a table-safe last line


def test_peak_line_pairs_each_stages_plan_with_its_measured_peak() -> None:
    """The plan's error per stage, as ``make gpu-check`` reports it: (plan − measured) / measured."""
    log = ("  memory plan stage1: 11.00 GiB at 64 per device\n... training ...\ncuda peak TokenizerModule: 10.00 GiB\n"
           "  memory plan stage2: 4.50 GiB at 32 per device\ncuda peak MaskGITModule: 5.00 GiB\n")  # fmt: skip
    assert gpu_check.peak_line(log) == (
        "peak TokenizerModule: 10.00 GiB (plan 11.00, +10 %); MaskGITModule: 5.00 GiB (plan 4.50, -10 %)"
    )
    assert gpu_check.peak_line("cuda peak X: 1.00 GiB\n") == "peak X: 1.00 GiB"  # memory_check=false: no plan


def test_every_train_command_composes_with_the_configs(tmp_path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    found = gpu_check.checks(tmp_path, gpus=2)
    assert {"env", "smoke_maskgit_fsq", "smoke_maskgit_vq", "smoke_uvim_depth_fsq", "ddp"} <= set(found)
    assert {"bench_stage1_flops", "bench_stage2_flops", "bench_uvim_flops", "bench_channels_last"} <= set(found)
    for name, argv in found.items():
        if "train.py" not in argv:
            continue
        overrides = [a for a in argv[argv.index("train.py") + 1 :] if not a.startswith("hydra.")]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        assert cfg.trainer.fast_dev_run and cfg.trainer.accelerator in ("gpu", "cuda"), name
        assert cfg.data.name in ("shapes", "depth_scenes") and cfg.callbacks.cuda_peak, name
