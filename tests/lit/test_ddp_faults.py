"""DDP on 2 CPU processes (gloo; docs/fault-tolerance.md, item 7; docs/gpu.md): gradient accumulation all-reduces
once per step, and a batch whose files are all corrupt on one rank only must not leave the other rank waiting in
the gradient all-reduce. Before the fix, Stage I returned early
on the empty batch and the other rank hung; now the empty rank steps with a zero-weight stand-in image (zero
gradients of its own) and both finish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import assert_ok, run_cli

DDP = ["trainer.devices=2", "trainer.accelerator=cpu", "+trainer.strategy=ddp", "trainer.precision=32-true"]


@pytest.mark.slow
def test_an_all_corrupt_batch_on_one_rank_does_not_hang_the_other(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli(
        "train.py", run, "experiment=maskgit_shapes", "stages=[stage1]", "data.train.size=64", "data.val.size=8",
        "data.batch_size=4", "trainer.max_steps=4", "logger=csv", *DDP,
        "+callbacks.empty._target_=tests.lit.fault_injection.EmptyBatchOnRank", "+callbacks.empty.batch=2",
        "+callbacks.empty.rank=1", "model.stage1.gan_start_step=0", timeout=240,
    )  # fmt: skip
    assert_ok(proc)
    assert (run / "tokenizer.pt").is_file()


@pytest.mark.slow
def test_accumulation_under_ddp_all_reduces_once_per_net_and_step_and_matches_one_process(tmp_path: Path) -> None:
    """Stage I accumulates 2 micro-batches per rank inside DDP ``no_sync`` but for the last: one all-reduce round
    per net per step (generator and discriminator: 2), and the weights of 2 processes × 2 micro-batches of 4 equal
    1 process × 4 micro-batches of 4 (the same 16 images per step). Stage II (Lightning's accumulation): 1 round."""
    common = ["experiment=maskgit_shapes", "data.train.size=64",
              "data.val.size=8", "data.batch_size=4", "model.stage1.global_batch_size=16", "trainer.max_steps=3",
              "model.stage1.gan_start_step=0", "model.stage2.batch_size=4", "model.stage2.global_batch_size=16",
              "model.stage2.num_sample_images=1", "logger=csv", "trainer.precision=32-true"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    probe = "+callbacks.allreduce._target_=tests.lit.ddp_probe.CountAllReduces"
    assert_ok(run_cli("train.py", two, *common, "stages=[stage1,tokenize,stage2]", probe, *DDP, timeout=400))
    assert_ok(run_cli("train.py", one, *common, "stages=[stage1]", "trainer.accelerator=cpu", timeout=400))
    stage1 = json.loads((two / "allreduce_TokenizerModule.json").read_text())
    assert stage1["rounds_per_step"] == [2, 2, 2], stage1  # was [4, 4, 4]: every micro-batch all-reduced
    stage2 = json.loads((two / "allreduce_MaskGITModule.json").read_text())
    assert stage2["rounds_per_step"] == [1, 1, 1], stage2

    a, b = (torch.load(d / "tokenizer.pt", map_location="cpu", weights_only=True)["state_dict"] for d in (two, one))
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst <= 1e-5, worst


@pytest.mark.slow
def test_uvim_accumulation_under_ddp_all_reduces_once_per_step(tmp_path: Path) -> None:
    """UViM's two stages accumulate with Lightning (2 processes × 2 micro-batches of 4 = the global batch of 16):
    one gradient all-reduce round per optimizer step in each stage, not one per micro-batch."""
    run = tmp_path / "run"
    probe = "+callbacks.allreduce._target_=tests.lit.ddp_probe.CountAllReduces"
    assert_ok(run_cli(
        "train.py", run, "experiment=uvim_depth_shapes", "stages=[uvim_stage1,uvim_tokenize,uvim_stage2]",
        "data.train.size=64", "data.val.size=8", "data.batch_size=4", "model.stage1.global_batch_size=16",
        "model.stage1.max_steps=3", "model.stage2.batch_size=4", "model.stage2.global_batch_size=16",
        "model.stage2.max_steps=3", "logger=csv", "trainer.precision=32-true", probe, *DDP, timeout=400,
    ))  # fmt: skip
    rounds = {p.stem: json.loads(p.read_text())["rounds_per_step"] for p in run.glob("allreduce_*.json")}
    assert len(rounds) == 2 and all(r == [1, 1, 1] for r in rounds.values()), rounds


@pytest.mark.slow
def test_a_rank_killed_mid_run_makes_the_other_exit_with_one_line_not_hang(tmp_path: Path) -> None:
    """Rank 1 is SIGKILLed at the start of step 2 (a node failure): rank 0, waiting for it in the gradient
    all-reduce, must stop — not wait forever — with a one-line error that says a peer process died and how to
    resume. (gloo notices the closed connection at once; NCCL after ``trainer.strategy.timeout``, see
    configs/trainer/ddp.yaml.)"""
    run = tmp_path / "run"
    proc = run_cli(
        "train.py", run, "experiment=maskgit_shapes", "stages=[stage1]", "data.train.size=64", "data.val.size=8",
        "data.batch_size=4", "trainer.max_steps=6", "logger=csv", *DDP,
        "+callbacks.kill._target_=tests.lit.fault_injection.KillRankAt", "+callbacks.kill.step=2", timeout=240,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert "rank" in lines[-1] and "resume" in lines[-1], lines[-1]
