"""A uint8 array rendered once and memory-mapped afterwards (used by the embedded datasets' ``cache_dir``).

The file ``<cache_dir>/<key>.npy`` is written to a temporary name and renamed, so a crash mid-write never leaves
a truncated cache behind; concurrent writers (DDP ranks) race harmlessly to the same content.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fsq_repro.atomic import atomic_path


def cached_uint8_array(
    cache_dir: str | os.PathLike, key: str, shape: tuple[int, ...], fill: Callable[[int], np.ndarray]
) -> np.ndarray:
    """Return a read-only memmap of ``shape`` whose row ``i`` is ``fill(i)``; render it on first use."""
    path = Path(cache_dir) / f"{key}.npy"
    if path.exists():
        array = np.load(path, mmap_mode="r")
        if array.shape == tuple(shape) and array.dtype == np.uint8:
            return array
    with atomic_path(path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=tuple(shape))
        for i in range(shape[0]):
            out[i] = fill(i)
        out.flush()
        del out
    return np.load(path, mmap_mode="r")
