"""The configured batch is the global one (FSQ paper §4.3: 512 / 256): the accumulation that makes
``per device × devices × nodes × accumulation`` equal it, on the Trainer (Stage II: Lightning's accumulation) and in
the Stage I module (manual optimisation: its own accumulation), and Stage I's opt-in gradient clipping."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from fsq_repro.errors import ConfigError
from fsq_repro.lit.callbacks import ReseedEveryStep, step_seed
from fsq_repro.lit.maskgit_module import MaskGITModule
from fsq_repro.lit.tokenizer_module import TokenizerModule
from fsq_repro.losses.stage1 import Stage1Loss
from fsq_repro.nets.discriminator import Discriminator
from fsq_repro.nets.tokenizer import Tokenizer
from fsq_repro.nets.transformer import MaskGITTransformer
from fsq_repro.pipeline.global_batch import configure_global_batch, device_count, resolve_global_batch
from fsq_repro.quantizers import FSQ

# --- the arithmetic ------------------------------------------------------------------------------------------------


def test_accumulation_is_derived_when_the_global_batch_divides() -> None:
    one_gpu = resolve_global_batch("stage1", 512, 64, 1)
    assert (one_gpu.global_batch_size, one_gpu.accumulate_grad_batches) == (512, 8)
    assert one_gpu.describe() == "stage1: global batch 512 = 64 per device × 1 device × 1 node(s) × 8 accumulation"
    eight = resolve_global_batch("stage1", 512, 64, 8)
    assert eight.accumulate_grad_batches == 1
    assert eight.describe() == "stage1: global batch 512 = 64 per device × 8 devices × 1 node(s) × 1 accumulation"
    assert resolve_global_batch("stage2", 256, 32, 2, num_nodes=2).accumulate_grad_batches == 2
    assert resolve_global_batch("stage2", 256, 32, [0, 3], batch_key="model.stage2.batch_size").devices == 2
    assert resolve_global_batch("stage2", 256, 32, [0, 3]).accumulate_grad_batches == 4  # list devices
    assert resolve_global_batch("stage1", 512, 64, "0,1,2,3").accumulate_grad_batches == 2
    assert resolve_global_batch("stage1", 512, 64, "4").accumulate_grad_batches == 2


def test_a_global_batch_that_does_not_divide_is_one_line_naming_every_number() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_global_batch("stage1", 512, 48, 8)
    assert str(err.value) == (
        "model.stage1.global_batch_size=512 is not a multiple of data.batch_size=48 × 8 devices × 1 node(s) = 384: "
        "set data.batch_size or trainer.devices so it divides"
    )
    with pytest.raises(ConfigError, match=r"global_batch_size=256 is not a multiple of model.stage2.batch_size=128"):
        resolve_global_batch("stage2", 256, 128, 4, batch_key="model.stage2.batch_size")  # 512 > 256
    with pytest.raises(ConfigError, match="must be at least 1"):
        resolve_global_batch("stage1", 0, 64, 1)


def test_an_explicit_accumulation_is_checked_not_derived() -> None:
    assert resolve_global_batch("stage1", 512, 64, 4, accumulate_grad_batches=2).accumulate_grad_batches == 2
    with pytest.raises(ConfigError) as err:
        resolve_global_batch("stage1", 512, 64, 8, accumulate_grad_batches=2)
    assert str(err.value) == (
        "data.batch_size=64 × 8 devices × 1 node(s) × trainer.accumulate_grad_batches=2 = 1024, but "
        "model.stage1.global_batch_size=512: set trainer.accumulate_grad_batches=null to derive it, or "
        "data.batch_size / trainer.devices"
    )
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="at least 1"):
        resolve_global_batch("stage1", 512, 64, 8, accumulate_grad_batches=0)


def test_no_global_batch_means_no_accumulation_unless_one_is_given() -> None:
    layout = resolve_global_batch("stage1", None, 16, 2)
    assert (layout.global_batch_size, layout.accumulate_grad_batches) == (32, 1)
    assert resolve_global_batch("stage1", None, 16, 2, accumulate_grad_batches=3).global_batch_size == 96


def test_device_counts() -> None:
    assert [device_count(d) for d in (1, 8, [0], [0, 1, 2], "0,1", "[2, 5]", "3")] == [1, 8, 1, 3, 2, 2, 3]
    for machine_dependent in ("auto", -1, "-1"):
        with pytest.raises(ValueError, match=r"trainer\.num_devices"):
            device_count(machine_dependent)


# --- on a Trainer ----------------------------------------------------------------------------------------------------

K, N, C = 4, 16, 16


class PatternTokens(Dataset):
    def __init__(self, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, K, (size,), generator=g)
        self.tokens = torch.randint(0, C, (size, N), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": self.tokens[i], "label": int(self.labels[i])}


class Counter(pl.Callback):
    """Batches, optimizer steps and the torch seed each batch starts with (after the re-seeding callback)."""

    def __init__(self) -> None:
        self.batches, self.optimizer_steps, self.seeds, self.steps_at_batch = 0, 0, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches += 1
        self.seeds.append(torch.initial_seed())
        self.steps_at_batch.append(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.optimizer_steps += 1


def _trainer(tmp_path, max_steps: int, callbacks: list, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
        callbacks=callbacks, **kwargs,
    )  # fmt: skip


def _cfg(stage: str, global_batch_size, accumulate=None):
    return OmegaConf.create(
        {"model": {stage: {"global_batch_size": global_batch_size}}, "trainer": {"accumulate_grad_batches": accumulate}}
    )


def test_stage2_accumulation_reaches_the_fit_loop(tmp_path, capsys) -> None:
    pl.seed_everything(0)
    model = MaskGITTransformer(C, K, N, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    module = MaskGITModule(model, warmup_steps=1, total_steps=3)
    counter = Counter()
    # devices="auto" (resolved by the Trainer: 1 CPU device); the counter runs after the re-seeding callback
    trainer = _trainer(tmp_path, 3, [ReseedEveryStep(7), counter], devices="auto", val_check_interval=2)
    layout = configure_global_batch(_cfg("stage2", 16), "stage2", trainer, module, "model.stage2.batch_size", 4)
    assert layout.accumulate_grad_batches == 4 and trainer.accumulate_grad_batches == 4
    assert trainer.val_check_interval == 8  # 2 optimizer steps = 8 batches
    assert "stage2: global batch 16 = 4 per device × 1 device × 1 node(s) × 4 accumulation" in capsys.readouterr().out
    trainer.fit(module, train_dataloaders=DataLoader(PatternTokens(64), batch_size=4))
    assert (counter.batches, counter.optimizer_steps, trainer.global_step) == (12, 3, 3)
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 3  # the LR schedule counts optimizer steps
    assert counter.steps_at_batch == [0] * 4 + [1] * 4 + [2] * 4
    # every micro-batch draws its own masks and dropout; the first of each step keeps ReseedEveryStep's seed
    assert len(set(counter.seeds)) == 12
    assert counter.seeds[::4] == [step_seed(7, 0, s) for s in range(3)]
    assert counter.seeds[1] == step_seed(7, 0, 0, 1) != step_seed(7, 0, 1, 1)


def test_an_explicit_trainer_accumulation_that_disagrees_is_refused_before_training(tmp_path) -> None:
    model = MaskGITTransformer(C, K, N, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    trainer = _trainer(tmp_path, 3, [])
    with pytest.raises(
        ConfigError, match=r"trainer\.accumulate_grad_batches=2 = 8, but model\.stage2\.global_batch_size=16"
    ):
        configure_global_batch(
            _cfg("stage2", 16, 2), "stage2", trainer, MaskGITModule(model), "model.stage2.batch_size", 4
        )


# --- Stage I: accumulation in the module ----------------------------------------------------------------------------

RES = 16


class Images(Dataset):
    """Fixed images in order (no shuffling: the same data order for every batch size)."""

    def __init__(self, size: int) -> None:
        self.images = torch.rand(size, 3, RES, RES, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def collate(items: list[dict]) -> dict:
    return {"image": torch.stack([x["image"] for x in items]), "num_corrupt": torch.tensor(0)}


def _stage1_module(seed: int = 0, **kwargs) -> TokenizerModule:
    torch.manual_seed(seed)
    tokenizer = Tokenizer(FSQ([5, 5, 5]), resolution=RES, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1,
                          groups=4)  # fmt: skip
    disc = Discriminator(RES, max_channels=8)
    loss = Stage1Loss(perceptual_weight=0.0, gan_weight=0.1, gan_start_step=0, **kwargs.pop("loss", {}))
    return TokenizerModule(tokenizer, loss, disc, **{"lr": 1e-3, "warmup_steps": 4, "ema_decay": 0.5, **kwargs})


def _fit_stage1(tmp_path, per_device: int, global_batch: int, steps: int, **kwargs) -> tuple[TokenizerModule, list]:
    module = _stage1_module(**kwargs)
    counter = Counter()
    trainer = _trainer(tmp_path, steps, [counter], precision="32-true", log_every_n_steps=1)
    layout = configure_global_batch(_cfg("stage1", global_batch), "stage1", trainer, module, "data.batch_size",
                                    per_device)  # fmt: skip
    assert module.accumulate_grad_batches == layout.accumulate_grad_batches == global_batch // per_device
    assert trainer.accumulate_grad_batches == 1  # Lightning refuses to accumulate under manual optimisation
    assert trainer.log_every_n_steps == layout.accumulate_grad_batches  # still every optimizer step
    loader = DataLoader(Images(global_batch * steps), batch_size=per_device, collate_fn=collate)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == steps and int(module.batches_seen) == steps  # optimizer steps, not micro-batches
    assert counter.batches == steps * layout.accumulate_grad_batches
    return module, list(trainer.optimizers)


def _worst(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a.state_dict().values(),
               b.state_dict().values()) if x.is_floating_point())  # fmt: skip


def test_stage1_batch_4_with_accumulation_2_equals_batch_8(tmp_path) -> None:
    steps = 3  # warm-up over 4 steps: an LR counted in micro-batches would differ; the GAN and R1 on from step 0
    big, big_opts = _fit_stage1(tmp_path / "big", 8, 8, steps)
    small, small_opts = _fit_stage1(tmp_path / "small", 4, 8, steps)
    init = _stage1_module()
    assert _worst(big.tokenizer, init.tokenizer) > 1e-3 and _worst(big.discriminator, init.discriminator) > 1e-3
    for name in ("tokenizer", "discriminator", "ema"):
        worst = _worst(getattr(big, name), getattr(small, name))
        assert worst <= 5e-5, (name, worst)  # float32 summation order: 1.7e-5 seen on an AVX2-only CPU
    # Adam's moments (β1 = 0: exp_avg is the last step's gradient; Adam's update alone hides a gradient's scale)
    for big_opt, small_opt in zip(big_opts, small_opts):
        for p_big, p_small in zip(big_opt.param_groups[0]["params"], small_opt.param_groups[0]["params"]):
            for key in ("exp_avg", "exp_avg_sq"):
                ref = big_opt.state[p_big][key]
                # float32 summation order differs between the two layouts (up to 0.2 % of the tensor's scale seen
                # on an AVX2-only CPU); a wrongly scaled accumulation is off by ~100 % of it
                atol = max(1e-6, 1e-2 * float(ref.abs().max()))
                torch.testing.assert_close(small_opt.state[p_small][key], ref, rtol=1e-4, atol=atol)


def test_stage1_without_grad_clip_steps_adam_on_the_unclipped_gradient(tmp_path) -> None:
    # a large L2 weight makes the generator's gradient norm >> 1
    kwargs = {"loss": {"l2_weight": 100.0}}
    module = _stage1_module(**kwargs)
    assert module.grad_clip is None  # MaskGIT's vqgan_config: no clipping by default
    reference = _stage1_module(**kwargs)
    images = collate([Images(8)[i] for i in range(8)])["image"]

    # the gradients by hand: the generator's loss (GAN term through a frozen copy of D), the discriminator's own
    recon, q = reference.tokenizer(images)
    disc = copy.deepcopy(reference.discriminator)
    g_terms = reference.loss.generator_terms(images, recon, q.loss, 0, disc)
    g_grads = torch.autograd.grad(g_terms["total"], list(reference.tokenizer.parameters()))
    d_terms = reference.loss.discriminator_terms(images, recon, reference.discriminator, 0)
    d_grads = torch.autograd.grad(d_terms["total"], list(reference.discriminator.parameters()))
    g_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in g_grads]))
    assert g_norm > 10

    trainer = _trainer(tmp_path, 1, [], precision="32-true")
    trainer.fit(module, train_dataloaders=DataLoader(Images(8), batch_size=8, collate_fn=collate))
    gen_opt, disc_opt = trainer.optimizers
    # Adam with β1 = 0: exp_avg is the gradient the step used — unclipped, and D's holds none of the G loss
    for p, g in zip(module.tokenizer.parameters(), g_grads):
        torch.testing.assert_close(gen_opt.state[p]["exp_avg"], g, rtol=1e-4, atol=1e-7)
    for p, g in zip(module.discriminator.parameters(), d_grads):
        torch.testing.assert_close(disc_opt.state[p]["exp_avg"], g, rtol=1e-4, atol=1e-7)

    clipped = _stage1_module(grad_clip=1.0, **kwargs)
    trainer = _trainer(tmp_path / "clip", 1, [], precision="32-true")
    trainer.fit(clipped, train_dataloaders=DataLoader(Images(8), batch_size=8, collate_fn=collate))
    gen_opt = trainer.optimizers[0]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(gen_opt.state[p]["exp_avg"])
                                                 for p in clipped.tokenizer.parameters()]))  # fmt: skip
    assert abs(norm.item() - 1.0) < 1e-4  # grad_clip=1.0 still clips


def test_a_nonfinite_micro_batch_drops_the_whole_window(tmp_path) -> None:
    module = _stage1_module(max_nonfinite_skips=1)
    calls = {"n": 0}
    forward = module.tokenizer.forward

    def poisoned(x):
        calls["n"] += 1
        recon, q = forward(x)
        return (recon * float("nan"), q) if calls["n"] == 2 else (recon, q)  # 2nd micro-batch of the 1st step

    module.tokenizer.forward = poisoned
    trainer = _trainer(tmp_path, 2, [], precision="32-true")
    configure_global_batch(_cfg("stage1", 8), "stage1", trainer, module, "data.batch_size", 4)
    trainer.fit(module, train_dataloaders=DataLoader(Images(32), batch_size=4, collate_fn=collate))
    assert int(module.nonfinite_skips) == 1 and trainer.global_step == 2 and calls["n"] == 4  # 2 windows of 2
    assert all(torch.isfinite(p).all() for p in module.parameters())
    # the poisoned window's update was skipped on the device: one Adam update in two steps
    gen_opt = trainer.optimizers[0]
    assert {int(gen_opt.state[p]["step"]) for p in module.tokenizer.parameters()} == {1}


class SaveAfterBatch(pl.Callback):
    def __init__(self, path, batch_idx: int) -> None:
        self.path, self.batch_idx = path, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            trainer.save_checkpoint(self.path)


def test_stage1_resumes_from_a_checkpoint_written_mid_window(tmp_path) -> None:
    path = tmp_path / "mid.ckpt"
    module = _stage1_module()
    trainer = _trainer(tmp_path, 2, [SaveAfterBatch(path, 2)], precision="32-true")  # batch 2: 1st of step 2's 2
    configure_global_batch(_cfg("stage1", 8), "stage1", trainer, module, "data.batch_size", 4)
    trainer.fit(module, train_dataloaders=DataLoader(Images(32), batch_size=4, collate_fn=collate))
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 1 and int(saved["state_dict"]["batches_seen"]) == 1

    resumed = _stage1_module()
    trainer = _trainer(tmp_path, 3, [], precision="32-true")
    configure_global_batch(_cfg("stage1", 8), "stage1", trainer, resumed, "data.batch_size", 4)
    trainer.fit(resumed, train_dataloaders=DataLoader(Images(32), batch_size=4, collate_fn=collate), ckpt_path=path)
    assert trainer.global_step == 3 and int(resumed.batches_seen) == 3 and resumed.micro_batch == 0
    assert all(torch.isfinite(p).all() for p in resumed.parameters())
