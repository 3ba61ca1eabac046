"""Preemption and atomic checkpoints (docs/fault-tolerance.md, items 2 and 3): SIGTERM leaves a resumable
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

from fsq_repro.lit.trainer import AtomicCheckpointIO
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


SIGNAL_AT_4 = ["+callbacks.signal._target_=tests.lit.fault_injection.KillAtStep", "+callbacks.signal.step=4"]


@pytest.mark.slow
def test_sigusr1_under_slurm_checkpoints_and_requeues(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.args"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    run = tmp_path / "run"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    proc = run_cli("train.py", run, *ARGS, "trainer.max_steps=8", *SIGNAL_AT_4, "+callbacks.signal.sig=SIGUSR1",
                   env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]  # a clean exit, not a crash
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert "SLURM job 4242 requeued" in proc.stdout
    ckpt = run / "checkpoints" / "stage1" / "interrupted.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 5  # the batch in flight ends
    assert not list(run.rglob("hpc_ckpt*")) and not (run / "tokenizer.pt").exists()
    assert_ok(run_cli("train.py", run, *ARGS, "trainer.max_steps=8"))  # the requeued job resumes and finishes
    assert torch.load(run / "checkpoints/stage1/last.ckpt", weights_only=True)["global_step"] == 8


@pytest.mark.slow
def test_a_sigterm_storm_during_the_save_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train.py", run, *ARGS, "trainer.max_steps=8", *SIGNAL_AT_4, "+callbacks.signal.sig=SIGTERM",
                   "+callbacks.storm._target_=tests.lit.fault_injection.SignalStorm")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]  # neither killed by the later SIGTERMs nor crashed
    ckpt = run / "checkpoints" / "stage1" / "interrupted.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 5
    assert not list(run.rglob("*.tmp"))
    assert_ok(run_cli("train.py", run, *ARGS, "trainer.max_steps=8"))


@pytest.mark.slow
def test_stage1_nonfinite_loss_stops_naming_step_and_terms_or_is_skipped_within_budget(tmp_path: Path) -> None:
    poison = ["+callbacks.poison._target_=tests.lit.fault_injection.PoisonBatch", "+callbacks.poison.batch=6"]
    run = tmp_path / "stop"
    proc = run_cli("train.py", run, *ARGS, "trainer.max_steps=8", *poison)
    assert proc.returncode != 0
    assert "FloatingPointError: non-finite loss or gradient norm at step 5: " in proc.stderr, proc.stderr[-3000:]
    assert "l2=nan" in proc.stderr
    # the guard decides on the device (no host sync per step): step 5's update was skipped there, and the host
    # stopped the run when it read the verdict, at the start of the next step
    ckpt = torch.load(run / "checkpoints/stage1/interrupted.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert int(ckpt["state_dict"]["nonfinite_skips"]) == 1
    assert not (run / "tokenizer.pt").exists()

    run = tmp_path / "skip"
    assert_ok(run_cli("train.py", run, *ARGS, "trainer.max_steps=8", *poison, "model.stage1.max_nonfinite_skips=1"))
    ckpt = torch.load(run / "checkpoints/stage1/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 8 and int(ckpt["state_dict"]["nonfinite_skips"]) == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


@pytest.mark.slow
def test_resuming_from_another_models_or_a_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert_ok(run_cli("train.py", first, *ARGS, "trainer.max_steps=2"))
    ckpt = first / "checkpoints" / "stage1" / "last.ckpt"
    other = run_cli("train.py", tmp_path / "other", *ARGS, "quantizer=fsq_1000", f"ckpt_path={ckpt}")
    assert other.returncode == 2
    message = other.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: checkpoint {ckpt} (experiment=tokenizer_shapes) does not fit this model: ")
    assert "has shape" in message and "Traceback" not in other.stderr
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(ckpt.read_bytes()[:5000])  # truncated mid-write
    proc = run_cli("train.py", tmp_path / "third", *ARGS, f"ckpt_path={broken}")
    assert proc.returncode == 2 and "is not a readable checkpoint" in proc.stderr.strip().splitlines()[-1]


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
