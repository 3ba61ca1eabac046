"""What every training stage of ``train.py`` shares (the FSQ paper's two-stage pipeline, §4): the run dir, Trainer,
logger and callback assembly, resume paths, atomic JSON.

Each stage writes its artifact into the run dir and is skipped when that artifact already exists, so re-running a
crashed pipeline in the same dir continues where it stopped. Stage-specific lengths (``max_steps``,
``val_check_interval``, ``limit_val_batches``) come from ``model/stage1|stage2``; anything set in ``trainer`` (e.g.
``trainer.max_steps=...``, ``debug=fast``) wins.

The configured batch is the *global* one (``model.stage1|stage2.global_batch_size``, FSQ paper §4.3: 512 / 256):
``pipeline/global_batch.py: configure_global_batch`` derives the gradient accumulation from the per-device batch and the
Trainer's devices and nodes, so one GPU and eight GPUs train on the same batch. ``max_steps``, ``val_check_interval``
and ``log_every_n_steps`` count optimizer steps either way.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fsq_repro.atomic import atomic_write_json
from fsq_repro.errors import ConfigError
from fsq_repro.hardware import default_device, resolve_precision
from fsq_repro.lit.trainer import AtomicCheckpointIO, fit_then_validate, quiet_lightning_logging, stage_callbacks


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def artifact_path(cfg: DictConfig, key: str, filename: str) -> Path:
    """A run's file: ``cfg[key]`` if given, else ``<run>/<filename>`` where ``run=`` names a pipeline run dir."""
    if cfg.get(key):
        return Path(cfg[key])
    if cfg.get("run"):
        return Path(cfg.run) / filename
    raise ConfigError(f"pass run=<pipeline run dir> or {key}=/path/to/{filename}")


def skip_if_done(out: Path, key: str, given: str | None = None) -> dict | None:
    """The stage template's first step: ``{key: path}`` when the stage's artifact is given (``given``, e.g.
    ``tokenizer=...``) or already in the run dir (a re-run continues where it stopped), else ``None`` (train)."""
    if given:
        print(f"  skipped: {key}={given} given")
        return {key: str(given)}
    if out.is_file():
        print(f"  skipped: {out} exists")
        return {key: str(out)}
    return None


def export(cfg: DictConfig, stage: str, trainer, summary: dict, out: Path, save: Callable[[], object]) -> dict:
    """The stage template's last step: rank 0 writes the artifact (``save()`` → ``out``) and ``<run>/<stage>.json``;
    every rank waits for it (under DDP the next stage reads the file)."""
    if trainer.is_global_zero:
        save()
        atomic_write_json(run_dir(cfg) / f"{stage}.json", summary)
        print(f"  wrote {out}; val: " + ", ".join(f"{k}={v:.4g}" for k, v in summary["val"].items()))
    trainer.strategy.barrier(f"{stage} export")
    return summary


def stage_input(cfg: DictConfig, key: str, default_name: str, what: str, how: str) -> Path:
    """An earlier stage's file: ``cfg.<key>`` when given, else ``<run dir>/<default_name>``; a missing one is a
    one-line ``ConfigError`` saying ``how`` to make or pass it."""
    path = Path(cfg[key]) if cfg.get(key) else run_dir(cfg) / default_name
    if not path.is_file():
        raise ConfigError(f"no {what} at {path}: {how}")
    return path


def token_cache_dir(cfg: DictConfig, default_name: str) -> Path:
    """``cfg.token_cache`` when given, else ``<run dir>/<default_name>``."""
    return Path(cfg.get("token_cache") or run_dir(cfg) / default_name)


