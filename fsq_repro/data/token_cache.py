"""The Stage II token cache: a dataset encoded once by the Stage I tokenizer (FSQ paper §4.3
trains MaskGIT on frozen Stage I tokens, so Stage II never runs the tokenizer in its training loop).

Layout of ``<dir>/``::

    meta.json                 tokenizer hash, data fingerprint, token grid, codebook size, dtype, counts, complete
    train.tokens.npy          (2, N, h·w)  uint16 if codebook_size ≤ 65 536 else int32; [0] as is, [1] h-flipped
    train.labels.npy          (N,) int64
    val.tokens.npy            (1, M, h·w)
    val.labels.npy            (M,)
    <split>.done.npy          (num_chunks,) uint8 — which chunks are written (resume after a crash)

Written chunk by chunk into ``np.lib.format.open_memmap`` arrays; rank r of W writes chunks r, r+W, …; ``meta.json``
is written last and atomically, so a cache without ``"complete": true`` is resumed, never read. Reading checks the
tokenizer hash and the data fingerprint and refuses a cache built from another tokenizer or dataset. The complete
``meta.json`` also holds the ``sha256`` of every tokens / labels file (``"checksums"``); opening a split checks the
files' headers against the meta and their hashes (a few seconds for ImageNet's 1.3 GB of train tokens), so a shard
that was truncated, bit-flipped or copied from another cache is a one-line error, never wrong tokens.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from fsq_repro.atomic import atomic_write_json
from fsq_repro.errors import ConfigError, first_line

FORMAT = "fsq_repro.token_cache/v1"


def file_hash(path: str | Path, chunk: int = 1 << 20, full: bool = False) -> str:
    """``sha256`` (first 16 hex digits, all 64 with ``full``) of a file, e.g. the ``tokenizer.pt`` a cache was built
    with."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest() if full else h.hexdigest()[:16]


def preallocate(path: Path) -> None:
    """Reserve a new shard's blocks on disk now (``posix_fallocate``): ``open_memmap`` makes a sparse file, and a
    full disk would then surface as a SIGBUS in the middle of a chunk (no message, no file named). On a full disk
    the shard is removed and an ``OSError`` names it; filesystems without fallocate are left as they are."""
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        path.unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write {path} ({err.strerror}): free disk space and re-run; the chunks "
                      "written so far are kept") from None  # fmt: skip


def check_shards(cache_dir: str | Path, split: str, meta: dict) -> None:
    """``<split>.tokens.npy`` / ``.labels.npy`` readable, of the shape and dtype ``meta`` says, and (when the meta
    has them) of the recorded ``sha256``; else a one-line ``ConfigError`` naming the file."""
    info = meta["splits"][split]
    shapes = {"tokens": ((info["variants"], info["count"], int(np.prod(meta["token_grid"]))), np.dtype(meta["dtype"])),
              "labels": ((info["count"],), np.dtype(np.int64))}  # fmt: skip
    redo = "delete the cache folder and re-run pretokenize.py (or the pipeline's tokenize stage)"
    for kind, (shape, dtype) in shapes.items():
        path = Path(cache_dir) / f"{split}.{kind}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if not isinstance(array, np.ndarray):  # an .npz under the name
                array.close()
                raise ValueError("not a .npy array")
        except Exception as err:  # missing, truncated, not .npy, a directory: one line naming the file
            first = first_line(err, 120)
            raise ConfigError(f"token cache file {path} is not readable ({first}): {redo}") from None
        if array.shape != shape or array.dtype != dtype:
            raise ConfigError(f"token cache file {path} holds {array.dtype} {array.shape}, its meta.json says "
                              f"{dtype} {shape}: {redo}")  # fmt: skip
        del array
        want = (meta.get("checksums") or {}).get(path.name)
        if want is not None and file_hash(path, full=True) != want:
            raise ConfigError(f"token cache file {path} differs from the file the cache was built with (sha256): "
                              f"{redo}")  # fmt: skip


