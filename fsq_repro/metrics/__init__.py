"""Metrics (pure torch / numpy / torchmetrics, no Lightning): FID statistics and distance, precision/recall,
Inception score, codebook usage (reference/evaluation.md)."""

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
