"""The depth task (FSQ paper §4.4) on hand-computed cases: the official discretisation into bins, the loss and
the prediction back in metres."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsq_repro.tasks.depth.task import DepthTask


def test_depth_task_loss_and_prediction_by_hand() -> None:
    task = DepthTask(num_bins=4, min_depth=0.0 + 1e-3, max_depth=4.0 + 1e-3)
    # bins: floor((d - 1e-3) / 4 · 4) → 0.5 m → 0, 1.5 → 1, 3.9 → 3, 0 (no signal) → 0
    labels = task.labels({"depth": torch.tensor([[[[0.5 + 1e-3, 1.5 + 1e-3], [3.9 + 1e-3, 0.0]]]])})
    assert labels["depth"].tolist() == [[[0, 1], [3, 0]]]
    logits = torch.zeros(1, 4, 2, 2)
    logits[0, 1, 0, 1] = 2.0  # pixel (0, 1): label 1 with logit 2 → CE = log(3 + e²) − 2
    loss, _ = task.loss({"depth": logits}, labels)
    ce = [0.0, np.log(3 + np.e**2) - 2, np.log(4), 0.0]  # bin-0 pixels are masked but count in the mean
    assert loss.item() == pytest.approx(sum(ce) / 4, rel=1e-6)
    pred = task.predict({"depth": logits})
    assert torch.allclose(pred, torch.tensor([[[0.5, 1.5], [0.5, 0.5]]]) + 1e-3, atol=1e-6)  # bin centres
    assert F.one_hot(labels["depth"], 4).shape == (1, 2, 2, 4)
