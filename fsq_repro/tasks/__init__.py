"""UViM's dense tasks (FSQ paper §4.4, Table 2), one package per task holding everything the task defines: its
labels and transforms, its Stage I loss, its prediction, its metric, its constant baseline, its pictures, its real
dataset's loader and its embedded stand-in.

- ``base.py``: the ``UViMTask`` / ``TaskMetric`` interfaces the generic code relies on, ``build_task`` (the registry)
  and ``task_grid`` (the pictures).
- ``depth/``: NYU Depth v2 — ``task.py``, ``labels.py`` (discretisation, transforms), ``nyu.py``, ``scenes.py``.
- ``panoptic/``: COCO panoptic — ``task.py``, ``labels.py`` (two-channel labels), ``coco.py``, ``scenes.py``.
- ``colorization/``: ImageNet colorization — ``task.py``, ``data.py`` (grayscale context, colour label).
"""
