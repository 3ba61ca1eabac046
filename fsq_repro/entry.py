"""What the root entry points (train.py, eval.py, sample.py, pretokenize.py) call after Hydra composed a config.

Stages are added as the issues that implement them land; asking for one that does not exist yet is a one-line
error naming it. ``ConfigError``s (missing data root, weights, mismatched sizes) end the program with one
``error: ...`` line and exit code 2, never a traceback from deep inside a library.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fsq_repro.errors import ConfigError

KNOWN_STAGES = ("data", "stage1", "tokenize", "stage2", "eval")


def one_line_errors(fn: Callable) -> Callable:
    """Turn a ``ConfigError`` (also when wrapped by Hydra's instantiate) into ``error: ...`` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ConfigError, InstantiationException) as err:
            cause = err
            while not isinstance(cause, ConfigError) and cause.__cause__ is not None:
                cause = cause.__cause__
            if not isinstance(cause, ConfigError):
                raise
            print(f"error: {cause}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def _output_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def stage_data(cfg: DictConfig) -> dict:
    """Build the data module, read one batch of each split, save a sample grid: a check of ``data=...``."""
    from fsq_repro.viz import save_image_grid

    dm = instantiate(cfg.data)
    dm.setup("fit")
    train_batch = next(iter(dm.train_dataloader()))
    val_batch = next(iter(dm.val_dataloader()))
    grid = save_image_grid(train_batch["image"][:64], _output_dir(cfg) / "data_samples.png", nrow=8)
    info = {
        "data": dm.name,
        "num_classes": dm.num_classes,
        "train_size": len(dm.train_set) if hasattr(dm.train_set, "__len__") else None,
        "val_size": len(dm.val_set) if hasattr(dm.val_set, "__len__") else None,
        "batch": tuple(train_batch["image"].shape),
        "pixel_range": (round(float(train_batch["image"].min()), 3), round(float(train_batch["image"].max()), 3)),
        "corrupt_in_first_batches": int(train_batch["num_corrupt"]) + int(val_batch["num_corrupt"]),
        "grid": str(grid),
    }
    for key, value in info.items():
        print(f"  {key}: {value}")
    return info


STAGES: dict[str, Callable[[DictConfig], object]] = {"data": stage_data}


def _summary(cfg: DictConfig) -> str:
    quantizer = instantiate(cfg.quantizer)  # validates the bottleneck config at startup
    return (
        f"experiment={cfg.experiment_name} data={cfg.data.get('name')} "
        f"quantizer={quantizer.__class__.__name__}({quantizer.extra_repr()})"
    )


@one_line_errors
def run_train(cfg: DictConfig) -> None:
    print(_summary(cfg))
    unknown = [s for s in cfg.stages if s not in KNOWN_STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown} in `stages`; known: {list(KNOWN_STAGES)}")
    missing = [s for s in cfg.stages if s not in STAGES]
    if missing:
        raise ConfigError(
            f"stage(s) {missing} are not implemented yet; implemented: {sorted(STAGES)} (e.g. stages=[data])"
        )
    for stage in cfg.stages:
        print(f"[{stage}]")
        STAGES[stage](cfg)


def _not_yet(what: str, cfg: DictConfig) -> None:
    print(_summary(cfg))
    print(OmegaConf.to_yaml(cfg, resolve=False))
    raise ConfigError(f"`{what}` is not implemented yet")


@one_line_errors
def run_eval(cfg: DictConfig) -> None:
    _not_yet(f"eval.py task={cfg.get('task')}", cfg)


@one_line_errors
def run_sample(cfg: DictConfig) -> None:
    _not_yet("sample.py", cfg)


@one_line_errors
def run_pretokenize(cfg: DictConfig) -> None:
    _not_yet("pretokenize.py", cfg)
