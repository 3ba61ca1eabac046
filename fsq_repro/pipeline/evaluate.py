"""``eval.py task=...`` and the pipeline's ``eval`` stage: resolve the config into objects, then call the tasks of
``evaluation/maskgit.py`` (which take objects only) — this is the one place that reads ``metrics.*`` and friends.

Tasks: ``ref_stats`` (statistics of ``metrics.reference_split`` → ``ref_stats.npz``), ``reconstruction``,
``sampling``, ``cfg_sweep``, ``compression`` and ``semantics`` (FSQ paper App. A.3, ``evaluation/semantics.py``).
The reference is ``metrics.reference=path`` (ours or ADM's npz) or the train split's statistics, cached by the
extractor and a fingerprint of the data config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from fsq_repro.atomic import atomic_write_json
from fsq_repro.errors import ConfigError
from fsq_repro.evaluation.maskgit import EvalOptions, Reference, compute_reference, load_reference, uint8_nchw
from fsq_repro.pipeline.stages import artifact_path

TASKS = ("ref_stats", "reconstruction", "sampling", "cfg_sweep", "compression", "semantics")
PIPELINE_TASKS = ("reconstruction", "sampling", "cfg_sweep", "compression")


def options_from(cfg: DictConfig) -> EvalOptions:
    m = cfg.metrics
    return EvalOptions(
        batch_size=int(m.batch_size),
        pr_mode=str(m.pr_mode),
        pr_reference_size=int(m.pr_reference_size),
        is_mode=str(m.get("is_mode", "adm")),
        is_splits=int(m.is_splits),
        num_per_class=int(m.num_per_class),
        seed=int(cfg.seed),
        sampler=OmegaConf.to_container(cfg.sampler, resolve=True),
    )


def split_batches(cfg: DictConfig, split: str, limit: int | None = None):
    """Batches (dicts, pixels in [−1, 1]) of the first ``limit`` images of a data split, in dataset order."""
    from hydra.utils import instantiate

    from fsq_repro.data.loading import collate_skip_corrupt

    dm = instantiate(cfg.data)
    dm.setup("fit" if split == "train" else "validate")
    dataset = dm.train_set if split == "train" else dm.val_set
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    subset = torch.utils.data.Subset(dataset, range(n))
    yield from torch.utils.data.DataLoader(
        subset, batch_size=int(cfg.metrics.batch_size), collate_fn=collate_skip_corrupt
    )


def split_images(cfg: DictConfig, split: str, limit: int | None = None):
    """``(B, 3, H, W)`` pixel batches in [−1, 1] of a split."""
    for batch in split_batches(cfg, split, limit):
        yield batch["image"]


def build_extractor(cfg: DictConfig):
    from fsq_repro.extractors import build_extractor as build
    from fsq_repro.hardware import default_device

    if cfg.metrics.extractor == "none":  # reconstruction and compression only (PSNR, usage, bits)
        return None
    return build(cfg.metrics.extractor, cfg.metrics.get("inception_weights"), cfg.paths.cache_dir).to(default_device())


def reference_for(cfg: DictConfig, extractor, options: EvalOptions) -> Reference:
    """``metrics.reference=path``, else the train split's statistics (computed once, cached in ``paths.cache_dir``)."""
    from fsq_repro.data.fingerprint import data_fingerprint

    if cfg.metrics.get("reference"):
        return load_reference(cfg.metrics.reference, extractor, options)
    size = int(cfg.metrics.reference_size)
    key = f"{extractor.name}-{data_fingerprint(OmegaConf.to_container(cfg.data, resolve=True))}-train{size}"
    path = Path(cfg.paths.cache_dir) / f"ref_stats-{key}.npz"
    stale = path.is_file() and extractor.label == "FID" and "mu_s" not in _keys(path)  # cached before sFID existed
    if not path.is_file() or stale:
        compute_reference(extractor, map(uint8_nchw, split_images(cfg, "train", size)), path, options)
    return load_reference(path, extractor, options)


def _keys(path: Path) -> set[str]:
    import numpy as np

    with np.load(path) as z:
        return set(z.files)


def tokenizer_and_model(cfg: DictConfig, need_model: bool, loaded: dict | None = None):
    """The run's tokenizer (and MaskGIT when ``need_model``), on the default device. ``loaded``: a dict the caller
    keeps across tasks (the pipeline's ``eval`` stage), so each file is read once."""
    from fsq_repro.artifacts import load_maskgit, load_tokenizer
    from fsq_repro.data.token_cache import file_hash
    from fsq_repro.hardware import default_device

    loaded = {} if loaded is None else loaded
    tok_path = artifact_path(cfg, "tokenizer", "tokenizer.pt")
    if "tokenizer" not in loaded:
        loaded["tokenizer"] = load_tokenizer(tok_path, device=default_device())
    if need_model and "model" not in loaded:
        loaded["model"] = load_maskgit(
            artifact_path(cfg, "maskgit", "maskgit.pt"), file_hash(tok_path), device=default_device()
        )
    return loaded["tokenizer"], loaded.get("model") if need_model else None


