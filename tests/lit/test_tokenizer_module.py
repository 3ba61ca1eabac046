"""Stage I real small fits on the embedded shapes (CPU): reconstructions really improve; EMA covers the generator."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from fsq_repro.artifacts import load_tokenizer, save_tokenizer
from fsq_repro.data.embedded import ShapesDataset
from fsq_repro.hardware import resolve_precision
from fsq_repro.lit.datamodules import ImageDataModule
from fsq_repro.lit.tokenizer_module import TokenizerModule
from fsq_repro.losses.stage1 import Stage1Loss
from fsq_repro.nets.discriminator import Discriminator
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.quantizers import FSQ, VectorQuantizer

NET = dict(resolution=32, base_channels=32, channel_multipliers=[1, 2, 2], num_res_blocks=1)


def _fit(quantizer, steps: int, tmp_path: Path, gan: bool = False):
    pl.seed_everything(0)
    dm = ImageDataModule(
        train=partial(ShapesDataset, "train", size=4000, resolution=32),
        val=partial(ShapesDataset, "val", size=256, resolution=32),
        batch_size=32,
    )
    disc = Discriminator(32, max_channels=32) if gan else None
    module = TokenizerModule(
        Tokenizer(quantizer, **NET),
        Stage1Loss(perceptual_weight=0.0, gan_weight=0.1 if gan else 0.0, gan_start_step=2),
        disc,
        lr=2e-3,
        warmup_steps=20,
        ema_decay=0.9,
        grad_clip=1.0,  # as model/stage1/tiny.yaml (a CPU-run choice; the module's default, as MaskGIT, is no clip)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        # what trainer=cpu uses: bf16 autocast where the CPU has fast bf16, else float32 (fsq_repro/hardware.py);
        # the quantizers compute in fp32 either way
        precision=resolve_precision("bf16-mixed", on_cpu=True)[0],
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    module.disc_init = {k: v.clone() for k, v in disc.state_dict().items()} if disc else {}
    evaluator = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    first = evaluator.validate(module, datamodule=dm, verbose=False)[0]
    trainer.fit(module, datamodule=dm)
    last = evaluator.validate(module, datamodule=dm, verbose=False)[0]
    return module, dm, first, last


def _mean_predictor_mse(dm: ImageDataModule) -> float:
    train = torch.stack([dm.train_set[i]["image"] for i in range(2000)])
    val = torch.stack([dm.val_set[i]["image"] for i in range(256)])
    return (val - train.mean(0)).pow(2).mean().item()


@pytest.mark.slow
def test_fsq_tokenizer_learns_to_reconstruct_shapes(tmp_path: Path) -> None:
    module, dm, first, last = _fit(FSQ([5, 5, 5]), 200, tmp_path)
    assert last["val/mse"] < 0.5 * first["val/mse"]
    assert last["val/mse"] < _mean_predictor_mse(dm)
    assert last["val/usage"] > 0.9
    # Export the EMA generator; decode(encode(x)) equals the module's own EMA reconstruction bit for bit.
    path = save_tokenizer(tmp_path / "tokenizer.pt", module.ema, data_fingerprint=dm.train_set.fingerprint())
    tok = load_tokenizer(path)
    x = torch.stack([dm.val_set[i]["image"] for i in range(8)])
    with torch.no_grad():
        ema_recon, _ = module.ema.eval()(x)
    assert torch.equal(tok.decode(tok.encode(x)), ema_recon)


@pytest.mark.slow
def test_vq_tokenizer_with_gan_trains_and_ema_skips_the_discriminator(tmp_path: Path) -> None:
    module, _, first, last = _fit(VectorQuantizer(125, dim=8), 60, tmp_path, gan=True)
    assert last["val/mse"] < first["val/mse"]
    assert 0.0 < last["val/usage"] <= 1.0  # reported, no threshold
    ema_names = {n for n, _ in module.ema.named_parameters()}
    assert ema_names == {n for n, _ in module.tokenizer.named_parameters()}
    assert not any(n.startswith("discriminator") for n in ema_names)
    # EMA weights differ from the raw generator (they are an average), and the discriminator was trained.
    assert any(not torch.equal(a, b) for a, b in zip(module.ema.parameters(), module.tokenizer.parameters()))
    assert int(module.batches_seen) == 60  # max_steps counts optimizer steps (G and D together count once)
    trained = module.discriminator.state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in module.disc_init.items())  # discriminator stepped
