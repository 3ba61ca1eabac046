"""WebDataset shards: converter round trip (same images and labels), corrupt files left out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fsq_repro.data.imagenet import ImageFolderDataset
from fsq_repro.data.webdataset import WebDatasetImages
from fsq_repro.errors import ConfigError


def test_shard_round_trip(image_folder: Path, tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "shards"
    for split in ("train", "val"):
        proc = subprocess.run(
            [
                sys.executable,
                "scripts/make_wds_shards.py",
                "--root",
                str(image_folder),
                "--split",
                split,
                "--out",
                str(out),
                "--shard-size",
                "5",
            ],
            cwd=repo_root,
            capture_output=True,
            text=True,
            check=True,
        )
    assert "3 unreadable files skipped" not in proc.stdout  # that was the train split
    assert len(list(out.glob("train-*.tar"))) == 3  # 12 readable images, 5 per shard
    folder = ImageFolderDataset(str(image_folder), "val", resolution=32)
    shards = WebDatasetImages(str(out), "val", resolution=32)
    assert shards.count == 12 and shards.num_classes == 3
    streamed = {item["index"]: item for item in shards}
    assert sorted(streamed) == list(range(12))
    for index, item in streamed.items():
        ref = folder[index]
        assert item["label"] == ref["label"]
        assert torch.allclose(item["image"], ref["image"], atol=1e-6)  # same bytes, same eval transform
    train = WebDatasetImages(str(out), "train", resolution=32)
    assert train.count == 12 and sum(1 for _ in train) == 12


def test_missing_shards_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        WebDatasetImages(None)
    with pytest.raises(ConfigError, match="no train-"):
        WebDatasetImages(str(tmp_path))
