"""The FID feature extractor: the TF-ported Inception-V3 of the FID literature, as the ADM suite
(openai/guided-diffusion ``evaluations/evaluator.py``) reads it.

``InceptionFeatures`` is torch-fidelity's ``FeatureExtractorInceptionV3`` (TF1-style bilinear resize to 299, pool3
2048-d, 1008 logits without bias, fp32) plus the sFID layer. Weights come from
``metrics.inception_weights=/path/weights-inception-2015-12-05-6726825d.pth`` or torch's hub cache; absent → one-line
``ConfigError``. Only this extractor's distance is called **FID**.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fsq_repro.errors import ConfigError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def find_inception_weights(path: str | Path | None) -> Path:
    candidates = [Path(path)] if path else []
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"Inception-V3 weights not found ({', '.join(map(str, candidates))}): pass "
        f"metrics.inception_weights=/path/to/{INCEPTION_FILE} (torch-fidelity's TF-ported FID Inception)"
    )


SPATIAL_CHANNELS = 7  # ADM evaluator: spatial = mixed_6/conv[..., :7]


def spatial_features(activation: torch.Tensor, channels: int = SPATIAL_CHANNELS) -> torch.Tensor:
    """sFID features (ADM suite): the first ``channels`` channels of an NCHW map, flattened in TF's NHWC order —
    ``(B, C, 17, 17) → (B, 17·17·channels)`` with index ``(h·W + w)·channels + c`` (2 023 dims for Inception)."""
    return activation[:, :channels].permute(0, 2, 3, 1).reshape(len(activation), -1).float()


class InceptionFeatures(nn.Module):
    """``features`` pool3 (2048), ``logits`` (1008, unbiased) and ``spatial`` (2023, for sFID).

    The sFID layer: the ADM evaluator reads ``mixed_6/conv:0`` of the 2015 TF graph and keeps ``[..., :7]``. In that
    graph the 17×17 blocks are ``mixed_3`` (the grid reduction) then ``mixed_4 … mixed_7``, and inside each block
    ``conv`` is the 1×1 branch (the 7×7 towers are ``tower``/``tower_1``, the pool branch ``tower_2``); an op named
    after its scope is the ReLU after conv + batch norm. torch-fidelity's port names the same blocks after
    torchvision: ``Mixed_6a`` (= mixed_3), ``Mixed_6b`` … ``Mixed_6e`` (= mixed_4 … mixed_7), each with
    ``branch1x1`` = BasicConv2d (conv, bn, ReLU). So ``mixed_6/conv`` = ``Mixed_6d.branch1x1``'s output, 192 × 17 × 17
    (clean-fid's TorchScript port of the same graph cuts sFID at ``layers.mixed_6.conv`` too).
    """

    label = "FID"

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = find_inception_weights(weights)
        try:  # refuse anything but plain tensors before torch-fidelity unpickles the file itself
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ConfigError(f"{path} is not a plain Inception state dict ({type(err).__name__})") from None
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(path))
        self.name = f"inception-v3-tf:{path.name}"
        self._spatial: list[torch.Tensor] = []
        self.net.Mixed_6d.branch1x1.register_forward_hook(lambda _m, _i, out: self._spatial.append(out))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self._spatial.clear()
        features, logits = self.net(images)
        spatial = spatial_features(self._spatial.pop())
        return {"features": features.float(), "logits": logits.float(), "spatial": spatial}
