"""What every training stage of ``train.py`` shares (the FSQ paper's two-stage pipeline, §4): the run dir, Trainer,
logger and callback assembly, resume paths, atomic JSON.

Each stage writes its artifact into the run dir and is skipped when that artifact already exists, so re-running a
crashed pipeline in the same dir continues where it stopped. Stage-specific lengths (``max_steps``,
``val_check_interval``, ``limit_val_batches``) come from ``model/stage1|stage2``; anything set in ``trainer`` (e.g.
``trainer.max_steps=...``, ``debug=fast``) wins.

The configured batch is the *global* one (``model.stage1|stage2.global_batch_size``, FSQ paper §4.3: 512 / 256):
``configure_global_batch`` derives the gradient accumulation from the per-device batch and the Trainer's devices and
nodes, so one GPU and eight GPUs train on the same batch. ``max_steps``, ``val_check_interval`` and
``log_every_n_steps`` count optimizer steps either way.
"""

from __future__ import annotations

import importlib.util
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fsq_repro.artifacts import atomic_torch_save, write_json  # noqa: F401  (write_json: re-exported)
from fsq_repro.errors import ConfigError
from fsq_repro.lit.callbacks import Preemption, ReseedEveryStep, slurm_requeue, step_seed


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


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
        overrides = {}
        if conf._target_.endswith("ModelCheckpoint"):
            overrides = {"dirpath": str(run_dir(cfg) / "checkpoints" / stage)}
        callbacks.append(instantiate(conf, **overrides))
    return callbacks


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to ``<path>.tmp`` next to the target, fsynced, then ``os.replace``d: a crash or a full
    disk mid-write leaves the previous checkpoint intact (Lightning's own write goes through a temp file in
    ``$TMPDIR`` and ``shutil.move``, which is atomic only on one filesystem and never fsyncs)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)


def split_cpu_threads(cfg: DictConfig) -> None:
    """CPU data parallelism: each of the ``devices`` processes on this machine gets its share of the cores
    (Lightning starts them with the parent's thread count; 2 processes × all cores ran 1.6× slower here)."""
    devices = cfg.trainer.get("devices")
    if cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int) and devices > 1:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // devices)))


def device_count(devices: int | str | Sequence[int]) -> int:
    """Number of devices a Trainer's ``devices`` argument names: ``8`` → 8, ``[0, 3]`` / ``"0,3"`` → 2, ``"4"`` → 4.
    ``"auto"`` / ``-1`` depend on the machine: take ``trainer.num_devices`` from a built Trainer instead."""
    if isinstance(devices, str):
        devices = devices.strip()
        if "," in devices or devices.startswith("["):
            return len([d for d in devices.strip("[]").split(",") if d.strip()])
        if devices.lstrip("-").isdigit():
            return device_count(int(devices))
        raise ValueError(f"devices={devices!r} depends on the machine: read trainer.num_devices")
    if isinstance(devices, Sequence):
        return len(devices)
    if int(devices) < 1:
        raise ValueError(f"devices={devices} depends on the machine: read trainer.num_devices")
    return int(devices)


@dataclass(frozen=True)
class GlobalBatch:
    """``global_batch_size = per_device × devices × num_nodes × accumulate_grad_batches`` of one stage."""

    stage: str
    global_batch_size: int
    per_device: int
    devices: int
    num_nodes: int
    accumulate_grad_batches: int

    def describe(self) -> str:
        return (
            f"{self.stage}: global batch {self.global_batch_size} = {self.per_device} per device × "
            f"{_devices(self.devices)} × {self.num_nodes} node(s) × {self.accumulate_grad_batches} accumulation"
        )


def _devices(n: int) -> str:
    return f"{n} device" if n == 1 else f"{n} devices"


