"""Perceptual loss: LPIPS-VGG (Zhang et al. 2018), the common substitute for MaskGIT's ResNet-50 feature loss
(FSQ paper §4.1 trains Stage I with "L2 + perceptual + GAN"; weight 0.1 as google-research/maskgit
``maskgit/configs/vqgan_config.py``).

The ``lpips`` package ships its calibrated linear heads, but its VGG-16 backbone would be downloaded from
torchvision. Nothing can be downloaded here, so the backbone comes from a local file: the torchvision VGG-16
ImageNet state dict (``vgg16-397923af.pth``), passed as ``loss.perceptual.weights=/path``. A missing file is a
one-line ``ConfigError`` that says what to pass (or to set the perceptual weight to 0) — never random features.

Shapes: ``forward(x, y: (B, 3, H, W) in [−1, 1]) -> ()`` mean LPIPS distance.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fsq_repro.errors import ConfigError

HINT = (
    "pass loss.perceptual.weights=/path/to/vgg16-397923af.pth (torchvision VGG-16 ImageNet weights) "
    "or set loss.perceptual_weight=0"
)


def load_vgg16_features(weights: str | Path | None) -> nn.Sequential:
    """torchvision VGG-16 ``features`` from a local state-dict file (``weights_only=True``); the file may hold the
    whole VGG-16 or only its ``features.*`` entries."""
    from torchvision.models.vgg import cfgs, make_layers

    if not weights or not Path(weights).is_file():
        raise ConfigError(f"LPIPS needs VGG-16 weights, {weights!r} is not a file: {HINT}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    features = make_layers(cfgs["D"], batch_norm=False)
    feature_state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(feature_state)
    except RuntimeError as err:
        raise ConfigError(f"{weights} is not a torchvision VGG-16 state dict ({str(err).splitlines()[0]})") from None
    return features


class LPIPSLoss(nn.Module):
    """LPIPS-VGG with a locally loaded backbone; frozen, eval mode, fp32. ``load_backbone=False`` leaves the backbone
    random: only for the memory plan (``fsq_repro/pipeline/memory_plan.py``), which needs shapes, never values."""

    def __init__(self, weights: str | Path | None, load_backbone: bool = True) -> None:
        super().__init__()
        import lpips

        features = load_vgg16_features(weights) if load_backbone else None
        self.lpips = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        for slice_module in (getattr(self.lpips.net, f"slice{i}") for i in range(1, 6)):
            for name, layer in slice_module.named_children() if features is not None else ():
                layer.load_state_dict(features[int(name)].state_dict())
        self.lpips.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.lpips.eval()  # dropout in the linear heads stays off
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.lpips(x.float(), y.float(), normalize=False).mean()
