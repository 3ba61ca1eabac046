"""Stage I training step vs the convolution limit of the same machine, at the step's own convolutions (target
≥ 0.4 at 128 px).

    python scripts/bench_stage1_flops.py [--model tiny|maskgit_vqgan] [--resolution 128] [--batch 16] [--steps 5]

- The step: one generator step as the CPU experiments train it (FSQ paper §4.1 tokenizer, ``quantizer=fsq_1000``):
  encoder → FSQ → decoder under bf16 autocast (float32 on a CPU without fast bf16: ``fsq_repro/hardware.py``), L2
  loss, backward, gradient clipping, Adam (no GAN / LPIPS: the CPU configs run without them). Its FLOPs are
  **counted** with ``torch.utils.flop_counter.FlopCounterMode``.
- The limit: every convolution forward and backward the step dispatches (``aten.convolution``,
  ``aten.convolution_backward``) is recorded with its arguments' shapes, dtypes and strides (a
  ``TorchDispatchMode``) and replayed alone on random tensors of the same layout — achieved FLOP/s at exactly the
  model's convolutions (their FLOPs counted the same way).
- ``ratio = (step FLOPs / step time) / (conv FLOPs / conv time)``, printed last; the step and every recorded
  convolution are timed round-robin (``interleaved_medians``), so the shared machine's drift hits both alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_sampler import interleaved_medians  # the scripts/ folder is on sys.path when a script runs
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from fsq_repro.hardware import autocast_dtype

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONV_OPS = {torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default}


def _like(t: torch.Tensor) -> torch.Tensor:
    """A random tensor with ``t``'s shape, dtype, device and strides."""
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).normal_()


class ConvRecorder(TorchDispatchMode):
    """Keeps a replayable copy (fresh random operands) of every convolution dispatched inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in CONV_OPS:
            replay = [_like(a) if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append(lambda f=func, a=replay: f(*a))
        return func(*args, **(kwargs or {}))


def build(model: str, resolution: int, device: torch.device):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"model/stage1={model}", f"data.resolution={resolution}",
                                          "quantizer=fsq_1000"])  # fmt: skip
    return instantiate(cfg.model.stage1.tokenizer)(quantizer=instantiate(cfg.quantizer)).to(device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny", help="a model/stage1 config: tiny, maskgit_vqgan")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer = build(args.model, args.resolution, device)
    opt = torch.optim.Adam(tokenizer.parameters(), 1e-4, betas=(0.9, 0.99))
    x = torch.rand(args.batch, 3, args.resolution, args.resolution, device=device) * 2 - 1

    dtype = autocast_dtype(device.type)  # None: float32, no autocast

    def step() -> None:
        with torch.autocast(device.type, dtype or torch.bfloat16, enabled=dtype is not None):
            recon, q = tokenizer(x)
            loss = (recon.float() - x).pow(2).mean() + q.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), 1.0)
        opt.step()

    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    recorder = ConvRecorder()
    with recorder:
        step()
    with FlopCounterMode(display=False) as conv_counter:
        for call in recorder.calls:
            call()
    conv_flops = conv_counter.get_total_flops()
    convs = {f"conv{i}": call for i, call in enumerate(recorder.calls)}
    medians = interleaved_medians({"step": step, **convs}, args.steps, device)
    step_time, conv_time = medians["step"], sum(medians[name] for name in convs)
    achieved, limit = flops / step_time / 1e9, conv_flops / conv_time / 1e9
    print(f"{args.model} @ {args.resolution} px, batch {args.batch}, {dtype or torch.float32}, FSQ [8,5,5,5]: "
          f"{sum(p.numel() for p in tokenizer.parameters()) / 1e6:.2f} M parameters")  # fmt: skip
    print(f"step: {step_time * 1e3:.1f} ms (median of {args.steps}, interleaved with the convolutions), "
          f"{flops / 1e9:.2f} GFLOP counted -> {achieved:.1f} GFLOP/s")  # fmt: skip
    print(f"its {len(convs)} convolutions (forward + backward) alone: {conv_flops / 1e9:.2f} GFLOP in "
          f"{conv_time * 1e3:.1f} ms -> {limit:.1f} GFLOP/s")  # fmt: skip
    print(f"ratio: {achieved / limit:.2f}")


if __name__ == "__main__":
    main()
