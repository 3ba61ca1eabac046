"""Preemption and atomic checkpoints (reliability issue, promises 2 and 3): SIGTERM leaves a resumable
``interrupted.ckpt``; a finished run keeps ``last.ckpt``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fsq_repro.lit.stages import AtomicCheckpointIO
from tests.conftest import ROOT, assert_ok, run_cli

ARGS = ["experiment=tokenizer_shapes", "data.train.size=512", "data.val.size=32", "data.batch_size=8",
        "model.stage1.val_check_interval=1000", "callbacks.model_checkpoint.every_n_train_steps=5"]  # fmt: skip


@pytest.mark.slow
def test_sigterm_writes_last_ckpt_and_the_rerun_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={run}", *ARGS, "trainer.max_steps=100000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    )  # fmt: skip
    ckpt_dir = run / "checkpoints" / "stage1"
    deadline = time.monotonic() + 240
    while not any(ckpt_dir.glob("*step=5*.ckpt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    last = ckpt_dir / "interrupted.ckpt"
    assert last.is_file(), out[-3000:]
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step >= 5
    assert not (run / "tokenizer.pt").exists()  # the stage did not pretend to have finished
    assert not list(ckpt_dir.glob("*.tmp"))
    # the same command in the same run dir resumes from last.ckpt and finishes
    resumed = assert_ok(run_cli("train.py", run, *ARGS, f"trainer.max_steps={step + 3}"))
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr
    assert torch.load(run / "tokenizer.pt", weights_only=True)["extra"]["experiment"] == "tokenizer_shapes"
    assert (ckpt_dir / "last.ckpt").is_file() and not (ckpt_dir / "interrupted.ckpt").exists()


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_write_fails(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise OSError("No space left on device")  # what a full disk looks like mid-write

    with pytest.raises(OSError, match=r"could not write .*last\.ckpt.*No space left.*previous file is intact"):
        io.save_checkpoint({"step": torch.tensor(2), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind
