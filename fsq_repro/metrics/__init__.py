"""Metrics (pure torch / torchmetrics, no Lightning): codebook usage now; FID, IS, P/R land with the eval issue."""

from fsq_repro.metrics.usage import CodebookUsage, usage_from_histogram

__all__ = ["CodebookUsage", "usage_from_histogram"]
