"""``metrics.extractor=none`` (images no feature space fits, e.g. the embedded photo crops): the reconstruction task
gives PSNR / MSE / usage without any feature distance, the PSNR equal to its closed form on a real tokenizer's
round trip; tasks that need features are refused at startup with one line."""

from __future__ import annotations

import math

import pytest
import torch

from fsq_repro.errors import ConfigError
from fsq_repro.evaluation.maskgit import EvalOptions, reconstruction
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.quantizers import FSQ


def test_reconstruction_without_extractor_reports_psnr_and_usage_only() -> None:
    torch.manual_seed(0)
    tok = Tokenizer(FSQ([5, 3]), resolution=16, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1,
                    groups=4).eval()  # fmt: skip
    batches = [torch.rand(3, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1]
    with torch.no_grad():
        res = reconstruction(tok, None, batches, None, EvalOptions(batch_size=3, device="cpu"))
        tokens = [tok.encode(b) for b in batches]
        mse = [(tok.decode(t).clamp(-1, 1) - b).pow(2).flatten(1).mean(1) for t, b in zip(tokens, batches)]
    per_image = [10 * math.log10(4.0 / float(m)) for m in torch.cat(mse)]  # PSNR of the [-1, 1] range: peak² = 4
    assert res["psnr"] == pytest.approx(sum(per_image) / 5, rel=1e-5)
    used = torch.unique(torch.cat([t.flatten() for t in tokens])).numel()
    assert res["usage"] == pytest.approx(used / 15) and res["num_images"] == 5
    assert res["metric_space"] == "none" and not any(k.endswith("fd") for k in res)


def test_feature_tasks_are_refused_without_extractor() -> None:
    from omegaconf import OmegaConf

    from fsq_repro.pipeline.evaluate import run_one

    cfg = OmegaConf.create({"metrics": {"num_images": 4}})
    for task in ("sampling", "semantics", "cfg_sweep"):
        with pytest.raises(ConfigError, match="needs a feature space"):
            run_one(cfg, task, None, EvalOptions(device="cpu"), out_dir=None)


def test_train_refuses_feature_tasks_without_extractor_before_any_stage(capsys) -> None:
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from fsq_repro.pipeline.entry import run_train

    GlobalHydra.instance().clear()
    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["experiment=tradeoff_photos", "eval_tasks=[reconstruction,sampling]"]
        )
    with pytest.raises(SystemExit) as exit_info:
        run_train(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: eval_tasks ['sampling'] need a feature space: metrics.extractor=inception or shapes"]
