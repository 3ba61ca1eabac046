"""Memory plan: the peak memory of one training step per stage, on one device, without allocating it (docs/gpu.md,
"Memory plan").

**Method.** Every stage's model, loss and optimizer are built from the experiment's config on the ``meta`` device,
then materialised as *fake* tensors (``torch._subclasses.FakeTensorMode``: tensors with shapes, dtypes and storage
sizes, and no data), and two training steps run on them — forward in the configured precision (bf16 autocast for
``bf16-mixed``), backward, gradient clipping, the fused Adam/AdamW step, the Stage I EMA. PyTorch's
``MemTracker`` (``torch.distributed._tools.mem_tracker``) follows every storage that is alive at any moment and
reports the peak of the **second** step, split into parameters, buffers, gradients, optimizer state and activations.
Each op is exact in what it allocates, so the plan at the paper's batch costs seconds on a CPU.

Not counted: kernel workspaces (cuDNN, cuBLAS), the CUDA context (~0.5 GiB), the caching allocator's fragmentation,
``torch.compile``'s buffers, and the validation and sampling passes; ``fits`` therefore keeps 10 % of the device free.
The steps mirror the training modules (``lit/tokenizer_module.py``, ``lit/maskgit_module.py``,
``lit/uvim_module.py``): Stage I with its discriminator, LPIPS and R1 (the GAN phase, the larger one), Stage II with
the masked-token loss, UViM Stage I with the task loss and UViM Stage II with teacher forcing.

The peak is affine in the per-device batch ``b`` (state + ``b`` × activations per sample): two plans at ``b`` and
``2b`` give the largest batch that fits a device, and the accumulation that keeps the paper's global batch.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fsq_repro.errors import ConfigError
from fsq_repro.pipeline.stages import plain
from fsq_repro.quantizers.vq import VectorQuantizer

GIB = 2**30
HEADROOM = 0.9  # a plan "fits" a device when it needs at most 90 % of it (module docstring: what is not counted)


@dataclass
class StagePlan:
    """One stage's peak at ``batch`` per device, and its state / per-sample split (bytes)."""

    stage: str
    batch: int
    peak: int
    parts: dict[str, int]
    per_sample: float  # activations per sample: (peak(2b) − peak(b)) / b
    global_batch: int | None
    parameters: int

    @property
    def fixed(self) -> float:
        return self.peak - self.per_sample * self.batch

    def largest_batch(self, device_bytes: float) -> int:
        return max(0, int((HEADROOM * device_bytes - self.fixed) // self.per_sample)) if self.per_sample > 0 else 0

    def fits(self, device_bytes: float) -> bool:
        return self.peak <= HEADROOM * device_bytes

    def layout(self, device_bytes: float, devices: int) -> tuple[int, int] | None:
        """``(per-device batch, accumulation)`` that keeps ``global_batch`` on ``devices`` with the fewest
        micro-batches whose batch fits ``device_bytes`` (``global = batch × devices × accumulation``); None when
        the stage has no global batch, or not even one sample per device fits."""
        largest = self.largest_batch(device_bytes)
        if not self.global_batch or largest < 1 or self.global_batch % devices:
            return None
        per_step = self.global_batch // devices
        for k in range(1, per_step + 1):
            if per_step % k == 0 and per_step // k <= largest:
                return per_step // k, k
        return None


# --- building each stage on the meta device ------------------------------------------------------------------
def _autocast(precision: str):
    if str(precision).startswith("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)  # CPU autocast casts the same op classes as CUDA's
    if str(precision).startswith("16"):
        return torch.autocast("cpu", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def _optimizers(configured) -> list[torch.optim.Optimizer]:
    if isinstance(configured, dict):
        return [configured["optimizer"]]
    return list(configured) if isinstance(configured, (list, tuple)) else [configured]


def _stage1(cfg: DictConfig, batch: int, precision: str, device: str):
    """Stage I (``lit/tokenizer_module.py``) in its GAN phase: generator with LPIPS and the adversarial term, then
    the discriminator with R1; both fused Adam steps and the EMA."""
    from fsq_repro.lit.tokenizer_module import TokenizerModule
    from fsq_repro.losses.perceptual import LPIPSLoss

    stage_cfg = cfg.model.stage1
    with torch.device(device):
        tokenizer = instantiate(stage_cfg.tokenizer)(quantizer=instantiate(cfg.quantizer))
        loss_cfg = plain(cfg.loss)
        loss_cfg.pop("_target_", None)
        perceptual_weight = float(loss_cfg.get("perceptual_weight", 0.0))
        loss_cfg["perceptual_weight"] = 0.0  # the backbone file is not needed for shapes: built below
        loss = instantiate({"_target_": cfg.loss._target_, **loss_cfg})
        if perceptual_weight > 0:
            with warnings.catch_warnings():  # lpips loads its linear heads into meta tensors: a no-op, and it warns
                warnings.simplefilter("ignore")
                loss.perceptual, loss.perceptual_weight = LPIPSLoss(None, load_backbone=False), perceptual_weight
        discriminator = instantiate(stage_cfg.discriminator) if loss.gan_weight > 0 else None
        module = TokenizerModule(tokenizer, loss, discriminator, **plain(stage_cfg.optim))
    r = tokenizer.resolution
    step = int(loss.gan_start_step)  # the GAN phase: generator + discriminator + R1

    def train_step(opts: list[torch.optim.Optimizer]) -> None:
        images = torch.rand(batch, 3, r, r) * 2 - 1
        with _autocast(precision):
            recon, q = module.tokenizer(images)
            with module._frozen_discriminator():
                g = module.loss.generator_terms(images, recon, q.loss, step, module.discriminator)
        g["total"].backward()
        if module.discriminator is not None:
            with _autocast(precision):
                d = module.loss.discriminator_terms(images, recon, module.discriminator, step)
            d["total"].backward()
        for net in (module.tokenizer, module.discriminator):
            if net is not None:
                torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], float("inf"))
        for opt in opts:
            opt.step()
        module._zero_grads()
        module._update_ema(torch.ones((), dtype=torch.bool))

    return module, train_step, tokenizer


def _stage2(cfg: DictConfig, batch: int, precision: str, device: str):
    from fsq_repro.lit.maskgit_module import MaskGITModule
    from fsq_repro.nets.vqgan import downsampling_factor

    stage_cfg = cfg.model.stage2
    multipliers = cfg.model.stage1.tokenizer.channel_multipliers
    side = int(cfg.data.resolution) // downsampling_factor(multipliers)
    num_classes = int(cfg.data.get("num_classes") or 1000)
    with torch.device(device):
        codebook_size = instantiate(cfg.quantizer).codebook_size
        model = instantiate(stage_cfg.transformer)(
            codebook_size=codebook_size, num_classes=num_classes, num_tokens=side * side
        )
        module = MaskGITModule(
            model, **plain(stage_cfg.optim), total_steps=10, min_mask_rate=stage_cfg.min_mask_rate,
            mask_schedule=stage_cfg.mask_schedule, label_smoothing=stage_cfg.label_smoothing,
        )  # fmt: skip

    def train_step(opts: list[torch.optim.Optimizer]) -> None:
        tokens = torch.randint(0, codebook_size, (batch, side * side))
        labels = torch.randint(0, num_classes, (batch,))
        with _autocast(precision):
            loss, _, _ = module._masked_step({"tokens": tokens, "label": labels})
        loss.backward()
        opts[0].step()
        opts[0].zero_grad(set_to_none=True)

    return module, train_step, model


def _uvim_models(cfg: DictConfig):
    from fsq_repro.tasks.base import build_task

    if not cfg.data.get("task"):
        raise ConfigError(f"data={cfg.data.get('name')} has no `task` block: the UViM stages need a dense task")
    task = build_task(plain(cfg.data.task))
    autoencoder = instantiate(cfg.model.stage1.autoencoder)(
        quantizer=instantiate(cfg.quantizer), label_classes=task.label_classes, input_size=int(cfg.data.resolution),
        label_channels=task.label_channels,
    )  # fmt: skip
    return task, autoencoder


def _uvim_stage1(cfg: DictConfig, batch: int, precision: str, device: str):
    from fsq_repro.lit.uvim_module import UViMStage1Module

    stage_cfg = cfg.model.stage1
    with torch.device(device):
        task, model = _uvim_models(cfg)
        module = UViMStage1Module(model, task, **plain(stage_cfg.optim), total_steps=10)
    r = int(cfg.data.resolution)

    def train_step(opts: list[torch.optim.Optimizer]) -> None:
        labels = {k: torch.randint(0, c, (batch, r, r)) for k, c in task.label_classes.items()}
        labels |= {k: torch.rand(batch, c, r, r) for k, c in task.label_channels.items()}
        image = torch.rand(batch, 3, r, r) * 2 - 1
        with _autocast(precision):
            logits, q = module.model(labels, image)
            task_loss, _ = task.loss(logits, labels)
            loss = task_loss + q.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), module.grad_clip or float("inf"))
        opts[0].step()
        opts[0].zero_grad(set_to_none=True)

    return module, train_step, model


