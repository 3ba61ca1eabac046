"""The ``tokenize`` and ``stage2`` stages of ``train.py`` (FSQ paper §4.3: MaskGIT on frozen Stage I tokens).

``tokenize``: encode ``data`` once with the tokenizer (``tokenizer=path`` or the run's ``tokenizer.pt``) into
``<run>/tokens`` (``data/token_cache.py``). ``stage2``: train ``MaskGITTransformer`` on that cache and write
``<run>/maskgit.pt`` plus a class-conditional sample grid. Both are skipped when their artifact is complete.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from hydra.utils import instantiate
from omegaconf import DictConfig

from fsq_repro.artifacts import load_tokenizer, save_maskgit
from fsq_repro.data.fingerprint import data_fingerprint
from fsq_repro.data.token_cache import build_token_cache, file_hash, reuse_or_wait
from fsq_repro.errors import ConfigError
from fsq_repro.hardware import default_device, launch_rank
from fsq_repro.lit.callbacks import ImageGridLogger
from fsq_repro.lit.datamodules import TokenDataModule
from fsq_repro.lit.maskgit_module import MaskGITModule, TokenizerToDevice
from fsq_repro.lit.trainer import seed_everything
from fsq_repro.nets.transformer import check_vocabulary
from fsq_repro.pipeline.global_batch import configure_global_batch
from fsq_repro.pipeline.stages import (
    build_trainer,
    count_parameters,
    export,
    fit_and_validate,
    loader_options,
    plain,
    run_dir,
    skip_if_done,
    stage_input,
    token_cache_dir,
)


def tokenizer_path(cfg: DictConfig) -> Path:
    return stage_input(cfg, "tokenizer", "tokenizer.pt", "tokenizer",
                       "run stage1 first or pass tokenizer=/path/to/tokenizer.pt")  # fmt: skip


def cache_path(cfg: DictConfig) -> Path:
    return token_cache_dir(cfg, "tokens")


def tokenize(
    cfg: DictConfig, tok_path: Path, out: Path, batch_size: int | None = None, device: str | None = None
) -> dict:
    """Build (or resume, or reuse) the token cache of ``cfg.data`` under ``out``; sharded when torch.distributed
    is initialised (``torchrun pretokenize.py``)."""
    tok_hash, fingerprint = file_hash(tok_path), data_fingerprint(plain(cfg.data))
    sharded = dist.is_available() and dist.is_initialized()  # torchrun pretokenize.py: every rank encodes a shard
    env_rank, env_world = launch_rank()
    # a non-zero rank of a DDP pipeline (no process group yet) waits for rank 0, which tokenizes alone
    cached = reuse_or_wait(out, tok_hash, fingerprint, wait=not sharded and env_world > 1 and env_rank > 0)
    if cached is not None:
        return cached
    rank, world, barrier = (dist.get_rank(), dist.get_world_size(), dist.barrier) if sharded else (0, 1, lambda: None)
    device = device or default_device()
    tokenizer = load_tokenizer(tok_path, device=device)
    if tokenizer.resolution != int(cfg.data.resolution):
        raise ConfigError(
            f"data.resolution={cfg.data.resolution} but the tokenizer was trained at {tokenizer.resolution} px"
        )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    # Tokens must be a function of the image: the train split is encoded with the deterministic eval transform
    # (resize + centre crop); the cache adds the h-flipped copy itself. Random crops/flips would differ per build.
    train_factory = instantiate(cfg.data.train)
    if "train" in inspect.signature(train_factory).parameters:
        dm.train_set = train_factory(train=False)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return tokenizer.encode(images.to(device, non_blocking=True))

    return build_token_cache(
        encode,
        {"train": dm.train_set, "val": dm.val_set},
        out,
        tokenizer_hash=tok_hash,
        data_fingerprint=fingerprint,
        codebook_size=tokenizer.codebook_size,
        token_grid=tokenizer.token_grid,
        num_classes=dm.num_classes,
        batch_size=batch_size or int(cfg.data.batch_size),
        num_workers=int(cfg.data.get("num_workers") or 0),
        rank=rank,
        world_size=world,
        barrier=barrier,
    )


def stage_tokenize(cfg: DictConfig) -> dict:
    out = cache_path(cfg)
    start = time.perf_counter()
    meta = tokenize(cfg, tokenizer_path(cfg), out)
    counts = {k: v["count"] * v["variants"] for k, v in meta["splits"].items()}
    print(f"  token cache {out}: {counts} sequences of {meta['token_grid']} ({time.perf_counter() - start:.1f} s)")
    return meta


def stage_stage2(cfg: DictConfig) -> dict:
    """Train MaskGIT on the token cache; write ``<run>/maskgit.pt`` and ``<run>/stage2/samples.png``."""
    out = run_dir(cfg) / "maskgit.pt"
    if done := skip_if_done(out, "maskgit"):
        return done
    tok_path = tokenizer_path(cfg)
    tok_hash = file_hash(tok_path)
    seed_everything(int(cfg.seed))
    stage_cfg = cfg.model.stage2
    dm = TokenDataModule(
        str(cache_path(cfg)),
        batch_size=stage_cfg.batch_size,
        num_workers=stage_cfg.get("num_workers", 0),
        tokenizer_hash=tok_hash,
        data_fingerprint=data_fingerprint(plain(cfg.data)),
        shuffle_seed=int(cfg.seed),
        pin_memory=loader_options(cfg, stage_cfg.get("num_workers", 0))["pin_memory"],
    )
    tokenizer = load_tokenizer(tok_path)
    num_tokens = math.prod(dm.meta["token_grid"])
    model = instantiate(stage_cfg.transformer)(
        codebook_size=dm.meta["codebook_size"], num_classes=dm.num_classes, num_tokens=num_tokens
    )
    data_classes = int(cfg.data.get("num_classes") or dm.num_classes)
    check_vocabulary(model.codebook_size, tokenizer.codebook_size, model.num_classes, data_classes)
    max_steps = int(cfg.trainer.get("max_steps") or stage_cfg.max_steps)
    module = MaskGITModule(
        model,
        **plain(stage_cfg.optim),
        total_steps=max_steps,
        min_mask_rate=stage_cfg.min_mask_rate,
        mask_schedule=stage_cfg.mask_schedule,
        label_smoothing=stage_cfg.label_smoothing,
        sampler=plain(cfg.sampler),
        num_sample_images=stage_cfg.get("num_sample_images", 4),
        compile=stage_cfg.get("compile", False),
        max_nonfinite_skips=stage_cfg.max_nonfinite_skips,
    )
    module.attach_tokenizer(tokenizer)
    grids = ImageGridLogger(run_dir(cfg) / "stage2", name="samples", nrow=module.num_sample_images, upscale=2)
    trainer = build_trainer(cfg, "stage2", stage_cfg, [grids, TokenizerToDevice()])
    batch = configure_global_batch(cfg, "stage2", trainer, module, "model.stage2.batch_size", int(stage_cfg.batch_size))
    params = count_parameters(model)
    print(f"  transformer: {params / 1e6:.2f} M parameters, {num_tokens} tokens, vocabulary {model.vocab_size}")
    summary = fit_and_validate(cfg, "stage2", trainer, module, dm)
    summary.update({
        "parameters": params,
        "num_tokens": num_tokens,
        "vocab_size": model.vocab_size,
        "tokenizer_hash": tok_hash,
        "global_batch": asdict(batch),
    })  # fmt: skip
    extra = {"experiment": cfg.experiment_name, "sampler": plain(cfg.sampler)}
    return export(cfg, "stage2", trainer, summary, out, lambda: save_maskgit(out, model, tok_hash, extra=extra))
