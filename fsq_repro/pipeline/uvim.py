"""UViM's stages of ``train.py`` (FSQ paper §4.4, Table 2): ``uvim_stage1`` → ``uvim_tokenize`` → ``uvim_stage2`` →
``uvim_eval``, each writing its artifact into the run dir and skipped when it exists (like the MaskGIT stages).

- ``uvim_stage1``: train the guiding-code autoencoder (``model.stage1.autoencoder``, bottleneck ``quantizer=``) on
  the task labels with the image as context; export ``uvim_stage1.pt`` (``artifacts.save_uvim_stage1``).
- ``uvim_tokenize``: the Stage I encoder's codes of every train/val item, as is and h-flipped, into the token cache
  (``data/token_cache.py``, keyed by the Stage I file's hash and the data fingerprint). Deliberate difference: the
  official trainer re-encodes the labels of every randomly cropped batch; here Stage II sees flips, not crops.
- ``uvim_stage2``: train the language model (``model.stage2.lm``) on (image, code) pairs; export ``uvim_lm.pt``.
- ``uvim_eval``: for every val image, decode the code autoregressively (greedy: the official temperature 1e-7),
  decode the task's output with Stage I and the image as context, and score it against the native-resolution ground
  truth (``task.metric``: depth metrics / PQ); also the *oracle* (Stage I from the true code) and the codebook usage.
  Writes ``uvim_eval.json``, ``uvim_predictions.npz`` (a few maps for Fig. 6-style grids) and ``uvim_eval.png``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fsq_repro.artifacts import load_uvim_lm, load_uvim_stage1, save_uvim_lm, save_uvim_stage1
from fsq_repro.atomic import atomic_write_json
from fsq_repro.data.fingerprint import data_fingerprint
from fsq_repro.data.token_cache import (
    PairedTokenDataset,
    build_token_cache,
    check_cache,
    file_hash,
    reuse_or_wait,
)
from fsq_repro.errors import ConfigError
from fsq_repro.evaluation.uvim import baseline_mean, evaluate
from fsq_repro.hardware import default_device, launch_rank
from fsq_repro.lit.callbacks import ImageGridLogger
from fsq_repro.lit.datamodules import ImageDataModule
from fsq_repro.lit.trainer import seed_everything
from fsq_repro.lit.uvim_module import UViMStage1Module, UViMStage2Module
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
from fsq_repro.tasks.base import build_task, task_grid


def task_from_data(cfg: DictConfig):
    """The dense task of ``data=`` (its ``task`` block, e.g. depth bins over [1e-3, 10] m)."""
    if not cfg.data.get("task"):
        raise ConfigError(f"data={cfg.data.get('name')} has no `task` block: UViM needs a dense-prediction dataset "
                          "(data=depth_scenes, nyu_depth, panoptic_scenes, coco_panoptic, "
                          "shapes_colorization or imagenet_colorization)")  # fmt: skip
    return build_task(plain(cfg.data.task))


def stage1_path(cfg: DictConfig) -> Path:
    return stage_input(cfg, "uvim_stage1", "uvim_stage1.pt", "UViM Stage I model",
                       "run stages=[uvim_stage1] or pass uvim_stage1=/path")  # fmt: skip


def cache_path(cfg: DictConfig) -> Path:
    return token_cache_dir(cfg, "uvim_tokens")


def eval_datasets(cfg: DictConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """Train and val sets without random augmentation (codes must be a function of the item)."""
    train = instantiate(cfg.data.train)
    train = train(augment=False) if callable(train) else train
    return train, instantiate(cfg.data.val)()


def stage_uvim_stage1(cfg: DictConfig) -> dict:
    out = run_dir(cfg) / "uvim_stage1.pt"
    if done := skip_if_done(out, "uvim_stage1", cfg.get("uvim_stage1")):
        return done
    seed_everything(int(cfg.seed))
    stage_cfg, task = cfg.model.stage1, task_from_data(cfg)
    fingerprint = data_fingerprint(plain(cfg.data))
    dm = instantiate(cfg.data, shuffle_seed=int(cfg.seed))
    model = instantiate(stage_cfg.autoencoder)(
        quantizer=instantiate(cfg.quantizer),
        label_classes=task.label_classes,
        input_size=int(cfg.data.resolution),
        label_channels=task.label_channels,
    )
    module = UViMStage1Module(model, task, **plain(stage_cfg.optim), total_steps=_max_steps(cfg, stage_cfg),
                              max_nonfinite_skips=stage_cfg.max_nonfinite_skips)  # fmt: skip
    grids = ImageGridLogger(run_dir(cfg) / "uvim_stage1", name="reconstructions", nrow=module.num_grid_images)
    trainer = build_trainer(cfg, "uvim_stage1", stage_cfg, [grids])
    batch = configure_global_batch(
        cfg, "uvim_stage1", trainer, module, "data.batch_size", int(cfg.data.batch_size), "stage1"
    )
    params = count_parameters(model)
    print(f"  guiding-code autoencoder: {params / 1e6:.2f} M parameters; {model.code_len} codes of "
          f"{model.codebook_size}; task {task.config()}")  # fmt: skip
    summary = fit_and_validate(cfg, "uvim_stage1", trainer, module, dm)
    summary.update(parameters=params, codebook_size=model.codebook_size, quantizer=model.quantizer.config(),
                   task=task.config(), data=cfg.data.get("name"), global_batch=asdict(batch))  # fmt: skip
    extra = {"experiment": cfg.experiment_name}
    return export(cfg, "uvim_stage1", trainer, summary, out,
                  lambda: save_uvim_stage1(out, model, task.config(), fingerprint, extra=extra))  # fmt: skip


def _max_steps(cfg: DictConfig, stage_cfg: DictConfig) -> int:
    return int(cfg.trainer.get("max_steps") or stage_cfg.max_steps)


def stage_uvim_tokenize(cfg: DictConfig) -> dict:
    path, out = stage1_path(cfg), cache_path(cfg)
    tok_hash, fingerprint = file_hash(path), data_fingerprint(plain(cfg.data))
    # a non-zero rank of a DDP pipeline waits for rank 0, which encodes alone
    cached = reuse_or_wait(out, tok_hash, fingerprint, wait=_rank() > 0)
    if cached is not None:
        return cached
    start = time.perf_counter()
    device = default_device()
    model, task = load_uvim_stage1(path, device=device)
    train, val = eval_datasets(cfg)

    @torch.inference_mode()
    def encode(batch: dict) -> torch.Tensor:
        # panoptic: the flipped variant's instance ids renumbered as after a flip (PanopticTask.cache_labels)
        return model.encode(task.cache_labels(batch), batch["image"].to(device)).indices

    def encode_on_device(batch: dict) -> torch.Tensor:
        return encode({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})

    meta = build_token_cache(
        encode_on_device, {"train": train, "val": val}, out, tokenizer_hash=tok_hash, data_fingerprint=fingerprint,
        codebook_size=model.codebook_size, token_grid=[model.code_len], num_classes=1,
        batch_size=int(cfg.data.batch_size), input_key=None,
    )  # fmt: skip
    counts = {k: v["count"] * v["variants"] for k, v in meta["splits"].items()}
    print(f"  token cache {out}: {counts} codes of length {model.code_len} ({time.perf_counter() - start:.1f} s)")
    return meta


def stage_uvim_stage2(cfg: DictConfig) -> dict:
    out = run_dir(cfg) / "uvim_lm.pt"
    if done := skip_if_done(out, "uvim_lm"):
        return done
    path = stage1_path(cfg)
    stage1_hash = file_hash(path)
    check_cache(cache_path(cfg), stage1_hash, data_fingerprint(plain(cfg.data)))
    seed_everything(int(cfg.seed))
    stage_cfg = cfg.model.stage2
    stage1, task = load_uvim_stage1(path)
    model = instantiate(stage_cfg.lm)(codebook_size=stage1.codebook_size, seq_len=stage1.code_len,
                                      input_size=int(cfg.data.resolution))  # fmt: skip
    if stage_cfg.get("encoder_weights"):
        model.load_vit_encoder(stage_cfg.encoder_weights)
    else:
        print("  image encoder: random init (the paper starts from ImageNet-21k ViT-L/16: "
              "model.stage2.encoder_weights=/path/to/vit_l16.pth)")  # fmt: skip
    module = UViMStage2Module(model, **plain(stage_cfg.optim), total_steps=_max_steps(cfg, stage_cfg),
                              max_nonfinite_skips=stage_cfg.max_nonfinite_skips)  # fmt: skip
    module.attach_stage1(stage1, task)
    train, val = eval_datasets(cfg)
    cache_dir = cache_path(cfg)
    dm = ImageDataModule(  # Stage II data: (image, code) pairs from the token cache and the un-augmented dataset
        lambda: PairedTokenDataset(train, cache_dir, "train"), lambda: PairedTokenDataset(val, cache_dir, "val"),
        name=f"{cfg.data.name}+codes", batch_size=int(stage_cfg.batch_size),
        num_workers=int(cfg.data.get("num_workers") or 0), shuffle_seed=int(cfg.seed),
        **loader_options(cfg, int(cfg.data.get("num_workers") or 0)),
    )  # fmt: skip
    grids = ImageGridLogger(run_dir(cfg) / "uvim_stage2", name="predictions", nrow=module.num_grid_images)
    trainer = build_trainer(cfg, "uvim_stage2", stage_cfg, [grids])
    batch = configure_global_batch(cfg, "uvim_stage2", trainer, module, "model.stage2.batch_size",
                                   int(stage_cfg.batch_size), "stage2")  # fmt: skip
    params = count_parameters(model)
    print(f"  language model: {params / 1e6:.2f} M parameters, {stage1.code_len} tokens, vocabulary {model.vocab_size}")
    summary = fit_and_validate(cfg, "uvim_stage2", trainer, module, dm)
    summary.update(parameters=params, stage1_hash=stage1_hash, global_batch=asdict(batch))
    extra = {"experiment": cfg.experiment_name}
    return export(cfg, "uvim_stage2", trainer, summary, out, lambda: save_uvim_lm(out, model, stage1_hash, extra=extra))


def _rank() -> int:
    """This process's rank in a Lightning DDP launch (the stages between fits run in every process)."""
    return launch_rank()[0]


