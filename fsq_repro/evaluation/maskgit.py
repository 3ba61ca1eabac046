"""The evaluation tasks (FSQ paper §4.1 / §4.3 metrics; definitions of the ADM suite's ``evaluations/evaluator.py``,
openai/guided-diffusion), on objects.

Every task takes a tokenizer / Stage II model / feature extractor / image batches / reference statistics and
``EvalOptions`` — no config — so it can be called from Python without Hydra::

    from fsq_repro.artifacts import load_tokenizer, load_maskgit
    from fsq_repro.evaluation.maskgit import EvalOptions, load_reference, sampling
    from fsq_repro.extractors import build_extractor
    tok = load_tokenizer("run/tokenizer.pt"); model = load_maskgit("run/maskgit.pt")
    extractor = build_extractor("inception", "weights-inception-2015-12-05-6726825d.pth")
    ref = load_reference("VIRTUAL_imagenet256_labeled.npz", extractor, EvalOptions())
    print(sampling(tok, model, extractor, ref, EvalOptions(num_per_class=50))["fd"])

``eval.py`` / the pipeline's ``eval`` stage build these objects from the config (``fsq_repro/pipeline/evaluate.py``).

* ``compute_reference`` — statistics of images in an extractor's space (``mu``, ``sigma``, ``mu_s``/``sigma_s`` for
  sFID when the extractor has spatial features, up to ``pr_reference_size`` feature rows for precision/recall);
* ``reconstruction`` — images through the tokenizer: rFD vs the reference, PSNR, usage, perplexity;
* ``sampling`` — class-conditional MaskGIT samples (class-interleaved, as ``samples.npz``): FD, sFID, IS
  (``is_mode``), precision/recall, usage of the generated tokens;
* ``cfg_sweep`` — ``sampling`` over CFG scales → the Fig. 4 curves (FD vs α, P vs R) as PNG + JSON;
* ``compression`` — M2T bits per image of token maps under the Stage II transformer (Fig. 3 d).

Every number is stored with the extractor (``FID`` only for the TF Inception; ``FD-shapes`` for the embedded
classifier), the reference, N, the IS mode and the precision/recall mode that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fsq_repro.generation.sampling_job import to_uint8
from fsq_repro.hardware import default_device
from fsq_repro.metrics import feature_statistics, frechet_distance, precision_recall
from fsq_repro.metrics.fid import load_statistics, save_statistics
from fsq_repro.metrics.inception_score import inception_score_mode
from fsq_repro.metrics.psnr import psnr_from_mse
from fsq_repro.metrics.usage import usage_from_histogram


@dataclass
class EvalOptions:
    """What the tasks need besides the objects (``metrics.*``, ``sampler.*`` and ``seed`` of the config)."""

    batch_size: int = 100
    pr_mode: str = "exact"  # or "adm" (float16 distances)
    pr_reference_size: int = 10_000  # ADM: 10k reference images for precision/recall
    is_mode: str = "adm"  # or "splits"
    is_splits: int = 10
    num_per_class: int = 50
    seed: int = 0
    sampler: dict = field(default_factory=dict)  # generation.sampler.sample_with_model keyword arguments
    device: str = field(default_factory=default_device)


@dataclass
class Reference:
    """Reference statistics (``mu``, ``sigma``, optional ``mu_s``/``sigma_s``/``features``) and where they came from."""

    stats: dict
    path: str


def uint8_nchw(images: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2)


def extract(extractor, batches: Iterable[torch.Tensor], device: str | None = None) -> dict[str, np.ndarray]:
    """Run ``extractor`` over uint8 ``(B, 3, H, W)`` batches (fp32, no autocast) → ``features``, ``logits`` and,
    when the extractor gives them, ``spatial`` (sFID) as float64 arrays."""
    out: dict[str, list] = {}
    for images in batches:
        for key, value in extractor(images.to(device or default_device())).items():
            out.setdefault(key, []).append(value.double().cpu().numpy())
    return {key: np.concatenate(values) for key, values in out.items()}


def compute_reference(extractor, images: Iterable[torch.Tensor], path: str | Path, options: EvalOptions) -> dict:
    """Statistics of uint8 image batches → ``path`` (npz); returns ``{"path", "count"}``."""
    out = extract(extractor, images, options.device)
    mu, sigma = feature_statistics(out["features"])
    extra = {}
    if "spatial" in out:
        extra["mu_s"], extra["sigma_s"] = feature_statistics(out["spatial"])
    keep = out["features"][: options.pr_reference_size]
    save_statistics(path, mu, sigma, features=keep, extractor=np.array(extractor.name), count=len(out["features"]),
                    **extra)  # fmt: skip
    print(f"  reference statistics of {len(out['features'])} images → {path}")
    return {"path": str(path), "count": len(out["features"])}


def load_reference(path: str | Path, extractor, options: EvalOptions) -> Reference:
    """Our ``ref_stats.npz`` or an ADM reference batch (``arr_0`` images + ``mu``/``sigma``/``mu_s``/``sigma_s``):
    the first ``pr_reference_size`` ADM images go through ``extractor`` for precision/recall."""
    stats = load_statistics(path)
    if "features" not in stats and "arr_0" in stats:
        images = torch.from_numpy(stats["arr_0"][: options.pr_reference_size]).permute(0, 3, 1, 2)
        stats["features"] = extract(extractor, images.split(options.batch_size), options.device)["features"]
    return Reference(stats, str(path))


def image_metrics(extractor, features: dict, ref: Reference, options: EvalOptions, prefix: str) -> dict:
    """FD (and sFID when both sides have spatial statistics) and precision/recall of extracted features."""
    mu, sigma = feature_statistics(features["features"])
    results = {
        f"{prefix}fd": frechet_distance(mu, sigma, ref.stats["mu"], ref.stats["sigma"]),
        "metric_space": extractor.label,
        "extractor": extractor.name,
        "reference": ref.path,
        "num_images": len(features["features"]),
    }
    if "spatial" in features and "mu_s" in ref.stats:
        mu_s, sigma_s = feature_statistics(features["spatial"])
        results[f"{prefix}sfd"] = frechet_distance(mu_s, sigma_s, ref.stats["mu_s"], ref.stats["sigma_s"])
    if "features" in ref.stats and len(ref.stats["features"]) > 3:
        p, r = precision_recall(ref.stats["features"], features["features"], mode=options.pr_mode)
        results.update({f"{prefix}precision": p, f"{prefix}recall": r, "pr_mode": options.pr_mode})
    return results


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


def reconstruction(tokenizer, extractor, images: Iterable[torch.Tensor], ref: Reference, options: EvalOptions,
                   out_dir: Path | None = None) -> dict:  # fmt: skip
    """``images``: ``(B, 3, H, W)`` batches in [−1, 1] → rFD (rsFD), PSNR, MSE, usage, perplexity. With
    ``extractor=None`` (``metrics.extractor=none``: no feature space fits the images, e.g. the embedded photo crops)
    only PSNR, MSE, usage and perplexity, and no feature distance at all."""
    hist = torch.zeros(tokenizer.codebook_size, dtype=torch.long)
    sq_err = []

    def through_tokenizer() -> Iterable[torch.Tensor]:
        for batch in images:
            tokens = tokenizer.encode(batch.to(options.device))
            hist.add_(torch.bincount(tokens.flatten().cpu(), minlength=tokenizer.codebook_size))
            recon = tokenizer.decode(tokens).clamp(-1, 1).float().cpu()
            sq_err.append((recon - batch).pow(2).flatten(1).mean(1))
            yield uint8_nchw(recon)

    if extractor is None:
        results = {"num_images": sum(len(batch) for batch in through_tokenizer()), "metric_space": "none"}
    else:
        results = image_metrics(extractor, extract(extractor, through_tokenizer(), options.device), ref, options,
                                prefix="r")  # fmt: skip
    mse = torch.cat(sq_err)
    stats = usage_from_histogram(hist)
    results.update({
        "psnr": float(psnr_from_mse(mse, min_mse=1e-10).mean()),
        "mse": float(mse.mean()),
        "usage": float(stats["usage"]),
        "perplexity": float(stats["perplexity"]),
        "codebook_size": tokenizer.codebook_size,
    })  # fmt: skip
    if out_dir is not None:
        title = f"val usage {results['usage']:.1%} of {tokenizer.codebook_size} codes"
        results["usage_histogram"] = str(plot_usage(hist, out_dir / "usage_histogram.png", title))
    return results


def generate(tokenizer, model, options: EvalOptions, cfg_scale: float, hist: torch.Tensor) -> Iterable[torch.Tensor]:
    """``num_per_class`` samples of every class, class-interleaved as ``samples.npz`` (same seeds per batch as
    ``sample.py``), as lazily generated uint8 batches; ``hist`` counts the generated tokens."""
    from fsq_repro.generation.sampler import sample_with_model
    from fsq_repro.generation.sampling_job import batch_generator, labels_for

    sampler = {**options.sampler, "cfg_scale": float(cfg_scale)}
    labels = labels_for(model.num_classes, options.num_per_class).to(options.device)
    h, w = tokenizer.token_grid
    for start in range(0, len(labels), options.batch_size):
        batch = labels[start : start + options.batch_size]
        generator = batch_generator(options.seed, start, options.device)
        tokens = sample_with_model(model, batch, generator=generator, **sampler)
        hist.add_(torch.bincount(tokens.flatten().cpu(), minlength=model.codebook_size))
        yield uint8_nchw(tokenizer.decode(tokens.view(-1, h, w)))


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples that the extractor classifies as the class they were asked for (embedded data only: its
    classifier knows the data's classes; Inception's 1008 outputs are not ImageNet's label order)."""
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


