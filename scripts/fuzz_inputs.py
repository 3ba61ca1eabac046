"""Corrupt inputs, fuzzed: every file the project reads, damaged the ways disks, copies and users damage them, must
give a one-line error that names the file (``ConfigError``) — never a traceback, a hang or a silently wrong number.

    python scripts/fuzz_inputs.py [--seed 0] [--flips 3]

File types (each a real file written by the project's own writer from a tiny model, in a temp folder):
``tokenizer.pt``, ``maskgit.pt``, ``uvim_stage1.pt``, ``uvim_lm.pt``, a Lightning-style checkpoint, the token
cache's ``meta.json`` and reference statistics ``.npz`` (``samples.npz`` is only written here; the ADM evaluator
reads it). Variants of each: truncated to half, ``--flips`` copies with 64 random bytes flipped, zero-length,
wrong format (a PNG / plain text under the name), a file of another type under its name, and a directory in its
place. A flipped file may still load when the flip hit bytes that carry nothing; then what it loads must equal the
original (else it is a silently wrong number).

Ends with ``fuzz: M inputs, M one-line errors or identical loads, 0 tracebacks`` (exit 1 when any traceback or
silent difference).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

from fsq_repro.errors import ConfigError


def writers(folder: Path) -> dict[str, tuple[Path, callable]]:
    """``{type: (good file, load(path) -> comparable)}`` written by the project's own writers from tiny models."""
    from fsq_repro import artifacts
    from fsq_repro.data import token_cache
    from fsq_repro.data.token_cache import check_cache
    from fsq_repro.metrics.fid import load_statistics, save_statistics
    from fsq_repro.nets.tokenizer import Tokenizer
    from fsq_repro.nets.transformer import MaskGITTransformer
    from fsq_repro.nets.uvim_lm import UViMLanguageModel
    from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder
    from fsq_repro.quantizers import FSQ
    from fsq_repro.tasks.base import build_task

    torch.manual_seed(0)
    state = lambda model: {k: v.clone() for k, v in model.state_dict().items()}  # noqa: E731
    tok = Tokenizer(FSQ([5, 3]), resolution=16, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1, groups=4)
    artifacts.save_tokenizer(folder / "tokenizer.pt", tok)
    gpt = MaskGITTransformer(15, 3, 64, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    artifacts.save_maskgit(folder / "maskgit.pt", gpt, tokenizer_hash="abc")
    task = build_task({"name": "depth", "num_bins": 8})
    ae = GuidingCodeAutoencoder(FSQ([5, 3]), task.label_classes, input_size=16, patch_size=8, code_len=4, width=16,
                                enc_depth=1, dec_depth=1, mlp_dim=32, num_heads=2)  # fmt: skip
    artifacts.save_uvim_stage1(folder / "uvim_stage1.pt", ae, task.config())
    lm = UViMLanguageModel(15, seq_len=4, input_size=16, patch_size=8, width=16, num_layers=1, num_heads=2, mlp_dim=32)
    artifacts.save_uvim_lm(folder / "uvim_lm.pt", lm, stage1_hash="abc")
    torch.save({"state_dict": state(tok), "global_step": 3, "tokenizer_config": tok.config()}, folder / "last.ckpt")
    cache = folder / "tokens"
    cache.mkdir()
    meta = {"format": token_cache.FORMAT, "complete": True, "tokenizer_hash": "abc", "data_fingerprint": "d"}
    (cache / "meta.json").write_text(json.dumps(meta))
    save_statistics(folder / "ref.npz", np.zeros(4), np.eye(4))

    return {
        "tokenizer.pt": (folder / "tokenizer.pt", lambda p: state(artifacts.load_tokenizer(p))),
        "maskgit.pt": (folder / "maskgit.pt", lambda p: state(artifacts.load_maskgit(p))),
        "uvim_stage1.pt": (folder / "uvim_stage1.pt", lambda p: state(artifacts.load_uvim_stage1(p)[0])),
        "uvim_lm.pt": (folder / "uvim_lm.pt", lambda p: state(artifacts.load_uvim_lm(p))),
        "last.ckpt": (folder / "last.ckpt", lambda p: artifacts.read_checkpoint(p)["state_dict"]),
        "meta.json": (cache / "meta.json", lambda p: check_cache(p.parent)),
        "ref.npz": (folder / "ref.npz", load_statistics),  # ours, or an ADM reference batch
    }


def variants(data: bytes, other: bytes, rng: random.Random, flips: int) -> dict[str, bytes | None]:
    """Damaged copies of ``data`` (``None`` = a directory in the file's place)."""
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(png, format="PNG")
    out = {"truncated": data[: len(data) // 2], "zero-length": b"", "png": png.getvalue(),
           "text": b"this is not the file you are looking for\n", "other type": other, "directory": None}  # fmt: skip
    for k in range(flips):
        flipped = bytearray(data)
        for i in rng.sample(range(len(data)), min(64, len(data))):
            flipped[i] ^= 0xFF
        out[f"bit flips {k}"] = bytes(flipped)
    return out


def equal(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor | np.ndarray):
        return isinstance(b, type(a)) and a.shape == b.shape and bool((a == b).all())
    return a == b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flips", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total = ok = 0
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = writers(folder)
        names = list(files)
        for name, (good, load) in files.items():
            reference = load(good)
            data = good.read_bytes()
            other = files[names[(names.index(name) + 1) % len(names)]][0].read_bytes()
            for kind, damaged in variants(data, other, rng, args.flips).items():
                total += 1
                target = folder / "fuzz" / kind.replace(" ", "_") / good.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                if name == "meta.json":
                    for sibling in good.parent.iterdir():
                        if sibling.name != "meta.json":
                            (target.parent / sibling.name).write_bytes(sibling.read_bytes())
                if damaged is None:
                    target.mkdir()
                else:
                    target.write_bytes(damaged)
                try:
                    loaded = load(target)
                except ConfigError as err:
                    lines = str(err).splitlines()
                    if len(lines) == 1 and str(target) in lines[0]:
                        ok += 1
                    else:
                        failures.append(f"{name} / {kind}: error not one line naming the file: {err}")
                    continue
                except Exception:
                    failures.append(f"{name} / {kind}: traceback\n" + traceback.format_exc(limit=3))
                    continue
                if equal(loaded, reference):
                    ok += 1  # the damage hit bytes that carry nothing (padding, an unused record)
                else:
                    failures.append(f"{name} / {kind}: loaded, with different contents (a silently wrong number)")
    for failure in failures:
        print(failure)
    bad = len(failures)
    print(f"fuzz: {total} inputs, {ok} one-line errors or identical loads, {bad} tracebacks or silent differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
