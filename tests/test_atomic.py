"""Atomic writes (fsq_repro/atomic.py) under a disk that fills up part-way: the previous file survives byte for
byte, no temporary is left, the error is one line naming the file; the next write succeeds normally. Covers the
JSON results, the token cache's meta.json, samples.npz, reference statistics and torch artifacts."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.atomic import atomic_path, atomic_torch_save, atomic_write_json
from fsq_repro.generation.sampling_job import write_npz
from fsq_repro.metrics.fid import save_statistics


def _only(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_path_keeps_the_old_file_and_names_the_target(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(OSError) as info, atomic_path(path) as tmp:
        tmp.write_bytes(b"half a fi")
        raise OSError(errno.ENOSPC, "No space left on device")
    message = f"[Errno 28] could not write {path} (No space left on device); the previous file is intact"
    assert str(info.value) == message
    assert path.read_text() == "old" and _only(path) == ["results.json"]


def test_every_writer_survives_a_full_disk_then_writes_normally(tmp_path: Path, monkeypatch) -> None:
    import fsq_repro.generation.sampling_job as sampling_job
    import fsq_repro.metrics.fid as fid

    cases = {
        "results.json": lambda p: atomic_write_json(p, {"fd": 1.5}),
        "meta.json": lambda p: atomic_write_json(p, {"complete": True}, default=None),
        "samples.npz": lambda p: write_npz(p, np.zeros((2, 4, 4, 3), np.uint8), np.arange(2)),
        "ref.npz": lambda p: save_statistics(p, np.zeros(3), np.eye(3)),
        "tokenizer.pt": lambda p: atomic_torch_save({"w": torch.ones(3)}, p),
    }
    for name, write in cases.items():
        folder = tmp_path / name.replace(".", "_")
        path = folder / name
        write(path)
        before = path.read_bytes()
        with monkeypatch.context() as m:
            if name.endswith(".json"):
                m.setattr(Path, "write_text", lambda self, *_a, **_k: _fail(self))
            elif name == "samples.npz":
                m.setattr(sampling_job.np, "savez", lambda file, *_a, **_k: _fail(Path(file)))
            elif name == "ref.npz":
                m.setattr(fid.np, "savez", lambda file, *_a, **_k: _fail(Path(file)))
            else:
                m.setattr(torch, "save", lambda _obj, f, *_a, **_k: _fail(f))
            with pytest.raises(OSError, match=rf"could not write {path} \(No space left on device\); the previous"):
                write(path)
        assert path.read_bytes() == before and _only(path) == [name], name  # intact, no temporary left
        write(path)  # the disk has room again: a normal write
        assert path.read_bytes() == before, name
    assert json.loads((tmp_path / "results_json" / "results.json").read_text()) == {"fd": 1.5}


def _fail(target) -> None:
    """Write a few bytes to ``target`` (a path or an open file), then fail as a full disk does."""
    if hasattr(target, "write"):
        target.write(b"partial")
    else:
        with open(target, "wb") as f:
            f.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_entry_point_reports_a_full_disk_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """What ``train.py`` / ``eval.py`` print when a write meets a full disk: one ``error:`` line naming the file,
    exit code 1 — not a traceback; any other ``OSError`` is still raised as it is."""
    from fsq_repro.pipeline.entry import one_line_errors

    path = tmp_path / "results.json"
    atomic_write_json(path, {"fd": 1.5})
    monkeypatch.setattr(Path, "write_text", lambda self, *_a, **_k: _fail(self))
    with pytest.raises(SystemExit) as stop:
        one_line_errors(lambda: atomic_write_json(path, {"fd": 2.5}))()
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: could not write {path} (No space left on device); the previous file is intact"]
    assert json.loads(path.read_bytes()) == {"fd": 1.5}

    def third_party() -> None:  # a writer that is not ours (a logger's CSV): the OSError carries the file name
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.csv"))

    with pytest.raises(SystemExit):
        one_line_errors(third_party)()
    line = f"error: {tmp_path / 'metrics.csv'}: No space left on device"
    assert capsys.readouterr().err.strip().splitlines() == [line]

    def other() -> None:
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        one_line_errors(other)()
