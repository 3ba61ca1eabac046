"""Stage I of ``train.py``: train the tokenizer (FSQ paper §4.1/§4.3) and export ``<run>/tokenizer.pt``."""

from __future__ import annotations

from dataclasses import asdict

from hydra.utils import instantiate
from omegaconf import DictConfig

from fsq_repro.artifacts import save_tokenizer
from fsq_repro.data.fingerprint import data_fingerprint
from fsq_repro.lit.callbacks import ImageGridLogger
from fsq_repro.lit.tokenizer_module import TokenizerModule
from fsq_repro.lit.trainer import seed_everything
from fsq_repro.pipeline.global_batch import configure_global_batch
from fsq_repro.pipeline.stages import (
    build_trainer,
    count_parameters,
    export,
    fit_and_validate,
    plain,
    run_dir,
    skip_if_done,
)


def stage_stage1(cfg: DictConfig) -> dict:
    """Train the tokenizer (FSQ paper §4.1/§4.3 Stage I) and export ``<run>/tokenizer.pt`` from the EMA weights."""
    out = run_dir(cfg) / "tokenizer.pt"
    if done := skip_if_done(out, "tokenizer", cfg.get("tokenizer")):
        return done
    seed_everything(int(cfg.seed))
    stage_cfg = cfg.model.stage1
    fingerprint = data_fingerprint(plain(cfg.data))
    dm = instantiate(cfg.data, shuffle_seed=int(cfg.seed))
    tokenizer = instantiate(stage_cfg.tokenizer)(quantizer=instantiate(cfg.quantizer))
    loss = instantiate(cfg.loss)
    discriminator = instantiate(stage_cfg.discriminator) if loss.gan_weight > 0 else None
    module = TokenizerModule(
        tokenizer, loss, discriminator, **plain(stage_cfg.optim), data_fingerprint=fingerprint,
        max_nonfinite_skips=stage_cfg.max_nonfinite_skips,
    )  # fmt: skip
    grids = ImageGridLogger(run_dir(cfg) / "stage1", name="reconstructions", nrow=8)
    trainer = build_trainer(cfg, "stage1", stage_cfg, [grids])
    batch = configure_global_batch(cfg, "stage1", trainer, module, "data.batch_size", int(cfg.data.batch_size))
    params = {
        "encoder": count_parameters(tokenizer.encoder),
        "decoder": count_parameters(tokenizer.decoder),
        "quantizer": count_parameters(tokenizer.quantizer),
        "discriminator": count_parameters(discriminator),
    }
    print(f"  parameters: {params}; token grid {tokenizer.token_grid}, codebook {tokenizer.codebook_size}")
    summary = fit_and_validate(cfg, "stage1", trainer, module, dm)
    val = summary["val"]
    summary.update({
        "parameters": params,
        "codebook_size": tokenizer.codebook_size,
        "token_grid": list(tokenizer.token_grid),
        "quantizer": tokenizer.quantizer.config(),
        "data": cfg.data.get("name"),
        "data_fingerprint": fingerprint,
        "global_batch": asdict(batch),
    })  # fmt: skip
    extra = {"experiment": cfg.experiment_name, "val": val}
    return export(cfg, "stage1", trainer, summary, out, lambda: save_tokenizer(out, module.ema, fingerprint, extra))
