"""The fast CUDA paths are the ones selected, checked on the CPU (docs/gpu.md, "GPU defaults"): attention goes to
SDPA's fused kernel with the dropout inside it (the CPU's written-out dropout path never runs on a GPU), every
training optimiser of every paper experiment is a fused Adam/AdamW, the MaskGIT transformer is compiled where the
config asks for it, and GPU runs load pinned batches with persistent workers."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fsq_repro.nets import attention as attention_module
from fsq_repro.pipeline.memory_plan import BUILDERS, _materialise, _optimizers, compose_train_config, plan_stages
from fsq_repro.pipeline.stages import loader_options

PAPER = ["maskgit_fsq", "maskgit_vq", "tradeoff_fsq", "uvim_depth_fsq", "uvim_depth_vq", "uvim_panoptic_fsq",
         "uvim_color_fsq"]  # fmt: skip


def test_attention_off_the_cpu_is_sdpa_with_its_own_dropout() -> None:
    """Any device but the CPU (``meta`` stands in for CUDA here: the selection reads only the device type) calls
    SDPA with the dropout rate, and the written-out dropout path is not taken; on the CPU with dropout it is."""
    q = torch.empty(2, 4, 8, 16, device="meta")
    with mock.patch.object(attention_module.F, "scaled_dot_product_attention", wraps=lambda *a, **k: a[0]) as sdpa, \
            mock.patch.object(attention_module, "dropout") as written_out:  # fmt: skip
        attention_module.attention(q, q, q, 0.1, training=True)
    assert sdpa.call_args.kwargs["dropout_p"] == 0.1 and not written_out.called
    x = torch.randn(2, 4, 8, 16)
    with mock.patch.object(attention_module, "dropout", wraps=attention_module.dropout) as written_out:
        attention_module.attention(x, x, x, 0.1, training=True)
    assert written_out.called  # the CPU path (faster there), never on a GPU


@pytest.mark.parametrize("experiment", PAPER)
def test_every_training_optimizer_of_the_paper_experiments_is_fused(experiment: str) -> None:
    """Fused Adam/AdamW: one kernel per step on CUDA, and the device-side skip of a non-finite step."""
    cfg = compose_train_config([f"experiment={experiment}"])
    for stage in plan_stages(cfg):
        module, _, _ = BUILDERS[stage](cfg, 1, "bf16-mixed", "meta")
        with FakeTensorMode(allow_non_fake_inputs=True):
            _materialise(module)
            optimizers = _optimizers(module.configure_optimizers())
        assert optimizers and all(opt.defaults.get("fused") is True for opt in optimizers), (experiment, stage)


def test_the_maskgit_transformer_is_compiled_where_configured() -> None:
    from fsq_repro.lit.maskgit_module import MaskGITModule
    from fsq_repro.nets.transformer import MaskGITTransformer

    paper = compose_train_config(["experiment=maskgit_fsq"])
    assert paper.model.stage2.compile is True
    cpu = compose_train_config(["experiment=maskgit_shapes"])
    assert cpu.model.stage2.compile is False  # compiling costs more than it saves in a CPU-sized run
    model = MaskGITTransformer(codebook_size=8, num_classes=2, num_tokens=4, hidden_dim=16, depth=1, num_heads=2,
                               mlp_dim=32)  # fmt: skip
    compiled = MaskGITModule(model, compile=True)
    assert isinstance(compiled.forward_fn, torch._dynamo.eval_frame.OptimizedModule)  # wrapped lazily: no compile yet
    assert MaskGITModule(model, compile=False).forward_fn is model


@pytest.mark.parametrize("experiment", PAPER)
def test_gpu_runs_load_pinned_batches_with_persistent_workers(experiment: str) -> None:
    cfg = compose_train_config([f"experiment={experiment}"])
    assert cfg.trainer.accelerator == "gpu"
    data = cfg.data
    assert data.num_workers > 0 and data.pin_memory is True and data.persistent_workers is True, experiment
    # the data modules the stages build themselves (Stage II's token cache, UViM's code pairs)
    assert loader_options(cfg, 4) == {"pin_memory": True, "persistent_workers": True}
    cpu = compose_train_config([f"experiment={experiment}", "trainer=cpu"])
    assert loader_options(cpu, 0) == {"pin_memory": False, "persistent_workers": False}


def test_a_pinned_data_module_hands_pinned_options_to_its_loader() -> None:
    from fsq_repro.lit.datamodules import ImageDataModule

    data = [{"image": torch.zeros(3, 4, 4), "label": 0}] * 8
    dm = ImageDataModule(lambda: data, lambda: data, batch_size=4, num_workers=1, pin_memory=True,
                         persistent_workers=True)  # fmt: skip
    loader = dm.train_dataloader()
    assert loader.pin_memory is True and loader.persistent_workers is True
