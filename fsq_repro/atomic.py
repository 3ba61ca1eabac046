"""Atomic file writes: every artifact a run produces (checkpoints, exported models, the token cache's ``meta.json``,
``results.json``, ``samples.npz``, rendered dataset caches) is written to a temporary name next to the target,
flushed to disk, then renamed over it (``os.replace`` is atomic on POSIX). A kill or a full disk part-way leaves
the previous file intact and no temporary behind, and the error is one line that names the file.

    with atomic_path("results.json") as tmp:   # tmp = results.json.<pid>.tmp
        tmp.write_text(...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (ending in ``suffix``, for writers that insist on one, e.g.
    ``np.savez`` and ``.npz``); on success fsync it and rename it onto ``path``, on failure remove it. An ``OSError``
    (a full disk, a quota) is re-raised as one that names ``path`` and says the previous file is intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            why = err.strerror or err
            raise OSError(err.errno, f"could not write {path} ({why}); the previous file is intact") from err
        raise


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def atomic_write_json(path: str | Path, payload: dict, **dumps) -> Path:
    """``payload`` as indented, key-sorted JSON (floats for numpy / torch scalars) to ``path`` atomically."""
    text = json.dumps(payload, **{"indent": 2, "sort_keys": True, "default": float, **dumps}) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
