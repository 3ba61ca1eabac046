"""Metrics (pure torch / numpy / torchmetrics, no Lightning), as the ADM suite defines them where it has them. They
take features or predictions; the networks that make features are in ``fsq_repro/extractors/``.

- ``fid.py``: feature statistics and the Fréchet distance (FID / FD) in float64.
- ``precision_recall.py``: improved precision and recall (k = 3), exact or with ADM's float16 distances.
- ``inception_score.py``: the Inception score, in ADM's chunks or in equal splits.
- ``gathered.py``: torchmetrics wrappers that gather features across processes before a statistic.
- ``psnr.py``: PSNR from the mean squared error (images in [-1, 1] or [0, 1]).
- ``usage.py``: codebook usage over the whole validation set, DDP-summed histogram.
- ``depth.py``: UViM's NYU depth metrics (RMSE, AbsRel, log10, δ1–3).
- ``panoptic.py``: panoptic quality (PQ, SQ, RQ) as the COCO panoptic API computes it.
"""

from fsq_repro.metrics.fid import feature_statistics, frechet_distance, load_statistics, save_statistics
from fsq_repro.metrics.inception_score import inception_score
from fsq_repro.metrics.precision_recall import precision_recall
from fsq_repro.metrics.usage import CodebookUsage, usage_from_histogram

__all__ = [
    "CodebookUsage",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "load_statistics",
    "precision_recall",
    "save_statistics",
    "usage_from_histogram",
]
