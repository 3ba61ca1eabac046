"""Command lines a new user types wrong get one ``error:`` line and exit code 2 before any expensive work: a GPU
trainer on a machine without one, an evaluation of a run dir that does not exist (before the reference statistics
of thousands of images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


def _one_line_error(fn, cfg, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        fn(cfg)
    lines = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_gpu_trainer_without_a_gpu_names_trainer_cpu(capsys, tmp_path) -> None:
    from fsq_repro.pipeline.entry import run_train

    cfg = _compose("train", ["experiment=uvim_depth_fsq", f"paths.output_dir={tmp_path}"])
    line = _one_line_error(run_train, cfg, capsys)
    assert "torch sees no CUDA GPU" in line and "trainer=cpu" in line
    assert not any(tmp_path.iterdir())  # refused before the first stage wrote anything


def test_eval_of_a_missing_run_fails_before_the_reference_statistics(capsys, tmp_path, monkeypatch) -> None:
    import fsq_repro.pipeline.evaluate as eval_config
    from fsq_repro.pipeline.entry import run_eval

    monkeypatch.setattr(eval_config, "reference_for", lambda *a, **k: pytest.fail("reference computed first"))
    monkeypatch.chdir(tmp_path)
    for task in ("sampling", "reconstruction", "compression"):
        cfg = _compose("eval", [f"task={task}", "run=outputs/nonexistent", f"+out={tmp_path}"])
        line = _one_line_error(run_eval, cfg, capsys)
        assert line == ("error: no tokenizer.pt at outputs/nonexistent/tokenizer.pt: pass run=<a finished "
                        "pipeline run dir> or tokenizer=<file>")  # fmt: skip


def test_depth_scene_options_are_checked_at_startup(capsys, tmp_path) -> None:
    from fsq_repro.pipeline.entry import run_train
    from fsq_repro.pipeline.options import CHOICES
    from fsq_repro.tasks.depth.scenes import CAMERAS

    assert CHOICES["data.camera"] == CAMERAS  # the check names what the dataset accepts
    cases = {
        "data.camera=moving": "error: data.camera=moving is unknown; choose one of fixed, random",
        "data.train.min_crop_area=0": "error: data.train.min_crop_area=0 must be a number in (0, 1]",
    }
    for override, expected in cases.items():
        cfg = _compose("train", ["experiment=uvim_demo", override, f"paths.output_dir={tmp_path}"])
        assert _one_line_error(run_train, cfg, capsys) == expected
        assert not any(tmp_path.iterdir())  # refused before the first stage wrote anything
