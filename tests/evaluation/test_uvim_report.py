"""The Table 2 report's verdict lines (``evaluation/uvim_report.py``) on hand-made rows: FSQ ≈ VQ within 2 pooled
standard deviations over seeds, or within 10 % of the gain over the constant baseline for a single run; the
no-splitting collapse; the context ablation."""

from __future__ import annotations

import math

from fsq_repro.evaluation.uvim_report import findings, fsq_vs_vq


def row(task: str, bottleneck: str, value: float, std: float = math.nan, usage: float = 1.0, constant=None) -> dict:
    key = {"depth": "rmse", "panoptic": "pq", "colorization": "fd"}[task]
    r = {"task": task, "bottleneck": bottleneck, "metric": key, "metric_name": key.upper(), key: value,
         f"{key}_std": std, "usage": usage}  # fmt: skip
    if constant is not None:
        r[f"constant_{key}"] = constant
    return r


def test_fsq_vs_vq_with_seeds_uses_two_pooled_standard_deviations() -> None:
    # pooled std = sqrt((0.03² + 0.04²) / 2) = 0.03536; tolerance 0.0707
    rows = [row("depth", "FSQ", 0.50, 0.03), row("depth", "VQ", 0.44, 0.04)]
    line = fsq_vs_vq(rows, "depth")
    assert line.startswith("depth: FSQ ≈ VQ") and "tolerance 0.071" in line
    rows = [row("depth", "FSQ", 0.52, 0.03), row("depth", "VQ", 0.44, 0.04)]
    assert fsq_vs_vq(rows, "depth").startswith("depth: VQ is better")  # lower RMSE is better


def test_fsq_vs_vq_single_run_uses_ten_percent_of_the_gain_over_the_constant() -> None:
    # PQ (higher is better): best 40, constant 10 -> tolerance 3
    rows = [row("panoptic", "FSQ", 38.0), row("panoptic", "VQ", 40.0, constant=10.0)]
    assert fsq_vs_vq(rows, "panoptic").startswith("panoptic: FSQ ≈ VQ")
    rows = [row("panoptic", "FSQ", 44.0), row("panoptic", "VQ", 40.0, constant=10.0)]  # tolerance 3.4
    assert fsq_vs_vq(rows, "panoptic").startswith("panoptic: FSQ is better")
    assert fsq_vs_vq([row("panoptic", "FSQ", 1.0)], "panoptic") is None  # no VQ row, no verdict
    rows = [row("depth", "FSQ", 1.8), row("depth", "VQ", 2.0, constant=1.0)]  # neither beats the constant
    rows[0]["oracle_rmse"], rows[1]["oracle_rmse"] = 0.7, 0.6
    assert fsq_vs_vq(rows, "depth").startswith("depth: undecided — neither FSQ (1.800) nor VQ (2.000)")
    rows = [row("depth", "FSQ", 1.3, 0.19, constant=1.0), row("depth", "VQ", 1.4, 0.15, constant=1.0)]
    rows[0]["oracle_rmse"], rows[1]["oracle_rmse"] = 0.8, 0.66  # with seeds too: both lose to the constant
    assert fsq_vs_vq(rows, "depth") == (
        "depth: undecided — neither FSQ (1.300) nor VQ (1.400) beats the constant "
        "baseline (1.000) in RMSE; their Stage I oracles: FSQ 0.800, VQ 0.660"
    )


def test_findings_collapse_and_context() -> None:
    rows = [
        row("depth", "FSQ", 0.5, usage=0.99, constant=2.0),
        row("depth", "VQ", 0.5, usage=0.98),
        row("depth", "VQ without splitting", 0.7, usage=0.05),
        row("panoptic", "FSQ", 40.0, constant=5.0),
        row("panoptic", "FSQ without context", 42.0),
    ]
    lines = findings(rows)
    assert any(x.startswith("depth: VQ without splitting collapses — reproduces (usage 5.0 % vs 98.0 %") for x in lines)
    assert any(x.startswith("panoptic: dropping the context costs FSQ — does not reproduce") for x in lines)
    rows[-1] = row("panoptic", "FSQ without context", 30.0)
    assert any(x.startswith("panoptic: dropping the context costs FSQ — reproduces") for x in findings(rows))


def test_code_dropout_ablation_is_its_own_row_and_line(tmp_path) -> None:
    from fsq_repro.evaluation.uvim_report import collect_uvim, variant

    fsq = {"name": "fsq", "levels": [5, 5, 5]}
    assert variant(fsq) == "FSQ" and variant(fsq, code_dropout="none") == "FSQ without code dropout"
    assert variant(fsq, context=False, code_dropout="none") == "FSQ without context"
    assert variant({"name": "vq", "split_dead_codes": True}, code_dropout="none") == "VQ without code dropout"
    # two runs that differ only in code dropout land in two rows, not one averaged row (older files: the recipe's)
    import json

    base = {"task": {"name": "depth"}, "quantizer": fsq, "context": True, "seed": 0, "usage": 0.5, "codebook_size": 125,
            "predicted_usage": 0.4, "uvim": {"rmse": 0.6}, "oracle": {"rmse": 0.5},
            "context_only": {"rmse": 1.2}, "constant": {"rmse": 1.3}}  # fmt: skip
    for name, extra in (("a", {}), ("b", {"code_dropout": "none", "usage": 0.9, "uvim": {"rmse": 0.55}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "uvim_eval.json").write_text(json.dumps({**base, **extra}))
    rows = collect_uvim([tmp_path])
    assert [(r["bottleneck"], r["rmse"], r["usage"]) for r in rows] == [
        ("FSQ", 0.6, 0.5), ("FSQ without code dropout", 0.55, 0.9)]  # fmt: skip
    assert "depth: FSQ usage 50.0 % with UViM's code dropout, 90.0 % without it" in " ".join(findings(rows))
