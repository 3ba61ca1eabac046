"""Fréchet distance between Gaussian fits of features (FID; Heusel et al. 2017) as in the ADM evaluation suite
(openai/guided-diffusion ``evaluations/evaluator.py``; FSQ paper §4.3 reports sampling FID with that suite, §4.1
reconstruction FID).

``feature_statistics(features (N, D)) -> (mu (D,), sigma (D, D))`` in float64 with the N−1 normaliser (``np.cov``).
``frechet_distance(mu1, sigma1, mu2, sigma2) -> float``:
``‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 sqrtm(Σ1 Σ2))``; when ``sqrtm`` is not finite, ``1e-6·I`` is added to both Σ and it is
retried; an imaginary part larger than 1e-3 raises (a negligible one is dropped).
Reference statistics are ``.npz`` files with ``mu`` and ``sigma`` (ADM's ``VIRTUAL_imagenet256_labeled.npz`` works).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from fsq_repro.atomic import atomic_path
from fsq_repro.errors import ConfigError, first_line


def as_numpy64(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``(N, D)`` features, float64."""
    f = as_numpy64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    mu1, mu2 = np.atleast_1d(as_numpy64(mu1)), np.atleast_1d(as_numpy64(mu2))
    sigma1, sigma2 = np.atleast_2d(as_numpy64(sigma1)), np.atleast_2d(as_numpy64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(Σ1 Σ2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def save_statistics(path: str | Path, mu, sigma, **extra) -> Path:
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to any other name
        np.savez(tmp, mu=as_numpy64(mu), sigma=as_numpy64(sigma), **extra)
    return Path(path)


def load_statistics(path: str | Path) -> dict[str, np.ndarray]:
    """``mu``, ``sigma`` (and, when present, ``arr_0`` reference images / ``features`` for precision-recall)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reference statistics {path} do not exist (make: python eval.py task=ref_stats data=...)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "mu" not in z or "sigma" not in z:
                raise ConfigError(f"{path} has no mu/sigma arrays (keys: {sorted(z.keys())})")
            return {k: z[k] for k in z.files}
    except ConfigError:
        raise
    except Exception as err:  # truncated, not a zip, pickled, a flipped byte: one line naming the file
        first = first_line(err, 160)
        raise ConfigError(f"reference statistics {path} are not a readable .npz ({first})") from None
