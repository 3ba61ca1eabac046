"""Every config file of every group composes with train.yaml; every quantizer config instantiates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from fsq_repro.pipeline.global_batch import resolve_global_batch
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
        if ablation and ablation[0] == "uvim":  # UViM's VQ (FSQ paper §4.4): no commitment, EMA dictionary
            assert q.beta == 0.0 and q.entropy_weight == 0.0 and q.ema_style == "uvim" and q.standardize
            assert q.split_dead_codes == (ablation[1:] != ["nosplit"]) and q.split_min_count == 0.1
        else:  # MaskGIT's VQ (FSQ paper §4.1): commitment 0.25 + entropy loss 0.1
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
        assert (cfg.model.stage1.global_batch_size, cfg.model.stage2.global_batch_size) == (512, 256)
        assert cfg.model.stage1.max_steps == round(100 * 1281167 / cfg.model.stage1.global_batch_size)
        assert cfg.model.stage2.max_steps == round(200 * 1281167 / cfg.model.stage2.global_batch_size)


def _global_batches(cfg) -> tuple:
    """Both stages' resolved global batch on the composed trainer's devices."""
    trainer = cfg.trainer
    args = (trainer.devices, trainer.num_nodes, trainer.accumulate_grad_batches)
    return (
        resolve_global_batch("stage1", cfg.model.stage1.global_batch_size, cfg.data.batch_size, *args),
        resolve_global_batch("stage2", cfg.model.stage2.global_batch_size, cfg.model.stage2.batch_size, *args,
                             batch_key="model.stage2.batch_size"),
    )  # fmt: skip


def test_the_paper_batch_is_global_on_any_number_of_gpus() -> None:
    assert (
        "global_batch_size: 512  # FSQ paper §4.3: batch 512"
        in (CONFIGS / "model/stage1/maskgit_vqgan.yaml").read_text()
    )
    assert (
        "global_batch_size: 256  # FSQ paper §4.3 / MaskGIT: batch 256"
        in (CONFIGS / "model/stage2/maskgit_base.yaml").read_text()
    )
    for experiment in ("maskgit_fsq", "maskgit_vq"):
        one_gpu = _global_batches(_compose([f"experiment={experiment}"]))  # trainer=gpu: 1 device
        assert [(b.per_device, b.devices, b.accumulate_grad_batches) for b in one_gpu] == [(64, 1, 8), (32, 1, 8)]
        eight = _global_batches(_compose([f"experiment={experiment}", "trainer=ddp"]))
        assert [(b.global_batch_size, b.devices, b.accumulate_grad_batches) for b in eight] == [
            (512, 8, 1),
            (256, 8, 1),
        ]


def test_stage1_gradient_clipping_is_opt_in() -> None:
    assert _compose(["model/stage1=maskgit_vqgan"]).model.stage1.optim.grad_clip is None  # MaskGIT vqgan_config
    assert _compose(["model/stage1=tiny"]).model.stage1.optim.grad_clip == 1.0  # a CPU-run choice


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_resolves_its_global_batch(experiment: str) -> None:
    cfg = _compose([f"experiment={experiment}"])
    stage1, stage2 = _global_batches(cfg)
    if cfg.trainer.accelerator == "cpu":  # the CPU experiments: no accumulation on their one process
        assert stage1.accumulate_grad_batches == stage2.accumulate_grad_batches == 1
    elif experiment.startswith("uvim"):  # UViM on NYU: big_vision's batch sizes (vqvae / train configs)
        assert (stage1.global_batch_size, stage2.global_batch_size) == (1024, 512)
    else:  # the ImageNet experiments: the paper's global batch
        assert stage1.global_batch_size == 512
        assert stage2.global_batch_size == 256 or "stage2" not in cfg.stages


def test_uvim_panoptic_experiments_follow_the_official_configs() -> None:
    """big_vision configs/proj/uvim/vqvae_coco_panoptic.py + train_coco_panoptic_pretrained.py at 21bd6eb: 134 + 100
    classes, Stage I lr 4e-4 / wd 4e-5 / 1000 epochs, Stage II 200 epochs; the no-context ablation differs only in
    the two context flags (FSQ paper Table 2)."""
    base = {q: _compose([f"experiment=uvim_panoptic_{q}"]) for q in ("fsq", "vq")}
    for q, cfg in base.items():
        assert dict(cfg.data.task) == {"name": "panoptic", "num_semantic": 134, "num_instances": 100,
                                       "min_fraction": 0.0}  # fmt: skip
        assert cfg.data.resolution == 512 and cfg.data.train.split == "train" and cfg.data.val.split == "val"
        s1 = cfg.model.stage1
        assert (s1.optim.lr, s1.optim.weight_decay) == (4e-4, 4e-5) and s1.autoencoder.with_encoder_ctx
        assert s1.max_steps == math.ceil(1000 * (118_287 - 4096) / 1024)
        assert cfg.model.stage2.max_steps == math.ceil(200 * (118_287 - 4096) / 512)
        q_cfg = instantiate(cfg.quantizer)
        assert (q == "fsq") == isinstance(q_cfg, FSQ) and (q == "vq") == isinstance(q_cfg, VectorQuantizer)
        noctx = _compose([f"experiment=uvim_panoptic_{q}_noctx"])
        assert (
            not noctx.model.stage1.autoencoder.with_encoder_ctx and not noctx.model.stage1.autoencoder.with_decoder_ctx
        )
        for key in ("data", "quantizer", "model"):
            a, b = cfg[key], noctx[key]
            if key == "model":
                a, b = dict(a.stage2), dict(b.stage2)
            assert a == b


def test_uvim_table2_sweep_lists_every_paper_row_over_three_seeds() -> None:
    import yaml

    params = yaml.safe_load((CONFIGS / "sweep" / "uvim_table2.yaml").read_text())["hydra"]["sweeper"]["params"]
    paper = {
        o for o in _options("experiment") if o.startswith("uvim_") and not o.endswith("_shapes") and "demo" not in o
    }
    assert set(params["experiment"].split(",")) == paper and len(paper) == 9
    assert params["seed"] == "0,1,2"
    for experiment in sorted(paper):
        assert _compose([f"experiment={experiment}", "seed=2"]).seed == 2


@pytest.mark.parametrize("group", ["model/stage1", "model/stage2"])
def test_every_stage_config_states_the_keys_the_stages_read(group: str) -> None:
    """The stages read these keys without a code-side default (one source of truth: the config)."""
    import yaml

    for path in sorted((CONFIGS / group).glob("*.yaml")):
        conf = yaml.safe_load(path.read_text())
        missing = {"max_steps", "val_check_interval", "max_nonfinite_skips", "optim"} - set(conf)
        assert not missing, f"{path.name} lacks {missing}"
