"""Depth data for UViM: the official discretisation by hand, the training transform against TF's crop sampler and
a pixel-coordinate encoding, the embedded scenes against their camera geometry, the NYU loaders on small files
generated in both layouts (the official labeled .mat + splits.mat, and RGB + 16-bit PNG folders), and the two data
configs through ``hydra.utils.instantiate``."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from fsq_repro.data.loading import collate_skip_corrupt
from fsq_repro.data.transforms import inception_box
from fsq_repro.errors import ConfigError
from fsq_repro.tasks.depth.labels import bins_to_depth, depth_to_bins, make_item
from fsq_repro.tasks.depth.nyu import EVAL_CROP, NYUDepthDataset
from fsq_repro.tasks.depth.scenes import SPLITS, DepthScenesDataset, render_depth_scene, scene_camera

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "data"


# --- discretisation and transforms ---------------------------------------------------------------------------
def test_discretisation_by_hand_round_trip_and_clipping() -> None:
    # floor((d − 0.001) / 9.999 · 256): 0.001 → 0, 0.05 → floor(1.2545) = 1, 5 → floor(127.97) = 127,
    # 9.999 → floor(255.97) = 255; outside the range: −1, 0 → 0 and 10, 12 → 255
    d = torch.tensor([0.001, 0.05, 5.0, 9.999, -1.0, 0.0, 10.0, 12.0])
    bins = depth_to_bins(d)
    assert bins.dtype == torch.int64 and bins.tolist() == [0, 1, 127, 255, 0, 0, 255, 255]
    centres = bins_to_depth(torch.tensor([0, 127, 255]))
    assert centres.dtype == torch.float32
    assert centres.tolist() == pytest.approx([0.001 + 0.5 * 9.999 / 256, 0.001 + 127.5 * 9.999 / 256,
                                              0.001 + 255.5 * 9.999 / 256])  # fmt: skip
    x = torch.linspace(0.001, 9.999, 10_000)
    assert (bins_to_depth(depth_to_bins(x)) - x).abs().max() <= 9.999 / 256 / 2 + 1e-5
    assert depth_to_bins(torch.tensor([0.5]), num_bins=4, min_depth=0.0, max_depth=1.0).item() == 2


def test_inception_box_follows_tf_sample_distorted_bounding_box() -> None:
    g = torch.Generator().manual_seed(0)
    H, W = 48, 64
    areas = []
    for _ in range(2000):
        top, left, h, w = inception_box(H, W, generator=g)
        assert 0.05 * H * W <= h * w <= H * W and 0 <= top and 0 <= left
        assert top + h <= H and left + w <= W and (top + h < H or h == H) and (left + w < W or w == W)  # [0, H−h)
        assert 0.75 - 0.5 / h <= w / h <= 1.33 + 0.5 / h  # w = round(h · ratio)
        areas.append(h * w / (H * W))
    # TF draws the ratio uniformly, then the height uniformly among the admissible integers: enumerate that law
    expected = []
    for ratio in np.linspace(0.75, 1.33, 581):
        h_min = round(math.sqrt(0.05 * H * W / ratio))
        h_max = min(H, round(math.sqrt(H * W / ratio)), int((W + 0.5) / ratio))
        hs = np.arange(min(h_min, h_max), h_max + 1)
        expected.append(np.mean(hs * np.round(hs * ratio)) / (H * W))
    assert abs(np.mean(areas) - np.mean(expected)) < 0.02  # ≈ 0.35 here; a uniform-area crop would average 0.525
    assert inception_box(40, 40, area=(0.9, 1.0), aspect=(3.0, 4.0), generator=g) == (0, 0, 40, 40)  # fallback


def _coordinate_frame(H: int = 48, W: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Image = (column ramp, row ramp, 0) in [−1, 1]; depth = row · W + col + 1 (a unique id per pixel)."""
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                                indexing="ij")  # fmt: skip
    image = torch.stack([cols / (W - 1) * 2 - 1, rows / (H - 1) * 2 - 1, torch.zeros(H, W)])
    return image, (rows * W + cols + 1)[None]