def sampling(tokenizer, model, extractor, ref: Reference, options: EvalOptions, cfg_scale: float | None = None) -> dict:
    alpha = float(options.sampler.get("cfg_scale", 0.0) if cfg_scale is None else cfg_scale)
    hist = torch.zeros(model.codebook_size, dtype=torch.long)
    features = extract(extractor, generate(tokenizer, model, options, alpha, hist), options.device)
    results = image_metrics(extractor, features, ref, options, prefix="")
    if "sfd" in results:
        results["sfid" if extractor.label == "FID" else "sfd"] = results.pop("sfd")
    # samples come class-interleaved (as samples.npz), so ADM's consecutive chunks each see every class
    results.update(inception_score_mode(features["logits"], options.is_mode, options.is_splits))
    if getattr(extractor, "classes", None) == model.num_classes:  # a classifier of the data's own classes
        from fsq_repro.generation.sampling_job import labels_for

        asked = labels_for(model.num_classes, options.num_per_class).numpy()
        results["class_accuracy"] = class_accuracy(features["logits"], asked)
    stats = usage_from_histogram(hist)
    results.update({"cfg_scale": alpha, "sample_usage": float(stats["usage"])})
    return results


def cfg_sweep(tokenizer, model, extractor, ref: Reference, options: EvalOptions, scales: list[float],
              out_dir: Path) -> dict:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [sampling(tokenizer, model, extractor, ref, options, float(a)) for a in scales]
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


def compression(tokenizer, model, batches: Iterable[dict], options: EvalOptions) -> dict:
    """``batches``: dicts with ``image`` (pixels in [−1, 1]) and ``label`` → bits per image and per token."""
    from fsq_repro.generation.compression import compression_cost

    bits, total = [], 0
    for batch in batches:
        tokens = tokenizer.encode(batch["image"].to(options.device)).flatten(1)
        labels = batch["label"].to(options.device)
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


TASKS: dict[str, Callable] = {
    "reconstruction": reconstruction,
    "sampling": sampling,
    "cfg_sweep": cfg_sweep,
    "compression": compression,
}