def _uvim_stage2(cfg: DictConfig, batch: int, precision: str, device: str):
    from fsq_repro.lit.uvim_module import UViMStage2Module

    stage_cfg = cfg.model.stage2
    with torch.device(device):
        _, stage1 = _uvim_models(cfg)
        model = instantiate(stage_cfg.lm)(codebook_size=stage1.codebook_size, seq_len=stage1.code_len,
                                          input_size=int(cfg.data.resolution))  # fmt: skip
        module = UViMStage2Module(model, **plain(stage_cfg.optim), total_steps=10)
    r, codebook_size, code_len = int(cfg.data.resolution), stage1.codebook_size, stage1.code_len

    def train_step(opts: list[torch.optim.Optimizer]) -> None:
        batch_ = {"image": torch.rand(batch, 3, r, r) * 2 - 1,
                  "tokens": torch.randint(0, codebook_size, (batch, code_len))}  # fmt: skip
        with _autocast(precision):
            loss, _ = module._step(batch_)
        loss.backward()
        opts[0].step()
        opts[0].zero_grad(set_to_none=True)

    return module, train_step, model


def _materialise(module: torch.nn.Module, init: bool = False) -> None:
    """Replace every meta parameter and buffer by an uninitialised CPU tensor of the ambient mode (fake tensors under
    ``FakeTensorMode``; ``init``: real ones filled with small random values, so that every page is touched).
    Unlike ``Module.to_empty`` it keeps a tensor shared by several modules shared (tied embeddings, and LPIPS
    registers its linear heads twice)."""
    memo: dict[int, torch.Tensor] = {}
    for mod in module.modules():
        for store in (mod._parameters, mod._buffers):
            for name, t in list(store.items()):
                if t is None:
                    continue
                if id(t) not in memo:
                    new = torch.empty_like(t, device="cpu")
                    if init:
                        new = new.normal_(0, 0.02) if new.is_floating_point() else new.zero_()
                    memo[id(t)] = torch.nn.Parameter(new, t.requires_grad) if store is mod._parameters else new
                store[name] = memo[id(t)]