def plain(node) -> object:
    """A resolved plain container (what checkpoints, hparams and ``results.json`` may hold)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def finish_wandb_run() -> None:
    """Close the process's W&B run, if any (Lightning's ``WandbLogger`` re-uses a live run instead of starting one)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def wandb_group_and_tags(cfg: DictConfig) -> tuple[str, list[str]]:
    """W&B group: one per multirun (``<experiment>-<sweep dir name>``, so a sweep is one dashboard), else the
    experiment name; tags: the experiment, the quantizer (e.g. ``FSQ [8, 5, 5, 5]``) and ``multirun``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fsq_repro.evaluation.reporting import describe

    name = str(cfg.get("experiment_name"))
    quantizer = {k.lower(): v for k, v in plain(cfg.quantizer).items() if k != "_target_"}
    quantizer["name"] = "fsq" if "levels" in quantizer else "vq"
    tags = [name, describe(quantizer)[2]]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{name}-{Path(HydraConfig.get().sweep.dir).name}", [*tags, "multirun"]
    return name, tags


def build_loggers(cfg: DictConfig, stage: str) -> list:
    """Every logger of ``logger=...``, one sub-run per stage (CSV/TB: ``<run>/<logger>/<stage>``; W&B: job_type)."""
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        if not conf or "_target_" not in conf:
            continue
        kind = conf._target_.rsplit(".", 1)[-1]
        overrides = {}
        if kind == "TensorBoardLogger" and not any(
            importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")
        ):
            raise ConfigError("logger=tensorboard needs the tensorboard package: make install (requirements-extra.txt)")
        if kind in ("CSVLogger", "TensorBoardLogger"):
            overrides = {"version": stage}
        elif kind == "WandbLogger":
            finish_wandb_run()  # one W&B run per stage and per multirun job, never appended to the previous one
            group, tags = wandb_group_and_tags(cfg)
            overrides = {"name": f"{conf.get('name')}-{stage}", "job_type": stage, "group": conf.get("group") or group,
                         "tags": list(conf.get("tags") or []) + tags}  # fmt: skip
        logger = instantiate(conf, **overrides)
        logger.log_hyperparams(plain(cfg))
        loggers.append(logger)
    return loggers


def build_callbacks(cfg: DictConfig, stage: str, has_logger: bool = True) -> list:
    callbacks = []
    for conf in (cfg.get("callbacks") or {}).values():
        if not conf or "_target_" not in conf:
            continue
        if conf._target_.endswith("LearningRateMonitor") and not has_logger:
            continue  # it refuses to run without a logger (e.g. debug=fast)
        if conf._target_.endswith("LearningRateMonitor") and stage == "stage1":
            # Stage I sets its LR itself and logs it (train/lr); the monitor would read it a step late, and under
            # gradient accumulation on a micro-batch axis (manual optimisation)
            continue
        if conf._target_.endswith("ModelCheckpoint") and cfg.trainer.get("fast_dev_run"):
            # a smoke run writes no checkpoint (Lightning's documented fast_dev_run behaviour; its ModelCheckpoint
            # still saves `last` in `on_train_end`: 3 GB per paper-size smoke run, which filled the CI disk)
            continue
        overrides = {}
        if conf._target_.endswith("ModelCheckpoint"):
            overrides = {"dirpath": str(run_dir(cfg) / "checkpoints" / stage)}
        callbacks.append(instantiate(conf, **overrides))
    return callbacks


def trains_on_gpu(cfg: DictConfig) -> bool:
    """``trainer.accelerator`` is a GPU (``gpu`` / ``cuda``), or ``auto`` / unset with a GPU visible."""
    accelerator = str(cfg.trainer.get("accelerator") or "auto")
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and default_device() == "cuda")


def loader_options(cfg: DictConfig, num_workers: int) -> dict:
    """Loader options of the data modules the stages build themselves (Stage II's token cache, UViM's code
    pairs): page-locked batches when training on a GPU (the host→device copy runs asynchronously), workers kept
    across epochs when there are any. ``data=`` configs state theirs (``pin_memory``, ``persistent_workers``)."""
    return {"pin_memory": trains_on_gpu(cfg), "persistent_workers": int(num_workers) > 0}


def split_cpu_threads(cfg: DictConfig) -> None:
    """CPU data parallelism: each of the ``devices`` processes on this machine gets its share of the cores
    (Lightning starts them with the parent's thread count; 2 processes × all cores ran 1.6× slower here)."""
    devices = cfg.trainer.get("devices")
    if cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int) and devices > 1:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // devices)))


