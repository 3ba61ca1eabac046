"""Depth data for UViM: the official discretisation by hand, the embedded scenes' geometry, and the NYU loaders on
small files generated in both layouts (the official labeled .mat + splits.mat, and RGB + 16-bit PNG folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsq_repro.data.depth import DepthScenesDataset, bins_to_depth, depth_to_bins, render_depth_scene
from fsq_repro.data.loading import collate_skip_corrupt
from fsq_repro.data.nyu import EVAL_CROP, NYUDepthDataset
from fsq_repro.errors import ConfigError


def test_discretisation_by_hand_and_round_trip() -> None:
    # floor((d - 0.001) / 9.999 * 256): 0.001 -> 0, 5.0 -> floor(127.97) = 127, 9.999 -> 255, 12 -> 255, 0 -> 0
    d = torch.tensor([0.001, 5.0, 9.999, 12.0, 0.0])
    assert depth_to_bins(d).tolist() == [0, 127, 255, 255, 0]
    assert bins_to_depth(torch.tensor([0, 255])).tolist() == pytest.approx([0.001 + 0.5 * 9.999 / 256,
                                                                           0.001 + 255.5 * 9.999 / 256])  # fmt: skip
    x = torch.linspace(0.001, 9.999, 10_000)
    assert (bins_to_depth(depth_to_bins(x)) - x).abs().max() <= 9.999 / 256 / 2 + 1e-6


def test_scenes_are_deterministic_and_geometric() -> None:
    a_img, a_depth = render_depth_scene(0, "train", 5, 64)
    b_img, b_depth = render_depth_scene(0, "train", 5, 64)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_depth, b_depth)
    assert not np.array_equal(render_depth_scene(0, "val", 5, 64)[1], a_depth)
    depths = np.stack([render_depth_scene(0, "train", i, 64)[1] for i in range(20)])
    assert depths.min() > 1e-3 and depths.max() < 10.0
    # the floor recedes: along the bottom rows, the median depth grows towards the horizon
    bottom = np.median(depths[:, -1, :]), np.median(depths[:, -8, :]), np.median(depths[:, -16, :])
    assert bottom[0] < bottom[1] < bottom[2]
    item = DepthScenesDataset("val", 4, 64)[1]
    assert item["image"].shape == (3, 64, 64) and item["depth"].shape == item["depth_gt"].shape == (1, 64, 64)
    assert -1 <= item["image"].min() and item["image"].max() <= 1


def test_scene_cache_round_trips_depth_to_the_millimetre(tmp_path: Path) -> None:
    cached = DepthScenesDataset("val", 3, 32, cache_dir=str(tmp_path))
    fresh = DepthScenesDataset("val", 3, 32)
    for i in range(3):
        assert torch.equal(cached[i]["image"], fresh[i]["image"])
        assert (cached[i]["depth"] - fresh[i]["depth"]).abs().max() <= 5e-4


def test_augmentation_flips_and_crops_image_and_depth_together() -> None:
    ds = DepthScenesDataset("train", 2, 32, augment=True)
    torch.manual_seed(0)
    for _ in range(5):
        item = ds[0]
        assert item["image"].shape == (3, 32, 32) and item["depth"].shape == (1, 32, 32) and "depth_gt" not in item
        raw = set(np.round(render_depth_scene(0, "train", 0, 32)[1].ravel(), 5).tolist())
        assert set(np.round(item["depth"].numpy().ravel(), 5).tolist()) <= raw  # nearest: no new depth values


def _frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n 480x640 frames: image = (row mod 256, col mod 256, frame), depth = 1 + row/100 + col/1000 + frame."""
    rows, cols = np.mgrid[0:480, 0:640]
    images = np.stack([np.stack([rows % 256, cols % 256, np.full_like(rows, f)], -1) for f in range(n)])
    images = images.astype(np.uint8)
    depths = np.stack([1 + rows / 100 + cols / 1000 + f for f in range(n)]).astype(np.float32)
    return images, depths


def test_labeled_mat_layout_and_official_split(tmp_path: Path) -> None:
    import h5py
    from scipy.io import savemat

    images, depths = _frames(3)
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:  # MATLAB v7.3: column-major, seen transposed
        f["images"] = images.transpose(0, 3, 2, 1)  # (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1)  # (N, W, H)
    with pytest.raises(ConfigError, match="splits_file"):
        NYUDepthDataset(str(tmp_path), "train")
    savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    train = NYUDepthDataset(str(tmp_path), "train", resolution=32)
    test = NYUDepthDataset(str(tmp_path), "test", resolution=32)
    assert len(train) == 2 and len(test) == 1 and train.layout == "mat"
    item = test[0]  # frame 2 (1-based) = index 1, eval crop rows 54:480, cols 41:601
    top, left, h, w = EVAL_CROP
    assert torch.allclose(item["depth_gt"][0], torch.from_numpy(depths[1, top : top + h, left : left + w]))
    assert item["depth"].shape == (1, 32, 32) and item["image"].shape == (3, 32, 32)
    raw = NYUDepthDataset(str(tmp_path), "train", resolution=480, augment=False, eval_crop=False)
    assert np.allclose(raw[1]["depth_gt"][0].numpy(), depths[2])  # trainNdxs 3 -> frame index 2, orientation


def test_png_folder_layout_pairs_and_corrupt_files(tmp_path: Path) -> None:
    images, depths = _frames(2)
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "scene_a").mkdir(parents=True)
    for f in range(2):
        mm = np.round(depths[f] * 1000).astype(np.uint16)
        Image.fromarray(images[f]).save(tmp_path / "test" / f"{f:05d}_colors.png")
        Image.fromarray(mm).save(tmp_path / "test" / f"{f:05d}_depth.png")
        Image.fromarray(images[f]).save(tmp_path / "train" / "scene_a" / f"{f}.jpg", quality=95)
        Image.fromarray(mm).save(tmp_path / "train" / "scene_a" / f"{f}.png")
    test = NYUDepthDataset(str(tmp_path), "test", resolution=32)
    assert test.layout == "folder" and len(test) == 2
    top, left, h, w = EVAL_CROP
    expected = np.round(depths[1] * 1000).astype(np.uint16)[top : top + h, left : left + w] / 1000
    assert np.allclose(test[1]["depth_gt"][0].numpy(), expected, atol=1e-6)
    assert len(NYUDepthDataset(str(tmp_path), "train", resolution=32, augment=True)) == 2
    (tmp_path / "test" / "00001_colors.png").write_bytes(b"broken")
    batch = collate_skip_corrupt([test[0], test[1]])
    assert int(batch["num_corrupt"]) == 1 and batch["image"].shape[0] == 1
    with pytest.raises(ConfigError, match=r"data\.root"):
        NYUDepthDataset(str(tmp_path / "nowhere"), "test")
    with pytest.raises(ConfigError, match="no RGB"):
        NYUDepthDataset(str(tmp_path / "train"), "test")
