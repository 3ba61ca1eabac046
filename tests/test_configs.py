"""Every config file of every group composes with train.yaml; every quantizer config instantiates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from fsq_repro.quantizers import FSQ, VectorQuantizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = [
    "data",
    "quantizer",
    "model/stage1",
    "model/stage2",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "sweep",
    "debug",
]
TABLE1 = {240: [8, 6, 5], 1000: [8, 5, 5, 5], 4375: [7, 5, 5, 5, 5], 15360: [8, 8, 8, 6, 5], 64000: [8, 8, 8, 5, 5, 5]}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


CASES = [(g, o) for g in GROUPS for o in _options(g)]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = _compose([f"{group}={option}"])
    assert cfg.experiment_name
    assert "quantizer" in cfg and "trainer" in cfg


def test_default_quantizer_is_fsq_1000() -> None:
    cfg = _compose([])
    assert list(cfg.quantizer.levels) == [8, 5, 5, 5]


@pytest.mark.parametrize("option", _options("quantizer"))
def test_every_quantizer_instantiates(option: str) -> None:
    cfg = _compose([f"quantizer={option}"])
    q = instantiate(cfg.quantizer)
    kind, size = option.split("_")
    if kind == "fsq":
        assert isinstance(q, FSQ)
        assert q.codebook_size == math.prod(q.levels)
        if int(size) in TABLE1:
            assert list(q.levels) == TABLE1[int(size)]
        else:  # the CPU configs outside Table 1 are named by their exact size and keep L_i >= 5 (App. A.4.1)
            assert q.codebook_size == int(size) and min(q.levels) >= 5
    else:
        assert isinstance(q, VectorQuantizer)
        assert q.codebook_size == int(size)
        assert q.beta == 0.25 and q.entropy_weight == 0.1


def test_table1_sources_are_cited() -> None:
    for size in TABLE1:
        path = CONFIGS / "quantizer" / f"fsq_{size}.yaml"
        assert "# FSQ paper Table 1" in path.read_text(), path
