"""The tasks of ``eval.py`` (FSQ paper §4.1 / §4.3 metrics; definitions in reference/evaluation.md).

* ``ref_stats``      — reference statistics of a data split in an extractor's feature space (``mu``, ``sigma`` and up to
                       ``metrics.pr_reference_size`` feature rows for precision/recall) → ``ref_stats.npz``;
* ``reconstruction`` — val images through the tokenizer: rFD vs the train-split reference, PSNR, usage, perplexity;
* ``sampling``       — class-conditional MaskGIT samples: FD, IS, precision/recall, usage of the generated tokens;
* ``cfg_sweep``      — ``sampling`` over ``cfg_scales`` → the Fig. 4 curves (FD vs α, P vs R) as PNG + JSON;
* ``compression``    — M2T bits per image of the val token maps under the Stage II transformer (Fig. 3 d).

Every number is stored in ``results.json`` with the extractor (``FID`` only for the TF Inception; ``FD-shapes`` for
the embedded classifier), the reference, N and the precision/recall mode that produced it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from fsq_repro.artifacts import write_json
from fsq_repro.errors import ConfigError
from fsq_repro.generation.sampling_job import to_uint8
from fsq_repro.metrics import feature_statistics, frechet_distance, inception_score, precision_recall
from fsq_repro.metrics.fid import load_statistics, save_statistics
from fsq_repro.metrics.usage import usage_from_histogram

TASKS = ("ref_stats", "reconstruction", "sampling", "cfg_sweep", "compression")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def extract(extractor, batches) -> dict[str, np.ndarray]:
    """Run ``extractor`` over an iterable of uint8 ``(B, 3, H, W)`` batches (fp32, no autocast)."""
    feats, logits = [], []
    for images in batches:
        out = extractor(images.to(_device()))
        feats.append(out["features"].double().cpu().numpy())
        logits.append(out["logits"].double().cpu().numpy())
    return {"features": np.concatenate(feats), "logits": np.concatenate(logits)}


def uint8_nchw(images: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2)


def split_batches(cfg: DictConfig, split: str, limit: int | None = None):
    """Batches (dicts, pixels in [−1, 1]) of the first ``limit`` images of a data split, in dataset order."""
    from hydra.utils import instantiate

    from fsq_repro.data.loading import collate_skip_corrupt

    dm = instantiate(cfg.data)
    dm.setup("fit" if split == "train" else "validate")
    dataset = dm.train_set if split == "train" else dm.val_set
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    subset = torch.utils.data.Subset(dataset, range(n))
    batch_size = int(cfg.metrics.batch_size)
    yield from torch.utils.data.DataLoader(subset, batch_size=batch_size, collate_fn=collate_skip_corrupt)


def _split_images(cfg: DictConfig, split: str, limit: int | None = None, transform=None):
    """uint8 ``(B, 3, H, W)`` batches of a split (optionally transformed, e.g. through the tokenizer)."""
    for batch in split_batches(cfg, split, limit):
        images = batch["image"] if transform is None else transform(batch["image"])
        yield uint8_nchw(images)


def reference(cfg: DictConfig, extractor) -> tuple[dict, str]:
    """Reference statistics: ``metrics.reference=path`` (ours or ADM's npz), else the train split's (cached)."""
    from fsq_repro.data.fingerprint import data_fingerprint

    if cfg.metrics.get("reference"):
        stats = load_statistics(cfg.metrics.reference)
        if "features" not in stats and "arr_0" in stats:  # ADM reference batch: images → our features
            images = torch.from_numpy(stats["arr_0"][: int(cfg.metrics.pr_reference_size)]).permute(0, 3, 1, 2)
            stats["features"] = extract(extractor, images.split(int(cfg.metrics.batch_size)))["features"]
        return stats, str(cfg.metrics.reference)
    size = int(cfg.metrics.reference_size)
    key = f"{extractor.name}-{data_fingerprint(OmegaConf.to_container(cfg.data, resolve=True))}-train{size}"
    path = Path(cfg.paths.cache_dir) / f"ref_stats-{key}.npz"
    if not path.is_file():
        compute_reference(cfg, extractor, path, "train", size)
    return load_statistics(path), str(path)


def compute_reference(cfg: DictConfig, extractor, path: Path, split: str, size: int) -> dict:
    out = extract(extractor, _split_images(cfg, split, size))
    mu, sigma = feature_statistics(out["features"])
    keep = out["features"][: int(cfg.metrics.pr_reference_size)]
    save_statistics(path, mu, sigma, features=keep, extractor=np.array(extractor.name), count=len(out["features"]))
    print(f"  reference statistics of {len(out['features'])} {split} images → {path}")
    return {"path": str(path), "count": len(out["features"])}


def image_metrics(cfg: DictConfig, extractor, features: dict, ref: dict, ref_path: str, prefix: str) -> dict:
    mu, sigma = feature_statistics(features["features"])
    results = {
        f"{prefix}fd": frechet_distance(mu, sigma, ref["mu"], ref["sigma"]),
        "metric_space": extractor.label,
        "extractor": extractor.name,
        "reference": ref_path,
        "num_images": len(features["features"]),
    }
    if "features" in ref and len(ref["features"]) > 3:
        p, r = precision_recall(ref["features"], features["features"], mode=cfg.metrics.pr_mode)
        results.update({f"{prefix}precision": p, f"{prefix}recall": r, "pr_mode": cfg.metrics.pr_mode})
    return results


def _tokenizer_and_model(cfg: DictConfig, need_model: bool):
    from fsq_repro.artifacts import load_maskgit, load_tokenizer
    from fsq_repro.data.token_cache import file_hash
    from fsq_repro.entry import _artifact

    tok_path = _artifact(cfg, "tokenizer", "tokenizer.pt")
    tokenizer = load_tokenizer(tok_path, device=_device())
    model = None
    if need_model:
        model = load_maskgit(_artifact(cfg, "maskgit", "maskgit.pt"), file_hash(tok_path), device=_device())
    return tokenizer, model


def plot_usage(hist: torch.Tensor, path: Path, title: str) -> Path:
    """Codebook usage histogram (codes sorted by count), the picture behind the usage number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = hist.sort(descending=True).values.numpy()
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.bar(np.arange(len(counts)), counts, width=1.0)
    ax.set(xlabel="code (sorted by count)", ylabel="count", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def task_reconstruction(cfg: DictConfig, extractor, out_dir: Path | None = None) -> dict:
    tokenizer, _ = _tokenizer_and_model(cfg, need_model=False)
    hist = torch.zeros(tokenizer.codebook_size, dtype=torch.long)
    sq_err = []

    def through_tokenizer(images: torch.Tensor) -> torch.Tensor:
        tokens = tokenizer.encode(images.to(_device()))
        hist.add_(torch.bincount(tokens.flatten().cpu(), minlength=tokenizer.codebook_size))
        recon = tokenizer.decode(tokens).clamp(-1, 1).float().cpu()
        sq_err.append((recon - images).pow(2).flatten(1).mean(1))
        return recon

    features = extract(extractor, _split_images(cfg, "val", cfg.metrics.get("num_images"), through_tokenizer))
    ref, ref_path = reference(cfg, extractor)
    mse = torch.cat(sq_err)
    stats = usage_from_histogram(hist)
    results = image_metrics(cfg, extractor, features, ref, ref_path, prefix="r")
    results.update({
        "psnr": float((10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()),
        "mse": float(mse.mean()),
        "usage": float(stats["usage"]),
        "perplexity": float(stats["perplexity"]),
        "codebook_size": tokenizer.codebook_size,
    })  # fmt: skip
    if out_dir is not None:
        title = f"val usage {results['usage']:.1%} of {tokenizer.codebook_size} codes"
        results["usage_histogram"] = str(plot_usage(hist, out_dir / "usage_histogram.png", title))
    return results


def generate(cfg: DictConfig, tokenizer, model, cfg_scale: float, num_per_class: int, hist: torch.Tensor):
    """Samples of every class as lazily generated uint8 batches; ``hist`` counts the generated tokens."""
    from fsq_repro.generation.sampler import sample_with_model
    from fsq_repro.generation.sampling_job import batch_generator, labels_for

    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    sampler["cfg_scale"] = float(cfg_scale)
    labels = labels_for(model.num_classes, num_per_class).to(_device())
    h, w = tokenizer.token_grid
    for start in range(0, len(labels), int(cfg.metrics.batch_size)):
        batch = labels[start : start + int(cfg.metrics.batch_size)]
        generator = batch_generator(int(cfg.seed), start, _device())
        tokens = sample_with_model(model, batch, generator=generator, **sampler)
        hist.add_(torch.bincount(tokens.flatten().cpu(), minlength=model.codebook_size))
        yield uint8_nchw(tokenizer.decode(tokens.view(-1, h, w)))


def task_sampling(cfg: DictConfig, extractor, cfg_scale: float | None = None) -> dict:
    tokenizer, model = _tokenizer_and_model(cfg, need_model=True)
    alpha = float(cfg.sampler.cfg_scale if cfg_scale is None else cfg_scale)
    hist = torch.zeros(model.codebook_size, dtype=torch.long)
    features = extract(extractor, generate(cfg, tokenizer, model, alpha, int(cfg.metrics.num_per_class), hist))
    ref, ref_path = reference(cfg, extractor)
    results = image_metrics(cfg, extractor, features, ref, ref_path, prefix="")
    # samples are class-major; IS splits must each see a random mix of classes (as ADM's randomly labelled batches)
    order = np.random.default_rng(0).permutation(len(features["logits"]))
    is_mean, is_std = inception_score(features["logits"][order], splits=int(cfg.metrics.is_splits))
    stats = usage_from_histogram(hist)
    results.update({"is": is_mean, "is_std": is_std, "cfg_scale": alpha, "sample_usage": float(stats["usage"])})
    return results


def task_cfg_sweep(cfg: DictConfig, extractor, out_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = [float(a) for a in cfg.cfg_scales]
    curve = [task_sampling(cfg, extractor, a) for a in scales]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(scales, [c["fd"] for c in curve], "o-")
    ax1.set(xlabel="CFG scale α", ylabel=extractor.label, title=f"{extractor.label} vs α (Fig. 4)")
    if "precision" in curve[0]:
        ax2.plot([c["recall"] for c in curve], [c["precision"] for c in curve], "o-")
        for c in curve:
            ax2.annotate(f"α={c['cfg_scale']:g}", (c["recall"], c["precision"]), fontsize=7)
    ax2.set(xlabel="recall", ylabel="precision", title="precision vs recall")
    fig.tight_layout()
    fig.savefig(out_dir / "cfg_sweep.png", dpi=120)
    plt.close(fig)
    return {"curve": curve, "plot": str(out_dir / "cfg_sweep.png")}


def task_compression(cfg: DictConfig) -> dict:
    from fsq_repro.generation.compression import compression_cost

    tokenizer, model = _tokenizer_and_model(cfg, need_model=True)
    bits, total = [], 0
    for batch in split_batches(cfg, "val", cfg.metrics.get("num_images")):
        tokens = tokenizer.encode(batch["image"].to(_device())).flatten(1)
        labels = batch["label"].to(_device())
        bits.append(compression_cost(model, tokens, labels, tokenizer.token_grid).cpu())
        total += len(tokens)
    bits = torch.cat(bits)
    n = math.prod(tokenizer.token_grid)
    return {
        "bits_per_image": float(bits.mean()),
        "bits_per_token": float(bits.mean()) / n,
        "uniform_bits_per_token": math.log2(tokenizer.codebook_size),
        "num_images": total,
        "class_token": "given (the image's label), as in training; the paper does not say",
    }


def run_task(cfg: DictConfig, out_dir: Path) -> dict:
    from fsq_repro.metrics.features import build_extractor

    task = cfg.task
    if task not in TASKS:
        raise ConfigError(f"task={task} is unknown; choose one of {list(TASKS)}")
    extractor = None
    if task != "compression":
        extractor = build_extractor(cfg.metrics.extractor, cfg.metrics.get("inception_weights"), cfg.paths.cache_dir)
        extractor = extractor.to(_device())
    if task == "ref_stats":
        results = compute_reference(cfg, extractor, out_dir / "ref_stats.npz", cfg.metrics.reference_split,
                                    int(cfg.metrics.reference_size))  # fmt: skip
    elif task == "reconstruction":
        results = task_reconstruction(cfg, extractor, out_dir)
    elif task == "sampling":
        results = task_sampling(cfg, extractor, cfg.get("cfg_scale"))
    elif task == "cfg_sweep":
        results = task_cfg_sweep(cfg, extractor, out_dir)
    else:
        results = task_compression(cfg)
    results = {"task": task, **results}
    write_json(out_dir / "results.json", results)
    print(json.dumps(results, indent=2, default=float))
    return results


def stage_eval(cfg: DictConfig, run_dir: Path) -> dict:
    """The pipeline's ``eval`` stage: ``eval_tasks`` on the run's own tokenizer / MaskGIT → ``results.json``."""
    from fsq_repro.metrics.features import build_extractor

    out = run_dir / "results.json"
    if out.is_file():
        print(f"  skipped: {out} exists")
        return json.loads(out.read_text())
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.run = str(run_dir)
    extractor = build_extractor(cfg.metrics.extractor, cfg.metrics.get("inception_weights"), cfg.paths.cache_dir)
    extractor = extractor.to(_device())
    results = {}
    for task in cfg.eval_tasks:
        if task == "reconstruction":
            results[task] = task_reconstruction(cfg, extractor, run_dir)
        elif task == "sampling":
            results[task] = task_sampling(cfg, extractor)
        elif task == "compression":
            results[task] = task_compression(cfg)
        elif task == "cfg_sweep":
            results[task] = task_cfg_sweep(cfg, extractor, run_dir)
        else:
            raise ConfigError(f"eval_tasks may hold reconstruction, sampling, cfg_sweep, compression; got {task!r}")
        print(f"  {task}: " + ", ".join(f"{k}={v:.4g}" for k, v in results[task].items() if isinstance(v, float)))
    write_json(out, results)
    return results
