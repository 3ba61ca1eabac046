"""UViM's dense tasks by name (FSQ paper §4.4, Table 2): what a ``uvim_stage1.pt`` file records as its ``task``.

A task maps a batch to class maps (``labels``), defines the Stage I loss over the autoencoder's per-pixel logits
(``loss``) and turns logits into the task's output (``predict``); ``label_classes`` tells the autoencoder what to
embed. Depth (NYU) is ``losses/uvim_depth.py``.
"""

from __future__ import annotations

from fsq_repro.errors import ConfigError
from fsq_repro.losses.uvim_depth import DepthTask

TASKS = {"depth": DepthTask}


def build_task(config: dict):
    """``{"name": "depth", "num_bins": 256, ...}`` → the task object."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in TASKS:
        raise ConfigError(f"unknown UViM task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](**config)
