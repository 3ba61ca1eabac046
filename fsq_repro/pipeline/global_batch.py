"""The global batch of a training stage (FSQ paper §4.3: Stage I 512, Stage II 256) as the configured quantity.

``model.stage1|stage2.global_batch_size = per-device batch × devices × nodes × accumulate_grad_batches``:
``resolve_global_batch`` (pure arithmetic) derives the accumulation, or checks an explicit one, and names every number
in a one-line ``ConfigError`` when they do not add up; ``configure_global_batch`` applies it to a built Trainer and
module (Lightning's accumulation for Stage II, the module's own for the manually optimised Stage I) and prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig

from fsq_repro.errors import ConfigError


def device_count(devices: int | str | Sequence[int]) -> int:
    """Number of devices a Trainer's ``devices`` argument names: ``8`` → 8, ``[0, 3]`` / ``"0,3"`` → 2, ``"4"`` → 4.
    ``"auto"`` / ``-1`` depend on the machine: take ``trainer.num_devices`` from a built Trainer instead."""
    if isinstance(devices, str):
        devices = devices.strip()
        if "," in devices or devices.startswith("["):
            return len([d for d in devices.strip("[]").split(",") if d.strip()])
        if devices.lstrip("-").isdigit():
            return device_count(int(devices))
        raise ValueError(f"devices={devices!r} depends on the machine: read trainer.num_devices")
    if isinstance(devices, Sequence):
        return len(devices)
    if int(devices) < 1:
        raise ValueError(f"devices={devices} depends on the machine: read trainer.num_devices")
    return int(devices)


@dataclass(frozen=True)
class GlobalBatch:
    """``global_batch_size = per_device × devices × num_nodes × accumulate_grad_batches`` of one stage."""

    stage: str
    global_batch_size: int
    per_device: int
    devices: int
    num_nodes: int
    accumulate_grad_batches: int

    def describe(self) -> str:
        return (
            f"{self.stage}: global batch {self.global_batch_size} = {self.per_device} per device × "
            f"{_devices(self.devices)} × {self.num_nodes} node(s) × {self.accumulate_grad_batches} accumulation"
        )


def _devices(n: int) -> str:
    return f"{n} device" if n == 1 else f"{n} devices"


def resolve_global_batch(
    stage: str,
    global_batch_size: int | None,
    per_device: int,
    devices: int | str | Sequence[int],
    num_nodes: int = 1,
    accumulate_grad_batches: int | None = None,
    batch_key: str = "data.batch_size",
) -> GlobalBatch:
    """The gradient accumulation that makes ``per_device × devices × num_nodes × accumulation`` equal the configured
    ``model.<stage>.global_batch_size`` (pure arithmetic, no Lightning).

    - ``accumulate_grad_batches`` None (``trainer.accumulate_grad_batches: null``): derived, and the global batch
      must be a multiple of ``per_device × devices × num_nodes``;
    - given: checked against the global batch instead of derived;
    - ``global_batch_size`` None: no target, the global batch is the product (accumulation given or 1).

    Anything that does not add up is a one-line ``ConfigError`` naming every number and the keys to set."""
    global_key = f"model.{stage}.global_batch_size"
    devices, num_nodes, per_device = device_count(devices), int(num_nodes), int(per_device)
    if per_device < 1 or num_nodes < 1:
        raise ConfigError(f"{batch_key}={per_device} and trainer.num_nodes={num_nodes} must be at least 1")
    base = per_device * devices * num_nodes
    product = f"{batch_key}={per_device} × {_devices(devices)} × {num_nodes} node(s)"
    if accumulate_grad_batches is not None and int(accumulate_grad_batches) < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches={accumulate_grad_batches} must be at least 1 (or null)")
    if global_batch_size is None:
        k = int(accumulate_grad_batches or 1)
        return GlobalBatch(stage, base * k, per_device, devices, num_nodes, k)
    target = int(global_batch_size)
    if target < 1:
        raise ConfigError(f"{global_key}={global_batch_size} must be at least 1 (or null: no accumulation)")
    if accumulate_grad_batches is not None:
        k = int(accumulate_grad_batches)
        if base * k != target:
            raise ConfigError(
                f"{product} × trainer.accumulate_grad_batches={k} = {base * k}, but {global_key}={target}: set "
                f"trainer.accumulate_grad_batches=null to derive it, or {batch_key} / trainer.devices"
            )
        return GlobalBatch(stage, target, per_device, devices, num_nodes, k)
    if target % base:
        raise ConfigError(
            f"{global_key}={target} is not a multiple of {product} = {base}: "
            f"set {batch_key} or trainer.devices so it divides"
        )
    return GlobalBatch(stage, target, per_device, devices, num_nodes, target // base)


def configure_global_batch(
    cfg: DictConfig,
    stage: str,
    trainer,
    module,
    batch_key: str,
    per_device: int,
    model_key: str | None = None,
) -> GlobalBatch:
    """Resolve the stage's global batch on the built Trainer (its ``num_devices`` / ``num_nodes``, so ``devices``
    may be a list or ``auto``), print it, and apply the accumulation: Lightning's ``accumulate_grad_batches`` for an
    automatically optimised module (Stage II), the module's own ``accumulate_grad_batches`` for a manually
    optimised one (Stage I: Lightning refuses to accumulate there). Lightning counts ``val_check_interval`` in
    batches (and, under manual optimisation, ``log_every_n_steps`` too): both are scaled so they count optimizer
    steps as ``max_steps`` does. ``model_key``: the ``model.<key>`` block holding ``global_batch_size`` when it is
    not named like the stage (UViM's ``uvim_stage1`` reads ``model.stage1``)."""
    layout = resolve_global_batch(
        stage,
        cfg.model[model_key or stage].get("global_batch_size"),
        per_device,
        trainer.num_devices,
        trainer.num_nodes,
        cfg.trainer.get("accumulate_grad_batches"),
        batch_key=batch_key,
    )
    k, note = layout.accumulate_grad_batches, ""
    if trainer.fast_dev_run and k > 1:  # a smoke test should reach the optimizer step within its few batches
        k, note = 1, " (fast_dev_run: no accumulation)"
    if module.automatic_optimization:
        trainer.accumulate_grad_batches = k
    else:
        module.accumulate_grad_batches = k
        if trainer.log_every_n_steps:
            trainer.log_every_n_steps *= k
    if k > 1 and isinstance(trainer.val_check_interval, int):
        trainer.val_check_interval *= k
    if trainer.is_global_zero:
        print(f"  {layout.describe()}{note}", flush=True)
    root = getattr(trainer.strategy, "root_device", None)
    if root is not None and root.type == "cuda":  # does the per-device batch fit? (one line naming one that does)
        import torch

        from fsq_repro.pipeline.memory_plan import check_device_memory

        free, total = torch.cuda.mem_get_info(root)
        plan = check_device_memory(cfg, stage, batch_key, per_device, free, total)
        if plan is not None and trainer.is_global_zero:
            print(f"  memory plan {stage}: {plan.peak / 2**30:.2f} GiB at {per_device} per device", flush=True)
    return layout
