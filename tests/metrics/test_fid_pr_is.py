"""FID / precision-recall / Inception score against closed forms and independent computations (definitions of the
ADM suite, openai/guided-diffusion ``evaluations/evaluator.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from fsq_repro.metrics import feature_statistics, frechet_distance, inception_score, precision_recall


def _scipy_fd(x: np.ndarray, y: np.ndarray) -> float:
    """Direct computation, written independently: statistics with explicit sums, sqrtm by eigendecomposition."""
    mx, my = x.mean(0), y.mean(0)
    cx = (x - mx).T @ (x - mx) / (len(x) - 1)
    cy = (y - my).T @ (y - my) / (len(y) - 1)
    w, v = linalg.eigh(cx)
    root_cx = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = linalg.eigvalsh(root_cx @ cy @ root_cx)  # Tr sqrtm(cx cy) = Σ sqrt(eig(√cx cy √cx))
    return float(((mx - my) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def test_fd_matches_an_independent_computation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16))
    y = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) * 0.3 + 0.5
    ours = frechet_distance(*feature_statistics(x), *feature_statistics(torch.from_numpy(y)))
    assert ours == pytest.approx(_scipy_fd(x, y), rel=1e-6, abs=1e-6)


def test_fd_of_a_set_with_itself_is_zero_and_gaussians_give_the_closed_form() -> None:
    x = np.random.default_rng(1).normal(size=(300, 8))
    assert abs(frechet_distance(*feature_statistics(x), *feature_statistics(x))) < 1e-8
    # N(m1, a²I) vs N(m2, b²I) in D dims: |m1−m2|² + D (a − b)²
    d, m1, m2, a, b = 5, np.zeros(5), np.full(5, 2.0), 1.5, 0.5
    expected = 4.0 * d + d * (a - b) ** 2
    assert frechet_distance(m1, a * a * np.eye(d), m2, b * b * np.eye(d)) == pytest.approx(expected, rel=1e-12)


def test_fd_survives_singular_covariances() -> None:
    x = np.random.default_rng(2).normal(size=(10, 32))  # N < D: singular covariance
    value = frechet_distance(*feature_statistics(x), *feature_statistics(x + 1))
    assert np.isfinite(value) and value == pytest.approx(32.0, rel=1e-3)


def _brute_pr(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Independent numpy reference: full distance matrices, sort, k-th other neighbour."""

    def d2(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    r_real = np.sort(d2(real, real), axis=1)[:, k]
    r_fake = np.sort(d2(fake, fake), axis=1)[:, k]
    precision = (d2(fake, real) <= r_real[None]).any(1).mean()
    recall = (d2(real, fake) <= r_fake[None]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_against_brute_force_and_batching() -> None:
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(300, 10)), rng.normal(size=(300, 10)) * 1.3 + 0.4
    expected = _brute_pr(real, fake)
    assert precision_recall(real, fake) == expected
    assert precision_recall(real, fake, batch_size=7) == expected
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1


def test_precision_recall_extremes() -> None:
    x = np.random.default_rng(4).normal(size=(200, 6))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 1000.0) == (0.0, 0.0)


def test_adm_mode_is_close_to_exact_in_low_dimension() -> None:
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 0.3
    exact, adm = precision_recall(real, fake), precision_recall(real, fake, mode="adm")
    assert abs(exact[0] - adm[0]) < 0.02 and abs(exact[1] - adm[1]) < 0.02


def test_inception_score_closed_forms() -> None:
    assert inception_score(np.zeros((1000, 1008)))[0] == pytest.approx(1.0, abs=1e-9)
    k = 20
    onehot = np.eye(k)[np.arange(2000) % k] * 1.0
    mean, std = inception_score(onehot, probabilities=True)
    assert mean == pytest.approx(k, rel=1e-9) and std < 1e-9
