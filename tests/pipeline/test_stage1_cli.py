"""Stage I from the command line: every tokenizer experiment, both bottlenecks, embedded data and an ImageFolder,
export at the end of training and from a checkpoint, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fsq_repro.artifacts import load_tokenizer, read_tokenizer_file
from tests.conftest import ROOT, assert_ok, run_cli
from tests.data.conftest import make_image_folder

SHAPES_TINY = ["data=shapes", "data.batch_size=8", "data.train.size=64", "data.val.size=16"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["tokenizer_fsq", "tokenizer_vq", "tokenizer_shapes"])
def test_fast_dev_run_of_every_tokenizer_experiment(experiment: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [f"experiment={experiment}", "debug=fast", *SHAPES_TINY]
    if experiment != "tokenizer_shapes":  # full-size nets at 32 px: keep the batch tiny
        overrides += ["data.batch_size=2", "data.num_workers=0", "data.persistent_workers=false"]
        overrides += ["loss.perceptual_weight=0"]  # no VGG-16 file here; LPIPS itself is tested in tests/losses
    assert_ok(run_cli("train.py", run, *overrides))
    tok = load_tokenizer(run / "tokenizer.pt")
    expected = 1024 if experiment == "tokenizer_vq" else (125 if experiment == "tokenizer_shapes" else 1000)
    assert tok.codebook_size == expected
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert tok.decode(tok.encode(images)).shape == images.shape


@pytest.mark.parametrize("quantizer", ["fsq_125", "vq_256"])
def test_both_bottlenecks_train_on_an_image_folder(quantizer: str, tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "imagenet", per_class=6)
    run = tmp_path / "run"
    proc = assert_ok(
        run_cli(
            "train.py",
            run,
            "experiment=tokenizer_shapes",
            f"quantizer={quantizer}",
            "data=folder",
            f"data.root={folder}",
            "data.resolution=32",
            "data.batch_size=4",
            "data.num_workers=0",
            "trainer.max_steps=3",
            "trainer.log_every_n_steps=1",
            "model.stage1.val_check_interval=3",
            "callbacks.model_checkpoint.every_n_train_steps=1",
        )
    )
    assert "wrote" in proc.stdout
    console = proc.stdout + proc.stderr
    # each Lightning line once (the first "Seed set" came before Lightning's own handler was removed), no
    # advertisement, no 15-line manual-optimisation example
    assert console.count("Seed set to 42") == 1 and console.count("GPU available:") == 1, console[-3000:]
    assert "litlogger" not in console and "manual optimization and every_n_train_steps" not in console
    payload = read_tokenizer_file(run / "tokenizer.pt")
    assert payload["codebook_size"] == int(quantizer.split("_")[1])
    assert payload["data_fingerprint"] and payload["extra"]["experiment"] == "tokenizer_shapes"
    assert (run / "stage1" / "reconstructions.png").is_file()
    summary = (run / "stage1.json").read_text()
    assert '"steps": 3' in summary and "val/psnr" in summary
    metrics = (run / "csv" / "stage1" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/l2", "train/psnr", "val/usage", "val/perplexity", "train/grad_norm_g"):
        assert key in metrics

    # Export from the Lightning checkpoint gives the same EMA weights as the end-of-training export.
    out = tmp_path / "exported.pt"
    subprocess.run(
        [
            sys.executable,
            "scripts/export_tokenizer.py",
            f"ckpt={run / 'checkpoints' / 'stage1' / 'last.ckpt'}",
            f"out={out}",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    a, b = read_tokenizer_file(run / "tokenizer.pt")["state_dict"], read_tokenizer_file(out)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # A finished stage is skipped on re-run (its artifact exists).
    again = assert_ok(run_cli("train.py", run, "experiment=tokenizer_shapes", "data=folder", f"data.root={folder}"))
    assert "skipped" in again.stdout


def test_missing_lpips_weights_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        "train.py",
        tmp_path / "run",
        "experiment=tokenizer_shapes",
        "loss.perceptual_weight=0.1",
        f"loss.perceptual.weights={tmp_path / 'missing.pth'}",
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: LPIPS needs VGG-16 weights") and "loss.perceptual.weights=" in last
    assert "Traceback" not in proc.stderr


def test_export_rejects_a_non_stage1_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, bogus)
    proc = subprocess.run(
        [sys.executable, "scripts/export_tokenizer.py", f"ckpt={bogus}"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not a Stage I" in proc.stderr


@pytest.mark.slow
def test_tensorboard_logger_writes_training_and_validation_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    steps = ["trainer.max_steps=4", "model.stage1.val_check_interval=2", "trainer.log_every_n_steps=1"]
    assert_ok(run_cli("train.py", run, "experiment=tokenizer_shapes", *SHAPES_TINY, "logger=tensorboard", *steps))
    events = EventAccumulator(str(run / "tensorboard" / "stage1")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/l2", "train/psnr", "val/psnr"} <= tags, tags
    assert len(events.Scalars("train/psnr")) == 4  # one point per step
    assert "reconstructions" in " ".join(events.Tags()["images"])