BUILDERS: dict[str, Callable] = {"stage1": _stage1, "stage2": _stage2, "uvim_stage1": _uvim_stage1,
                                 "uvim_stage2": _uvim_stage2}  # fmt: skip


def per_device_batch(cfg: DictConfig, stage: str) -> int:
    """The configured per-device batch of ``stage`` (Stage I and UViM Stage I: ``data.batch_size``)."""
    if stage in ("stage1", "uvim_stage1"):
        return int(cfg.data.batch_size)
    return int(cfg.model.stage2.batch_size)


def plan_stages(cfg: DictConfig) -> list[str]:
    """The training stages of the experiment's ``stages`` list, in order."""
    return [s for s in cfg.stages if s in BUILDERS]


# --- measuring ----------------------------------------------------------------------------------------------
class LiveStorageBytes(TorchDispatchMode):
    """Bytes of all storages alive, and their peak: every op's output storage is counted once (views and in-place
    results share it) and uncounted when it is freed (a finaliser on the storage). Fake tensors report the storage
    size they would have; real tensors work the same way."""

    def __init__(self) -> None:
        super().__init__()
        self.alive: dict[int, weakref.finalize] = {}
        self.current = self.peak = 0

    def _free(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self.alive.pop(key, None)

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        if id(storage) in self.alive:
            return
        nbytes = storage.nbytes()
        self.alive[id(storage)] = weakref.finalize(storage, self._free, id(storage), nbytes)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def _state_bytes(module: torch.nn.Module, opts: list[torch.optim.Optimizer]) -> dict[str, int]:
    unique = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    size = lambda ts: sum(t.untyped_storage().nbytes() for t in ts)  # noqa: E731
    params = [t for t in unique.values() if isinstance(t, torch.nn.Parameter)]
    buffers = [t for t in unique.values() if not isinstance(t, torch.nn.Parameter)]
    state = [v for opt in opts for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    return {"parameters": size(params), "buffers": size(buffers), "optimizer state": size(state)}


def _cuda_attention(q, k, v, dropout_p: float, training: bool) -> torch.Tensor:
    """What ``nets.attention.attention`` keeps on CUDA: SDPA's fused kernel draws the dropout mask inside the
    kernel and keeps no probabilities; its memory is SDPA's without dropout (the CPU's written-out path keeps the
    ``(B, H, N, N)`` scores, probabilities and mask)."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def step_peak(cfg: DictConfig, stage: str, batch: int, precision: str | None = None, real: bool = False,
              cuda_kernels: bool | None = None) -> dict:  # fmt: skip
    """Peak bytes of the second training step of ``stage`` at ``batch`` per device: everything alive at its peak
    (parameters, EMA, buffers, optimizer state, gradients, the activations autograd keeps, temporaries). On fake
    tensors (no memory, no data), with the CUDA attention kernel; ``real=True`` runs the same two steps on real CPU
    tensors (the plan's test); ``cuda_kernels`` (default: not ``real``) plans the CUDA attention kernel.
    → ``{"peak", "parts": {parameters, buffers, optimizer state, activations and gradients}, "parameters"}``."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    if stage not in BUILDERS:
        raise ConfigError(f"no memory plan for stage {stage!r} (training stages: {', '.join(BUILDERS)})")
    precision = str(precision or cfg.trainer.get("precision") or "32-true")
    torch.manual_seed(0)
    module, train_step, model = BUILDERS[stage](cfg, int(batch), precision, "meta")  # no memory, no init
    live = LiveStorageBytes()
    cuda_kernels = not real if cuda_kernels is None else cuda_kernels
    as_cuda = mock.patch("fsq_repro.nets.transformer.attention", _cuda_attention) if cuda_kernels else None
    fake = contextlib.nullcontext() if real else FakeTensorMode(allow_non_fake_inputs=True)
    # UViM's codebook splitting decides on host copies of the cluster sizes (values fake tensors do not have);
    # it works on (C, d) copies, nothing to plan
    no_split = None if real else mock.patch.object(VectorQuantizer, "_split", lambda self: 0)
    with fake, as_cuda or contextlib.nullcontext(), no_split or contextlib.nullcontext(), live:
        _materialise(module, real)  # fake tensors: shapes and storage sizes, no data
        opts = _optimizers(module.configure_optimizers())
        train_step(opts)
        live.peak = live.current  # the second step: the optimizer state exists from its start, as in training
        train_step(opts)
        parts = _state_bytes(module, opts)
    parts["activations and gradients"] = live.peak - sum(parts.values())
    return {"peak": live.peak, "parts": parts, "parameters": sum(p.numel() for p in model.parameters())}


def plan_stage(cfg: DictConfig, stage: str, batch: int | None = None, precision: str | None = None) -> StagePlan:
    """The stage's plan at ``batch`` (default: the configured per-device batch) and its per-sample slope."""
    batch = int(batch or per_device_batch(cfg, stage))
    at_b = step_peak(cfg, stage, batch, precision)
    at_2b = step_peak(cfg, stage, 2 * batch, precision)
    global_batch = {"stage1": cfg.model.stage1, "uvim_stage1": cfg.model.stage1}.get(stage, cfg.model.stage2)
    return StagePlan(stage, batch, at_b["peak"], at_b["parts"], (at_2b["peak"] - at_b["peak"]) / batch,
                     int(global_batch.get("global_batch_size") or 0) or None, at_b["parameters"])  # fmt: skip


def with_checkpointing(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with ``model.stage1.checkpoint_activations=true``."""
    cfg = copy.deepcopy(cfg)
    cfg.model.stage1.checkpoint_activations = True
    return cfg


def compose_train_config(overrides: list[str]) -> DictConfig:
    """``train.py``'s config for ``overrides`` (e.g. ``["experiment=maskgit_fsq"]``), with the Hydra runtime values
    set so that every interpolation resolves, as in a real run."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    config_dir = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def check_device_memory(cfg: DictConfig, stage: str, batch_key: str, per_device: int, free_bytes: int,
                        total_bytes: int | None = None) -> StagePlan | None:  # fmt: skip
    """At a CUDA training start: stop in one line when the plan of ``stage`` at ``per_device`` does not fit
    ``free_bytes`` (``torch.cuda.mem_get_info()``), naming the per-device batch that fits (the global batch is kept
    by accumulation). ``memory_check=false`` skips it. → the plan, or None when skipped."""
    if stage not in BUILDERS or not cfg.get("memory_check", True):
        return None
    plan = plan_stage(cfg, stage, per_device)
    if plan.peak <= HEADROOM * free_bytes:
        return plan
    largest = plan.largest_batch(free_bytes)
    fix = (f"{batch_key}={largest} (the global batch stays: accumulation fills it in)" if largest >= 1 else
           "a GPU with more memory" + (", or model.stage1.checkpoint_activations=true"
                                        if stage == "stage1" and not cfg.model.stage1.get("checkpoint_activations")
                                        else ""))  # fmt: skip
    have = f"{free_bytes / GIB:.1f} GiB free" + (f" of {total_bytes / GIB:.1f}" if total_bytes else "")
    raise ConfigError(f"{stage}: {batch_key}={per_device} needs {plan.peak / GIB:.1f} GiB per device "
                      f"(scripts/plan_memory.py), this GPU has {have}: use {fix}")  # fmt: skip