def test_augmentation_flips_and_crops_image_and_depth_together() -> None:
    H, W, S = 48, 64, 16
    image, depth = _coordinate_frame(H, W)
    g = torch.Generator().manual_seed(1)
    flips, boxes = set(), set()
    for _ in range(30):
        item = make_item(image, depth, 3, S, augment=True, generator=g)
        assert set(item) == {"image", "depth", "label", "index"} and item["label"] == 0 and item["index"] == 3
        assert item["image"].shape == (3, S, S) and item["depth"].shape == (1, S, S)
        ids = item["depth"][0] - 1
        assert torch.equal(ids, ids.round()) and ids.min() >= 0 and ids.max() < H * W  # nearest: source pixels only
        row, col = ids // W, ids % W
        row_from_image = (item["image"][1] + 1) / 2 * (H - 1)
        col_from_image = (item["image"][0] + 1) / 2 * (W - 1)
        scale_r, scale_c = (row.max() - row.min() + 1) / S, (col.max() - col.min() + 1) / S
        assert (row_from_image - row).abs().max() <= scale_r + 1  # image and depth show the same window
        assert (col_from_image - col).abs().max() <= scale_c + 1  # … the same way round
        flips.add(bool(col[0, 0] > col[0, -1]))
        boxes.add((int(row.min()), int(col.min()), int(row.max()), int(col.max())))
    assert flips == {True, False} and len(boxes) > 20


def test_eval_transform_crops_and_keeps_native_depth_gt() -> None:
    image, depth = _coordinate_frame(48, 64)
    item = make_item(image, depth, 0, 16, augment=False, crop=(5, 7, 20, 30))
    assert torch.equal(item["depth_gt"], depth[:, 5:25, 7:37])
    assert item["depth"].shape == (1, 16, 16) and set(item["depth"].unique().tolist()) <= set(depth.flatten().tolist())
    full = make_item(image, depth, 0, 48, augment=False)
    assert full["depth_gt"].shape == (1, 48, 64) and full["depth"].shape == (1, 48, 48)


# --- the embedded scenes -------------------------------------------------------------------------------------
def test_scenes_are_deterministic_and_match_the_camera_geometry() -> None:
    a_img, a_depth = render_depth_scene(0, "train", 5, 64)
    b_img, b_depth = render_depth_scene(0, "train", 5, 64)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_depth, b_depth)
    assert a_img.dtype == np.uint8 and a_depth.dtype == np.float32 and a_img.shape == (64, 64, 3)
    assert not np.array_equal(render_depth_scene(0, "val", 5, 64)[1], a_depth)
    assert not np.array_equal(render_depth_scene(1, "train", 5, 64)[1], a_depth)
    for index in range(12):
        r = 48
        _, depth = render_depth_scene(0, "train", index, r)
        f, y_h, cam_h, wall = scene_camera(np.random.default_rng([0, SPLITS["train"], index]), r)
        y = np.arange(r)[:, None] + 0.5
        with np.errstate(divide="ignore"):
            room = np.where(y > y_h, np.minimum(f * cam_h / (y - y_h), wall), wall) * np.ones((1, r))
        assert 1e-3 < depth.min() and depth.max() <= 9.5
        assert np.all(depth <= room + 1e-4)  # objects only ever occlude (z-buffer)
        visible = np.isclose(depth, room, rtol=0, atol=1e-4)
        assert visible.mean() > 0.5 and (~visible).any()  # the room is mostly visible, and at least one object
        assert np.isclose(depth[visible & (room < wall - 1e-3)], (f * cam_h / (y - y_h) * np.ones((1, r)))[
            visible & (room < wall - 1e-3)], atol=1e-4).all()  # fmt: skip