def token_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.uint16) if codebook_size <= 65536 else np.dtype(np.int32)


def read_meta(cache_dir: str | Path) -> dict | None:
    path = Path(cache_dir) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):  # damaged, binary, unreadable
        return None
    return meta if isinstance(meta, dict) else None


def _write_meta(cache_dir: Path, meta: dict) -> None:
    atomic_write_json(cache_dir / "meta.json", meta, default=None)


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with a complete meta's fields (``None``: nothing), for a one-line error."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    checks = {"tokenizer_hash": lambda v: isinstance(v, str), "data_fingerprint": lambda v: isinstance(v, str),
              "codebook_size": lambda v: is_int(v) and v > 0, "num_classes": lambda v: is_int(v) and v > 0,
              "token_grid": lambda v: isinstance(v, list) and len(v) > 0 and all(is_int(g) and g > 0 for g in v),
              "dtype": lambda v: v in ("uint16", "int32"),
              "splits": lambda v: isinstance(v, dict) and all(
                  isinstance(i, dict) and is_int(i.get("count")) and i["count"] >= 0 and i.get("variants") in (1, 2)
                  for i in v.values())}  # fmt: skip
    for key, ok in checks.items():
        if key not in meta or not ok(meta[key]):
            return f"{key}={meta.get(key)!r}"[:80]
    return None


def check_cache(cache_dir: str | Path, tokenizer_hash: str | None = None, data_fingerprint: str | None = None) -> dict:
    """The cache's ``meta.json`` if it is complete and was built from this tokenizer and dataset; else ConfigError."""
    meta = read_meta(cache_dir)
    if meta is None or meta.get("format") != FORMAT:
        raise ConfigError(f"{Path(cache_dir) / 'meta.json'} is missing or not a token cache's (build the cache with "
                          "pretokenize.py or stages=[tokenize])")  # fmt: skip
    if not meta.get("complete"):
        raise ConfigError(f"token cache {cache_dir} is incomplete: re-run pretokenize.py to finish it")
    problem = _meta_problem(meta)
    if problem:
        raise ConfigError(f"{Path(cache_dir) / 'meta.json'} is damaged ({problem}): delete the cache folder and "
                          "re-run pretokenize.py")  # fmt: skip
    if tokenizer_hash and meta["tokenizer_hash"] != tokenizer_hash:
        raise ConfigError(
            f"token cache {cache_dir} was built with tokenizer {meta['tokenizer_hash']}, "
            f"not with the given tokenizer {tokenizer_hash}: re-run pretokenize.py"
        )
    if data_fingerprint and meta["data_fingerprint"] != data_fingerprint:
        raise ConfigError(
            f"token cache {cache_dir} was built from data {meta['data_fingerprint']}, "
            f"not from the configured data {data_fingerprint}: re-run pretokenize.py"
        )
    return meta


def reuse_or_wait(
    cache_dir: str | Path, tokenizer_hash: str, data_fingerprint: str, wait: bool, timeout_s: float = 24 * 3600
) -> dict | None:
    """The cache under ``cache_dir`` when it is complete and built by this tokenizer (then checked against the data:
    ``check_cache``); else ``None`` — build it — except with ``wait`` (a non-zero rank of a DDP pipeline, where rank 0
    encodes alone): wait for rank 0's complete cache, polling its ``meta.json``, and return that."""
    meta = read_meta(cache_dir)
    if not (meta and meta.get("complete") and meta.get("tokenizer_hash") == tokenizer_hash):
        if not wait:
            return None
        start = time.monotonic()
        while not (read_meta(cache_dir) or {}).get("complete"):
            if time.monotonic() - start > timeout_s:
                raise RuntimeError(f"timed out waiting for {Path(cache_dir) / 'meta.json'}")
            time.sleep(2)
    return check_cache(cache_dir, tokenizer_hash, data_fingerprint)


