"""Exact resume (docs/fault-tolerance.md, item 1): a run killed with SIGKILL mid-epoch and resumed from its last
checkpoint ends with the same weights, optimiser states and EMA as the uninterrupted run (max |Δ| ≤ 1e-6), for
Stage I (generator, discriminator, EMA, GAN warm-up counter) and Stage II. The kill lands mid-epoch and the resumed
part crosses an epoch boundary, so the data order (``StatefulDataLoader`` + ``EpochShuffleSampler``) and the
per-step re-seeding (``ReseedEveryStep``) are both exercised: without either the weights differ by ≫ 1e-6."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import assert_ok, run_cli

KILL = ["+callbacks.kill._target_=tests.lit.fault_injection.KillAtStep", "+callbacks.kill.step=10"]
# 48 training images in batches of 8: 6 batches an epoch; checkpoints every 5 steps; killed after step 10 (the
# middle of epoch 2), resumed from step 10 to 16 (crossing into epoch 3).
COMMON = ["data.train.size=48", "data.val.size=16", "data.batch_size=8", "trainer.max_steps=16",
          "callbacks.model_checkpoint.every_n_train_steps=5", "logger=none"]  # fmt: skip


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every floating/integer tensor in a nested checkpoint structure, by path."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(tensors(v, f"{prefix}/{i}"))
    return out


def max_difference(a: Path, b: Path) -> tuple[float, int]:
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    assert ca["global_step"] == cb["global_step"]
    ta = tensors({"state_dict": ca["state_dict"], "optimizer_states": ca["optimizer_states"]})
    tb = tensors({"state_dict": cb["state_dict"], "optimizer_states": cb["optimizer_states"]})
    assert ta.keys() == tb.keys()
    worst = max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta if ta[k].numel())
    return worst, len(ta)


def interrupted_and_resumed(tmp_path: Path, script_args: list[str]) -> tuple[Path, Path]:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert_ok(run_cli("train.py", straight, *script_args))
    killed = run_cli("train.py", broken, *script_args, *KILL)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL: no handler ran, no interrupted.ckpt
    assert_ok(run_cli("train.py", broken, *script_args))  # automatic resume from checkpoints/<stage>/last.ckpt
    return straight, broken


@pytest.mark.slow
def test_stage1_resume_after_sigkill_is_exact(tmp_path: Path) -> None:
    args = ["experiment=tokenizer_shapes", *COMMON, "model.stage1.val_check_interval=1000",
            "model.stage1.optim.warmup_steps=4", "model.stage1.gan_start_step=3"]  # fmt: skip
    straight, broken = interrupted_and_resumed(tmp_path, args)
    worst, count = max_difference(*(d / "checkpoints/stage1/last.ckpt" for d in (straight, broken)))
    assert count > 50  # generator, discriminator, EMA, two Adam states
    assert worst <= 1e-6, worst


@pytest.mark.slow
def test_stage2_resume_after_sigkill_is_exact(tmp_path: Path) -> None:
    tok = tmp_path / "tok"
    assert_ok(run_cli("train.py", tok, "experiment=maskgit_shapes", "stages=[stage1,tokenize]", *COMMON[:3],
                      "trainer.max_steps=2", "logger=none"))  # fmt: skip
    data = COMMON[:2]  # the same images (the cache checks the data fingerprint)
    # 96 cached sequences (48 images + their flips) in batches of 16: 6 batches an epoch; a validation (with
    # sampling) at step 8, before the kill, and at the end.
    args = ["experiment=maskgit_shapes", "stages=[stage2]", f"tokenizer={tok / 'tokenizer.pt'}",
            f"token_cache={tok / 'tokens'}", "model.stage2.batch_size=16", "model.stage2.val_check_interval=8",
            "model.stage2.limit_val_batches=1", "model.stage2.num_sample_images=2", *data, *COMMON[3:]]  # fmt: skip
    straight, broken = interrupted_and_resumed(tmp_path, args)
    worst, count = max_difference(*(d / "checkpoints/stage2/last.ckpt" for d in (straight, broken)))
    assert count > 30  # transformer + AdamW moments
    assert worst <= 1e-6, worst
