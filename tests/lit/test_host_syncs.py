"""No device→host synchronisation in a training step that does not log (docs/gpu.md, "No host syncs in the training
step"). Stage I (generator, discriminator with the GAN term, R1 and LeCam, accumulation of two micro-batches), Stage
II (MaskGIT) and UViM Stage I and II (depth) train real small models for a few steps under ``HostSyncs``, a
dispatch mode that records every call that would make the host wait for a GPU (``tests/lit/host_sync.py``); the
recorded batches are steps where nothing is logged or shown (``log_every_n_steps`` and the progress bar's
``metrics_every`` far away). The recorder itself is shown to catch a planted ``.item()``."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from fsq_repro.lit.callbacks import ProgressBar
from fsq_repro.lit.maskgit_module import MaskGITModule
from fsq_repro.lit.tokenizer_module import TokenizerModule
from fsq_repro.lit.uvim_module import UViMStage1Module, UViMStage2Module
from fsq_repro.losses.stage1 import Stage1Loss
from fsq_repro.nets.discriminator import Discriminator
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.nets.transformer import MaskGITTransformer
from fsq_repro.quantizers import FSQ
from fsq_repro.tasks.base import build_task
from tests.conftest import ROOT
from tests.lit.host_sync import RecordHostSyncs

RES = 16


class _Items(Dataset):
    def __init__(self, make, size: int = 48) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [make(g) for _ in range(size)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _image(g) -> dict:
    return {"image": torch.rand(3, RES, RES, generator=g) * 2 - 1}


def _collate_images(items: list[dict]) -> dict:
    return {"image": torch.stack([x["image"] for x in items]), "num_corrupt": torch.tensor(0)}


def _syncs(tmp_path: Path, module: pl.LightningModule, loader: DataLoader, **trainer_kwargs) -> list[dict]:
    """Train 4 steps; the syncs recorded in batches 2 and 3 (after the first, which builds lazily)."""
    recorder = RecordHostSyncs(first=2, count=2)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path, log_every_n_steps=1000,
        callbacks=[recorder, ProgressBar(metrics_every=1000)], **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    assert len(recorder.batches) == 2
    return recorder.mode.events


def _stage1() -> TokenizerModule:
    torch.manual_seed(0)
    tokenizer = Tokenizer(FSQ([5, 5, 5]), resolution=RES, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1,
                          groups=4)  # fmt: skip
    loss = Stage1Loss(perceptual_weight=0.0, gan_weight=0.1, gan_start_step=0, r1_cost=10.0, lecam_weight=0.1)
    module = TokenizerModule(tokenizer, loss, Discriminator(RES, max_channels=8), lr=1e-3, warmup_steps=2,
                             grad_clip=1.0, accumulate_grad_batches=2)  # fmt: skip
    return module


def _maskgit() -> MaskGITModule:
    torch.manual_seed(0)
    model = MaskGITTransformer(16, 4, 8, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64)
    return MaskGITModule(model, warmup_steps=1, total_steps=8)


def _tokens(g) -> dict:
    return {"tokens": torch.randint(0, 16, (8,), generator=g), "label": int(torch.randint(0, 4, (), generator=g))}


def _uvim_cfg():
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=["experiment=uvim_depth_shapes", "data.resolution=32"])


def test_stage1_step_with_gan_r1_lecam_and_accumulation_has_no_host_sync(tmp_path: Path) -> None:
    loader = DataLoader(_Items(_image), batch_size=4, collate_fn=_collate_images)
    assert _syncs(tmp_path, _stage1(), loader, precision="32-true") == []


def test_maskgit_step_has_no_host_sync(tmp_path: Path) -> None:
    loader = DataLoader(_Items(_tokens), batch_size=8)
    assert _syncs(tmp_path, _maskgit(), loader, accumulate_grad_batches=2) == []


def test_uvim_stage1_and_stage2_steps_have_no_host_sync(tmp_path: Path) -> None:
    cfg = _uvim_cfg()
    task = build_task(dict(cfg.data.task))
    model = instantiate(cfg.model.stage1.autoencoder)(quantizer=instantiate(cfg.quantizer),
                                                      label_classes=task.label_classes, input_size=32,
                                                      label_channels=task.label_channels)  # fmt: skip
    dm = instantiate(cfg.data, shuffle_seed=0, batch_size=4)
    dm.setup("fit")
    stage1 = UViMStage1Module(model, task, warmup_steps=2, total_steps=8)
    assert _syncs(tmp_path / "s1", stage1, dm.train_dataloader()) == []

    lm = instantiate(cfg.model.stage2.lm)(codebook_size=model.codebook_size, seq_len=model.code_len, input_size=32)

    def pair(g) -> dict:
        codes = torch.randint(0, model.codebook_size, (model.code_len,), generator=g)
        return {"image": torch.rand(3, 32, 32, generator=g), "tokens": codes}

    stage2 = UViMStage2Module(lm, warmup_steps=2, total_steps=8)
    assert _syncs(tmp_path / "s2", stage2, DataLoader(_Items(pair), batch_size=4)) == []


def test_the_recorder_catches_a_planted_item(tmp_path: Path) -> None:
    module = _maskgit()
    step = module.training_step

    def with_item(batch, batch_idx):
        loss = step(batch, batch_idx)
        print(loss.item())  # the kind of line the test exists to keep out
        return loss

    module.training_step = with_item
    events = _syncs(tmp_path, module, DataLoader(_Items(_tokens), batch_size=8))
    assert [e["op"] for e in events] == ["aten._local_scalar_dense.default"] * 2
    assert all("loss.item()" in e["where"] for e in events)


@pytest.mark.parametrize("planted", ["mask", "nonzero"])
def test_the_recorder_catches_data_dependent_shapes(planted: str) -> None:
    from tests.lit.host_sync import HostSyncs

    x = torch.arange(6.0)
    with HostSyncs() as mode:
        mode.active = True
        _ = x[x > 2] if planted == "mask" else torch.nonzero(x)
        _ = torch.where(x > 2, x, 0.0)  # same values, no sync
    assert len(mode.events) == 1
