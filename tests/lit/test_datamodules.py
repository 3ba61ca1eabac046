"""ImageDataModule: exact distributed evaluation, distinct training shards, every data config from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_distributed
from tests.data.conftest import make_image_folder


@pytest.mark.slow
def test_ddp_eval_sees_every_val_image_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    run_distributed(Path(__file__).parent / "ddp_data_worker.py", str(out), nproc=2)
    seen = json.loads(out.read_text())
    val = seen["val"][0] + seen["val"][1]
    assert len(val) == 1001 and sorted(val) == list(range(1001))  # no padding duplicates, nothing missing
    train0, train1 = set(seen["train"][0]), set(seen["train"][1])
    assert len(seen["train"][0]) == len(seen["train"][1]) == 32
    assert not train0 & train1  # each rank a distinct shard


def _train_cli(repo_root: Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", "stages=[data]", f"hydra.run.dir={tmp_path / 'run'}", *overrides],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_every_data_config_from_the_cli(repo_root: Path, tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "imagenet")
    shards = tmp_path / "shards"
    for split in ("train", "val"):
        subprocess.run(
            [
                sys.executable,
                "scripts/make_wds_shards.py",
                "--root",
                str(folder),
                "--split",
                split,
                "--out",
                str(shards),
                "--shard-size",
                "5",
            ],
            cwd=repo_root,
            check=True,
            capture_output=True,
        )
    cases = {
        "shapes": ["data=shapes", "data.batch_size=8"],
        "photos": ["data=photos", "data.batch_size=8"],
        "folder": ["data=folder", f"data.root={folder}", "data.batch_size=4", "data.num_workers=0"],
        "imagenet": [
            "data=imagenet_128",
            f"data.root={folder}",
            "data.num_classes=3",
            "data.batch_size=4",
            "data.num_workers=0",
            "data.persistent_workers=false",
        ],
        "imagenet_wds": [
            "data=imagenet_wds",
            f"data.root={shards}",
            "data.batch_size=4",
            "data.num_workers=0",
            "data.persistent_workers=false",
            "data.resolution=32",
        ],
    }
    for name, overrides in cases.items():
        proc = _train_cli(repo_root, tmp_path / name, *overrides)
        assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"
        assert "pixel_range" in proc.stdout and (tmp_path / name / "run" / "data_samples.png").exists(), name
        if name == "folder":
            assert "num_classes: 3" in proc.stdout


def test_missing_root_is_one_line_from_the_cli(repo_root: Path, tmp_path: Path) -> None:
    proc = _train_cli(repo_root, tmp_path, "data=imagenet")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data.root is required")
    assert "Traceback" not in proc.stderr
