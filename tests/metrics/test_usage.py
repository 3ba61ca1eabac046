"""CodebookUsage against numpy bincount and closed forms; DDP reduction equals a single process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.metrics import CodebookUsage
from tests.conftest import run_distributed


def test_histogram_usage_perplexity_closed_forms() -> None:
    metric = CodebookUsage(10)
    metric.update(torch.tensor([[0, 1], [2, 3]]))
    metric.update(torch.tensor([0, 1, 2, 3]))
    out = metric.compute()
    assert out["histogram"].tolist() == [2, 2, 2, 2, 0, 0, 0, 0, 0, 0]
    assert out["usage"].item() == pytest.approx(0.4)
    assert out["perplexity"].item() == pytest.approx(4.0, rel=1e-6)  # uniform over 4 codes
    metric.reset()
    metric.update(torch.zeros(7, dtype=torch.long))
    assert metric.compute()["perplexity"].item() == pytest.approx(1.0)


def test_matches_numpy_on_random_indices() -> None:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 300, size=5000) ** 2 % 1000
    metric = CodebookUsage(1000)
    metric.update(torch.from_numpy(idx))
    hist = np.bincount(idx, minlength=1000)
    p = hist / hist.sum()
    ref_ppl = math.exp(-(p[p > 0] * np.log(p[p > 0])).sum())
    out = metric.compute()
    assert out["histogram"].numpy().tolist() == hist.tolist()
    assert out["usage"].item() == pytest.approx((hist > 0).mean())
    assert out["perplexity"].item() == pytest.approx(ref_ppl, rel=1e-5)


def test_out_of_range_index_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        CodebookUsage(10).update(torch.tensor([3, 10]))


@pytest.mark.slow
def test_two_process_gloo_equals_single_process(tmp_path: Path) -> None:
    out = tmp_path / "usage.json"
    run_distributed(Path(__file__).parent / "ddp_usage_worker.py", str(out), nproc=2)
    got = json.loads(out.read_text())
    indices = torch.randint(0, 50, (1001,), generator=torch.Generator().manual_seed(0)) ** 2 % 97
    single = CodebookUsage(97)
    single.update(indices)
    ref = single.compute()
    assert got["histogram"] == ref["histogram"].tolist()
    assert sum(got["histogram"]) == 1001
    assert got["usage"] == pytest.approx(ref["usage"].item())
    assert got["perplexity"] == pytest.approx(ref["perplexity"].item(), rel=1e-6)
