"""NYU depth metrics against hand computations and a numpy port of the official evaluator's functions
(big_vision ``evaluators/proj/uvim/nyu_depth.py`` at 21bd6eb)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fsq_repro.metrics.depth import DepthMetrics, depth_metrics_per_image, resize_prediction


def official(gt: np.ndarray, pred: np.ndarray, lo: float = 1e-3, hi: float = 10.0) -> dict[str, float]:
    """The official per-image computation (valid = lo < gt < hi), ported to numpy."""
    valid = (gt > lo) & (gt < hi)
    g, p = gt[valid], pred[valid]
    ratio = np.maximum(g / p, p / g)
    return {
        "rmse": np.sqrt(np.mean((g - p) ** 2)),
        "abs_rel": np.mean(np.abs(g - p) / g),
        "log10": np.mean(np.abs(np.log10(g) - np.log10(p))),
        **{f"delta{k}": np.sum(ratio < 1.25**k) / ratio.size for k in (1, 2, 3)},
    }


def test_every_metric_by_hand() -> None:
    # gt 2x2 = [[1, 2], [4, 10]] (10 is invalid: not < 10), pred = [[1, 1], [5, 3]]
    gt = torch.tensor([[[1.0, 2.0], [4.0, 10.0]]])
    pred = torch.tensor([[[1.0, 1.0], [5.0, 3.0]]])
    m = depth_metrics_per_image(pred, gt)
    # valid pixels: (1,1), (2,1), (4,5). errors 0, 1, 1 → RMSE = sqrt(2/3)
    assert m["rmse"].item() == pytest.approx(math.sqrt(2 / 3))
    # AbsRel = (0 + 1/2 + 1/4) / 3 = 0.25
    assert m["abs_rel"].item() == pytest.approx(0.25)
    # log10 = (0 + log10 2 + log10 1.25) / 3
    assert m["log10"].item() == pytest.approx((math.log10(2) + math.log10(1.25)) / 3)
    # ratios 1, 2, 1.25: δ1 (< 1.25) = 1/3; δ2 (< 1.5625) = 2/3; δ3 (< 1.953) = 2/3
    assert [m[f"delta{k}"].item() for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert m["valid_pixels"].item() == 3


def test_mean_over_images_not_pooled_pixels() -> None:
    # image A: 1 valid pixel with error 3; image B: 3 valid pixels with error 0
    gt = torch.tensor([[[5.0, 0.0], [0.0, 0.0]], [[5.0, 5.0], [5.0, 0.0]]])
    pred = torch.tensor([[[2.0, 1.0], [1.0, 1.0]], [[5.0, 5.0], [5.0, 1.0]]])
    metric = DepthMetrics()
    metric.update(pred, gt)
    assert metric.compute()["rmse"].item() == pytest.approx((3.0 + 0.0) / 2)  # pooled would be sqrt(9/4) = 1.5
    gt2 = gt.clone()
    gt2[1] = 0.0
    metric.update(pred[1:], gt2[1:])  # no valid pixel: skipped and counted
    out = metric.compute()
    assert out["num_images"].item() == 2 and out["num_skipped"].item() == 1


def test_nearest_resize_is_half_pixel_nearest() -> None:
    """jax ``nearest``: output i reads input floor((i + 0.5) · in / out)."""
    for (h, w), (H, W) in (((64, 64), (426, 560)), ((512, 512), (426, 560)), ((7, 5), (3, 11))):
        pred = torch.arange(h * w, dtype=torch.float32).view(1, h, w)
        rows = np.floor((np.arange(H) + 0.5) * h / H).astype(int)
        cols = np.floor((np.arange(W) + 0.5) * w / W).astype(int)
        expected = pred[0].numpy()[rows][:, cols]
        assert np.array_equal(resize_prediction(pred, (H, W))[0].numpy(), expected)


def test_crop_and_strict_bounds() -> None:
    gt = torch.full((1, 4, 4), 2.0)
    gt[0, 0, 0] = 1e-3  # exactly min_depth: excluded
    pred = torch.full((1, 4, 4), 2.0)
    pred[0, 3, 3] = 4.0  # outside the crop below
    m = depth_metrics_per_image(pred, gt, crop=(0, 0, 3, 3))
    assert m["valid_pixels"].item() == 8 and m["rmse"].item() == 0.0
    assert depth_metrics_per_image(pred, gt)["rmse"].item() == pytest.approx(math.sqrt(4 / 15))


def test_matches_the_official_functions_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.0, 11.0, (3, 24, 32))
    pred = rng.uniform(0.5, 9.5, (3, 24, 32))
    metric = DepthMetrics()
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    ours = metric.compute()
    per_image = [official(g, p) for g, p in zip(gt, pred, strict=True)]
    for name in ("rmse", "abs_rel", "log10", "delta1", "delta2", "delta3"):
        assert ours[name].item() == pytest.approx(np.mean([m[name] for m in per_image]), rel=1e-6)


def test_two_updates_equal_one() -> None:
    g = torch.Generator().manual_seed(1)
    gt, pred = torch.rand(6, 1, 8, 8, generator=g) * 9 + 0.5, torch.rand(6, 1, 4, 4, generator=g) * 9 + 0.5
    a, b = DepthMetrics(), DepthMetrics()
    a.update(pred[:2], gt[:2])
    a.update(pred[2:], gt[2:])
    b.update(pred, gt)
    for k, v in a.compute().items():
        assert torch.allclose(v.double(), b.compute()[k].double())