def run_one(
    cfg: DictConfig, task: str, extractor, options: EvalOptions, out_dir: Path, loaded: dict | None = None
) -> dict:
    """One task with objects built from ``cfg`` (``loaded``: see ``tokenizer_and_model``)."""
    from fsq_repro.evaluation import maskgit as evaluation

    num_images = cfg.metrics.get("num_images")
    if task == "compression":
        tokenizer, model = tokenizer_and_model(cfg, need_model=True, loaded=loaded)
        count = cfg.metrics.get("compression_images") or num_images
        return evaluation.compression(tokenizer, model, split_batches(cfg, "val", count), options)
    if extractor is None and task != "reconstruction":
        raise ConfigError(f"task={task} needs a feature space: metrics.extractor=inception or shapes, not none")
    if task == "semantics":
        from fsq_repro.evaluation.semantics import semantics_study

        tokenizer, _ = tokenizer_and_model(cfg, need_model=False, loaded=loaded)
        return semantics_study(tokenizer, extractor, split_images(cfg, "val", num_images), options, out_dir,
                               **OmegaConf.to_container(cfg.get("semantics") or {}, resolve=True))  # fmt: skip
    ref = None if extractor is None else reference_for(cfg, extractor, options)
    if task == "reconstruction":
        tokenizer, _ = tokenizer_and_model(cfg, need_model=False, loaded=loaded)
        return evaluation.reconstruction(
            tokenizer, extractor, split_images(cfg, "val", num_images), ref, options, out_dir
        )
    tokenizer, model = tokenizer_and_model(cfg, need_model=True, loaded=loaded)
    if task == "sampling":
        scale = cfg.get("cfg_scale")
        return evaluation.sampling(tokenizer, model, extractor, ref, options, None if scale is None else float(scale))
    if task == "cfg_sweep":
        scales = [float(a) for a in cfg.cfg_scales]
        return evaluation.cfg_sweep(tokenizer, model, extractor, ref, options, scales, out_dir)
    raise ConfigError(f"task={task} is unknown; choose one of {list(TASKS)}")


def run_task(cfg: DictConfig, out_dir: Path) -> dict:
    """``eval.py task=...`` → ``<out_dir>/results.json``."""
    task = cfg.task
    if task not in TASKS:
        raise ConfigError(f"task={task} is unknown; choose one of {list(TASKS)}")
    if task != "ref_stats":  # the run's files first: a wrong run= must not cost the reference statistics
        needed = [("tokenizer", "tokenizer.pt")] + ([] if task in ("reconstruction", "semantics") else
                                                   [("maskgit", "maskgit.pt")])  # fmt: skip
        for key, name in needed:
            path = artifact_path(cfg, key, name)
            if not path.is_file():
                raise ConfigError(f"no {name} at {path}: pass run=<a finished pipeline run dir> or {key}=<file>")
    loaded = {}  # the tokenizer, loaded before any reference statistics to check the data resolution against it
    if task != "ref_stats":
        tokenizer = tokenizer_and_model(cfg, need_model=False, loaded=loaded)[0]
        factor = tokenizer.resolution // tokenizer.token_grid[0]
        if int(cfg.data.resolution) % factor:
            raise ConfigError(f"data.resolution={cfg.data.resolution} is not a multiple of the tokenizer's "
                              f"downsampling factor {factor}")  # fmt: skip
    options = options_from(cfg)
    extractor = None if task == "compression" else build_extractor(cfg)
    if task == "ref_stats":
        if extractor is None:
            raise ConfigError("task=ref_stats needs a feature space: metrics.extractor=inception or shapes, not none")
        images = map(uint8_nchw, split_images(cfg, cfg.metrics.reference_split, int(cfg.metrics.reference_size)))
        results = compute_reference(extractor, images, out_dir / "ref_stats.npz", options)
    else:
        results = run_one(cfg, task, extractor, options, out_dir, loaded)
    results = {"task": task, **results}
    atomic_write_json(out_dir / "results.json", results)
    print(json.dumps(results, indent=2, default=float))
    return results


def stage_eval(cfg: DictConfig, run_dir: Path) -> dict:
    """The pipeline's ``eval`` stage: ``eval_tasks`` on the run's own tokenizer / MaskGIT → ``results.json``."""
    out = run_dir / "results.json"
    if out.is_file():
        print(f"  skipped: {out} exists")
        return json.loads(out.read_text())
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.run = str(run_dir)
    bad = [t for t in cfg.eval_tasks if t not in PIPELINE_TASKS]
    if bad:
        raise ConfigError(f"eval_tasks may hold {', '.join(PIPELINE_TASKS)}; got {bad}")
    options = options_from(cfg)
    extractor = build_extractor(cfg)
    results, loaded = {}, {}  # tokenizer / MaskGIT read once for all tasks
    for task in cfg.eval_tasks:
        results[task] = run_one(cfg, task, extractor, options, run_dir, loaded)
        print(f"  {task}: " + ", ".join(f"{k}={v:.4g}" for k, v in results[task].items() if isinstance(v, float)))
    atomic_write_json(out, results)
    return results
