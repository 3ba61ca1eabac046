"""A short, stable fingerprint of *which images* a data config describes (not how they are loaded).

Stored in ``tokenizer.pt`` and in the token cache's ``meta.json`` so that a cache built from another dataset (or
another resolution, split size, seed, root) is refused instead of silently mixing experiments.
Loader settings (batch size, workers, pinning, cache dirs) do not change the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

LOADER_KEYS = frozenset(
    {"batch_size", "val_batch_size", "num_workers", "pin_memory", "persistent_workers", "drop_last", "cache_dir"}
)


def _strip(node: object) -> object:
    if isinstance(node, Mapping):
        return {str(k): _strip(v) for k, v in node.items() if k not in LOADER_KEYS and k != "_partial_"}
    if isinstance(node, (list, tuple)):
        return [_strip(v) for v in node]
    return node


def data_fingerprint(data_config: Mapping) -> str:
    """``sha256`` (first 16 hex digits) of the resolved data config without loader settings.

    ``data_config`` is a plain (resolved) mapping, e.g. ``OmegaConf.to_container(cfg.data, resolve=True)``.
    """
    blob = json.dumps(_strip(data_config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
