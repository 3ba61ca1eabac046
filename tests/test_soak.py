"""``scripts/soak.py``'s verdict on hand-made run dirs: identical artifacts pass even when timings and the run dir's
path differ; one changed weight, number, cache row or missing file is reported; checkpoints and logs are ignored.
The soak itself — kills and restarts of real pipelines — is ``make soak`` (its measured output is in
docs/fault-tolerance.md); its ``--tiny`` form runs here."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soak)


def _run(root: Path, weight: float = 1.0, fd: float = 12.5, cache_row: int = 3, seconds: float = 1.0) -> Path:
    (root / "token_cache").mkdir(parents=True)
    (root / "checkpoints" / "stage1").mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.full((2, 2), weight)}, "config": {"dir": str(root / "x")}},
               root / "tokenizer.pt")  # fmt: skip
    (root / "results.json").write_text(json.dumps({"sampling": {"fd": fd, "seconds_per_image": seconds},
                                                   "reference": str(root / "ref.npz")}))  # fmt: skip
    np.save(root / "token_cache" / "train.npy", np.arange(6, dtype=np.int32) * cache_row)
    np.savez(root / "samples.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    torch.save({"step": seconds}, root / "checkpoints" / "stage1" / "last.ckpt")  # never compared
    (root / "soak.log").write_text(f"took {seconds} s")
    return root


def test_identical_runs_pass_whatever_their_timings_and_paths(tmp_path: Path) -> None:
    assert soak.differences(_run(tmp_path / "a"), _run(tmp_path / "b", seconds=9.0)) == []


def test_a_changed_weight_number_or_cache_row_is_reported(tmp_path: Path) -> None:
    ref = _run(tmp_path / "ref")
    assert soak.differences(ref, _run(tmp_path / "w", weight=1.0 + 1e-7)) == ["tokenizer.pt: differs"]
    assert soak.differences(ref, _run(tmp_path / "fd", fd=12.6)) == ["results.json: differs"]
    assert soak.differences(ref, _run(tmp_path / "c", cache_row=4)) == ["token_cache/train.npy: differs"]


def test_a_missing_or_torn_artifact_is_reported(tmp_path: Path) -> None:
    ref = _run(tmp_path / "ref")
    gone = _run(tmp_path / "gone")
    (gone / "samples.npz").unlink()
    assert soak.differences(ref, gone) == ["samples.npz: missing after the soak"]
    torn = _run(tmp_path / "torn")
    data = (torn / "tokenizer.pt").read_bytes()
    (torn / "tokenizer.pt").write_bytes(data[: len(data) // 2])  # what a non-atomic write leaves when killed
    (found,) = soak.differences(ref, torn)
    assert found.startswith("tokenizer.pt: unreadable after the soak")


def test_kill_stage_is_the_last_header_printed(tmp_path: Path) -> None:
    log = tmp_path / "soak.log"
    log.write_text("$ train.py\n[stage1]\n  wrote tokenizer.pt\n[tokenize]\n  token cache ...\n")
    assert soak.stage_of(log, "train") == "tokenize"
    assert soak.stage_of(log, "sample") == "sample"


def test_the_run_dirs_name_is_not_a_difference(tmp_path: Path) -> None:
    """A report names its runs by their directory (``"run": "<name>"``): the two runs' names differ by design."""
    ref, soaked = _run(tmp_path / "reference"), _run(tmp_path / "soaked")
    for run in (ref, soaked):
        (run / "report.json").write_text(json.dumps([{"run": run.name, "path": str(run), "fd": 1.5}]))
    assert soak.differences(ref, soaked) == []


def tiny_soak(out: Path, kills: int, inject: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "soak_inject"), str(ROOT)]))
    if inject:
        env["FSQ_SOAK_INJECT"] = inject
    return subprocess.run([sys.executable, "scripts/soak.py", "--tiny", "--kills", str(kills), "--seed", "0", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)  # fmt: skip


@pytest.mark.slow
def test_a_tiny_pipeline_killed_at_random_ends_with_the_uninterrupted_runs_artifacts(tmp_path: Path) -> None:
    """The soak itself, small: ``soak.py --tiny --kills 3`` runs the MaskGIT pipeline (train → sample → report, a
    few steps per stage) uninterrupted, then again with SIGKILLs at random times and restarts, and every artifact
    must be bit-identical (a lost, torn or inexactly resumed artifact is a difference). One more kill lands inside
    the write of ``results.json``, between the temporary file and its rename (``tests/soak_inject``)."""
    proc = tiny_soak(tmp_path, 3, inject="atomic")
    output = proc.stdout + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    last = proc.stdout.strip().splitlines()[-1]
    found = re.match(r"soak: (\d+) of (\d+) kills survived, 0 artifacts differ", last)
    assert found and int(found[1]) == int(found[2]) >= 1, output
    assert list((tmp_path / "maskgit-soaked").glob(".soak-injected-results")), "the write was not killed"


@pytest.mark.slow
def test_the_tiny_soak_fails_when_results_json_is_written_non_atomically(tmp_path: Path) -> None:
    """The deliberately broken variant: ``results.json`` written in place and the process killed half-way through
    the write. The rerun finds a torn ``results.json``; the soak must not report success."""
    proc = tiny_soak(tmp_path, 0, inject="torn")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert list((tmp_path / "maskgit-soaked").glob(".soak-injected-results")), "the write was not killed"