def test_fixed_camera_image_fixes_metric_depth_and_random_camera_keeps_the_v2_scenes() -> None:
    # fixed camera (f = 0.95 R, horizon 0.4 R, h = 1.5 m): every visible floor pixel has the same depth in every
    # scene, f·h / (y − y_h) by hand, and the wall depth D is the closed form of the first floor row y_w below it:
    # the centre y_w of the first floor row below it is nearer than D and the row above is not,
    # D ∈ (f·h / (y_w − y_h), f·h / (y_w − 1 − y_h)], so an image that shows the wall's foot fixes D
    r, (f, y_h, cam_h) = 32, (0.95 * 32, 0.4 * 32, 1.5)
    y = np.arange(r) + 0.5
    floor = f * cam_h / np.maximum(y - y_h, 1e-9)
    feet, shares = [], []
    for index in range(40):
        _, depth = render_depth_scene(0, "train", index, r)
        assert scene_camera(np.random.default_rng([0, SPLITS["train"], index]), r)[:3] == (f, y_h, cam_h)
        wall = scene_camera(np.random.default_rng([0, SPLITS["train"], index]), r)[3]
        assert 3.0 <= wall <= 9.5
        rows = np.nonzero(floor < wall)[0]
        on_floor = np.isclose(depth[rows], floor[rows, None], atol=1e-4)  # floor pixels not hidden by objects
        assert np.all(on_floor | (depth[rows] < floor[rows, None]))  # the rest is nearer: objects (z-buffer)
        shares.append(on_floor.mean())
        foot = rows[0]  # the first row whose floor is nearer than the wall
        assert f * cam_h / (y[foot] - y_h) < wall <= f * cam_h / (y[foot] - 1 - y_h) + 1e-9
        feet.append(foot)
    assert np.mean(shares) > 0.5  # the floor is mostly visible
    assert max(feet) - min(feet) >= 7  # D uniform in 1 / D: the foot row moves over the ~10 rows, not 3
    # the random camera draws per-scene f, horizon, height: the v2 scenes, pixel for pixel
    for index in range(5):
        rng = np.random.default_rng([0, SPLITS["val"], index])
        f2, y2, h2, d2 = (
            rng.uniform(0.8, 1.1) * r,
            rng.uniform(0.3, 0.5) * r,
            rng.uniform(1.2, 1.8),
            rng.uniform(6, 9.5),
        )
        assert scene_camera(np.random.default_rng([0, SPLITS["val"], index]), r, "random") == (f2, y2, h2, d2)
    random_depths = np.stack([render_depth_scene(0, "val", i, r, "random")[1] for i in range(64)])
    assert random_depths.max() <= 9.5 and np.percentile(random_depths, 99) > 6.0
    with pytest.raises(ValueError, match="camera must be one of"):
        DepthScenesDataset("val", 2, 16, camera="moving")


def test_min_crop_area_one_is_flip_only() -> None:
    image, depth = _coordinate_frame(16, 16)
    g = torch.Generator().manual_seed(0)
    flips = set()
    for _ in range(12):
        item = make_item(image, depth, 0, 16, augment=True, generator=g, min_crop_area=1.0)
        flipped = torch.equal(item["depth"], depth.flip(-1))
        assert flipped or torch.equal(item["depth"], depth)  # the whole frame, never a crop
        flips.add(flipped)
    assert flips == {True, False}
    with pytest.raises(ValueError, match="min_crop_area"):
        DepthScenesDataset("train", 2, 16, min_crop_area=0.0)


def test_scene_dataset_items_cache_and_resolutions(tmp_path: Path) -> None:
    ds = DepthScenesDataset("val", 3, 32)
    item = ds[1]
    assert set(item) == {"image", "depth", "depth_gt", "label", "index"} and item["label"] == 0
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1 <= item["image"].min() and item["image"].max() <= 1
    assert torch.equal(item["depth_gt"], item["depth"]) and torch.equal(
        item["depth"][0], torch.from_numpy(render_depth_scene(0, "val", 1, 32)[1]))  # fmt: skip
    cached = DepthScenesDataset("val", 3, 32, cache_dir=str(tmp_path))
    assert list(tmp_path.glob("*.npy")) and cached.fingerprint() == ds.fingerprint()
    for i in range(3):
        assert all(torch.equal(cached[i][k], ds[i][k]) for k in ("image", "depth"))  # bit-identical
    assert DepthScenesDataset("train", 1, 16)[0]["depth"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="resolution"):
        DepthScenesDataset("train", 1, 8)
    batch = collate_skip_corrupt([ds[0], None, ds[2]])
    assert int(batch["num_corrupt"]) == 1 and batch["depth_gt"].shape == (2, 1, 32, 32)


