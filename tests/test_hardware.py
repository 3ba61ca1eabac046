"""The machine-dependent choices (``fsq_repro/hardware.py``): bf16 on a CPU only where oneDNN has native bf16."""

from __future__ import annotations

import torch

from fsq_repro import hardware


def test_precision_falls_back_to_float32_on_a_cpu_without_fast_bf16(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    precision, note = hardware.resolve_precision("bf16-mixed", on_cpu=True)
    assert precision == "32-true" and "bf16-mixed -> 32-true" in note and "\n" not in note
    assert hardware.resolve_precision("bf16-mixed", on_cpu=False) == ("bf16-mixed", None)  # a GPU keeps bf16
    assert hardware.resolve_precision("32-true", on_cpu=True) == ("32-true", None)
    assert hardware.cpu_autocast_dtype() is None
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert hardware.resolve_precision("bf16-mixed", on_cpu=True) == ("bf16-mixed", None)
    assert hardware.cpu_autocast_dtype() is torch.bfloat16


def test_the_shapes_classifier_recipe_names_its_precision(monkeypatch) -> None:
    from fsq_repro.extractors import shapes as features

    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    assert features.shapes_recipe()["autocast"] == "none"
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert features.shapes_recipe() == features.SHAPES_RECIPE and features.SHAPES_RECIPE["autocast"] == "bf16"


def test_the_answer_matches_onednn() -> None:
    assert hardware.cpu_has_fast_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert hardware.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_launch_rank_reads_the_launcher_environment(monkeypatch) -> None:
    from fsq_repro.hardware import launch_rank

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "3")  # a stale RANK without a multi-process launch means nothing
    assert launch_rank() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launch_rank() == (3, 4)
    monkeypatch.delenv("RANK")
    assert launch_rank() == (0, 4)
