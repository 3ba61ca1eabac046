"""Stage II real small fit: each class has its own fixed token pattern plus noise; after a few hundred CPU steps,
class-conditional samples reproduce their class's pattern (MaskGIT training + decoding, FSQ paper §4.3)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fsq_repro.generation.sampler import sample_with_model
from fsq_repro.lit.maskgit_module import MaskGITModule
from fsq_repro.lit.schedules import lr_multiplier, warmup_cosine
from fsq_repro.nets.transformer import MaskGITTransformer

K, N, C = 4, 16, 16


class PatternTokens(Dataset):
    def __init__(self, size: int, noise: float = 0.05) -> None:
        g = torch.Generator().manual_seed(0)
        self.patterns = torch.randint(0, C, (K, N), generator=g)
        self.labels = torch.randint(0, K, (size,), generator=g)
        tokens = self.patterns[self.labels]
        noisy = torch.rand(size, N, generator=g) < noise
        self.tokens = torch.where(noisy, torch.randint(0, C, (size, N), generator=g), tokens)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": self.tokens[i], "label": int(self.labels[i])}


def test_warmup_cosine_closed_form() -> None:
    assert warmup_cosine(0, 10, 110) == 0.1 and warmup_cosine(9, 10, 110) == 1.0
    assert abs(warmup_cosine(60, 10, 110) - 0.5) < 1e-12 and warmup_cosine(110, 10, 110) == 0.0


def test_lr_schedule_is_constant_after_warmup_by_default_and_cosine_on_request() -> None:
    assert [lr_multiplier(s, 10, 110) for s in (0, 4, 9, 60, 10_000)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert lr_multiplier(60, 10, 110, "cosine") == warmup_cosine(60, 10, 110)
    model = MaskGITTransformer(C, K, N, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    for schedule, at_end in (("constant", 1.0), ("cosine", 0.0)):
        module = MaskGITModule(model, warmup_steps=10, total_steps=110, lr_schedule=schedule)
        scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
        assert scheduler.lr_lambdas[0](110) == at_end
    assert MaskGITModule(model).lr_schedule == "constant"  # official MaskGIT class-conditional config
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        MaskGITModule(model, lr_schedule="linear")


def test_class_conditional_samples_reproduce_their_pattern(tmp_path) -> None:
    pl.seed_everything(0)
    data = PatternTokens(4096)
    model = MaskGITTransformer(C, K, N, hidden_dim=64, depth=2, num_heads=4, mlp_dim=128, dropout=0.0)
    steps = 300
    # no label smoothing: with it the optimum puts only ~0.87 on the pattern token and samples inherit that
    module = MaskGITModule(model, lr=3e-3, warmup_steps=20, total_steps=steps, weight_decay=0.0, label_smoothing=0.0)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=64, shuffle=True, drop_last=True))
    labels = torch.arange(K).repeat_interleave(8)
    tokens = sample_with_model(model, labels, generator=torch.Generator().manual_seed(1), cfg_scale=0.5)
    match = (tokens == data.patterns[labels]).float().mean().item()
    assert match >= 0.9, match
    # and the class token matters: a sample of class a is closer to pattern a than to any other pattern
    per_class = torch.stack([(tokens == data.patterns[k]).float().mean(1) for k in range(K)], 1)  # (B, K)
    assert torch.equal(per_class.argmax(1), labels)


def _fit_with_a_nan_at(call: int, max_skips: int, tmp_path) -> MaskGITModule:
    pl.seed_everything(0)
    model = MaskGITTransformer(C, K, N, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64)
    module = MaskGITModule(model, warmup_steps=1, total_steps=6, max_nonfinite_skips=max_skips)
    calls = {"n": 0}

    def poisoned(tokens, class_ids):
        calls["n"] += 1
        out = model(tokens, class_ids)
        return out * float("nan") if calls["n"] == call else out

    module.forward_fn = poisoned
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(PatternTokens(64), batch_size=8))
    return module


def test_a_nonfinite_loss_is_skipped_within_budget_and_stops_the_run_beyond_it(tmp_path) -> None:
    module = _fit_with_a_nan_at(call=3, max_skips=1, tmp_path=tmp_path)
    assert int(module.nonfinite_skips) == 1
    assert all(torch.isfinite(p).all() for p in module.model.parameters())  # the NaN step never reached the weights
    with pytest.raises(FloatingPointError, match=r"non-finite masked-token loss at step 2: loss=nan"):
        _fit_with_a_nan_at(call=3, max_skips=0, tmp_path=tmp_path)


def test_checkpoint_holds_each_weight_once() -> None:
    module = MaskGITModule(MaskGITTransformer(C, K, N, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64))
    keys = list(module.state_dict())
    assert all(k.startswith("model.") or k == "nonfinite_skips" for k in keys), keys[:5]


def test_out_of_range_labels_are_refused_on_the_host_while_training_and_by_the_embedder_outside() -> None:
    module = MaskGITModule(MaskGITTransformer(C, K, N, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64))
    ok = {"tokens": torch.zeros(2, N, dtype=torch.long), "label": torch.tensor([0, K - 1])}
    assert module.on_before_batch_transfer(ok, 0) is ok
    with pytest.raises(ValueError, match=rf"labels must be in \[-1, {K}\), got \[0, {K}\]"):
        module.on_before_batch_transfer({**ok, "label": torch.tensor([0, K])}, 0)
    embedder = module.model.class_embedder.eval()
    with pytest.raises(ValueError, match="labels must be in"):
        embedder(torch.tensor([-2]))


def test_validation_masks_do_not_depend_on_the_global_rng(tmp_path) -> None:
    """A resumed run validates under another global RNG state than the uninterrupted one (found by the SIGTERM
    soak: same weights, different final val loss); the validation masks come from their own seeded generator."""
    pl.seed_everything(0)
    module = MaskGITModule(MaskGITTransformer(C, K, N, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)  # fmt: skip
    losses = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        losses.append(trainer.validate(module, DataLoader(PatternTokens(32), batch_size=8), verbose=False)[0])
    assert losses[0] == losses[1]
    torch.manual_seed(1)
    batch = {k: torch.stack([torch.as_tensor(PatternTokens(8)[i][k]) for i in range(8)]) for k in ("tokens", "label")}
    assert not torch.equal(module._masked_step(batch)[0], module._masked_step(batch)[0])  # training masks: random
