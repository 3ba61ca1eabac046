"""Startup checks of what a user types on the command line of ``train.py``, ``eval.py``, ``sample.py`` and
``pretokenize.py``: numbers (a batch of 0, a seed of ``abc``, a resolution the tokenizer cannot halve, a global
batch the devices cannot divide), names (``metrics.pr_mode``, ``stages``) and file / folder paths. A bad one is a
one-line ``ConfigError`` before any data, model or reference statistic is built, instead of a traceback from deep
inside torch or Lightning minutes later (docs/fault-tolerance.md item 5; ``scripts/fuzz_cli.py`` types them).

Every entry point composes ``train.yaml``, so every rule applies to all four: a typo is refused even in an option
that this entry point does not read.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from fsq_repro.errors import ConfigError

_ABSENT = object()
KINDS = {  # kind -> (test, what the value must be)
    "count": (lambda v: isinstance(v, int) and v >= 1, "a positive integer"),
    "count0": (lambda v: isinstance(v, int) and v >= 0, "a non-negative integer"),
    "positive": (lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    "nonneg": (lambda v: isinstance(v, (int, float)) and v >= 0, "a non-negative number"),
    "decay": (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)"),
    "seed": (lambda v: isinstance(v, int) and 0 <= v < 2**32, "an integer in [0, 2^32)"),
    "share": (lambda v: isinstance(v, (int, float)) and 0 < v <= 1, "a number in (0, 1]"),
}
# option -> (kind, null allowed)
NUMBERS = {
    "seed": ("seed", False),
    "data.batch_size": ("count", False),
    "data.resolution": ("count", False),
    "data.num_workers": ("count0", False),
    "trainer.num_nodes": ("count", False),
    "trainer.max_steps": ("count", True),
    "trainer.accumulate_grad_batches": ("count", True),
    "trainer.log_every_n_steps": ("count", False),
    **{f"model.{s}.{k}": ("count", False) for s in ("stage1", "stage2") for k in ("max_steps", "val_check_interval")},
    **{f"model.{s}.global_batch_size": ("count", True) for s in ("stage1", "stage2")},
    **{f"model.{s}.optim.lr": ("positive", False) for s in ("stage1", "stage2")},
    **{f"model.{s}.optim.warmup_steps": ("count0", False) for s in ("stage1", "stage2")},
    **{f"model.{s}.max_nonfinite_skips": ("count0", False) for s in ("stage1", "stage2")},
    "model.stage1.optim.ema_decay": ("decay", False),
    "model.stage1.perceptual_weight": ("nonneg", False),
    "model.stage2.batch_size": ("count", False),
    "model.stage2.num_workers": ("count0", False),
    "eval_num_images": ("count", True),
    **{f"metrics.{k}": ("count", False) for k in ("reference_size", "pr_reference_size", "num_per_class")},
    **{f"metrics.{k}": ("count", False) for k in ("batch_size", "is_splits")},
    "metrics.num_images": ("count", True),
    "metrics.compression_images": ("count", True),
    "sampler.steps": ("count", False),
    "sampler.choice_temperature": ("nonneg", False),
    "sampler.cfg_scale": ("nonneg", False),
    "cfg_scale": ("nonneg", True),  # eval.py / sample.py
    "num_per_class": ("count", False),  # sample.py
    "batch_size": ("count", True),  # sample.py (run_sample refuses null) / pretokenize.py (null = data.batch_size)
    **{f"semantics.{k}": ("count", False) for k in ("top_codes", "patches_per_code", "paint_images", "paint_codes")},
    "data.train.min_crop_area": ("share", False),  # the depth datasets' Inception box (tasks/depth/labels.py)
}
# fmt: off
CHOICES = {
    "metrics.extractor": ("inception", "shapes", "none"),
    "metrics.pr_mode": ("exact", "adm"),
    "metrics.is_mode": ("adm", "splits"),
    "metrics.reference_split": ("train", "val"),
    "sampler.cfg_schedule": ("constant", "linear"),  # generation/sampler.py CFG_SCHEDULES
    "sampler.schedule": ("cosine", "linear", "square"),  # generation/masking.py SCHEDULES
    "data.camera": ("fixed", "random"),  # tasks/depth/scenes.py CAMERAS
    # lightning.fabric.connector._PRECISION_INPUT
    "trainer.precision": ("16-true", "16-mixed", "bf16-true", "bf16-mixed", "32-true", "64-true", "16", "32", "64",
                          "bf16", 16, 32, 64, "transformer-engine", "transformer-engine-float16"),
}
# fmt: on
FILES = ("tokenizer", "maskgit", "uvim_stage1", "uvim_lm", "metrics.reference")  # given -> an existing, readable file
FOLDERS = ("out", "token_cache")  # given -> not an existing file


def _get(cfg: DictConfig, key: str) -> object:
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT)
    except Exception:  # an interpolation that needs Hydra's runtime: not typed by the user, not checked here
        return _ABSENT


def _shown(value: object) -> str:
    return repr(value) if value == "" else str(value)


def check_numbers(cfg: DictConfig) -> None:
    for key, (kind, nullable) in NUMBERS.items():
        value = _get(cfg, key)
        if value is _ABSENT or (value is None and nullable):
            continue
        test, what = KINDS[kind]
        if isinstance(value, bool) or not test(value):
            raise ConfigError(f"{key}={_shown(value)} must be {what}" + (" (or null)" if nullable else ""))
    for key, choices in CHOICES.items():
        value = _get(cfg, key)
        if value is not _ABSENT and value not in choices:
            raise ConfigError(f"{key}={_shown(value)} is unknown; choose one of {', '.join(map(str, choices))}")
    check_lists(cfg)
    check_devices(cfg)


def check_lists(cfg: DictConfig) -> None:
    for key, item, kind, nullable in (("stages", str, "a non-empty list of stage names, e.g. [stage1,tokenize]", 0),
                                      ("eval_tasks", str, "a list of task names, e.g. [reconstruction]", 0),
                                      ("cfg_scales", (int, float), "a list of non-negative numbers", 0),
                                      ("classes", int, "null or a list of class ids, e.g. [0,1,2]", 1)):  # fmt: skip
        value = _get(cfg, key)
        if value is _ABSENT or (value is None and nullable):
            continue
        ok = isinstance(value, ListConfig) and (len(value) > 0 or key == "eval_tasks")
        ok = ok and all(isinstance(v, item) and not isinstance(v, bool) and (item is str or v >= 0) for v in value)
        if not ok:
            raise ConfigError(f"{key}={_shown(value)} must be {kind}")


def check_devices(cfg: DictConfig) -> None:
    """``trainer.devices``: a positive count, ``-1`` (all GPUs), ``auto``, or GPU ids (``[0,3]`` / ``"0,3"``); on a
    CPU at most one process per core, on a GPU at most the GPUs torch sees."""
    devices, accelerator = _get(cfg, "trainer.devices"), str(_get(cfg, "trainer.accelerator"))
    if devices is _ABSENT or devices == "auto" or (devices == -1 and accelerator != "cpu"):
        return
    if isinstance(devices, str) and devices.replace(",", "").replace(" ", "").isdigit():
        return
    if isinstance(devices, ListConfig) and devices and all(isinstance(d, int) and d >= 0 for d in devices):
        return
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError(f"trainer.devices={_shown(devices)} must be a positive number of devices, -1 (all GPUs), "
                          "auto or a list of GPU ids")  # fmt: skip
    if accelerator == "cpu" and devices > (os.cpu_count() or 1):
        raise ConfigError(f"trainer.devices={devices} CPU processes but this machine has {os.cpu_count()} cores")
    if accelerator in ("gpu", "cuda"):
        import torch

        if torch.cuda.is_available() and devices > torch.cuda.device_count():
            raise ConfigError(f"trainer.devices={devices} but torch sees {torch.cuda.device_count()} GPU(s)")


def check_paths(cfg: DictConfig) -> None:
    """File options that are given name an existing, readable file; folder options no existing file."""
    for key in FILES:
        value = _get(cfg, key)
        if value in (_ABSENT, None, ""):
            continue
        path = Path(str(value))
        if not path.exists():
            raise ConfigError(f"{key}={path} does not exist")
        if path.is_dir():
            raise ConfigError(f"{key}={path} is a directory; pass the file")
        try:
            path.open("rb").close()
        except OSError as err:
            raise ConfigError(f"{key}={path} is not readable ({err.strerror})") from None
    ckpt = _get(cfg, "ckpt_path")
    if ckpt not in (_ABSENT, None, "last") and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={_shown(ckpt)} is not a checkpoint file (or pass ckpt_path=last)")
    for key in FOLDERS:
        value = _get(cfg, key)
        if value not in (_ABSENT, None, "") and Path(str(value)).is_file():
            raise ConfigError(f"{key}={value} is a file; pass a directory")


TRAINING_BATCHES = (  # (stage, model.<block>, per-device batch key), as the stages call configure_global_batch
    ("stage1", "stage1", "data.batch_size"),
    ("uvim_stage1", "stage1", "data.batch_size"),
    ("stage2", "stage2", "model.stage2.batch_size"),
    ("uvim_stage2", "stage2", "model.stage2.batch_size"),
)


def check_train(cfg: DictConfig) -> None:
    """``train.py`` only: the tokenizer's downsampling divides ``data.resolution``, and each training stage's global
    batch adds up on the configured devices (the arithmetic of ``global_batch.py``, before any data is read)."""
    from fsq_repro.nets.vqgan import downsampling_factor
    from fsq_repro.pipeline.global_batch import device_count, resolve_global_batch

    stages = list(cfg.stages)
    multipliers = _get(cfg, "model.stage1.tokenizer.channel_multipliers")
    if "stage1" in stages and not cfg.get("tokenizer") and isinstance(multipliers, ListConfig):
        factor = downsampling_factor(list(multipliers))
        if int(cfg.data.resolution) % factor:
            raise ConfigError(f"data.resolution={cfg.data.resolution} is not a multiple of the tokenizer's "
                              f"downsampling factor {factor} (model.stage1.tokenizer.channel_multipliers)")  # fmt: skip
    try:
        devices = device_count(cfg.trainer.get("devices", 1))
    except ValueError:  # auto / -1: known once the Trainer is built (configure_global_batch checks it then)
        return
    for stage, block, batch_key in TRAINING_BATCHES:
        if stage in stages and _get(cfg, batch_key) not in (_ABSENT, None):
            resolve_global_batch(stage, cfg.model[block].get("global_batch_size"), _get(cfg, batch_key), devices,
                                 cfg.trainer.get("num_nodes", 1), cfg.trainer.get("accumulate_grad_batches"),
                                 batch_key=batch_key)  # fmt: skip


def check_options(cfg: DictConfig, train: bool = False) -> None:
    """All startup checks of an entry point's composed config (``train``: also ``check_train``)."""
    check_numbers(cfg)
    check_paths(cfg)
    if train:
        check_train(cfg)
