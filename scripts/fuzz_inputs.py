"""Corrupt inputs, fuzzed: every file the project reads, damaged the ways disks, copies and users damage them, must
give a one-line error that names the file (``ConfigError``), or — for the images of a dataset, by contract — be
skipped and counted; never a traceback, a hang or a silently wrong number.

    python scripts/fuzz_inputs.py [--seed 0] [--flips 3] [-v]

File types (each written by the project's own writer from a tiny model, or in the official dataset layout, in a
temp folder): ``tokenizer.pt``, ``maskgit.pt``, ``uvim_stage1.pt``, ``uvim_lm.pt``, a Lightning-style checkpoint,
the token cache's ``meta.json`` and its tokens / labels shards, reference statistics ``.npz`` and an ADM reference
batch (``samples.npz``'s format plus statistics; ``samples.npz`` itself is only written by the project, the ADM
evaluator reads it), PNG and JPEG images of an ImageFolder, NYU's labeled ``.mat`` (HDF5), ``splits.mat`` and 16-bit
depth PNGs, and COCO panoptic's annotation JSON, segment PNG and JPEG image. Each is read the way the project reads
it (the artifact loaders, ``TokenCacheDataset``, ``load_statistics``, every item of the dataset classes).

Variants of each: truncated to half, one copy with a single flipped bit (bit rot), ``--flips`` copies with 64 random
bytes flipped, zero-length, wrong format (a PNG / plain text under the name), the next file of another format family
under its name, and a directory in its place (for the pictures of an image folder neither a PNG, a valid picture
there, nor a directory, which is a folder named like one). Outcomes that pass: a one-line ``ConfigError`` naming the
file; the damaged item ``None`` (an unreadable image: ``collate_skip_corrupt`` drops and counts it) with every other
item unchanged; a load identical to the original (the damage hit bytes that carry nothing); or, for bit flips in a
format with no checksum over its pixels (JPEG entropy-coded data, HDF5 raw arrays), a loaded picture with damaged
pixels — a different picture, not a detectable error. Anything else (a traceback, an error that is not one line
naming the file, different numbers from a file that carries a checksum or a structure) fails.

Ends with ``fuzz: M inputs, M one-line errors, counted skips, identical loads or damaged pictures, 0 tracebacks or
silent differences`` (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fsq_repro.errors import ConfigError

SKIPPED = "skipped and counted"  # what an image-bearing dataset item gives for an unreadable file (contract)


@dataclass
class Case:
    """One file type: a folder written by the project's writers (``root``), the file in it that is damaged
    (``name``), ``load(root) -> comparable`` as the project reads it, whether a ``None`` item (an unreadable image,
    dropped and counted by ``collate_skip_corrupt``) is the contract (``skips``), and whether the damaged bytes can
    be raw pixels or depths in a format with no checksum (``raw``: JPEG entropy data, HDF5 raw arrays)."""

    root: Path
    name: str
    load: Callable[[Path], object]
    skips: bool = False
    raw: bool = False
    image: bool = False  # a picture of an image folder (a valid PNG in its place is a valid picture)


def _items(dataset) -> list:
    return [SKIPPED if item is None else item for item in (dataset[i] for i in range(len(dataset)))]


def writers(folder: Path) -> dict[str, Case]:
    """``{type: Case}``, each file written by the project's own writer (or in the official dataset layout) from a
    tiny model or a few pixels, in its own sub-folder of ``folder``."""
    from PIL import Image

    from fsq_repro import artifacts
    from fsq_repro.data.imagenet import ImageFolderDataset
    from fsq_repro.data.token_cache import TokenCacheDataset, build_token_cache
    from fsq_repro.metrics.fid import load_statistics, save_statistics
    from fsq_repro.nets.tokenizer import Tokenizer
    from fsq_repro.nets.transformer import MaskGITTransformer
    from fsq_repro.nets.uvim_lm import UViMLanguageModel
    from fsq_repro.nets.uvim_vqvae import GuidingCodeAutoencoder
    from fsq_repro.quantizers import FSQ
    from fsq_repro.tasks.base import build_task
    from fsq_repro.tasks.depth.nyu import NYUDepthDataset
    from fsq_repro.tasks.panoptic.coco import COCOPanopticDataset

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    state = lambda model: {k: v.clone() for k, v in model.state_dict().items()}  # noqa: E731
    sub = lambda name: (folder / name).mkdir(parents=True) or folder / name  # noqa: E731
    cases = {}

    tok = Tokenizer(FSQ([5, 3]), resolution=16, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1, groups=4)
    artifacts.save_tokenizer(sub("tokenizer") / "tokenizer.pt", tok)
    cases["tokenizer.pt"] = Case(folder / "tokenizer", "tokenizer.pt",
                                 lambda r: state(artifacts.load_tokenizer(r / "tokenizer.pt")))  # fmt: skip
    gpt = MaskGITTransformer(15, 3, 64, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    artifacts.save_maskgit(sub("maskgit") / "maskgit.pt", gpt, tokenizer_hash="abc")
    cases["maskgit.pt"] = Case(folder / "maskgit", "maskgit.pt",
                               lambda r: state(artifacts.load_maskgit(r / "maskgit.pt")))  # fmt: skip
    task = build_task({"name": "depth", "num_bins": 8})
    ae = GuidingCodeAutoencoder(FSQ([5, 3]), task.label_classes, input_size=16, patch_size=8, code_len=4, width=16,
                                enc_depth=1, dec_depth=1, mlp_dim=32, num_heads=2)  # fmt: skip
    artifacts.save_uvim_stage1(sub("uvim_stage1") / "uvim_stage1.pt", ae, task.config())
    cases["uvim_stage1.pt"] = Case(folder / "uvim_stage1", "uvim_stage1.pt",
                                   lambda r: state(artifacts.load_uvim_stage1(r / "uvim_stage1.pt")[0]))  # fmt: skip
    lm = UViMLanguageModel(15, seq_len=4, input_size=16, patch_size=8, width=16, num_layers=1, num_heads=2, mlp_dim=32)
    artifacts.save_uvim_lm(sub("uvim_lm") / "uvim_lm.pt", lm, stage1_hash="abc")
    cases["uvim_lm.pt"] = Case(
        folder / "uvim_lm", "uvim_lm.pt", lambda r: state(artifacts.load_uvim_lm(r / "uvim_lm.pt"))
    )
    torch.save(
        {"state_dict": state(tok), "global_step": 3, "tokenizer_config": tok.config()}, sub("ckpt") / "last.ckpt"
    )
    cases["last.ckpt"] = Case(folder / "ckpt", "last.ckpt",
                              lambda r: artifacts.read_checkpoint(r / "last.ckpt")["state_dict"])  # fmt: skip

    # the token cache, built by the project's writer from 24 random images (3 classes)
    images = [{"image": torch.rand(3, 16, 16) * 2 - 1, "label": i % 3} for i in range(24)]
    build_token_cache(tok.encode, {"train": images}, sub("tokens"), tokenizer_hash="abc",
                      data_fingerprint="d", codebook_size=15, token_grid=tok.token_grid, num_classes=3,
                      batch_size=8, progress=False)  # fmt: skip
    read_cache = lambda r: [TokenCacheDataset(r, "train")[i] for i in range(48)]  # noqa: E731
    for name in ("meta.json", "train.tokens.npy", "train.labels.npy"):
        cases[name] = Case(folder / "tokens", name, read_cache)

    save_statistics(sub("ref") / "ref.npz", np.zeros(4), np.eye(4))
    cases["ref.npz"] = Case(folder / "ref", "ref.npz", lambda r: load_statistics(r / "ref.npz"))
    # an ADM reference batch: samples.npz's format (arr_0 uint8 images, arr_1 labels) plus its statistics
    np.savez(sub("adm") / "VIRTUAL_imagenet256_labeled.npz", rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
             np.arange(4), mu=np.zeros(4), sigma=np.eye(4))  # fmt: skip
    cases["ADM reference batch .npz"] = Case(
        folder / "adm",
        "VIRTUAL_imagenet256_labeled.npz",
        lambda r: load_statistics(r / "VIRTUAL_imagenet256_labeled.npz"),
    )

    # images in an ImageFolder (ImageNet layout): an unreadable one is skipped and counted
    for suffix in ("png", "jpg"):
        root = sub(f"imagefolder_{suffix}")
        (root / "train" / "n01").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "train" / "n01" / f"a.{suffix}")
        cases[f"image .{suffix}"] = Case(root, f"train/n01/a.{suffix}",
                                         lambda r: _items(ImageFolderDataset(str(r), "train", resolution=16)),
                                         skips=True, raw=suffix == "jpg", image=True)  # fmt: skip

    # NYU depth v2: the labeled .mat (HDF5, column-major) with splits.mat, and the folder layout's 16-bit PNGs
    import h5py
    from scipy.io import savemat

    root = sub("nyu_mat")
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = rng.integers(0, 256, (3, 3, 32, 24), dtype=np.uint8)  # (N, 3, W, H)
        f["depths"] = rng.uniform(0.5, 9.5, (3, 32, 24)).astype(np.float32)  # (N, W, H)
    savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    nyu = lambda r: _items(NYUDepthDataset(str(r), "train", resolution=16))  # noqa: E731
    cases["NYU labeled .mat"] = Case(root, "nyu_depth_v2_labeled.mat", nyu, skips=True, raw=True)
    cases["NYU splits.mat"] = Case(root, "splits.mat", nyu)
    root = sub("nyu_folder")
    (root / "train").mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / "train" / f"rgb_{k}.jpg")
        depth_mm = rng.integers(500, 9500, (24, 32)).astype(np.uint16)
        Image.fromarray(depth_mm).save(root / "train" / f"depth_{k}.png")
    cases["NYU depth .png"] = Case(root, "train/depth_0.png", nyu, skips=True)

    # COCO panoptic: annotation JSON, segment-id PNG, JPEG image
    root = sub("coco")
    for d in ("val2017", "annotations/panoptic_val2017"):
        (root / d).mkdir(parents=True)
    ids = np.zeros((12, 16), dtype=np.int64)
    ids[:, :8], ids[2:8, 9:14] = 70000, 769
    Image.fromarray(np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)).save(
        root / "annotations" / "panoptic_val2017" / "000000000001.png"
    )
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(root / "val2017" / "000000000001.jpg")
    segments = [{"id": 70000, "category_id": 184, "iscrowd": 0}, {"id": 769, "category_id": 18, "iscrowd": 0}]
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": 12, "width": 16}],
        "annotations": [{"image_id": 1, "file_name": "000000000001.png", "segments_info": segments}],
        "categories": [{"id": 18, "name": "dog", "isthing": 1}, {"id": 184, "name": "tree", "isthing": 0}],
    }
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))
    coco = lambda r: _items(COCOPanopticDataset(str(r), "val", resolution=16))  # noqa: E731
    cases["COCO panoptic .json"] = Case(root, "annotations/panoptic_val2017.json", coco)
    cases["COCO panoptic .png"] = Case(root, "annotations/panoptic_val2017/000000000001.png", coco, skips=True)
    cases["COCO image .jpg"] = Case(root, "val2017/000000000001.jpg", coco, skips=True, raw=True)
    return cases


def variants(data: bytes, other: bytes, rng: random.Random, flips: int) -> dict[str, bytes | None]:
    """Damaged copies of ``data`` (``None`` = a directory in the file's place)."""
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(png, format="PNG")
    out = {"truncated": data[: len(data) // 2], "zero-length": b"", "png": png.getvalue(),
           "text": b"this is not the file you are looking for\n", "other type": other, "directory": None}  # fmt: skip
    one = bytearray(data)
    one[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    out["bit flips one bit"] = bytes(one)  # bit rot: a single flipped bit, most likely in the payload
    for k in range(flips):
        flipped = bytearray(data)
        for i in rng.sample(range(len(data)), min(64, len(data))):
            flipped[i] ^= 0xFF
        out[f"bit flips {k}"] = bytes(flipped)
    return out


def family(name: str) -> str:
    """The file's format family: another file of the same family under its name is a valid input, not damage."""
    suffix = Path(name).suffix
    return {".png": "image", ".jpg": "image", ".pt": "torch", ".ckpt": "torch", ".npz": "numpy"}.get(suffix, suffix)


def equal(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor | np.ndarray):
        return isinstance(b, type(a)) and a.shape == b.shape and bool((a == b).all())
    return a == b


def outcome(case: Case, target: Path, root: Path, reference, kind: str) -> tuple[str, str]:
    """``(outcome, detail)``: ``error`` (one line naming the file), ``skip`` (the item is dropped and counted),
    ``identical``, ``damaged picture`` (raw pixels of a checksum-less format), or a failure."""
    try:
        loaded = case.load(root)
    except ConfigError as err:
        lines = str(err).splitlines()
        if len(lines) == 1 and str(target) in lines[0]:
            return "error", lines[0]
        return "failure", f"error not one line naming the file: {err}"
    except Exception:
        return "failure", "traceback\n" + traceback.format_exc(limit=3)
    if equal(loaded, reference):
        return "identical", ""  # the damage hit bytes that carry nothing (padding, an unused record)
    same_length = isinstance(loaded, list) and len(loaded) == len(reference)
    if case.skips and same_length and any(item == SKIPPED for item in loaded if isinstance(item, str)):
        if all(equal(x, y) or x == SKIPPED for x, y in zip(loaded, reference)):
            return "skip", ""
    if case.raw and kind.startswith("bit flips") and same_length:
        return "damaged picture", ""
    return "failure", "loaded, with different contents (a silently wrong number)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flips", type=int, default=3)
    parser.add_argument("-v", "--verbose", action="store_true", help="print each input's outcome")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = {"error": 0, "skip": 0, "identical": 0, "damaged picture": 0, "failure": 0}
    failures = []
    logging.getLogger("fsq_repro").setLevel(logging.ERROR)  # the skipped images' warnings
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = writers(folder / "good")
        names = list(cases)
        for i, (name, case) in enumerate(cases.items()):
            reference = case.load(case.root)
            good = case.root / case.name
            other = next(c for c in names[i + 1 :] + names[:i] if family(cases[c].name) != family(case.name))
            other = (cases[other].root / cases[other].name).read_bytes()  # the next file of another format
            for kind, damaged in variants(good.read_bytes(), other, rng, args.flips).items():
                if case.image and kind in ("png", "directory"):
                    continue  # a PNG is a valid picture there, and a folder named like one is a folder
                root = folder / "fuzz" / f"{i:02d}" / kind.replace(" ", "_")
                shutil.copytree(case.root, root)
                target = root / case.name
                target.unlink()
                if damaged is None:
                    target.mkdir()
                else:
                    target.write_bytes(damaged)
                result, detail = outcome(case, target, root, reference, kind)
                counts[result] += 1
                if result == "failure":
                    failures.append(f"{name} / {kind}: {detail}")
                if args.verbose:
                    print(f"{name:26} {kind:12} {result:15} {detail[:110]}")
    for failure in failures:
        print(failure)
    total = sum(counts.values())
    ok = counts["error"] + counts["skip"] + counts["identical"]
    print(f"outcomes: {counts['error']} one-line errors, {counts['skip']} counted skips, {counts['identical']} "
          f"identical loads, {counts['damaged picture']} damaged pictures (bit flips in JPEG / HDF5 pixel data, "
          "which carry no checksum)")  # fmt: skip
    print(f"fuzz: {total} inputs, {ok + counts['damaged picture']} one-line errors, counted skips, identical loads or "
          f"damaged pictures, {len(failures)} tracebacks or silent differences")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
