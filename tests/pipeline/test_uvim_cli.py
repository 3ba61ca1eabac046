"""UViM from the command line: the depth pipeline on the embedded scenes (uvim_stage1 → uvim_tokenize → uvim_stage2
→ uvim_eval → Table 2 report), and ``fast_dev_run`` of the NYU experiments on a small generated NYU folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsq_repro.artifacts import load_uvim_lm, load_uvim_stage1
from fsq_repro.data.token_cache import file_hash
from tests.conftest import ROOT, assert_ok, run_cli

TINY = ["data.train.size=64", "data.val.size=16", "data.batch_size=16", "model.stage2.batch_size=16",
        "trainer.log_every_n_steps=1", "eval_num_images=8"]  # fmt: skip


@pytest.mark.slow
def test_uvim_depth_shapes_end_to_end_and_report(tmp_path: Path) -> None:
    runs = []
    for quantizer in ("fsq_125", "vq_128_uvim_nosplit"):
        run = tmp_path / quantizer
        proc = assert_ok(run_cli("train.py", run, "experiment=uvim_depth_shapes", f"quantizer={quantizer}", *TINY,
                                 "trainer.max_steps=6", "model.stage1.val_check_interval=3",
                                 "model.stage2.val_check_interval=3"))  # fmt: skip
        assert "token cache" in proc.stdout and "RMSE" in proc.stdout
        runs.append(run)
    run = runs[0]
    for artifact in ("uvim_stage1.pt", "uvim_lm.pt", "uvim_tokens/meta.json", "uvim_eval.json", "uvim_eval.png",
                     "uvim_stage1/reconstructions.png", "uvim_stage2/predictions.png"):  # fmt: skip
        assert (run / artifact).exists(), artifact
    stage1, task = load_uvim_stage1(run / "uvim_stage1.pt")
    assert stage1.codebook_size == 125 and stage1.code_len == 16 and task.num_bins == 256
    lm = load_uvim_lm(run / "uvim_lm.pt", stage1_hash=file_hash(run / "uvim_stage1.pt"))
    assert lm.vocab_size == 126 and lm.seq_len == 16
    results = json.loads((run / "uvim_eval.json").read_text())
    assert results["uvim"]["num_images"] == 8 and 0 < results["usage"] <= 1 and results["uvim"]["rmse"] > 0
    metrics = (run / "csv" / "uvim_stage1" / "metrics.csv").read_text().splitlines()[0]
    assert "val/usage" in metrics and "val/oracle_rmse" in metrics and "train/loss" in metrics
    # a re-run skips every stage (artifacts exist)
    again = assert_ok(run_cli("train.py", run, "experiment=uvim_depth_shapes", *TINY, "trainer.max_steps=6"))
    assert again.stdout.count("skipped") >= 2
    # the Table 2 report over both runs
    report = subprocess.run([sys.executable, "scripts/report.py", str(tmp_path), "--out", str(tmp_path / "rep")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr
    rows = json.loads((tmp_path / "rep" / "uvim_table2.json").read_text())
    assert [r["bottleneck"] for r in rows] == ["FSQ", "VQ without splitting"]
    assert rows[1]["paper_rmse"] == 0.490 and (tmp_path / "rep" / "uvim_fig6.png").is_file()


def _nyu_folder(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(root / split / f"{i}_rgb.png")
            depth = (rng.uniform(0.5, 9.5, (480, 640)) * 1000).astype(np.uint16)
            Image.fromarray(depth).save(root / split / f"{i}_depth.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["uvim_depth_fsq", "uvim_depth_vq"])
def test_fast_dev_run_of_the_nyu_experiments(experiment: str, tmp_path: Path) -> None:
    """Every UViM stage of the paper experiments, one batch each, on a generated 2-frame NYU folder at 128 px (8 x 8
    patches, so 64 codes instead of the paper's 256 at 512 px). uvim_depth_fsq keeps the paper-size Stage I
    (width 768, 6 + 12 blocks); the others run Stage I only with 1+1 blocks, and Stage II has 1 layer, to fit the CI
    budget (the paper-size run at 256 px took 117 s here). uvim_depth_vq_nosplit differs from uvim_depth_vq in one
    flag (tests/test_configs.py checks it)."""
    root = _nyu_folder(tmp_path / "nyu")
    run = tmp_path / "run"
    # 16 depth bins instead of 256: the paper-size head (768 → 256 bins × 16² pixels, 50 M weights) dominated the time
    extra = ["model.stage2.lm.num_layers=1", "model.stage2.batch_size=2", "eval_num_images=1", "data.task.num_bins=16"]
    if experiment != "uvim_depth_fsq":
        extra += [
            "stages=[uvim_stage1]",
            "model.stage1.autoencoder.enc_depth=1",
            "model.stage1.autoencoder.dec_depth=1",
        ]
    assert_ok(run_cli("train.py", run, f"experiment={experiment}", "debug=fast", f"data.root={root}",
                      "data.resolution=128", "model.stage1.autoencoder.code_len=64", "data.batch_size=2",
                      "data.num_workers=0", "data.pin_memory=false", "data.persistent_workers=false",
                      "trainer.precision=32", *extra))  # fmt: skip
    payload = torch.load(run / "uvim_stage1.pt", weights_only=True)
    quantizer = payload["config"]["quantizer"]
    if experiment == "uvim_depth_fsq":
        assert quantizer["levels"] == [7, 5, 5, 5, 5] and payload["config"]["width"] == 768
        assert payload["config"]["enc_depth"] == 6 and payload["config"]["dec_depth"] == 12
        results = json.loads((run / "uvim_eval.json").read_text())
        assert results["uvim"]["num_images"] == 1
    else:
        assert quantizer["codebook_size"] == 4096 and quantizer["dim"] == 768
        assert quantizer["split_dead_codes"] == (experiment == "uvim_depth_vq")


PANOPTIC_FAST = ["debug=fast", "data.holdout=1", "data.resolution=64", "model.stage1.autoencoder.patch_size=8",
                 "model.stage1.autoencoder.code_len=16", "model.stage1.autoencoder.enc_depth=1",
                 "model.stage1.autoencoder.dec_depth=1", "model.stage2.lm.num_layers=1", "model.stage2.batch_size=2",
                 "data.batch_size=2", "data.num_workers=0", "data.pin_memory=false", "data.persistent_workers=false",
                 "trainer.precision=32", "eval_num_images=2"]  # fmt: skip


def _check_panoptic_stage1(run: Path, experiment: str) -> None:
    payload = torch.load(run / "uvim_stage1.pt", weights_only=True)
    config = payload["config"]
    assert payload["task"] == {"name": "panoptic", "num_semantic": 134, "num_instances": 100, "min_fraction": 0.0}
    assert config["label_classes"] == {"semantics": 134, "instances": 100}
    assert config["with_encoder_ctx"] == config["with_decoder_ctx"] == ("noctx" not in experiment)
    quantizer = config["quantizer"]
    if "_vq" in experiment:
        assert quantizer["codebook_size"] == 4096 and quantizer["split_dead_codes"]
    else:
        assert quantizer["levels"] == [7, 5, 5, 5, 5]


@pytest.mark.slow
def test_fast_dev_run_of_the_coco_panoptic_experiments(tmp_path: Path) -> None:
    """The panoptic paper experiments, one batch per stage, on a generated COCO-format folder (JSON + RGB-id PNGs,
    crowd, VOID; tests/tasks/panoptic/test_coco.py) at 64 px (Stage I patches of 8 px to keep the 234-class heads
    small in CI, 16 codes; the paper-size Stage I is covered by the NYU test above), Stage I 1 + 1 blocks, Stage II
    1 layer. uvim_panoptic_fsq runs every stage down to PQ on the val images; the other three (one multirun) Stage I
    only — what differs between them is the Stage I model."""
    from tests.tasks.panoptic.test_coco import make_coco

    root = make_coco(tmp_path / "coco", n_train=3, n_val=2, corrupt=False)
    run = tmp_path / "fsq"
    assert_ok(run_cli("train.py", run, "experiment=uvim_panoptic_fsq", f"data.root={root}", *PANOPTIC_FAST))
    _check_panoptic_stage1(run, "uvim_panoptic_fsq")
    results = json.loads((run / "uvim_eval.json").read_text())
    assert results["num_images"] == 2 and results["context"] is True and 0 <= results["uvim"]["pq"] <= 1
    assert results["task"]["name"] == "panoptic" and results["uvim"]["num_images"] == 2
    others = ["uvim_panoptic_vq", "uvim_panoptic_fsq_noctx", "uvim_panoptic_vq_noctx"]
    sweep = tmp_path / "others"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        f"experiment={','.join(others)}",
        "data=coco_panoptic",  # the sweep's overrides are checked against the base config: name the groups
        "model/stage1=uvim_vit_base",
        "model/stage2=uvim_large",
        f"data.root={root}",
        "stages=[uvim_stage1]",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra:job.num}",
        *PANOPTIC_FAST,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), CUDA_VISIBLE_DEVICES="")
    assert_ok(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env))
    for num, experiment in enumerate(others):
        _check_panoptic_stage1(sweep / str(num), experiment)


@pytest.mark.slow
def test_panoptic_and_colorization_shapes_end_to_end_and_table2(tmp_path: Path, shapes_cache_dir: Path) -> None:
    """The CPU experiments of the two other Table 2 tasks, every stage down to PQ / FD-shapes, then the report:
    one row per (task, bottleneck) with the paper's number beside it, and a grid per task."""
    common = [*TINY, "trainer.max_steps=6", "model.stage1.val_check_interval=3", "model.stage2.val_check_interval=3",
              f"paths.cache_dir={shapes_cache_dir}"]  # fmt: skip
    runs = {
        "pan_fsq": ["experiment=uvim_panoptic_shapes"],
        "col_vq": [
            "experiment=uvim_color_shapes",
            "quantizer=vq_128_uvim",
            "data.train.base.size=64",
            "data.eval_count=16",
            "data.val.base.size=32",
        ],
    }
    for name, overrides in runs.items():
        args = [a for a in common if not (name == "col_vq" and a.startswith(("data.train.size", "data.val.size")))]
        proc = assert_ok(run_cli("train.py", tmp_path / name, *overrides, *args))
        results = json.loads((tmp_path / name / "uvim_eval.json").read_text())
        assert results["num_images"] == 8 and results["context"] is True
        if name.startswith("pan"):
            assert "PQ" in proc.stdout and 0 <= results["uvim"]["pq"] <= 1 and results["oracle"]["n_stuff"] >= 1
        else:
            assert results["feature_space"] == "FD-shapes" and results["uvim"]["num_reference"] == 8
            assert results["uvim"]["fd"] > 0 and results["uvim"]["psnr"] > 0
    # the no-context row: the FSQ run's files, marked as an autoencoder without context (the ablation runs for
    # real in the COCO fast_dev_run test; here only the report's grouping is under test)
    shutil.copytree(tmp_path / "pan_fsq", tmp_path / "pan_noctx", ignore=shutil.ignore_patterns("*.pt", "uvim_tokens"))
    noctx = json.loads((tmp_path / "pan_noctx" / "uvim_eval.json").read_text())
    (tmp_path / "pan_noctx" / "uvim_eval.json").write_text(json.dumps({**noctx, "context": False}))
    report = subprocess.run([sys.executable, "scripts/report.py", str(tmp_path), "--out", str(tmp_path / "rep")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr
    rows = json.loads((tmp_path / "rep" / "uvim_table2.json").read_text())
    assert [(r["task"], r["bottleneck"]) for r in rows] == [
        ("panoptic", "FSQ"), ("panoptic", "FSQ without context"), ("colorization", "VQ")]  # fmt: skip
    assert rows[0]["paper_pq"] == 43.2 and rows[1]["paper_pq"] == 40.2 and rows[2]["paper_fd"] == 16.90
    assert 0 <= rows[0]["pq"] <= 100  # reported in points
    for png in ("uvim_panoptic_grid.png", "uvim_colorization_grid.png"):
        assert (tmp_path / "rep" / png).is_file()
    text = (tmp_path / "rep" / "uvim_report.md").read_text()
    assert "FD-shapes" in text and "FID-5k" in text  # ours named by its feature space, the paper's FID-5k


def _image_folder(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "c0").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / split / "c0" / f"{i}.jpg")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["uvim_color_fsq", "uvim_color_vq"])
def test_fast_dev_run_of_the_colorization_experiments(experiment: str, tmp_path: Path) -> None:
    """The colorization paper experiments, one batch per stage, on a generated ImageFolder at 64 px (Stage I 1 + 1
    blocks, Stage II 1 layer). FID-5k needs the Inception weights: without them uvim_eval stops with one line
    naming the option. uvim_color_vq runs Stage I only."""
    root = _image_folder(tmp_path / "imagenet")
    run = tmp_path / "run"
    stages = (
        "stages=[uvim_stage1]"
        if experiment == "uvim_color_vq"
        else "stages=[uvim_stage1,uvim_tokenize,uvim_stage2,uvim_eval]"
    )
    common = [f"experiment={experiment}", "debug=fast", f"data.root={root}", "data.resolution=64",
              "model.stage1.autoencoder.code_len=16", "model.stage1.autoencoder.enc_depth=1",
              "model.stage1.autoencoder.dec_depth=1", "model.stage2.lm.num_layers=1", "model.stage2.batch_size=2",
              "data.batch_size=2", "data.num_workers=0", "data.pin_memory=false", "data.persistent_workers=false",
              "trainer.precision=32", "data.eval_count=2", "data.val.reference_start=2",
              "eval_num_images=2"]  # fmt: skip
    proc = run_cli("train.py", run, *common, stages)
    if experiment == "uvim_color_fsq":  # every stage runs; uvim_eval stops at the missing Inception weights
        assert proc.returncode != 0 and "inception_weights" in proc.stderr.strip().splitlines()[-1]
        assert (run / "uvim_lm.pt").is_file()
    else:
        assert_ok(proc)
    payload = torch.load(run / "uvim_stage1.pt", weights_only=True)
    assert payload["config"]["label_channels"] == {"color": 3} and payload["config"]["label_classes"] == {}
    assert payload["task"]["extractor"] == "inception" and payload["task"]["eval_size"] == 256
