"""What the root entry points (train.py, eval.py, sample.py, pretokenize.py) call after Hydra composed a config.

Stages are added as the issues that implement them land; asking for one that does not exist yet is a one-line
error naming it, never a crash deep inside a library.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# stage name -> callable(cfg) once implemented
STAGES: dict[str, object] = {}
KNOWN_STAGES = ("stage1", "tokenize", "stage2", "eval")


def _summary(cfg: DictConfig) -> str:
    quantizer = instantiate(cfg.quantizer)  # validates the bottleneck config at startup
    return (
        f"experiment={cfg.experiment_name} data={cfg.data.get('name')} "
        f"quantizer={quantizer.__class__.__name__}({quantizer.extra_repr()})"
    )


def run_train(cfg: DictConfig) -> None:
    print(_summary(cfg))
    unknown = [s for s in cfg.stages if s not in KNOWN_STAGES]
    if unknown:
        raise SystemExit(f"error: unknown stage(s) {unknown} in `stages`; known: {list(KNOWN_STAGES)}")
    missing = [s for s in cfg.stages if s not in STAGES]
    if missing:
        raise SystemExit(f"error: stage(s) {missing} are not implemented yet; implemented: {sorted(STAGES) or 'none'}")
    for stage in cfg.stages:
        STAGES[stage](cfg)


def _not_yet(what: str, cfg: DictConfig) -> None:
    print(_summary(cfg))
    print(OmegaConf.to_yaml(cfg, resolve=False))
    raise SystemExit(f"error: `{what}` is not implemented yet")


def run_eval(cfg: DictConfig) -> None:
    _not_yet(f"eval.py task={cfg.get('task')}", cfg)


def run_sample(cfg: DictConfig) -> None:
    _not_yet("sample.py", cfg)


def run_pretokenize(cfg: DictConfig) -> None:
    _not_yet("pretokenize.py", cfg)
