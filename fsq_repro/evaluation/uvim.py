"""UViM's evaluation (FSQ paper §4.4, Table 2): decode every val image's guiding code autoregressively, decode
the task's output with Stage I and the image as context, and score it against the native-resolution ground truth
(``task.metric``), next to the Stage I oracle (the true code), two baselines and the codebook usage.

Objects in, numbers out: ``fsq_repro/pipeline/uvim.py: stage_uvim_eval`` builds the models and datasets from the
config and writes the files. Shapes: ``image (B, 3, H, W)``, codes ``(B, L)`` int64 (L = the code length).
"""

from __future__ import annotations

import time

import torch

from fsq_repro.data.loading import collate_skip_corrupt
from fsq_repro.generation.autoregressive import decode
from fsq_repro.metrics.usage import CodebookUsage


@torch.inference_mode()
def baseline_mean(task, dataset, batch_size: int, count: int = 512) -> torch.Tensor:
    """The mean of ``task.baseline_statistic`` over the first ``count`` items of ``dataset`` (the training set
    without augmentation): what the constant baseline predicts from (the mean depth map, the class frequencies)."""
    subset = torch.utils.data.Subset(dataset, range(min(count, len(dataset))))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, collate_fn=collate_skip_corrupt)
    total, n = None, 0
    for batch in loader:
        if batch["image"].numel() == 0:
            continue
        stat = task.baseline_statistic(batch).double()
        total = stat.sum(0) if total is None else total + stat.sum(0)
        n += stat.shape[0]
    if total is None:
        raise ValueError("the constant baseline found no readable training item")
    return (total / n).float()


@torch.inference_mode()
def evaluate(lm, stage1, task, dataset, batch_size: int, device: str, num_keep: int = 8,
             progress: bool = True, prior: torch.Tensor | None = None) -> tuple[dict, dict]:  # fmt: skip
    """Predictions for every item of ``dataset``: ``(results, kept)`` — the task's metrics (``task.metric``, against
    the dataset's native ground truth) of the UViM prediction and of the oracle, codebook usage of the true and the
    predicted codes; ``kept`` holds the first ``num_keep`` images, truths and predictions.

    Two baselines say whether the task tests the bottleneck at all: ``context_only`` = the Stage I decoder with every
    code dropped (all zeros: UViM's random code dropout trains the decoder for this case, about 1 sample in L + 1,
    so it is what the image context alone gives this decoder), and ``constant`` (with ``prior`` = ``baseline_mean``
    of the training set) = ``task.baseline_prediction``, which ignores the code and, except colorization's
    grayscale, the image too."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_corrupt)
    base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset  # items carry their index
    parts = ("uvim", "oracle", "context_only") + (("constant",) if prior is not None else ())
    metrics = {name: task.metric(base) for name in parts}
    usage, predicted_usage = (
        CodebookUsage(stage1.codebook_size).to(device),
        CodebookUsage(stage1.codebook_size).to(device),
    )
    kept: dict[str, list] = {"image": [], "truth": [], "uvim": [], "oracle": []}
    corrupt, count, start = 0, 0, time.perf_counter()
    for batch in _progress(loader, progress):
        corrupt += int(batch["num_corrupt"])
        if batch["image"].numel() == 0:
            continue
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        image = batch["image"]
        true_codes = stage1.encode(task.labels(batch), image).indices
        codes = decode(lm, image)
        usage.update(true_codes)
        predicted_usage.update(codes)
        preds = {"uvim": task.predict(stage1.decode_indices(codes, image)),
                 "oracle": task.predict(stage1.decode_indices(true_codes, image))}  # fmt: skip
        dropped = torch.zeros_like(
            stage1.quantizer.indexes_to_codes(true_codes), dtype=stage1.decoder_stem.weight.dtype
        )
        baselines = {"context_only": task.predict(stage1.decode(dropped, image))}
        if prior is not None:
            baselines["constant"] = task.baseline_prediction(prior, batch)
        for name, pred in {**preds, **baselines}.items():
            metrics[name].update(pred, batch)
        count += image.shape[0]
        room = num_keep - sum(len(x) for x in kept["image"])
        if room > 0:
            kept["image"].append(image[:room].float().cpu())
            kept["truth"].append(task.truth(batch)[:room].cpu())
            for name, pred in preds.items():
                kept[name].append(pred[:room].cpu())
    results = {name: m.compute() for name, m in metrics.items()}
    if getattr(metrics["uvim"], "feature_space", None):
        results["feature_space"] = metrics["uvim"].feature_space  # colorization: "FID" only with Inception
    results["usage"] = float(usage.compute()["usage"])
    results["predicted_usage"] = float(predicted_usage.compute()["usage"])
    results["corrupt_skipped"] = corrupt
    results["num_images"] = count
    results["seconds_per_image"] = (time.perf_counter() - start) / max(1, count)
    return results, {k: torch.cat(v) for k, v in kept.items() if v}


def _progress(loader, enabled: bool):
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc="uvim eval", unit="batch")
