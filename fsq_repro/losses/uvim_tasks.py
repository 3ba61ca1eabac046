"""UViM's dense tasks by name (FSQ paper §4.4, Table 2): what a ``uvim_stage1.pt`` file records as its ``task``.

A task maps a batch to class maps (``labels``), defines the Stage I loss over the autoencoder's per-pixel logits
(``loss``) and turns logits into the task's output (``predict``); ``label_classes`` tells the autoencoder what to
embed. Every task also has ``headline`` (Table 2's metric and whether lower is better), ``truth(batch)`` (the labels
shaped as a prediction), ``metric(dataset)`` (an accumulator with ``update(pred, batch)`` / ``compute()`` /
``reset()``), ``render(pred)`` (``(B, 3, H, W)`` in [−1, 1] for grids) and ``cache_labels(batch)`` (what the
Stage II token cache encodes). Depth (NYU) is ``losses/uvim_depth.py``,
panoptic segmentation (COCO) ``losses/uvim_panoptic.py``, colorization (ImageNet)
``losses/uvim_colorization.py`` (a continuous map: ``label_channels`` instead of ``label_classes``).
"""

from __future__ import annotations

from fsq_repro.errors import ConfigError
from fsq_repro.losses.uvim_colorization import ColorizationTask
from fsq_repro.losses.uvim_depth import DepthTask
from fsq_repro.losses.uvim_panoptic import PanopticTask

TASKS = {"depth": DepthTask, "panoptic": PanopticTask, "colorization": ColorizationTask}


def build_task(config: dict):
    """``{"name": "depth", "num_bins": 256, ...}`` → the task object."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in TASKS:
        raise ConfigError(f"unknown UViM task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](**config)
