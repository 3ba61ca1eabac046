"""What every training stage of ``train.py`` shares (the FSQ paper's two-stage pipeline, §4): the run dir, Trainer,
logger and callback assembly, resume paths, atomic JSON.

Each stage writes its artifact into the run dir and is skipped when that artifact already exists, so re-running a
crashed pipeline in the same dir continues where it stopped. Stage-specific lengths (``max_steps``,
``val_check_interval``, ``limit_val_batches``) come from ``model/stage1|stage2``; anything set in ``trainer`` (e.g.
``trainer.max_steps=...``, ``debug=fast``) wins.

The configured batch is the *global* one (``model.stage1|stage2.global_batch_size``, FSQ paper §4.3: 512 / 256):
``lit/global_batch.py: configure_global_batch`` derives the gradient accumulation from the per-device batch and the
Trainer's devices and nodes, so one GPU and eight GPUs train on the same batch. ``max_steps``, ``val_check_interval``
and ``log_every_n_steps`` count optimizer steps either way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fsq_repro.atomic import atomic_torch_save
from fsq_repro.errors import ConfigError
from fsq_repro.hardware import default_device, resolve_precision
from fsq_repro.lit.callbacks import Preemption, ReseedEveryStep, slurm_requeue


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


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

    from fsq_repro.reporting import describe

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to ``<path>.<pid>.tmp`` next to the target, fsynced, then ``os.replace``d
    (``fsq_repro/atomic.py``): a crash or a full disk mid-write leaves the previous checkpoint intact (Lightning's
    own write goes through a temp file in ``$TMPDIR`` and ``shutil.move``, which is atomic only on one filesystem
    and never fsyncs)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)


def split_cpu_threads(cfg: DictConfig) -> None:
    """CPU data parallelism: each of the ``devices`` processes on this machine gets its share of the cores
    (Lightning starts them with the parent's thread count; 2 processes × all cores ran 1.6× slower here)."""
    devices = cfg.trainer.get("devices")
    if cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int) and devices > 1:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // devices)))


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's console tips that advertise other products (e.g. ``litlogger``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_lightning_logging() -> None:
    """Each Lightning INFO line once: ``import lightning`` attaches its own console handler to the ``lightning``
    logger *and* lets records propagate to the root logger that Hydra configured (console + ``train.log``), so every
    line printed twice. Drop Lightning's handler (Hydra's print it once and keep it in ``train.log``) and filter the
    advertisements on every root handler. Idempotent."""
    root = logging.getLogger()
    if not root.handlers:  # no Hydra logging (a library use): Lightning's own handler is the only one
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # each may have attached its own handler
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in root.handlers:
        if not any(isinstance(f, _NoAdvertisements) for f in handler.filters):
            handler.addFilter(_NoAdvertisements())


def build_trainer(cfg: DictConfig, stage: str, stage_cfg: DictConfig, callbacks: list) -> pl.Trainer:
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
    callbacks = (
        build_callbacks(cfg, stage, bool(loggers))
        + callbacks
        + [ReseedEveryStep(int(cfg.seed)), Preemption(), RunInfo(str(cfg.get("experiment_name")))]
    )
    checkpointing = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    if checkpointing:  # an exception or SIGTERM mid-run leaves `interrupted.ckpt`, which the next run resumes from
        # (not "last": Lightning removes this callback's file at teardown of a successful run)
        callbacks.append(pl.callbacks.OnExceptionCheckpoint(run_dir(cfg) / "checkpoints" / stage, "interrupted"))
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


