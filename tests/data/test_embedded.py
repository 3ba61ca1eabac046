"""Embedded datasets: determinism, disjoint splits, class balance, distinct classes, cache, photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.data.embedded import CLASS_NAMES, ShapesDataset, render_shape_image
from fsq_repro.data.photos import PhotoCropsDataset
from fsq_repro.viz import save_image_grid


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.numpy().tobytes()).hexdigest()


def test_image_is_a_pure_function_of_seed_split_index() -> None:
    a = ShapesDataset("train", size=50, seed=3)
    b = ShapesDataset("train", size=50, seed=3)
    for i in (0, 7, 49):
        assert torch.equal(a[i]["image"], b[i]["image"])
    # Order of access does not matter (workers may produce any index).
    assert torch.equal(a[49]["image"], ShapesDataset("train", size=50, seed=3)[49]["image"])
    assert not torch.equal(a[0]["image"], ShapesDataset("train", size=50, seed=4)[0]["image"])


def test_splits_are_disjoint() -> None:
    train = {_digest(ShapesDataset("train", size=300)[i]["image"]) for i in range(300)}
    val = {_digest(ShapesDataset("val", size=300)[i]["image"]) for i in range(300)}
    test = {_digest(ShapesDataset("test", size=300)[i]["image"]) for i in range(300)}
    assert len(train) == 300 and len(val) == 300
    assert not (train & val) and not (train & test) and not (val & test)


def test_class_balance_range_and_shape() -> None:
    ds = ShapesDataset("train", size=1000, resolution=32)
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert np.bincount(labels).tolist() == [100] * 10
    item = ds[5]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert ShapesDataset("val", size=4, resolution=128)[0]["image"].shape == (3, 128, 128)


def test_classes_are_visually_distinct(tmp_path: Path) -> None:
    """A nearest-class-mean classifier on raw pixels separates the classes well (they are learnable)."""
    ds = ShapesDataset("train", size=2000, resolution=32)
    x = torch.stack([ds[i]["image"] for i in range(2000)]).flatten(1)
    y = torch.tensor([ds[i]["label"] for i in range(2000)])
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    val = ShapesDataset("val", size=500, resolution=32)
    xv = torch.stack([val[i]["image"] for i in range(500)]).flatten(1)
    yv = torch.tensor([val[i]["label"] for i in range(500)])
    acc = (torch.cdist(xv, means).argmin(1) == yv).float().mean().item()
    assert acc > 0.5  # chance is 0.1
    grid = torch.stack([ds[c + 10 * k]["image"] for c in range(10) for k in range(8)])
    path = save_image_grid(grid, tmp_path / "shapes.png", nrow=8, upscale=4)
    assert path.stat().st_size > 1000
    assert len(CLASS_NAMES) == 10


def test_cache_matches_on_the_fly(tmp_path: Path) -> None:
    cached = ShapesDataset("val", size=20, resolution=16, cache_dir=str(tmp_path))
    fresh = ShapesDataset("val", size=20, resolution=16)
    assert list(tmp_path.glob("*.npy"))
    for i in range(20):
        assert torch.equal(cached[i]["image"], fresh[i]["image"])
    again = ShapesDataset("val", size=20, resolution=16, cache_dir=str(tmp_path))  # reuses the file
    assert torch.equal(again[3]["image"], fresh[3]["image"])


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("training")
    with pytest.raises(ValueError, match="num_classes"):
        ShapesDataset(num_classes=11)
    with pytest.raises(ValueError, match="split"):
        render_shape_image(0, "nope", 0)


def test_photo_crops_deterministic_and_split_by_photo() -> None:
    train = PhotoCropsDataset("train", size=10, resolution=32)
    val = PhotoCropsDataset("val", size=10, resolution=32)
    assert torch.equal(train[3]["image"], PhotoCropsDataset("train", size=10, resolution=32)[3]["image"])
    assert train[0]["image"].shape == (3, 32, 32) and train[0]["label"] == 0
    assert len(train.photos) == 7 and len(val.photos) == 2
    assert not any(p is q for p in train.photos for q in val.photos)


def test_photo_crops_val_source_all_draws_from_every_photo_deterministically() -> None:
    """source="all" (the val-diversity probe of scripts/tradeoff_photos.py): val crops come from all nine photos,
    deterministic, a different data fingerprint; the crops' mean colour moves from the two held-out photos' towards
    the whole set's (train always keeps the seven scikit-image photos)."""
    held = PhotoCropsDataset("val", size=300, resolution=32)
    every = PhotoCropsDataset("val", size=300, resolution=32, source="all")
    assert len(every.photos) == 9 and every.fingerprint() != held.fingerprint()
    assert (
        PhotoCropsDataset("train", size=5, source="all").fingerprint()
        == PhotoCropsDataset("train", size=5).fingerprint()
    )
    assert torch.equal(every[7]["image"], PhotoCropsDataset("val", size=300, resolution=32, source="all")[7]["image"])

    def mean_rgb(ds) -> np.ndarray:
        return np.stack([ds[i]["image"].numpy().mean((1, 2)) for i in range(len(ds))]).mean(0)

    whole = np.stack([p.reshape(-1, 3).mean(0) / 127.5 - 1 for p in every.photos]).mean(0)  # per-photo mean, averaged
    assert np.abs(mean_rgb(every) - whole).max() < 0.5 * np.abs(mean_rgb(held) - whole).max()
    with pytest.raises(ValueError, match="source"):
        PhotoCropsDataset("val", source="everything")