# --- NYU Depth v2 ----------------------------------------------------------------------------------------------
def _frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n 480x640 frames: image = (row ramp, column ramp, frame), depth = 1 + row/100 + col/1000 + frame."""
    rows, cols = np.mgrid[0:480, 0:640]
    images = np.stack([np.stack([rows * 255 // 479, cols * 255 // 639, np.full_like(rows, f)], -1) for f in range(n)])
    depths = np.stack([1 + rows / 100 + cols / 1000 + f for f in range(n)]).astype(np.float32)
    return images.astype(np.uint8), depths


def _labeled_mat(path: Path, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    images, depths = _frames(n)
    with h5py.File(path, "w") as f:  # MATLAB v7.3 is column-major: h5py sees every array transposed
        f["images"] = images.transpose(0, 3, 2, 1)  # (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1)  # (N, W, H)
    return images, depths


def test_labeled_mat_layout_orientation_official_split_and_eval_crop(tmp_path: Path) -> None:
    from scipy.io import savemat

    images, depths = _labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat")
    with pytest.raises(ConfigError, match="splits_file"):
        NYUDepthDataset(str(tmp_path), "train")
    savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    train = NYUDepthDataset(str(tmp_path), "train", resolution=32)
    test = NYUDepthDataset(str(tmp_path), "test", resolution=32)
    assert train.layout == "mat" and len(train) == 2 and len(test) == 1
    for ds, frames in ((train, (0, 2)), (test, (1,))):  # 1-based MATLAB indices → frames
        for i, frame in enumerate(frames):
            image, depth = ds.read(i)
            assert np.array_equal(image, images[frame]) and np.array_equal(depth, depths[frame])  # orientation
    item = test[0]
    top, left, h, w = EVAL_CROP
    assert (top, left, top + h, left + w) == (54, 41, 480, 601)
    assert torch.equal(item["depth_gt"][0], torch.from_numpy(depths[1, 54:480, 41:601]))
    assert item["depth"].shape == (1, 32, 32) and item["image"].shape == (3, 32, 32)
    assert torch.allclose(item["image"][2], torch.full((32, 32), 1 / 127.5 - 1), atol=1e-5)  # frame id channel
    assert (item["image"][0].diff(dim=0) > 0).all() and (item["image"][1].diff(dim=1) > 0).all()  # rows ↓, cols →
    assert (item["depth"][0].diff(dim=0) > 0).all() and (item["depth"][0].diff(dim=1) > 0).all()
    assert "depth_gt" not in NYUDepthDataset(str(tmp_path), "train", resolution=32, augment=True)[0]
    # a splits file elsewhere; the dataset pickles without its h5py handle (DataLoader workers)
    (tmp_path / "splits.mat").rename(tmp_path / "elsewhere.mat")
    moved = NYUDepthDataset(str(tmp_path / "nyu_depth_v2_labeled.mat"), "test", 32,
                            splits_file=str(tmp_path / "elsewhere.mat"))  # fmt: skip
    copy = pickle.loads(pickle.dumps(moved))
    assert torch.equal(copy[0]["depth_gt"], item["depth_gt"])


def _save_pair(rgb: Path, depth_png: Path, image: np.ndarray, depth_m: np.ndarray) -> None:
    rgb.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(rgb, quality=95)
    Image.fromarray(np.round(depth_m * 1000).astype(np.uint16)).save(depth_png)


def test_png_folder_layout_pairing_values_and_corrupt_files(tmp_path: Path) -> None:
    images, depths = _frames(2)
    test_dir, train_dir = tmp_path / "test", tmp_path / "train"
    _save_pair(test_dir / "00000_colors.png", test_dir / "00000_depth.png", images[0], depths[0])
    _save_pair(test_dir / "00001_colors.png", test_dir / "00001_depth.png", images[1], depths[1])
    small = (images[0][:60, :80], depths[0][:60, :80])
    _save_pair(train_dir / "b" / "7.jpg", train_dir / "b" / "7.png", *small)  # DenseDepth train
    _save_pair(train_dir / "a" / "rgb_00001.jpg", train_dir / "a" / "sync_depth_00001.png", *small)  # BTS
    _save_pair(train_dir / "a" / "rgb_00002.png", train_dir / "a" / "depth_00002.png", *small)
    _save_pair(train_dir / "c" / "x_rgb.png", train_dir / "c" / "x_depth.png", *small)
    Image.fromarray(small[0]).save(train_dir / "c" / "lonely.png")  # no partner: ignored

    train = NYUDepthDataset(str(tmp_path), "train", resolution=16, augment=True)
    assert [p[0].relative_to(train_dir).as_posix() for p in train.pairs] == [
        "a/rgb_00001.jpg", "a/rgb_00002.png", "b/7.jpg", "c/x_rgb.png"]  # fmt: skip
    assert train[1]["depth"].shape == (1, 16, 16)
    image, depth = train.read(1)
    assert np.array_equal(image, small[0]) and np.array_equal(depth, np.round(small[1] * 1000).astype(np.float32)
                                                              * np.float32(1e-3))  # fmt: skip
    assert train[3]["image"].shape == (3, 16, 16)

    test = NYUDepthDataset(str(tmp_path), "test", resolution=32)
    assert test.layout == "folder" and len(test) == 2
    mm = np.round(depths[1] * 1000).astype(np.uint16)
    assert np.array_equal(test[1]["depth_gt"][0].numpy(), mm[54:480, 41:601].astype(np.float32) * np.float32(1e-3))
    assert np.array_equal(test.read(1)[0], images[1])
    (test_dir / "00001_colors.png").write_bytes(b"broken")
    assert test[1] is None
    batch = collate_skip_corrupt([test[0], test[1]])
    assert int(batch["num_corrupt"]) == 1 and batch["image"].shape == (1, 3, 32, 32)
    assert batch["depth_gt"].shape == (1, 1, 426, 560)


def test_nyu_errors_name_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data\.root=.*nowhere: not found; pass data\.root="):
        NYUDepthDataset(str(tmp_path / "nowhere"), "test")
    with pytest.raises(ConfigError, match=r"data\.root=None"):
        NYUDepthDataset(None, "test")
    (tmp_path / "test").mkdir()
    with pytest.raises(ConfigError, match="no RGB"):
        NYUDepthDataset(str(tmp_path), "test")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "test" / "0_rgb.png")
    Image.fromarray(np.full((8, 8), 51, np.uint8)).save(tmp_path / "test" / "0_depth.png")  # 8-bit
    with pytest.raises(ConfigError, match="depth_scale"):
        NYUDepthDataset(str(tmp_path), "test")
    eight_bit = NYUDepthDataset(str(tmp_path), "test", resolution=8, depth_scale=10 / 255)
    assert torch.allclose(eight_bit[0]["depth_gt"], torch.full((1, 8, 8), 2.0))
    with pytest.raises(ConfigError, match="mat"):
        NYUDepthDataset(str(tmp_path), "test", layout="mat")


# --- the configs -----------------------------------------------------------------------------------------------
def _data_module(name: str, **overrides):
    cfg = OmegaConf.create({"data": OmegaConf.load(CONFIGS / f"{name}.yaml")})
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"data.{key}", value)
    return cfg, instantiate(cfg.data)


def test_data_configs_instantiate_into_image_data_modules(tmp_path: Path) -> None:
    cfg, dm = _data_module("depth_scenes", **{"train.size": 4, "val.size": 3, "batch_size": 2, "resolution": 16})
    assert (cfg.data.num_bins, cfg.data.min_depth, cfg.data.max_depth) == (256, 1e-3, 10.0)
    assert cfg.data.metric_crop is None and dm.num_classes == 1 and dm.metadata["task"]["num_bins"] == 256
    train, val = next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))
    assert train["image"].shape == (2, 3, 16, 16) and train["depth"].shape == (2, 1, 16, 16)
    assert val["depth_gt"].shape == (2, 1, 16, 16) and int(val["num_corrupt"]) == 0

    images, depths = _frames(2)
    for split in ("train", "test"):
        for i in range(2):
            _save_pair(tmp_path / split / f"{i}_colors.png", tmp_path / split / f"{i}_depth.png", images[i], depths[i])
    overrides = {"root": str(tmp_path), "resolution": 16, "batch_size": 2, "num_workers": 0, "pin_memory": False,
                 "persistent_workers": False}  # fmt: skip
    cfg, dm = _data_module("nyu_depth", **overrides)
    assert cfg.data.resolution == 16 and cfg.data.task.num_bins == cfg.data.num_bins == 256
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, 3, 16, 16) and val["depth_gt"].shape == (2, 1, 426, 560)
    assert next(iter(dm.train_dataloader()))["depth"].shape == (2, 1, 16, 16)
    _, missing = _data_module("nyu_depth")  # root: null → the datasets refuse at setup, in one line
    with pytest.raises(ConfigError, match=r"data\.root=None: not found; pass data\.root="):
        missing.setup("fit")
