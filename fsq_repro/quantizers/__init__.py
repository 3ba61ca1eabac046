"""Bottlenecks (pure torch): FSQ (FSQ paper §3, App. A.1) and the VQ baseline (§4.1).

- ``base.py``: the interface every bottleneck shares (``Quantizer``, ``QuantizerOutput``, lazily computed metrics).
- ``fsq.py``: finite scalar quantization, numerics as App. A.1.
- ``vq.py``: the VQ baseline (commitment, codebook and MaskGIT entropy losses; l2 / EMA / re-seeding options,
  UViM's EMA dictionary with codebook splitting).
- ``assignment.py``: nearest-code assignment and MaskGIT's entropy loss in row chunks with a hand-derived backward.
"""

from fsq_repro.quantizers.base import Quantizer, QuantizerOutput
from fsq_repro.quantizers.fsq import FSQ, round_ste
from fsq_repro.quantizers.vq import VectorQuantizer


def build_quantizer(config: dict) -> Quantizer:
    """Rebuild a quantizer from ``Quantizer.config()`` (a plain dict with a ``name`` key)."""
    config = dict(config)
    name = config.pop("name", None)
    if name == "fsq":
        return FSQ(**config)
    if name == "vq":
        return VectorQuantizer(**config)
    raise ValueError(f"unknown quantizer name {name!r}: expected 'fsq' or 'vq'")


__all__ = ["FSQ", "Quantizer", "QuantizerOutput", "VectorQuantizer", "build_quantizer", "round_ste"]
