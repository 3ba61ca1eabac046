"""The constant baselines of uvim_eval (``evaluation/uvim.py`` + baseline_prediction) on hand-made
training sets whose answers are computed by hand: the mean depth map, the per-pixel most frequent class with VOID
excluded, the grayscale input as the colorization."""

from __future__ import annotations

import torch

from fsq_repro.evaluation.uvim import baseline_mean
from fsq_repro.tasks.colorization.task import ColorizationTask
from fsq_repro.tasks.depth.task import DepthTask
from fsq_repro.tasks.panoptic.task import PanopticTask


def _items(key: str, maps: list[list[list[float]]], dtype) -> list[dict]:
    return [{"image": torch.zeros(3, 2, 2), key: torch.tensor(m, dtype=dtype)[None]} for m in maps]


def test_depth_constant_baseline_is_the_hand_computed_mean_map() -> None:
    train = _items("depth", [[[1, 2], [3, 4]], [[3, 2], [1, 4]], [[2, 2], [2, 1]]], torch.float32)
    mean = baseline_mean(DepthTask(), train, batch_size=2)  # two batches: 2 + 1 items
    expected = torch.tensor([[2.0, 2.0], [2.0, 3.0]])  # (1+3+2)/3, (2+2+2)/3, (3+1+2)/3, (4+4+1)/3
    assert torch.allclose(mean.float(), expected)
    pred = DepthTask().baseline_prediction(mean.float(), {"image": torch.zeros(4, 3, 2, 2)})
    assert pred.shape == (4, 2, 2) and torch.equal(pred[3], expected)


def test_panoptic_constant_baseline_is_the_most_frequent_non_void_class_per_pixel() -> None:
    # pixel (0,0): class 2 twice, 1 once; (0,1): VOID twice, 3 once -> 3 (VOID never predicted);
    # (1,0): 1, 2, 1 -> 1; (1,1): 3, 3, 2 -> 3
    sem = [[[2, 0], [1, 3]], [[2, 0], [2, 3]], [[1, 3], [1, 2]]]
    train = [{"image": torch.zeros(3, 2, 2), "semantics": torch.tensor(m)} for m in sem]
    task = PanopticTask(num_semantic=4, num_instances=3)
    mean = baseline_mean(task, train, batch_size=3)
    assert torch.allclose(mean[:, 0, 1].float(), torch.tensor([2 / 3, 0, 0, 1 / 3]))  # class frequencies
    pred = task.baseline_prediction(mean, {"image": torch.zeros(2, 3, 2, 2)})
    assert pred.shape == (2, 2, 2, 2)
    assert torch.equal(pred[0, 0], torch.tensor([[2, 3], [1, 3]])) and torch.equal(pred[1, 1], torch.zeros(2, 2))


def test_colorization_constant_baseline_is_the_grayscale_input() -> None:
    gray = torch.rand(2, 1, 4, 4).expand(-1, 3, -1, -1) * 2 - 1
    pred = ColorizationTask.baseline_prediction(torch.zeros(3), {"image": gray})
    assert torch.equal(pred, gray)  # zero chroma, the input's luminance
