"""UViM's colorization task: what the guiding-code autoencoder reads, its loss, the prediction and the metrics (FSQ
paper §4.4, Table 2 ImageNet colorization; big_vision ``trainers/proj/uvim/colorization_task.py``,
``evaluators/proj/uvim/{colorization,coltran_fid}.py`` at 21bd6eb).

- labels: one *continuous* map ``color`` ``(B, 3, H, W)`` in [−1, 1] (official ``inputs = {"color": (3, p²)}``); the
  grayscale image is the context (``tasks/colorization/data.py``);
- loss: the squared error of the predicted colours, averaged over every pixel and channel (official
  ``jnp.square(logits − labels)``, then ``jnp.mean``);
- prediction: the head's output clipped to [−1, 1];
- metrics: **resized PSNR** (official ``colorization.py``: per image ``20 log10(2) − 10 log10(MSE)`` at model
  resolution, averaged over images) and the **Fréchet distance** of ColTran's FID-5k (``coltran_fid.py``): each
  prediction area-resized to ``eval_size`` = 256, quantised as if saved to 8 bits (``clip(round((y + 1) · 128), 0,
  255)``; the Inception input is then ``x / 128 − 1``, as torch-fidelity's), against a *reference pool* of other
  images' true colours (the dataset's ``reference``; without one, the ground truth of the same images). With the
  Inception extractor (local weights) and the official 5 000 + 5 000 images this is FID-5k; on embedded data it is
  the distance in the project's own feature space, named by the extractor (``FD-shapes``), never FID.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fsq_repro.metrics.fid import feature_statistics, frechet_distance
from fsq_repro.metrics.psnr import psnr


def to_uint8_coltran(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """``(B, 3, H, W)`` in [−1, 1] → area-resized to ``size`` → ``clip(round((y + 1) · 128), 0, 255)`` uint8."""
    if size is not None and tuple(image.shape[-2:]) != (size, size):
        image = F.interpolate(image.float(), size=(size, size), mode="area")
    return ((image.float() + 1) * 128).round().clamp(0, 255).to(torch.uint8)


class ColorizationTask:
    """The colorization task (module docstring)."""

    name = "colorization"
    headline = ("fd", True)
    label_classes: dict[str, int] = {}  # noqa: RUF012 — no one-hot maps
    label_channels = {"color": 3}  # noqa: RUF012

    def __init__(self, extractor: str = "inception", inception_weights: str | None = None, eval_size: int = 256,
                 cache_dir: str = "outputs/cache") -> None:  # fmt: skip
        self.extractor, self.inception_weights = extractor, inception_weights
        self.eval_size, self.cache_dir = (int(eval_size) if eval_size else None), cache_dir

    def config(self) -> dict:
        return {"name": self.name, "extractor": self.extractor, "inception_weights": self.inception_weights,
                "eval_size": self.eval_size, "cache_dir": self.cache_dir}  # fmt: skip

    def cache_labels(self, batch: dict) -> dict[str, torch.Tensor]:
        """The labels the token cache encodes (the same as ``labels``; panoptic renumbers flipped instances)."""
        return self.labels(batch)

    def labels(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"color": batch["color"].float()}

    def loss(self, logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss = (logits["color"].float() - labels["color"]).pow(2).mean()
        return loss, {"loss_color": loss.detach()}

    def predict(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        return logits["color"].clamp(-1, 1)

    def truth(self, batch: dict) -> torch.Tensor:
        return batch["color"]

    @staticmethod
    def render(pred: torch.Tensor) -> torch.Tensor:
        return pred.float().cpu()

    def baseline_statistic(self, batch: dict) -> torch.Tensor:
        """The constant baseline needs no training statistic (the mean colour is a placeholder)."""
        return batch["color"].float().mean((2, 3))

    @staticmethod
    def baseline_prediction(mean: torch.Tensor, batch: dict) -> torch.Tensor:
        """The constant baseline: no colour at all — the grayscale context itself as the prediction (zero chroma,
        the right luminance) ``(B, 3, H, W)``."""
        return batch["image"].float()

    def metric(self, dataset=None) -> ColorizationMetric:
        """PSNR only without a dataset (Stage I validation); PSNR + FD (builds the extractor) with one."""
        return ColorizationMetric(self, dataset)

    def validation_metric(self, val_set=None) -> ColorizationMetric:
        """PSNR only: the FD needs the extractor and thousands of images, it is uvim_eval's."""
        return ColorizationMetric(self, None)


class ColorizationMetric:
    """Resized PSNR and the FID-5k-style Fréchet distance (module docstring)."""

    def __init__(self, task: ColorizationTask, dataset=None) -> None:
        self.task, self.dataset = task, dataset
        self.extractor = None
        self.feature_space = None
        if dataset is not None:
            from fsq_repro.extractors import build_extractor

            with torch.inference_mode(False), torch.enable_grad():  # the shapes classifier may train once here
                self.extractor = build_extractor(task.extractor, task.inception_weights, task.cache_dir)
            self.feature_space = self.extractor.label
        self.reset()

    def reset(self) -> None:
        self.psnrs: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []
        self.truth_features: list[torch.Tensor] = []

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        device = next(self.extractor.parameters()).device
        return self.extractor(to_uint8_coltran(image, self.task.eval_size).to(device))["features"].double().cpu()

    def update(self, pred: torch.Tensor, batch: dict) -> None:
        truth = batch["color"].to(pred.device)
        self.psnrs.append(psnr(pred, truth).cpu())
        if self.extractor is not None:
            self.features.append(self._features(pred))
            if not getattr(self.dataset, "has_reference", lambda: False)():
                self.truth_features.append(self._features(truth))

    def _reference_features(self, count: int) -> torch.Tensor:
        feats, chunk = [], []
        for i in range(count):
            image = self.dataset.reference(i)
            if image is not None:
                chunk.append(image)
            if len(chunk) == 50 or (i == count - 1 and chunk):
                feats.append(self._features(torch.stack(chunk)))
                chunk = []
        return torch.cat(feats)

    def compute(self) -> dict[str, float]:
        values = torch.cat(self.psnrs) if self.psnrs else torch.zeros(0)
        out = {"psnr": float(values.mean()) if len(values) else float("nan"), "num_images": float(len(values))}
        if self.extractor is not None and self.features:
            pred = torch.cat(self.features).numpy()
            ref = torch.cat(self.truth_features) if self.truth_features else self._reference_features(len(pred))
            mu1, s1 = feature_statistics(pred)
            mu2, s2 = feature_statistics(np.asarray(ref.numpy()))
            out["fd"] = float(frechet_distance(mu1, s1, mu2, s2))
            out["num_reference"] = float(len(ref))
        return out