def save_final_checkpoint(cfg: DictConfig, stage: str, trainer: pl.Trainer) -> None:
    """Make ``checkpoints/<stage>/last.ckpt`` the state at the end of training (``ModelCheckpoint`` writes it only
    every ``every_n_train_steps``), so a longer re-run continues from the true end and ``last.ckpt`` never lags."""
    callback = trainer.checkpoint_callback
    if not callback or trainer.fast_dev_run:
        return
    # the callback's own record (the same on every rank: `save_checkpoint` is collective under DDP)
    if getattr(callback, "_last_global_step_saved", -1) != trainer.global_step:
        trainer.save_checkpoint(run_dir(cfg) / "checkpoints" / stage / "last.ckpt", weights_only=False)  # full state


def check_resume_compatible(path: str, module: pl.LightningModule) -> None:
    """Before resuming, compare the checkpoint's parameter names and shapes with this model's: a checkpoint from
    another experiment or model size is a one-line ``ConfigError`` naming the first difference (and the experiment
    that wrote it), not a ``size mismatch`` traceback from ``load_state_dict``; an unreadable one, too."""
    from fsq_repro.artifacts import read_checkpoint

    ckpt = read_checkpoint(path, mmap=True)
    theirs, own = ckpt["state_dict"], module.state_dict()
    shared = sorted(own.keys() & theirs.keys())
    problems = [f"{k} has shape {tuple(theirs[k].shape)} there, {tuple(own[k].shape)} here"
                for k in shared if tuple(own[k].shape) != tuple(theirs[k].shape)]  # fmt: skip
    problems += [f"{k} is missing there" for k in sorted(own.keys() - theirs.keys())]
    problems += [f"{k} is not in this model" for k in sorted(theirs.keys() - own.keys())]
    if problems:
        raise ConfigError(
            f"checkpoint {path} (experiment={ckpt.get('experiment', '?')}) does not fit this model: {problems[0]}"
            f" ({len(problems)} differences); resume with the config that wrote it, or use another run dir"
        )


class RunInfo(pl.Callback):
    """Stamps every checkpoint with the experiment name (shown when a resume does not fit)."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["experiment"] = self.experiment


def fit_and_validate(cfg: DictConfig, stage: str, trainer: pl.Trainer, module, dm) -> dict:
    """Fit (resuming from the stage's ``last.ckpt`` when there is one), then validate on the *whole* validation
    split (usage needs all of it; ``model.<stage>.final_val_batches`` caps it). Returns the summary fields every
    stage writes."""
    start = time.perf_counter()
    ckpt_path = resume_path(cfg, stage)
    if ckpt_path:
        check_resume_compatible(ckpt_path, module)
    try:
        # weights_only: our checkpoints are plain containers (tokenizer_module.on_save_checkpoint)
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))
        job = slurm_requeue() if preemption.requeue_requested and trainer.is_global_zero else None
        then = f"SLURM job {job} requeued" if job else "re-run the same command to resume"
        ckpt = run_dir(cfg) / "checkpoints" / stage / "interrupted.ckpt"
        print(f"{stage}: stopped by a signal after step {trainer.global_step}; checkpoint {ckpt}; {then}", flush=True)
        raise SystemExit(0) from None
    fit_seconds = time.perf_counter() - start
    if trainer.interrupted:
        raise SystemExit(f"{stage} was interrupted; re-run the same command (same run dir) to resume")
    save_final_checkpoint(cfg, stage, trainer)
    # the whole split by default (Stage I usage needs all of it); `final_val_batches` caps it (e.g. a Stage II with a
    # 64 000-way head on CPU, whose final pass would otherwise cost more than its training)
    final = (cfg.get("model") or {}).get(stage.removeprefix("uvim_"), {}).get("final_val_batches")
    trainer.limit_val_batches = 1 if trainer.fast_dev_run else (int(final) if final else 1.0)
    val = {k: float(v) for k, v in trainer.validate(module, datamodule=dm, verbose=False)[0].items() if k != "step"}
    return {
        "stage": stage,
        "steps": int(trainer.global_step),
        "fit_seconds": round(fit_seconds, 2),
        "seconds_per_step": round(fit_seconds / max(1, trainer.global_step), 4),
        "val": val,
    }


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