def resolve_global_batch(
    stage: str,
    global_batch_size: int | None,
    per_device: int,
    devices: int | str | Sequence[int],
    num_nodes: int = 1,
    accumulate_grad_batches: int | None = None,
    batch_key: str = "data.batch_size",
) -> GlobalBatch:
    """The gradient accumulation that makes ``per_device × devices × num_nodes × accumulation`` equal the configured
    ``model.<stage>.global_batch_size`` (pure arithmetic, no Lightning).

    - ``accumulate_grad_batches`` None (``trainer.accumulate_grad_batches: null``): derived, and the global batch
      must be a multiple of ``per_device × devices × num_nodes``;
    - given: checked against the global batch instead of derived;
    - ``global_batch_size`` None: no target, the global batch is the product (accumulation given or 1).

    Anything that does not add up is a one-line ``ConfigError`` naming every number and the keys to set."""
    global_key = f"model.{stage}.global_batch_size"
    devices, num_nodes, per_device = device_count(devices), int(num_nodes), int(per_device)
    if per_device < 1 or num_nodes < 1:
        raise ConfigError(f"{batch_key}={per_device} and trainer.num_nodes={num_nodes} must be at least 1")
    base = per_device * devices * num_nodes
    product = f"{batch_key}={per_device} × {_devices(devices)} × {num_nodes} node(s)"
    if accumulate_grad_batches is not None and int(accumulate_grad_batches) < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches={accumulate_grad_batches} must be at least 1 (or null)")
    if global_batch_size is None:
        k = int(accumulate_grad_batches or 1)
        return GlobalBatch(stage, base * k, per_device, devices, num_nodes, k)
    target = int(global_batch_size)
    if target < 1:
        raise ConfigError(f"{global_key}={global_batch_size} must be at least 1 (or null: no accumulation)")
    if accumulate_grad_batches is not None:
        k = int(accumulate_grad_batches)
        if base * k != target:
            raise ConfigError(
                f"{product} × trainer.accumulate_grad_batches={k} = {base * k}, but {global_key}={target}: set "
                f"trainer.accumulate_grad_batches=null to derive it, or {batch_key} / trainer.devices"
            )
        return GlobalBatch(stage, target, per_device, devices, num_nodes, k)
    if target % base:
        raise ConfigError(
            f"{global_key}={target} is not a multiple of {product} = {base}: "
            f"set {batch_key} or trainer.devices so it divides"
        )
    return GlobalBatch(stage, target, per_device, devices, num_nodes, target // base)


def configure_global_batch(
    cfg: DictConfig, stage: str, trainer: pl.Trainer, module: pl.LightningModule, batch_key: str, per_device: int
) -> GlobalBatch:
    """Resolve the stage's global batch on the built Trainer (its ``num_devices`` / ``num_nodes``, so ``devices``
    may be a list or ``auto``), print it, and apply the accumulation: Lightning's ``accumulate_grad_batches`` for an
    automatically optimised module (Stage II), the module's own ``accumulate_grad_batches`` for a manually
    optimised one (Stage I: Lightning refuses to accumulate there). Lightning counts ``val_check_interval`` in
    batches (and, under manual optimisation, ``log_every_n_steps`` too): both are scaled so they count optimizer
    steps as ``max_steps`` does."""
    layout = resolve_global_batch(
        stage,
        cfg.model[stage].get("global_batch_size"),
        per_device,
        trainer.num_devices,
        trainer.num_nodes,
        cfg.trainer.get("accumulate_grad_batches"),
        batch_key=batch_key,
    )
    k, note = layout.accumulate_grad_batches, ""
    if trainer.fast_dev_run and k > 1:  # a smoke test should reach the optimizer step within its few batches
        k, note = 1, " (fast_dev_run: no accumulation)"
    if module.automatic_optimization:
        trainer.accumulate_grad_batches = k
    else:
        module.accumulate_grad_batches = k
        if trainer.log_every_n_steps:
            trainer.log_every_n_steps *= k
    if k > 1 and isinstance(trainer.val_check_interval, int):
        trainer.val_check_interval *= k
    if trainer.is_global_zero:
        print(f"  {layout.describe()}{note}", flush=True)
    return layout


class ReseedEveryMicroBatch(ReseedEveryStep):
    """``ReseedEveryStep`` that also tells apart the micro-batches of one accumulated step: they share
    ``global_step``, and one seed for all of them would give every micro-batch the same Stage II masks and dropout.
    The first micro-batch of a step (and every batch without accumulation) keeps ``ReseedEveryStep``'s seed."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if pl_module.automatic_optimization:
            micro = batch_idx % max(1, int(trainer.accumulate_grad_batches))  # Lightning's windows start each epoch
        else:
            micro = int(getattr(pl_module, "micro_batch", 0))
        if micro == 0:
            return super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        s = micro_step_seed(self.seed, trainer.global_rank, trainer.global_step, micro)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)  # noqa: NPY002  (the legacy global state is what third-party code draws from)
        random.seed(s)


def micro_step_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """``step_seed`` of ``(seed, rank, step)`` for micro-batch 0, a distinct pure function of all four otherwise."""
    if micro == 0:
        return step_seed(seed, rank, step)
    state = np.random.SeedSequence([int(seed), int(rank), int(step), int(micro)]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


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
    loggers = build_loggers(cfg, stage)
    callbacks = (
        build_callbacks(cfg, stage, bool(loggers))
        + callbacks
        + [ReseedEveryMicroBatch(int(cfg.seed)), Preemption(), RunInfo(str(cfg.get("experiment_name")))]
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
        trainer.save_checkpoint(run_dir(cfg) / "checkpoints" / stage / "last.ckpt")


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
    split (usage needs all of it). Returns the summary fields every stage writes."""
    start = time.perf_counter()
    ckpt_path = resume_path(cfg, stage)
    if ckpt_path:
        check_resume_compatible(ckpt_path, module)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
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
    trainer.limit_val_batches = 1.0 if not trainer.fast_dev_run else 1
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
