"""Feature-gathering metrics: a 2-process (gloo) run equals the single-process computation, count exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.metrics import feature_statistics, frechet_distance, precision_recall
from fsq_repro.metrics.gathered import FrechetDistance, InceptionScore
from tests.conftest import run_distributed


def test_two_processes_equal_one(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    run_distributed(Path(__file__).parent / "ddp_features_worker.py", str(out), nproc=2)
    got = json.loads(out.read_text())
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 6))
    feats = rng.normal(size=(1001, 6)) + 0.2
    assert got["count"] == 1001
    expected_fd = frechet_distance(*feature_statistics(feats), ref.mean(0), np.cov(ref, rowvar=False))
    assert got["fd"] == pytest.approx(expected_fd, rel=1e-9)
    p, r = precision_recall(ref, feats)
    assert (got["precision"], got["recall"]) == (p, r)


def test_single_process_wrappers() -> None:
    x = torch.randn(300, 4, dtype=torch.float64)
    fd = FrechetDistance(*feature_statistics(x))
    for chunk in x.split(50):
        fd.update(chunk)
    assert abs(fd.compute()["fd"]) < 1e-8
    score = InceptionScore(splits=5)
    score.update(torch.zeros(100, 10))
    assert score.compute()["is"] == pytest.approx(1.0)
