"""UViM's dense tasks (FSQ paper §4.4, Table 2): one module per task, everything the task defines in one place —
its labels, its Stage I loss, its prediction, its metric, its constant baseline and its pictures. Depth (NYU Depth
v2) is ``tasks/depth/task.py``, panoptic segmentation (COCO) ``tasks/panoptic/task.py``, colorization (ImageNet)
``tasks/colorization/task.py``. A ``uvim_stage1.pt`` file records its task as ``config()``; ``build_task`` rebuilds it.

``UViMTask`` declares the interface the generic code (``pipeline/uvim.py``, ``lit/uvim_module.py``, the report) relies
on; every task implements all of it, so the generic code never asks which task it holds. Each task's datasets sit
next to it (``tasks/<task>/``), its scores in ``metrics/``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F

from fsq_repro.errors import ConfigError
from fsq_repro.tasks.colorization.task import ColorizationTask
from fsq_repro.tasks.depth.task import DepthTask
from fsq_repro.tasks.panoptic.task import PanopticTask


class TaskMetric(Protocol):
    """An accumulator over val batches: ``update(pred, batch)``, ``compute() -> {name: value}``, ``reset()``."""

    def update(self, pred: torch.Tensor, batch: dict) -> None: ...
    def compute(self) -> dict[str, float]: ...
    def reset(self) -> None: ...


class UViMTask(Protocol):
    """What every UViM task defines. Shapes: ``batch`` = a data-module batch (``image (B, 3, H, W)`` in [−1, 1] plus
    the task's ground truth); ``labels`` = ``{map: (B, H, W) int64}`` one-hot maps and ``{map: (B, C, H, W)}``
    continuous maps; ``logits`` = the autoencoder's ``{map: (B, C_map, H, W)}``; ``pred`` = the task's output."""

    name: ClassVar[str]
    headline: ClassVar[tuple[str, bool]]  # Table 2's metric and whether lower is better
    label_classes: dict[str, int]  # one-hot maps: name -> classes (the autoencoder embeds and predicts them)
    label_channels: dict[str, int]  # continuous maps: name -> channels ({} for none)

    def config(self) -> dict[str, Any]: ...
    def labels(self, batch: dict) -> dict[str, torch.Tensor]: ...
    def cache_labels(self, batch: dict) -> dict[str, torch.Tensor]: ...  # what the Stage II token cache encodes
    def loss(self, logits: dict, labels: dict) -> tuple[torch.Tensor, dict]: ...  # (loss, logs)
    def predict(self, logits: dict) -> torch.Tensor: ...
    def truth(self, batch: dict) -> torch.Tensor: ...  # the ground truth shaped as a prediction
    def metric(self, dataset=None) -> TaskMetric: ...  # the full metric (uvim_eval)
    def validation_metric(self, val_set=None) -> TaskMetric: ...  # what Stage I validation tracks (cheap)
    def baseline_statistic(self, batch: dict) -> torch.Tensor: ...  # averaged over train items
    def baseline_prediction(self, mean: torch.Tensor, batch: dict) -> torch.Tensor: ...  # the constant baseline
    def render(self, pred: torch.Tensor) -> torch.Tensor: ...  # (B, 3, H, W) in [-1, 1] for grids


TASKS: dict[str, type] = {"depth": DepthTask, "panoptic": PanopticTask, "colorization": ColorizationTask}


def build_task(config: dict) -> UViMTask:
    """``{"name": "depth", "num_bins": 256, ...}`` → the task object."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in TASKS:
        raise ConfigError(f"unknown UViM task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](**config)


def task_grid(task: UViMTask, image: torch.Tensor, rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of ``n`` images: the RGB inputs, then each prediction-shaped map as the task draws it (``task.render``:
    depth as a grey ramp, panoptic segments as colours), nearest-resized to the image size."""
    size = image.shape[-2:]
    out = [image.float().cpu()]
    for row in rows:
        picture = task.render(row.cpu())
        out.append(F.interpolate(picture.float(), size=size, mode="nearest"))
    return torch.cat(out)
