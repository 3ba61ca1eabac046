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
    kind, size, *ablation = option.split("_")
    if kind == "fsq":
        assert isinstance(q, FSQ)
        assert q.codebook_size == math.prod(q.levels)
        if ablation:  # levels-ablation sets (Fig. 10): fsq_<|C|>_l<min L_i>
            assert q.codebook_size == int(size) and f"l{min(q.levels)}" == ablation[0] and min(q.levels) < 5
        elif int(size) in TABLE1:
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


def test_levels_ablation_sweeps_sets_of_about_the_same_size_with_and_without_small_levels() -> None:
    cfg = _compose(["experiment=levels_ablation"])
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.data.resolution == 128  # the 128 px study of §4.2
    options = str(cfg.hydra.sweeper.params.quantizer).split(",")
    quantizers = [instantiate(_compose([f"quantizer={o}"]).quantizer) for o in options]
    sizes = {round(math.log2(q.codebook_size)) for q in quantizers}
    assert sizes == {10, 12}
    for bits in sizes:
        group = [q for q in quantizers if round(math.log2(q.codebook_size)) == bits]
        assert any(min(q.levels) >= 5 for q in group) and any(min(q.levels) < 5 for q in group)


def test_slurm_launcher_config_builds_the_submitit_launcher() -> None:
    cfg = _compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "experiment=tradeoff_fsq"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node  # one DDP process per GPU
    assert launcher.max_num_timeout > 0 and launcher.additional_parameters.requeue is True
    built = instantiate(launcher)  # builds the launcher object (submits nothing)
    assert type(built).__name__ == "SlurmLauncher"
    assert _compose([]).hydra.launcher._target_.endswith("BasicLauncher")  # the local launcher stays the default


def test_tradeoff_experiments_follow_the_paper() -> None:
    for name, kind in (("tradeoff_fsq", FSQ), ("tradeoff_vq", VectorQuantizer)):
        cfg = _compose([f"experiment={name}"])
        assert cfg.data.resolution == 128 and isinstance(instantiate(cfg.quantizer), kind)
        # 100 / 200 epochs of ImageNet-1k (1 281 167 images) at global batch 512 / 256 (FSQ paper §4.2)
        assert cfg.model.stage1.max_steps == round(100 * 1281167 / 512)
        assert cfg.model.stage2.max_steps == round(200 * 1281167 / 256)