def _foreground_hue(image: np.ndarray) -> float:
    """The hue of the most saturated-and-bright pixel: the shape's fill (the background is dark and desaturated)."""
    import colorsys

    rgb = image.reshape(-1, 3).astype(np.float64) / 255
    score = (rgb.max(1) - rgb.min(1)) * rgb.max(1)
    return colorsys.rgb_to_hsv(*rgb[int(score.argmax())])[0]


def test_random_hue_is_independent_of_the_class_and_deterministic() -> None:
    """hue="random" (the colorization stand-in): the fill's hue is uniform whatever the class, while hue="class"
    keeps it at c / 10 ± 0.03; the rest of the image (background, shape, position) is drawn as in class mode."""
    n, classes = 400, 10

    def circular_gap(h: float, label: int) -> float:
        d = abs(h - label / classes) % 1.0
        return min(d, 1 - d)

    gaps = {mode: np.array([circular_gap(_foreground_hue(render_shape_image(0, "train", i, 32, hue=mode)), i % classes)
                            for i in range(n)]) for mode in ("class", "random")}  # fmt: skip
    assert np.mean(gaps["class"] < 0.05) > 0.95  # the class sets the hue
    # uniform hue: P(gap < 0.05) = 0.1 and the mean gap 0.25, whatever the class
    assert abs(np.mean(gaps["random"] < 0.05) - 0.1) < 0.05 and abs(gaps["random"].mean() - 0.25) < 0.03
    hues = np.array([_foreground_hue(render_shape_image(0, "train", i, 32, hue="random")) for i in range(n)])
    assert np.histogram(hues, bins=4, range=(0, 1))[0].min() > n / 4 * 0.6  # every quarter of the hue circle
    a, b = render_shape_image(0, "train", 5, 32, hue="random"), render_shape_image(0, "train", 5, 32, hue="random")
    assert np.array_equal(a, b)
    same = render_shape_image(0, "train", 5, 32, hue="class")
    differs = np.any(a != same, axis=-1)
    assert 0.05 < differs.mean() < 0.6  # only the shape's pixels change colour
    ds = ShapesDataset("train", size=8, hue="random")
    assert ds.fingerprint() != ShapesDataset("train", size=8).fingerprint()
    assert np.array_equal(ds.images_uint8()[5], a)
    with pytest.raises(ValueError, match="hue"):
        ShapesDataset("train", size=8, hue="rainbow")
