"""The two-stage pipeline from the command line on the embedded shapes: tokenizer → token cache → MaskGIT →
samples, ``fast_dev_run`` of the ImageNet MaskGIT experiments, and the startup checks between stages."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.artifacts import load_maskgit, read_tokenizer_file
from fsq_repro.pipeline.entry import KNOWN_NOISE
from tests.conftest import assert_ok, run_cli

TINY_DATA = ["data.train.size=96", "data.val.size=32", "data.batch_size=16"]
TINY_EVAL = ["metrics.reference_size=96", "metrics.num_per_class=2", "metrics.is_splits=2", "metrics.batch_size=16"]


@pytest.mark.slow
def test_shapes_pipeline_end_to_end(tmp_path: Path, shapes_cache_dir: Path) -> None:
    run = tmp_path / "run"
    proc = assert_ok(
        run_cli(
            "train.py", run, "experiment=maskgit_shapes", *TINY_DATA, "trainer.max_steps=4",
            "trainer.log_every_n_steps=1", "model.stage1.val_check_interval=2", "model.stage2.val_check_interval=2",
            "model.stage2.batch_size=16", "model.stage2.num_sample_images=2", *TINY_EVAL,
            "metrics.compression_images=16", f"paths.cache_dir={shapes_cache_dir}",
        )
    )  # fmt: skip
    for artifact in ("tokenizer.pt", "tokens/meta.json", "maskgit.pt", "stage2/samples_step2.png", "stage1.json",
                     "results.json", "usage_histogram.png"):  # fmt: skip
        assert (run / artifact).exists(), artifact
    assert "token cache" in proc.stdout
    assert not [m for m in KNOWN_NOISE if re.search(m, proc.stderr)]  # known third-party notices are silenced
    model = load_maskgit(run / "maskgit.pt")
    assert model.codebook_size == 125 and model.num_tokens == 64 and model.num_classes == 10
    metrics = (run / "csv" / "stage2" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in metrics and "train/masked_accuracy" in metrics and "val/loss" in metrics

    # samples in the ADM format
    samples = tmp_path / "samples"
    assert_ok(run_cli("sample.py", samples, f"run={run}", "num_per_class=2", "batch_size=8"))
    with np.load(samples / "samples.npz") as z:
        assert z["arr_0"].shape == (20, 32, 32, 3) and z["arr_0"].dtype == np.uint8
        assert np.array_equal(z["arr_1"], np.tile(np.arange(10), 2))  # class-interleaved (ADM IS chunks)
    assert (samples / "samples.png").is_file()

    # every eval task on the embedded data, in the shapes classifier's feature space (FD-shapes, never "FID")
    pipeline_results = json.loads((run / "results.json").read_text())
    assert set(pipeline_results) == {"reconstruction", "sampling", "compression"}
    assert [pipeline_results[t]["num_images"] for t in ("reconstruction", "compression")] == [32, 16]
    common = [f"run={run}", f"paths.cache_dir={shapes_cache_dir}", *TINY_DATA, *TINY_EVAL]
    results = {}
    semantics = ["semantics.top_codes=3", "semantics.patches_per_code=4", "semantics.paint_images=3",
                 "semantics.paint_codes=2"]  # fmt: skip
    for task in ("ref_stats", "reconstruction", "sampling", "cfg_sweep", "compression", "semantics"):
        out = tmp_path / f"eval_{task}"
        assert_ok(run_cli("eval.py", out, f"task={task}", *common, "cfg_scales=[0,1]", *semantics))
        results[task] = json.loads((out / "results.json").read_text())
    assert results["ref_stats"]["count"] == 96
    rec = results["reconstruction"]
    assert rec["metric_space"] == "FD-shapes" and rec["num_images"] == 32 and rec["rfd"] > 0 and 0 < rec["usage"] <= 1
    assert 0 <= rec["rprecision"] <= 1 and rec["psnr"] > 5
    smp = results["sampling"]
    assert smp["num_images"] == 20 and smp["is"] >= 1 and smp["cfg_scale"] == 0.2 and "precision" in smp
    assert smp["is_mode"].startswith("adm") and "sfid" not in smp  # sFID only with the Inception extractor
    assert 0 <= smp["class_accuracy"] <= 1  # the shapes classifier's verdict on the asked-for class
    assert [c["cfg_scale"] for c in results["cfg_sweep"]["curve"]] == [0.0, 1.0]
    assert (tmp_path / "eval_cfg_sweep" / "cfg_sweep.png").is_file()
    logged = (tmp_path / "eval_cfg_sweep" / "csv" / "eval_cfg_sweep" / "metrics.csv").read_text().splitlines()
    assert "eval_cfg_sweep/fd" in logged[0] and len(logged) == 3  # header + one row per α
    assert "eval_reconstruction/rfd" in (tmp_path / "eval_reconstruction" / "csv" / "eval_reconstruction"
                                         / "metrics.csv").read_text()  # fmt: skip
    sem = results["semantics"]
    assert sem["num_images"] == 32 and len(sem["codes"]) == 3 and sem["metric_space"] == "FD-shapes"
    assert -1 <= sem["patch_similarity_within_code"] <= 1 and Path(sem["paint"]).is_file()
    comp = results["compression"]
    assert comp["num_images"] == 32 and 0 < comp["bits_per_token"] and comp["uniform_bits_per_token"] == math.log2(125)

    # re-running the finished pipeline skips every stage
    again = assert_ok(run_cli("train.py", run, "experiment=maskgit_shapes", *TINY_DATA))
    assert again.stdout.count("skipped") == 3 and "token cache" in again.stdout

    # a cache built with another tokenizer is refused with both hashes named
    payload = read_tokenizer_file(run / "tokenizer.pt")
    payload["extra"]["note"] = "another tokenizer"
    torch.save(payload, tmp_path / "other.pt")
    bad = run_cli(
        "train.py", tmp_path / "run2", "experiment=maskgit_shapes", *TINY_DATA, "stages=[stage2]",
        f"tokenizer={tmp_path / 'other.pt'}", f"token_cache={run / 'tokens'}",
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: token cache") and "was built with tokenizer" in last and "Traceback" not in bad.stderr
    )


FAST_EVAL = ["metrics.reference_size=96", "metrics.num_per_class=1", "metrics.is_splits=2", "metrics.batch_size=10",
             "sampler.steps=2"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["maskgit_fsq", "maskgit_vq", "tradeoff_fsq", "tradeoff_vq"])
def test_fast_dev_run_of_the_imagenet_experiments(experiment: str, tmp_path: Path, shapes_cache_dir: Path) -> None:
    """Every stage of the paper-size experiments, one batch each, on the shapes instead of ImageNet. The 128 px
    trade-off experiments differ from maskgit_* (same nets) in resolution and lengths: they run Stage I at their
    own 128 px only, and maskgit_vq runs a 2-layer transformer (maskgit_fsq has the paper-size one), to keep the
    suite inside the CI budget."""
    run = tmp_path / "run"
    tradeoff = experiment.startswith("tradeoff")
    extra = ["stages=[stage1]", "data=shapes", "data.resolution=128"] if tradeoff else ["data=shapes"]
    depth = 2 if experiment == "maskgit_vq" else 24
    extra += [f"model.stage2.transformer.depth={depth}"]
    assert_ok(
        run_cli(
            "train.py", run, f"experiment={experiment}", "debug=fast", *extra, "data.train.size=8",
            "data.val.size=4", "data.batch_size=2", "model.stage2.batch_size=2", "model.stage2.compile=false",
            "model.stage2.num_sample_images=1", "model.stage2.num_workers=0",
            "loss.perceptual_weight=0",  # no VGG-16 file here; the LPIPS path is tested in tests/losses
            "metrics.extractor=shapes", f"paths.cache_dir={shapes_cache_dir}", *FAST_EVAL,  # no Inception file
        )
    )  # fmt: skip
    assert not list(run.rglob("*.ckpt"))  # a paper-size smoke run would write 3 GB of them
    tokenizer = read_tokenizer_file(run / "tokenizer.pt")["config"]
    assert len(tokenizer["quantizer"].get("levels", [])) == (4 if experiment.endswith("fsq") else 0)
    if tradeoff:
        assert tokenizer["net"]["resolution"] == 128  # 8x8 tokens at 128 px
        return
    model = load_maskgit(run / "maskgit.pt")
    assert model.arch["depth"] == depth and model.arch["hidden_dim"] == 768  # the paper-size transformer
    assert model.codebook_size == (1000 if experiment.endswith("fsq") else 1024)
    assert set(json.loads((run / "results.json").read_text())) == {"reconstruction", "sampling", "compression"}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["demo", "maskgit_shapes", "levels_ablation"])
def test_fast_dev_run_of_the_cpu_experiments(experiment: str, tmp_path: Path, shapes_cache_dir: Path) -> None:
    """The CPU experiments, and one job of the levels ablation (a multirun; run here as a single job with one of
    its L_i < 5 level sets, Stage I only: its other stages are those of tradeoff_fsq)."""
    run = tmp_path / "run"
    extra = ["hydra.mode=RUN", "quantizer=fsq_1024_l2", "stages=[stage1]", "data=shapes"]
    extra = extra if experiment == "levels_ablation" else []
    assert_ok(
        run_cli(
            "train.py", run, f"experiment={experiment}", "debug=fast", "data.train.size=8", "data.val.size=4",
            "data.batch_size=2", "model.stage2.batch_size=2", "model.stage2.num_sample_images=1",
            "loss.perceptual_weight=0", "metrics.extractor=shapes", f"paths.cache_dir={shapes_cache_dir}",
            *FAST_EVAL, *extra,
        )
    )  # fmt: skip
    assert not list(run.rglob("*.ckpt"))  # fast_dev_run writes no Lightning checkpoint (they filled the CI disk)
    tokenizer = read_tokenizer_file(run / "tokenizer.pt")
    if experiment == "levels_ablation":
        assert tokenizer["config"]["quantizer"]["levels"] == [2] * 10
    else:
        assert (run / "results.json").is_file() and (run / "maskgit.pt").is_file()
