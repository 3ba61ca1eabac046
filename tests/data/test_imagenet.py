"""ImageFolder / ImageNet: sorted-class labels, transforms, corrupt files skipped and counted, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fsq_repro.data.imagenet import ImageFolderDataset
from fsq_repro.data.loading import collate_skip_corrupt
from fsq_repro.errors import ConfigError


def test_labels_follow_sorted_class_folders(image_folder: Path) -> None:
    ds = ImageFolderDataset(str(image_folder), "val", resolution=32)
    assert ds.class_names == ["n01", "n02", "n03"]
    assert [label for _, label in ds.samples] == [0] * 4 + [1] * 4 + [2] * 4
    item = ds[5]
    assert item["image"].shape == (3, 32, 32) and item["label"] == 1
    assert -1.0 <= item["image"].min() <= item["image"].max() <= 1.0


def test_eval_transform_is_deterministic_train_is_random(image_folder: Path) -> None:
    val = ImageFolderDataset(str(image_folder), "val", resolution=24)
    assert torch.equal(val[9]["image"], val[9]["image"])
    train = ImageFolderDataset(str(image_folder), "train", resolution=24)
    idx = next(i for i, (p, _) in enumerate(train.samples) if p.endswith("img_1.JPEG") and "n03" in p)
    draws = {train[idx]["image"].sum().item() for _ in range(12)}
    assert len(draws) > 1  # random crop / flip


def test_corrupt_files_are_skipped_and_counted(image_folder: Path, caplog) -> None:
    ds = ImageFolderDataset(str(image_folder), "train", resolution=32)
    assert len(ds) == 12 + 3
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_skip_corrupt)
    seen, corrupt = 0, 0
    with caplog.at_level("WARNING"):
        for batch in loader:
            seen += batch["image"].shape[0]
            corrupt += int(batch["num_corrupt"])
    assert (seen, corrupt) == (12, 3)
    assert "skipping unreadable image" in caplog.text and "truncated.JPEG" in caplog.text


def test_all_corrupt_batch_is_empty_not_a_crash(image_folder: Path) -> None:
    ds = ImageFolderDataset(str(image_folder), "train", resolution=32)
    bad = [i for i, (p, _) in enumerate(ds.samples) if "img_" not in p]
    batch = collate_skip_corrupt([ds[i] for i in bad])
    assert batch["image"].numel() == 0 and int(batch["num_corrupt"]) == 3


def test_missing_or_empty_root_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.root is required.*root/\{train,val\}"):
        ImageFolderDataset(None)
    with pytest.raises(ConfigError, match="not a directory"):
        ImageFolderDataset(str(tmp_path / "nope"))
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no images"):
        ImageFolderDataset(str(tmp_path / "empty"))


def test_class_count_mismatch_is_named(image_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.num_classes=1000 but .* has 3 class folders"):
        ImageFolderDataset(str(image_folder), "train", expected_num_classes=1000)


def test_plain_folder_without_splits_is_unconditional_with_holdout(tmp_path: Path, image_folder: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, src in enumerate(sorted((image_folder / "val" / "n01").glob("*.JPEG")) * 10):
        (flat / f"{i:03d}.jpg").write_bytes(src.read_bytes())
    train = ImageFolderDataset(str(flat), "train", resolution=16, holdout_every=10)
    val = ImageFolderDataset(str(flat), "val", resolution=16, holdout_every=10)
    assert train.num_classes == 1 and (len(train), len(val)) == (36, 4)
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
