"""Fig. 3 findings at CPU scale (evaluation/tradeoff_findings.py): the uniform ceiling in closed form, the findings'
verdicts on hand-made rows (each can come out either way), the usage curve read from a Lightning CSV log."""

from __future__ import annotations

import math

import pytest

from fsq_repro.evaluation.tradeoff_findings import curve_table, findings, uniform_ceiling, usage_curves


def test_uniform_ceiling_matches_the_hand_computed_cases() -> None:
    assert uniform_ceiling(2, 1) == pytest.approx(0.5)  # one draw hits one of two codes
    assert uniform_ceiling(4, 2) == pytest.approx(1 - (3 / 4) ** 2)  # 0.4375
    assert uniform_ceiling(65536, 131072) == pytest.approx(1 - math.exp(-2), abs=1e-5)  # 86.5 %: the 2^16 row


def _row(kind: str, size: int, usage: float, psnr: float, bits: float) -> dict:
    return {"kind": kind, "codebook_size": size, "usage": usage, "psnr": psnr, "bits_per_token": bits,
            "val_tokens": 131072}  # fmt: skip


PAPER_LIKE = [
    _row("FSQ", 240, 1.0, 20.0, 6.0), _row("FSQ", 15360, 0.99, 22.5, 11.0), _row("FSQ", 64000, 0.86, 23.0, 12.5),
    _row("VQ", 256, 0.95, 20.5, 6.5), _row("VQ", 16384, 0.20, 21.0, 9.0),
]  # fmt: skip


def test_findings_say_reproduces_on_paper_like_rows() -> None:
    lines = findings(PAPER_LIKE)
    assert len(lines) == 5 and all("does not reproduce" not in line for line in lines), lines
    assert "strictly at every step" in lines[1]
    assert "86.5" not in lines[0] and "100%" in lines[0]  # 0.86 / ceiling(64000, 131072) = 0.86 / 0.871 = 99 %


def test_findings_say_does_not_reproduce_when_the_data_contradict() -> None:
    rows = [
        _row("FSQ", 240, 1.0, 21.0, 6.0), _row("FSQ", 15360, 0.12, 22.0, 5.0), _row("FSQ", 64000, 0.05, 20.5, 4.0),
        _row("VQ", 256, 0.5, 20.0, 6.0), _row("VQ", 16384, 0.6, 20.0, 5.0),
    ]  # fmt: skip
    lines = findings(rows)
    assert all("does not reproduce" in line for line in lines), lines
    assert "|C| = 15360: 12%" in lines[0]  # the sizes below 90 % of the ceiling are named


def test_usage_curves_reads_val_rows_of_the_lightning_csv(tmp_path) -> None:
    log = tmp_path / "csv" / "stage1"
    log.mkdir(parents=True)
    (log / "metrics.csv").write_text(
        "epoch,loss,step,val/psnr,val/usage\n"
        "0,0.1,9,,\n"  # a training row: no val/usage
        "0,,299,18.5,0.25\n"
        "0,0.05,309,,\n"
        "0,,599,19.25,0.5\n"
        "0,,600,19.5,0.25\n"  # the final re-validation on a subset of the val split: not a curve point
    )
    curve = usage_curves(tmp_path)
    assert curve == [{"step": 300, "usage": 0.25, "psnr": 18.5}, {"step": 600, "usage": 0.5, "psnr": 19.25}]
    assert usage_curves(tmp_path / "missing") == []
    table = curve_table({"FSQ": curve}, tokens_per_step=32 * 64, sizes={"FSQ": 1000})
    assert "| FSQ | 25.0% (18.5 dB) | 50.0% (19.2 dB) | 1229 |" in table  # 2048 tokens x 600 steps / 1000 codes
