"""The Stage I → Stage II handoff: ``tokenizer.pt`` (FSQ paper §4.1 two-stage setup), an exported file
rather than a training checkpoint.

The file holds plain containers and tensors only — ``{"format", "config", "state_dict", "levels" | "codebook_size",
"image_size", "token_grid", "data_fingerprint", "code_version", "extra"}`` — so it loads with
``torch.load(weights_only=True)``: no pickle of project classes, no Lightning checkpoint of the whole GAN.
It is written to a temporary name and renamed, so a crash never leaves a half-written tokenizer behind.

    tok = load_tokenizer("tokenizer.pt")
    tokens = tok.encode(images)      # (B, h, w) int64
    images = tok.decode(tokens)      # (B, 3, H, W) in [−1, 1]
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from fsq_repro import __version__
from fsq_repro.atomic import atomic_torch_save
from fsq_repro.errors import ConfigError, first_line
from fsq_repro.nets.tokenizer import Tokenizer

FORMAT = "fsq_repro.tokenizer/v1"


def save_payload(path: str | Path, fmt: str, model: torch.nn.Module, extra: dict | None = None, **fields) -> Path:
    """Every exported file's shape: ``{"format", "config", "state_dict" (CPU copies), "code_version", "extra"}`` plus
    the file's own ``fields`` — plain containers and tensors only, so it loads with ``weights_only=True``."""
    payload = {
        "format": fmt,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        **fields,
        "code_version": __version__,
        "extra": extra or {},
    }
    return atomic_torch_save(payload, path)


def save_tokenizer(
    path: str | Path, tokenizer: Tokenizer, data_fingerprint: str = "", extra: dict | None = None
) -> Path:
    """Write ``tokenizer`` (weights as given — pass the EMA copy) to ``path``."""
    return save_payload(path, FORMAT, tokenizer, extra, codebook_size=tokenizer.codebook_size,
                        levels=tokenizer.config()["quantizer"].get("levels"), image_size=tokenizer.resolution,
                        token_grid=list(tokenizer.token_grid), data_fingerprint=data_fingerprint)  # fmt: skip