def build_trainer(cfg: DictConfig, stage: str, stage_cfg: DictConfig, callbacks: list):
    """``trainer=...`` + the stage's length; keys given in ``trainer`` take precedence over the stage's. The
    gradient accumulation is left at 1 here: ``configure_global_batch`` sets it once the devices are known."""
    max_steps = int(cfg.trainer.get("max_steps") or stage_cfg.max_steps)
    defaults = {
        "max_steps": max_steps,
        "val_check_interval": min(int(stage_cfg.val_check_interval), max_steps),
        "check_val_every_n_epoch": None,  # validate every `val_check_interval` batches, across epoch boundaries
        "limit_val_batches": stage_cfg.get("limit_val_batches", 1.0),
        "num_sanity_val_steps": 0,
    }
    kwargs = {k: v for k, v in defaults.items() if cfg.trainer.get(k) is None}
    kwargs["accumulate_grad_batches"] = 1  # trainer.accumulate_grad_batches is checked by configure_global_batch
    if stage == "stage1" and cfg.trainer.get("strategy") == "ddp":
        # the discriminator takes no part in the loss before `gan_start_step` (and the generator's EMA never
        # does): DDP must be told that some parameters get no gradient in a step
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    split_cpu_threads(cfg)
    quiet_lightning_logging()
    on_cpu = cfg.trainer.get("accelerator") == "cpu" or (
        cfg.trainer.get("accelerator") in (None, "auto") and default_device() == "cpu"
    )
    precision, note = resolve_precision(cfg.trainer.get("precision"), on_cpu)
    if note:
        kwargs["precision"] = precision
        print(f"  {note}")
    loggers = build_loggers(cfg, stage)
    callbacks, checkpointing = stage_callbacks(
        build_callbacks(cfg, stage, bool(loggers)) + callbacks,
        int(cfg.seed),
        str(cfg.get("experiment_name")),
        run_dir(cfg) / "checkpoints" / stage,
    )
    return instantiate(
        cfg.trainer,
        **kwargs,
        callbacks=callbacks,
        logger=loggers or False,
        enable_checkpointing=checkpointing,
        plugins=[AtomicCheckpointIO()],
    )


def resume_path(cfg: DictConfig, stage: str) -> str | None:
    """``ckpt_path``: ``null`` → the newest of the stage's ``last.ckpt`` / ``interrupted.ckpt`` in the run dir, if any
    (automatic resume); ``last`` → that file (error if there is none); anything else → that path."""
    ckpt_dir = run_dir(cfg) / "checkpoints" / stage
    found = [p for p in (ckpt_dir / "last.ckpt", ckpt_dir / "interrupted.ckpt") if p.is_file()]
    newest = max(found, key=lambda p: p.stat().st_mtime) if found else None
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return str(newest) if newest else None
    if ckpt == "last":
        if newest is None:
            raise ConfigError(
                f"ckpt_path=last but {ckpt_dir} has no last.ckpt (set hydra.run.dir to the run to resume)"
            )
        return str(newest)
    if not Path(ckpt).is_file():
        raise ConfigError(f"ckpt_path={ckpt} does not exist")
    return str(ckpt)


def fit_and_validate(cfg: DictConfig, stage: str, trainer, module, dm) -> dict:
    """Fit (resuming from the stage's ``last.ckpt`` / ``interrupted.ckpt`` when there is one), then validate on the
    whole validation split (``lit/trainer.py: fit_then_validate``). ``model.<stage>.final_val_batches`` caps that
    final pass (e.g. a Stage II with a 64 000-way head on CPU, whose final pass would otherwise cost more than its
    training)."""
    final = (cfg.get("model") or {}).get(stage.removeprefix("uvim_"), {}).get("final_val_batches")
    ckpt_dir = run_dir(cfg) / "checkpoints" / stage
    return fit_then_validate(stage, trainer, module, dm, resume_path(cfg, stage), ckpt_dir, final)


def count_parameters(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def log_results(cfg: DictConfig, name: str, results: dict, images: dict[str, Path] | None = None) -> None:
    """Send eval numbers (and plots) to the configured loggers (CSV / TensorBoard / W&B) under ``<name>/...``.
    ``results`` is one task's dict or the pipeline's ``{task: dict}``; a ``curve`` list (``cfg_sweep``) is logged
    point by point (step = the point's index) under the task's prefix."""
    import numpy as np
    from PIL import Image

    from fsq_repro.lit.callbacks import log_image

    loggers = build_loggers(cfg, name)
    if not loggers:
        return
    tasks = results if all(isinstance(v, dict) for v in results.values()) else {"": results}

    def numbers(prefix: str, point: dict) -> dict:
        return {f"{prefix}/{k}": float(v) for k, v in point.items() if isinstance(v, (int, float)) and k != "task"}

    flat, curves = {}, []
    for task, res in tasks.items():
        prefix = f"{name}/{task}" if task else name
        flat.update(numbers(prefix, res))
        curves += [(prefix, res["curve"])] if res.get("curve") else []  # a cfg_sweep's points: step = index
    for logger in loggers:
        if flat:
            logger.log_metrics(flat, step=0)
        for prefix, curve in curves:
            for step, point in enumerate(curve):
                logger.log_metrics(numbers(prefix, point), step=step)
    holder = type("T", (), {"loggers": loggers})()
    for key, path in (images or {}).items():
        if Path(path).is_file():
            grid = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
            log_image(holder, f"{name}/{key}", grid, 0)
    for logger in loggers:
        logger.finalize("success")
