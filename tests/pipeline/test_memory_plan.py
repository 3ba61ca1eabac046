"""The memory plan (``fsq_repro/pipeline/memory_plan.py``, ``scripts/plan_memory.py``; docs/gpu.md "Memory plan"):
its peak against a real CPU step's resident memory, its parameter and Adam-state bytes against closed forms at the
paper's size, activation checkpointing (same gradients, less memory), the batch arithmetic and the CUDA start
check's one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fsq_repro.errors import ConfigError
from fsq_repro.pipeline.memory_plan import (
    BUILDERS,
    HEADROOM,
    StagePlan,
    check_device_memory,
    compose_train_config,
    plan_stage,
    step_peak,
    with_checkpointing,
)
from tests.conftest import ROOT

# (experiment, stage, per-device batch): sizes whose step needs 0.3-1 GB, so that the process's few MB of other
# memory (allocator, kernel scratch) stay far below the 10 % tolerance
REAL_STEPS = [("maskgit_shapes", "stage1", 128), ("maskgit_shapes", "stage2", 64),
              ("uvim_depth_shapes", "uvim_stage1", 32), ("uvim_depth_shapes", "uvim_stage2", 512)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("experiment,stage,batch", REAL_STEPS)
def test_the_plan_is_within_10_percent_of_a_real_cpu_steps_resident_peak(experiment: str, stage: str,
                                                                          batch: int) -> None:  # fmt: skip
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "tests/pipeline/memory_probe.py", experiment, stage, str(batch)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["plan"] == got["tracked"], got  # fake tensors allocate exactly what real ones do
    assert abs(got["plan"] - got["resident"]) <= 0.10 * got["resident"], got
    assert got["resident"] > 200 * 2**20, got  # large enough for the tolerance to mean something


def test_the_paper_transformer_has_172m_parameters_and_twice_their_bytes_in_adam_state() -> None:
    """FSQ paper §4.3 / MaskGIT: the 24-layer, 768-wide transformer over 1 000 codes has 172 438 737 parameters
    (its published count); float32 weights are 4 bytes each and AdamW keeps two moments of the same size, plus
    one float32 step counter per parameter tensor (fused AdamW)."""
    cfg = compose_train_config(["experiment=maskgit_fsq", "stages=[stage2]"])
    got = step_peak(cfg, "stage2", 4)
    n = got["parameters"]
    assert n == 172_438_737
    assert got["parts"]["parameters"] == 4 * n
    tensors = sum(1 for _ in BUILDERS["stage2"](cfg, 4, "32-true", "meta")[2].parameters())  # on meta: no memory
    assert got["parts"]["optimizer state"] == 8 * n + 4 * tensors
    # at the paper's per-device batch the state is what every device holds at least
    assert got["peak"] > got["parts"]["parameters"] + got["parts"]["optimizer state"]


def test_activation_checkpointing_gives_the_same_gradients_and_a_smaller_plan() -> None:
    from fsq_repro.nets.tokenizer import Tokenizer
    from fsq_repro.quantizers.fsq import FSQ

    torch.manual_seed(0)
    plain = Tokenizer(FSQ([5, 5, 5]), resolution=16, base_channels=16, channel_multipliers=[1, 2], groups=8)
    ckpt = Tokenizer(FSQ([5, 5, 5]), resolution=16, base_channels=16, channel_multipliers=[1, 2], groups=8,
                     checkpoint_activations=True)  # fmt: skip
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    grads = []
    for net in (plain, ckpt):
        recon, q = net(x)
        ((recon - x).square().mean() + q.loss).backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=0, atol=1e-7, msg=k)
    assert plain.config() == ckpt.config()  # a training choice, not part of the exported tokenizer

    cfg = compose_train_config(["experiment=maskgit_shapes", "trainer=cpu"])
    without = step_peak(cfg, "stage1", 32, "32-true")["peak"]
    with_ = step_peak(with_checkpointing(cfg), "stage1", 32, "32-true")["peak"]
    assert with_ < 0.8 * without, (with_, without)


def test_largest_batch_and_layout_by_hand() -> None:
    gb = 1e9
    # peak(b) = 10 GB + b × 1 GB: at 80 GB with 10 % kept free, (72 - 10) / 1 = 62 samples fit
    plan = StagePlan("stage1", batch=8, peak=int(18 * gb), parts={}, per_sample=1 * gb, global_batch=512,
                     parameters=1)  # fmt: skip
    assert HEADROOM == 0.9
    assert plan.largest_batch(80 * gb) == 62
    assert plan.fits(20 * gb) and not plan.fits(19 * gb)
    assert plan.layout(80 * gb, 8) == (32, 2)  # 512 / 8 = 64 per device does not fit 62: 32 × 2 micro-batches
    assert plan.layout(80 * gb, 1) == (32, 16)
    assert plan.layout(11 * gb, 8) is None  # not one sample fits


def test_a_cuda_start_whose_batch_does_not_fit_names_one_that_does() -> None:
    cfg = compose_train_config(["experiment=maskgit_shapes", "trainer=cpu"])
    plan = plan_stage(cfg, "stage1", 16)  # the configured precision, as the check plans it
    assert check_device_memory(cfg, "stage1", "data.batch_size", 16, free_bytes=10 * plan.peak) is not None
    small = int(plan.peak / HEADROOM * 0.6)
    with pytest.raises(ConfigError) as err:
        check_device_memory(cfg, "stage1", "data.batch_size", 16, free_bytes=small, total_bytes=2 * small)
    message = str(err.value)
    assert "\n" not in message and "data.batch_size=16 needs" in message
    assert f"use data.batch_size={plan.largest_batch(small)} " in message
    assert 1 <= plan.largest_batch(small) < 16
    cfg.memory_check = False
    assert check_device_memory(cfg, "stage1", "data.batch_size", 16, free_bytes=small) is None


def test_plan_memory_script_prints_the_table(capsys) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import plan_memory
    finally:
        sys.path.pop(0)
    assert plan_memory.main(["experiment=maskgit_shapes", "trainer=cpu", "--gpu-memory", "40", "--devices", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| maskgit_shapes")]
    assert [r.split(" | ")[1] for r in rows] == ["stage1", "stage2"], out
    assert "plan: 2 stages" in out