def check_zip_crc(path: Path) -> None:
    """``torch.save`` writes a zip whose records carry CRC-32s, but ``torch.load`` does not check them: a flipped bit
    in a tensor's bytes loads as a different weight. Check every record's CRC (one read of the file, ~1 GB/s);
    ``ValueError`` naming the first damaged record. Files that are not zips (legacy format) and files saved with
    CRCs disabled (``torch.serialization.set_crc32_options(False)``: every CRC 0) are left to ``torch.load``."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad is not None and any(info.CRC for info in archive.infolist()):
            raise ValueError(f"record {bad} fails its CRC-32: the file was damaged after it was written")


def safe_load(path: str | Path, name: str, what: str, missing_hint: str = "", mmap: bool = False) -> object:
    """``torch.load(weights_only=True)`` after ``check_zip_crc``; a missing, corrupt, bit-flipped or truncated file (or
    one that needs pickle) is a one-line ``ConfigError`` naming the option, e.g. ``tokenizer=<path> is not a readable
    ...``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{name}={path} does not exist" + (f" ({missing_hint})" if missing_hint else ""))
    try:
        check_zip_crc(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # any damage (truncation, text, a flipped byte): one line naming the file
        first = first_line(err, 200)
        raise ConfigError(f"{name}={path} is not a readable {what} ({first})") from None


def read_payload(path: str | Path, fmt: str, name: str, what: str, missing_hint: str) -> dict:
    """A project file (``{"format": fmt, ...}``) loaded safely; a foreign file is a one-line ``ConfigError``."""
    payload = safe_load(path, name, what, missing_hint)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ConfigError(f"{name}={path} is not a {fmt} file")
    return payload


def read_tokenizer_file(path: str | Path) -> dict:
    """The raw ``tokenizer.pt`` payload (``weights_only=True``)."""
    return read_payload(path, FORMAT, "tokenizer", "tokenizer file", "export one with scripts/export_tokenizer.py")


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild the exported tokenizer in eval mode."""
    payload = read_tokenizer_file(path)
    tokenizer = Tokenizer.from_config(payload["config"])
    tokenizer.load_state_dict(payload["state_dict"])
    tokenizer.data_fingerprint = payload.get("data_fingerprint", "")
    return tokenizer.to(device).eval()


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """A Lightning checkpoint loaded with ``weights_only=True``; one-line ``ConfigError`` when unreadable."""
    ckpt = safe_load(path, "ckpt", "checkpoint", mmap=mmap)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt={path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def export_tokenizer_checkpoint(ckpt_path: str | Path, out_path: str | Path, use_ema: bool = True) -> Path:
    """Write ``tokenizer.pt`` from a Stage I Lightning checkpoint (its EMA generator weights by default)."""
    ckpt = read_checkpoint(ckpt_path)
    if "tokenizer_config" not in ckpt:
        raise ConfigError(f"ckpt={ckpt_path} is not a Stage I (TokenizerModule) checkpoint")
    prefix = "ema." if use_ema else "tokenizer."
    state = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    tokenizer = Tokenizer.from_config(ckpt["tokenizer_config"])
    tokenizer.load_state_dict(state)
    extra = {"source_checkpoint": str(ckpt_path), "global_step": int(ckpt.get("global_step", 0)), "ema": use_ema}
    return save_tokenizer(out_path, tokenizer, ckpt.get("data_fingerprint", ""), extra=extra)


MASKGIT_FORMAT = "fsq_repro.maskgit/v1"


def save_maskgit(path: str | Path, model: torch.nn.Module, tokenizer_hash: str, extra: dict | None = None) -> Path:
    """Write the Stage II transformer (config + weights + the hash of the tokenizer whose tokens it models)."""
    return save_payload(path, MASKGIT_FORMAT, model, extra, tokenizer_hash=tokenizer_hash)


def load_maskgit(path: str | Path, tokenizer_hash: str | None = None, device: str | torch.device = "cpu"):
    """Rebuild the Stage II transformer (eval mode); with ``tokenizer_hash``, refuse one trained on other tokens."""
    from fsq_repro.nets.transformer import MaskGITTransformer

    payload = read_payload(path, MASKGIT_FORMAT, "maskgit", "Stage II file", "train Stage II first: stages=[stage2]")
    if tokenizer_hash and payload["tokenizer_hash"] != tokenizer_hash:
        raise ConfigError(
            f"{path} models tokens of tokenizer {payload['tokenizer_hash']}, "
            f"not of the given tokenizer {tokenizer_hash}"
        )
    model = MaskGITTransformer(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.tokenizer_hash = payload["tokenizer_hash"]
    return model.to(device).eval()


UVIM_STAGE1_FORMAT = "fsq_repro.uvim_stage1/v1"
UVIM_LM_FORMAT = "fsq_repro.uvim_lm/v1"


def save_uvim_stage1(path: str | Path, model: torch.nn.Module, task_config: dict, data_fingerprint: str = "",
                     extra: dict | None = None) -> Path:  # fmt: skip
    """UViM's Stage I → Stage II handoff (FSQ paper §4.4): the guiding-code autoencoder's config + weights, the task
    it encodes (e.g. depth bins), the bottleneck (levels or codebook size) and the data fingerprint."""
    return save_payload(path, UVIM_STAGE1_FORMAT, model, extra, task=dict(task_config),
                        codebook_size=model.codebook_size, levels=model.config()["quantizer"].get("levels"),
                        data_fingerprint=data_fingerprint)  # fmt: skip


def load_uvim_stage1(path: str | Path, device: str | torch.device = "cpu"):
    """``(GuidingCodeAutoencoder in eval mode, task)`` from ``uvim_stage1.pt`` (``weights_only=True``)."""
    from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder
    from fsq_repro.tasks.base import build_task

    payload = read_payload(path, UVIM_STAGE1_FORMAT, "uvim_stage1", "UViM Stage I file",
                           "train it first: stages=[uvim_stage1]")  # fmt: skip
    model = GuidingCodeAutoencoder.from_config(payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.data_fingerprint = payload.get("data_fingerprint", "")
    return model.to(device).eval(), build_task(payload["task"])


def save_uvim_lm(path: str | Path, model: torch.nn.Module, stage1_hash: str, extra: dict | None = None) -> Path:
    """UViM's Stage II language model (config + weights + the hash of the Stage I file whose codes it predicts)."""
    return save_payload(path, UVIM_LM_FORMAT, model, extra, stage1_hash=stage1_hash)


def load_uvim_lm(path: str | Path, stage1_hash: str | None = None, device: str | torch.device = "cpu"):
    """The Stage II model in eval mode; with ``stage1_hash``, refuse one trained on another Stage I's codes."""
    from fsq_repro.nets.uvim_lm import UViMLanguageModel

    payload = read_payload(
        path, UVIM_LM_FORMAT, "uvim_lm", "UViM Stage II file", "train it first: stages=[uvim_stage2]"
    )
    if stage1_hash and payload["stage1_hash"] != stage1_hash:
        raise ConfigError(f"{path} predicts codes of Stage I {payload['stage1_hash']}, not of {stage1_hash}")
    model = UViMLanguageModel(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
