"""Loaded at the start of every Python process of ``tests/test_soak.py``'s injected soaks (this folder first on
``PYTHONPATH``): SIGKILL the process exactly inside the soaked run's first write of ``results.json``, a kill point
that random kill times almost never hit. ``FSQ_SOAK_INJECT=atomic``: the project's ``atomic_write_json``, killed
after the temporary file is written and before the rename (the run must end with the uninterrupted artifacts).
``FSQ_SOAK_INJECT=torn``: a plain, non-atomic write, killed half-way (the deliberately broken variant: the soak
must report it)."""

import os

MODE = os.environ.get("FSQ_SOAK_INJECT")

if MODE in ("atomic", "torn"):
    import json
    import signal
    from pathlib import Path

    import fsq_repro.atomic as atomic

    original = atomic.atomic_write_json

    def write_json(path, payload: dict, **dumps) -> Path:
        path = Path(path)
        marker = path.parent / f".soak-injected-{path.stem}"  # no .json: not an artifact the soak compares
        first = path.name == "results.json" and "soaked" in str(path) and not marker.exists()
        if MODE == "atomic" and not first:
            return original(path, payload, **dumps)
        text = json.dumps(payload, **{"indent": 2, "sort_keys": True, "default": float, **dumps}) + "\n"
        if not first:
            path.write_text(text)  # torn mode: every write non-atomic
            return path
        marker.touch()
        if MODE == "atomic":
            with atomic.atomic_path(path) as tmp:
                tmp.write_text(text)
                os.kill(os.getpid(), signal.SIGKILL)  # before the rename
        with open(path, "w") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
        return path

    atomic.atomic_write_json = write_json