def stage_uvim_eval(cfg: DictConfig) -> dict:
    if _rank() > 0:
        return {}  # rank 0 evaluates (a few hundred images) and writes the files
    path = stage1_path(cfg)
    lm_path = Path(cfg.get("uvim_lm") or run_dir(cfg) / "uvim_lm.pt")
    device = default_device()
    stage1, task = load_uvim_stage1(path, device=device)
    lm = load_uvim_lm(lm_path, stage1_hash=file_hash(path), device=device)
    train, val = eval_datasets(cfg)
    limit = cfg.get("eval_num_images")
    if limit:
        val = torch.utils.data.Subset(val, range(min(int(limit), len(val))))
    batch_size = int(cfg.data.get("val_batch_size") or cfg.data.batch_size)
    prior = baseline_mean(task, train, batch_size)
    results, kept = evaluate(lm, stage1, task, val, batch_size, device, prior=prior)
    context = stage1.ctx_enc is not None or stage1.ctx_dec is not None
    results.update(task=task.config(), quantizer=stage1.quantizer.config(), codebook_size=stage1.codebook_size,
                   context=context, code_dropout=stage1.code_dropout,
                   seed=int(cfg.seed), experiment=str(cfg.experiment_name), data=cfg.data.get("name"))  # fmt: skip
    out = run_dir(cfg)
    np.savez_compressed(out / "uvim_predictions.npz", **{k: v.numpy() for k, v in kept.items()})
    from fsq_repro.viz import save_image_grid

    grid = task_grid(task, kept["image"], [kept["truth"], kept["oracle"], kept["uvim"]])
    save_image_grid(grid, out / "uvim_eval.png", nrow=len(kept["image"]), upscale=2 if grid.shape[-1] < 128 else 1)
    atomic_write_json(out / "uvim_eval.json", results)
    key = task.headline[0]
    print(
        f"  {key.upper()} {results['uvim'][key]:.4f} (oracle {results['oracle'][key]:.4f}), codebook usage "
        f"{100 * results['usage']:.1f} %, {results['num_images']} images; baselines: context only "
        f"{results['context_only'][key]:.4f}, constant {results['constant'][key]:.4f}; wrote {out / 'uvim_eval.json'}"
    )
    return results
