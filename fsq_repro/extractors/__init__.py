"""Feature extractors for FID / precision-recall / IS, as in the ADM suite (openai/guided-diffusion
``evaluations/evaluator.py``); the metrics themselves (``fsq_repro.metrics``) take features, not networks.

The interface: an extractor is a callable ``(images uint8 (B, 3, H, W)) -> {"features": (B, D) float32,
"logits": (B, K) float32}`` (Inception adds ``"spatial": (B, 2023)`` for sFID) with a ``name`` (which network and
weights) and a ``label`` (what the Fréchet distance in its space is called in reports).

- ``inception.py``: ``InceptionFeatures``, the TF-ported Inception-V3 (FID).
- ``shapes.py``: ``ShapesClassifierFeatures``, the embedded shapes' classifier and its training (FD-shapes).
"""

from __future__ import annotations

from pathlib import Path

from fsq_repro.errors import ConfigError


def build_extractor(kind: str, inception_weights: str | None = None, cache_dir: str | Path = "outputs/cache"):
    """``metrics.extractor``: ``inception`` (FID) or ``shapes`` (FD-shapes)."""
    if kind == "inception":
        from fsq_repro.extractors.inception import InceptionFeatures

        return InceptionFeatures(inception_weights)
    if kind == "shapes":
        from fsq_repro.extractors.shapes import ShapesClassifierFeatures

        return ShapesClassifierFeatures(cache_dir)
    raise ConfigError(f"metrics.extractor={kind!r}: choose inception (FID), shapes (FD-shapes) or none (PSNR only)")
