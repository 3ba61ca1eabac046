"""The whole pipeline under Lightning DDP on 2 CPU processes (docs/fault-tolerance.md, item 7), launched
as a subprocess: ``train.py ... trainer.devices=2 trainer.accelerator=cpu``.

- it runs stage1 → tokenize → stage2 → eval and writes exactly the files a 1-process run writes (only rank 0
  writes artifacts, grids, logs and reports; rank 1 adds nothing but its Hydra log);
- evaluation counts every validation image exactly once (``num_images`` = the split size, 33 is odd on purpose);
- Stage I with 2 × 8 images per step ends with the same weights as 1 process with 16 images per step: each rank
  draws its half of the same (seed, epoch) permutation, so the global batches are the same sets of images.
  (Stage II's mask draws are per rank, so its parity holds in distribution only.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import assert_ok, run_cli

DATA = ["data.train.size=96", "data.val.size=33"]
REST = ["experiment=maskgit_shapes", "trainer.max_steps=6", "trainer.precision=32-true", "logger=csv",
        "model.stage2.num_sample_images=2", "metrics.reference_size=96", "metrics.num_per_class=2",
        "metrics.is_splits=2", "metrics.batch_size=16"]  # fmt: skip


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "_ddp_process_" not in p.name}


@pytest.mark.slow
def test_two_process_pipeline_matches_one_process(tmp_path: Path, shapes_cache_dir: Path) -> None:
    cache = f"paths.cache_dir={shapes_cache_dir}"
    two, one = tmp_path / "two", tmp_path / "one"
    assert_ok(run_cli("train.py", two, *DATA, *REST, cache, "data.batch_size=8", "model.stage2.batch_size=8",
                      "trainer.devices=2", "trainer.accelerator=cpu", "+trainer.strategy=ddp"))  # fmt: skip
    assert_ok(run_cli("train.py", one, *DATA, *REST, cache, "data.batch_size=16", "model.stage2.batch_size=16",
                      "trainer.accelerator=cpu"))  # fmt: skip
    assert (two / "train_ddp_process_1.log").is_file()  # it really ran two processes
    assert files(two) == files(one)
    results = __import__("json").loads((two / "results.json").read_text())
    assert results["reconstruction"]["num_images"] == 33 and results["compression"]["num_images"] == 33

    a, b = (torch.load(d / "tokenizer.pt", map_location="cpu", weights_only=True)["state_dict"] for d in (two, one))
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst <= 1e-5, worst


def test_cpu_data_parallel_processes_share_the_cores() -> None:
    import os

    from omegaconf import OmegaConf

    from fsq_repro.pipeline.stages import split_cpu_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(os.cpu_count() or 1)
        split_cpu_threads(OmegaConf.create({"trainer": {"accelerator": "cpu", "devices": 1}}))
        assert torch.get_num_threads() == (os.cpu_count() or 1)  # one process keeps every core
        split_cpu_threads(OmegaConf.create({"trainer": {"accelerator": "cpu", "devices": 2}}))
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        torch.set_num_threads(before)
