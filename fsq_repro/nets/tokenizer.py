"""The Stage I tokenizer: encoder → quantizer (FSQ or VQ, injected) → decoder (FSQ paper Fig. 1 / §4.1).

The same class serves both bottlenecks: the encoder projects to ``quantizer.dim`` channels and the decoder reads
``quantizer.dim`` channels, so swapping ``quantizer=fsq_1000`` for ``quantizer=vq_1024`` changes nothing else.

Shapes: ``forward(x: (B, 3, H, W) in [−1, 1]) -> (recon (B, 3, H, W), QuantizerOutput with codes (B, h, w, d),
indices (B, h, w))``; ``encode(x) -> (B, h, w) int64``; ``decode(indices) -> (B, 3, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fsq_repro.errors import ConfigError
from fsq_repro.nets.vqgan import Decoder, Encoder, downsampling_factor
from fsq_repro.quantizers import Quantizer, QuantizerOutput, build_quantizer


class Tokenizer(nn.Module):
    def __init__(
        self,
        quantizer: Quantizer,
        resolution: int = 256,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        groups: int = 32,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.net_config = {
            "resolution": int(resolution),
            "base_channels": int(base_channels),
            "channel_multipliers": [int(m) for m in channel_multipliers],
            "num_res_blocks": int(num_res_blocks),
            "groups": int(groups),
        }
        factor = downsampling_factor(channel_multipliers)
        if resolution % factor:
            raise ConfigError(
                f"resolution {resolution} is not divisible by the tokenizer's downsampling factor {factor} "
                f"(channel_multipliers={list(channel_multipliers)})"
            )
        self.resolution = int(resolution)
        self.token_grid = (resolution // factor, resolution // factor)
        self.quantizer = quantizer
        kwargs = dict(
            base_channels=base_channels,
            channel_multipliers=channel_multipliers,
            num_res_blocks=num_res_blocks,
            groups=groups,
        )
        self.encoder = Encoder(out_dim=quantizer.dim, **kwargs)
        self.decoder = Decoder(in_dim=quantizer.dim, **kwargs)
        # a training-memory choice, not part of the exported net config: recompute the res blocks in the backward
        self.encoder.checkpoint_activations = self.decoder.checkpoint_activations = bool(checkpoint_activations)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        z = self.encoder(x).permute(0, 2, 3, 1)  # (B, h, w, d): quantizers are channel-last
        return self.quantizer(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantize(x)
        return self.decoder(q.codes.permute(0, 3, 1, 2).contiguous()), q

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [−1, 1] → ``(B, h, w)`` int64 tokens (no quantizer losses computed)."""
        return self.quantizer.indices(self.encoder(images).permute(0, 2, 3, 1))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, h, w)`` tokens → ``(B, 3, H, W)`` images (not clamped)."""
        codes = self.quantizer.indexes_to_codes(indices)
        # contiguous NCHW in both paths: the same conv kernels, so decode(encode(x)) == forward(x) bit for bit
        return self.decoder(codes.permute(0, 3, 1, 2).contiguous())

    def config(self) -> dict:
        """Plain containers only (safe for ``torch.load(weights_only=True)``)."""
        return {"net": dict(self.net_config), "quantizer": self.quantizer.config()}

    @classmethod
    def from_config(cls, config: dict) -> Tokenizer:
        return cls(build_quantizer(config["quantizer"]), **config["net"])