@torch.no_grad()
def build_token_cache(
    encode: Callable[[torch.Tensor], torch.Tensor],
    splits: dict[str, Dataset],
    cache_dir: str | Path,
    *,
    tokenizer_hash: str,
    data_fingerprint: str,
    codebook_size: int,
    token_grid: Iterable[int],
    num_classes: int,
    batch_size: int = 64,
    num_workers: int = 0,
    flip_splits: Iterable[str] = ("train",),
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: bool = True,
    input_key: str | None = "image",
) -> dict:
    """Encode ``splits`` (name → dataset of ``{"image", "label", ...}`` dicts) into ``cache_dir``; returns the meta.

    ``encode(images (B, 3, H, W)) -> (B, h, w)`` is the tokenizer (moved to its device by the caller); with
    ``input_key=None`` it receives the whole collated batch instead (UViM's Stage I encodes labels with the image as
    context), and the flipped variant flips every spatial (≥ 3-D) tensor of it. Resumes a partial cache built with
    the same tokenizer and data; refuses to overwrite one built with others."""
    cache_dir = Path(cache_dir)
    grid = [int(g) for g in token_grid]
    num_tokens = int(np.prod(grid))
    dtype = token_dtype(codebook_size)
    old = read_meta(cache_dir)
    if old and (old.get("tokenizer_hash"), old.get("data_fingerprint")) != (tokenizer_hash, data_fingerprint):
        raise ConfigError(
            f"{cache_dir} holds tokens of tokenizer {old.get('tokenizer_hash')} / data {old.get('data_fingerprint')}, "
            f"not {tokenizer_hash} / {data_fingerprint}: choose another output dir"
        )
    if old and old.get("complete"):
        return old
    flips = set(flip_splits)
    meta = {
        "format": FORMAT,
        "tokenizer_hash": tokenizer_hash,
        "data_fingerprint": data_fingerprint,
        "codebook_size": int(codebook_size),
        "token_grid": grid,
        "num_classes": int(num_classes),
        "dtype": dtype.name,
        "splits": {name: {"count": len(ds), "variants": 2 if name in flips else 1} for name, ds in splits.items()},
        "complete": False,
    }
    if rank == 0:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for name, info in meta["splits"].items():
            num_chunks = -(-info["count"] // batch_size)
            for suffix, shape, dt in (
                ("tokens", (info["variants"], info["count"], num_tokens), dtype),
                ("labels", (info["count"],), np.dtype(np.int64)),
                ("done", (num_chunks,), np.dtype(np.uint8)),
            ):
                path = cache_dir / f"{name}.{suffix}.npy"
                if not path.is_file():
                    np.lib.format.open_memmap(path, mode="w+", dtype=dt, shape=shape).flush()
                    preallocate(path)
        _write_meta(cache_dir, meta)
    barrier()
    for name, ds in splits.items():
        tokens = np.load(cache_dir / f"{name}.tokens.npy", mmap_mode="r+")
        labels = np.load(cache_dir / f"{name}.labels.npy", mmap_mode="r+")
        done = np.load(cache_dir / f"{name}.done.npy", mmap_mode="r+")
        todo = [c for c in range(rank, len(done), world_size) if not done[c]]
        bar = _progress(todo, f"tokenize {name} (rank {rank})", progress and rank == 0)
        # one loader batch = one chunk, decoded by `num_workers` processes while the tokenizer runs
        chunks = [list(range(c * batch_size, min((c + 1) * batch_size, len(ds)))) for c in todo]
        loader = DataLoader(ds, batch_sampler=chunks, num_workers=num_workers, collate_fn=list)
        for chunk, items in zip(bar, loader):
            lo, hi = chunk * batch_size, min((chunk + 1) * batch_size, len(ds))
            if any(item is None for item in items):
                raise ConfigError(f"{name}[{lo}:{hi}] has unreadable images: remove them before tokenizing")
            batch = default_collate(items)
            inputs = batch if input_key is None else batch[input_key]
            labels[lo:hi] = np.array([int(item["label"]) for item in items], dtype=np.int64)
            tokens[0, lo:hi] = encode(inputs).flatten(1).cpu().numpy().astype(dtype)
            if tokens.shape[0] == 2:
                tokens[1, lo:hi] = encode(hflip(inputs)).flatten(1).cpu().numpy().astype(dtype)
            tokens.flush()
            labels.flush()
            done[chunk] = 1
            done.flush()
    barrier()
    if rank == 0:
        missing = {n: int((np.load(cache_dir / f"{n}.done.npy") == 0).sum()) for n in splits}
        if any(missing.values()):
            raise RuntimeError(f"token cache {cache_dir}: chunks still missing {missing}")
        meta["checksums"] = {f"{n}.{k}.npy": file_hash(cache_dir / f"{n}.{k}.npy", full=True)
                             for n in splits for k in ("tokens", "labels")}  # fmt: skip
        meta["complete"] = True
        _write_meta(cache_dir, meta)
    barrier()
    return meta


def hflip(inputs):
    """Horizontal flip of a ``(B, ..., H, W)`` tensor, or of every ≥ 3-D tensor of a batch dict."""
    if isinstance(inputs, dict):
        return {k: hflip(v) if torch.is_tensor(v) and v.dim() >= 3 else v for k, v in inputs.items()}
    return inputs.flip(-1)


def _progress(items: list, desc: str, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with lightning's deps
        return items
    return tqdm(items, desc=desc, unit="batch")


class TokenCacheDataset(Dataset):
    """One split of a token cache: item ``i`` of ``variants · N`` → ``{"tokens": (h·w,) int64, "label", "index"}``
    (index ``v · N + n`` is image n, flipped when ``v = 1``)."""

    def __init__(self, cache_dir: str | Path, split: str) -> None:
        self.cache_dir, self.split = Path(cache_dir), split
        meta = check_cache(cache_dir)
        if split not in meta["splits"]:
            raise ConfigError(f"token cache {cache_dir} has no split {split!r} (has {sorted(meta['splits'])})")
        check_shards(cache_dir, split, meta)
        self.meta = meta
        self.count, self.variants = meta["splits"][split]["count"], meta["splits"][split]["variants"]
        self._tokens: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def _open(self) -> None:  # lazily, so each DataLoader worker maps the files itself
        self._tokens = np.load(self.cache_dir / f"{self.split}.tokens.npy", mmap_mode="r")
        self._labels = np.load(self.cache_dir / f"{self.split}.labels.npy", mmap_mode="r")

    def __len__(self) -> int:
        return self.count * self.variants

    def __getitem__(self, index: int) -> dict:
        if self._tokens is None:
            self._open()
        if not 0 <= index < len(self):
            raise IndexError(index)
        variant, n = divmod(index, self.count)
        return {
            "tokens": torch.from_numpy(self._tokens[variant, n].astype(np.int64)),
            "label": int(self._labels[n]),
            "index": index,
        }

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])


class PairedTokenDataset(Dataset):
    """A dataset's items with their cached tokens (UViM Stage II: the language model reads the *image* and predicts
    the guiding code of its labels). Item ``v · N + n`` is ``base[n]`` (every spatial tensor h-flipped when
    ``v = 1``, matching the cache's flipped variant) plus ``"tokens": (L,) int64``."""

    def __init__(self, base: Dataset, cache_dir: str | Path, split: str) -> None:
        self.base, self.tokens = base, TokenCacheDataset(cache_dir, split)
        if len(base) != self.tokens.count:
            raise ConfigError(f"token cache {cache_dir} has {self.tokens.count} {split} items, the data {len(base)}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict | None:
        variant, n = divmod(index, self.tokens.count)
        item = self.base[n]
        if item is None:
            return None
        item = hflip(dict(item)) if variant else dict(item)
        item["tokens"] = self.tokens[index]["tokens"]
        item["index"] = index
        return item
