"""The Stage I → Stage II handoff: ``tokenizer.pt`` (FSQ paper §4.1 two-stage setup; house style rule 5).

The file holds plain containers and tensors only — ``{"format", "config", "state_dict", "levels" | "codebook_size",
"image_size", "token_grid", "data_fingerprint", "code_version", "extra"}`` — so it loads with
``torch.load(weights_only=True)``: no pickle of project classes, no Lightning checkpoint of the whole GAN.
It is written to a temporary name and renamed, so a crash never leaves a half-written tokenizer behind.

    tok = load_tokenizer("tokenizer.pt")
    tokens = tok.encode(images)      # (B, h, w) int64
    images = tok.decode(tokens)      # (B, 3, H, W) in [−1, 1]
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from fsq_repro import __version__
from fsq_repro.errors import ConfigError
from fsq_repro.nets.tokenizer import Tokenizer

FORMAT = "fsq_repro.tokenizer/v1"


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """``torch.save`` to ``path.tmp`` next to the target, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_tokenizer(
    path: str | Path, tokenizer: Tokenizer, data_fingerprint: str = "", extra: dict | None = None
) -> Path:
    """Write ``tokenizer`` (weights as given — pass the EMA copy) to ``path``."""
    config = tokenizer.config()
    payload = {
        "format": FORMAT,
        "config": config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in tokenizer.state_dict().items()},
        "codebook_size": tokenizer.codebook_size,
        "levels": config["quantizer"].get("levels"),
        "image_size": tokenizer.resolution,
        "token_grid": list(tokenizer.token_grid),
        "data_fingerprint": data_fingerprint,
        "code_version": __version__,
        "extra": extra or {},
    }
    return atomic_torch_save(payload, path)


def read_tokenizer_file(path: str | Path) -> dict:
    """The raw payload, loaded with ``weights_only=True``; one-line ``ConfigError`` on a missing/corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"tokenizer={path} does not exist (export one with scripts/export_tokenizer.py)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as err:
        raise ConfigError(f"tokenizer={path} is not a readable tokenizer file ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"tokenizer={path} is not a {FORMAT} file")
    return payload


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild the exported tokenizer in eval mode."""
    payload = read_tokenizer_file(path)
    tokenizer = Tokenizer.from_config(payload["config"])
    tokenizer.load_state_dict(payload["state_dict"])
    tokenizer.data_fingerprint = payload.get("data_fingerprint", "")
    return tokenizer.to(device).eval()
