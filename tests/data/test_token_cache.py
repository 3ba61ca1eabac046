"""The Stage II token cache: exact round trip, flips, resume after a crash, refusal of a foreign cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.data.token_cache import TokenCacheDataset, build_token_cache, check_cache, reuse_or_wait, token_dtype
from fsq_repro.errors import ConfigError


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        self.images = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
        self.labels = torch.arange(n) % 3

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.labels[i])}


def encode(images: torch.Tensor) -> torch.Tensor:
    """A stand-in tokenizer: 2×2 grid of codes from the quadrant means (order-sensitive, so flips differ)."""
    q = torch.nn.functional.avg_pool2d(images, 4)  # (B, 3, 2, 2)
    return ((q[:, 0] + 1) * 499).long().clamp(0, 999)  # (B, 2, 2)


def _build(splits, cache: Path, **kw):
    args = dict(tokenizer_hash="tokA", data_fingerprint="dataA", codebook_size=1000, token_grid=(2, 2), num_classes=3)
    args.update(kw)
    return build_token_cache(encode, splits, cache, batch_size=4, progress=False, **args)


def test_round_trip_and_flips(tmp_path: Path) -> None:
    train, val = Images(10), Images(5)
    meta = _build({"train": train, "val": val}, tmp_path / "c")
    assert meta["complete"] and meta["dtype"] == "uint16" and meta["num_classes"] == 3
    ds = TokenCacheDataset(tmp_path / "c", "train")
    assert len(ds) == 20 and len(TokenCacheDataset(tmp_path / "c", "val")) == 5
    for i in range(10):
        assert torch.equal(ds[i]["tokens"], encode(train.images[i : i + 1]).flatten())
        assert torch.equal(ds[10 + i]["tokens"], encode(train.images[i : i + 1].flip(-1)).flatten())
        assert ds[i]["label"] == ds[10 + i]["label"] == i % 3


def test_resume_after_a_crash_gives_the_same_cache(tmp_path: Path) -> None:
    train, val = Images(13), Images(3)
    _build({"train": train, "val": val}, tmp_path / "ref")
    calls = {"n": 0}

    def crashing(images):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return encode(images)

    with pytest.raises(KeyboardInterrupt):
        build_token_cache(crashing, {"train": train, "val": val}, tmp_path / "c", tokenizer_hash="tokA",
                          data_fingerprint="dataA", codebook_size=1000, token_grid=(2, 2), num_classes=3,
                          batch_size=4, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="incomplete"):
        TokenCacheDataset(tmp_path / "c", "train")
    done_before = np.load(tmp_path / "c" / "train.done.npy").copy()
    assert 0 < done_before.sum() < len(done_before)
    _build({"train": train, "val": val}, tmp_path / "c")
    for split in ("train", "val"):
        a = np.load(tmp_path / "ref" / f"{split}.tokens.npy")
        b = np.load(tmp_path / "c" / f"{split}.tokens.npy")
        assert np.array_equal(a, b)


def test_a_cache_from_another_tokenizer_or_dataset_is_refused(tmp_path: Path) -> None:
    _build({"train": Images(4), "val": Images(2)}, tmp_path / "c")
    with pytest.raises(ConfigError, match="built with tokenizer tokA, not with the given tokenizer tokB"):
        check_cache(tmp_path / "c", "tokB", "dataA")
    with pytest.raises(ConfigError, match="built from data dataA, not from the configured data dataB"):
        check_cache(tmp_path / "c", "tokA", "dataB")
    with pytest.raises(ConfigError, match="choose another output dir"):
        _build({"train": Images(4), "val": Images(2)}, tmp_path / "c", tokenizer_hash="tokB")


def test_reuse_or_wait_reuses_builds_or_waits_for_rank_0(tmp_path: Path) -> None:
    """Rank 0 reuses a complete cache of this tokenizer (else builds: None); a non-zero DDP rank waits until rank
    0's ``meta.json`` says complete, then gets the same checked meta; a cache of another tokenizer is rebuilt."""
    import threading

    assert reuse_or_wait(tmp_path / "c", "tokA", "dataA", wait=False) is None
    built = {}
    builder = threading.Timer(0.3, lambda: built.update(_build({"train": Images(4), "val": Images(2)}, tmp_path / "c")))
    builder.start()
    waited = reuse_or_wait(tmp_path / "c", "tokA", "dataA", wait=True)  # polls until the builder finishes
    builder.join()
    assert waited == built and waited["complete"]
    assert reuse_or_wait(tmp_path / "c", "tokA", "dataA", wait=False) == built
    assert reuse_or_wait(tmp_path / "c", "tokB", "dataA", wait=False) is None  # another tokenizer: rebuild
    with pytest.raises(ConfigError, match="not from the configured data dataB"):
        reuse_or_wait(tmp_path / "c", "tokA", "dataB", wait=False)
    with pytest.raises(RuntimeError, match=r"timed out waiting for .*meta\.json"):
        reuse_or_wait(tmp_path / "nothing", "tokA", "dataA", wait=True, timeout_s=0.1)


def test_dtype_by_codebook_size() -> None:
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.int32


class Pairs(torch.utils.data.Dataset):
    """Items with an image and a label map (UViM: codes are a function of both)."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        self.images = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
        self.maps = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "depth": self.maps[i], "label": 0, "index": i}


def encode_pair(batch: dict) -> torch.Tensor:
    return encode(batch["image"]) + encode(batch["depth"].expand(-1, 3, -1, -1)) % 7


def test_whole_batch_encoding_and_paired_items(tmp_path: Path) -> None:
    """``input_key=None``: the encoder sees every field, the flipped variant flips every spatial one; the paired
    dataset returns the item (flipped for variant 1) with exactly the cached codes of that variant."""
    from fsq_repro.data.token_cache import PairedTokenDataset

    train, val = Pairs(6), Pairs(3)
    build_token_cache(encode_pair, {"train": train, "val": val}, tmp_path / "c", tokenizer_hash="s1",
                      data_fingerprint="d", codebook_size=1000, token_grid=(4,), num_classes=1, batch_size=4,
                      progress=False, input_key=None)  # fmt: skip
    paired = PairedTokenDataset(train, tmp_path / "c", "train")
    assert len(paired) == 12
    for i in (0, 5):
        plain, flipped = paired[i], paired[6 + i]
        assert torch.equal(plain["image"], train.images[i]) and torch.equal(flipped["depth"], train.maps[i].flip(-1))
        batch = {"image": flipped["image"][None], "depth": flipped["depth"][None]}
        assert torch.equal(flipped["tokens"], encode_pair(batch).flatten())
        assert torch.equal(plain["tokens"], encode_pair({"image": train.images[i : i + 1],
                                                         "depth": train.maps[i : i + 1]}).flatten())  # fmt: skip
    with pytest.raises(ConfigError, match="has 3 val items"):
        PairedTokenDataset(Pairs(4), tmp_path / "c", "val")


def test_a_full_disk_at_a_shards_creation_names_it_and_the_rerun_completes(tmp_path: Path, monkeypatch) -> None:
    """Shards are reserved in full when created (``posix_fallocate``): a full disk is an ``OSError`` naming the
    shard then, not a SIGBUS half-way through a memory-mapped chunk; the rerun with room builds the same cache."""
    import errno
    import os

    train, val = Images(9), Images(3)
    _build({"train": train, "val": val}, tmp_path / "ref")
    real = os.posix_fallocate

    def full_for_val_tokens(fd: int, offset: int, length: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("val.tokens.npy"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full_for_val_tokens)
    with pytest.raises(OSError) as info:
        _build({"train": train, "val": val}, tmp_path / "c")
    message = str(info.value)
    assert "\n" not in message and f"could not write {tmp_path / 'c' / 'val.tokens.npy'} (No space" in message
    assert not (tmp_path / "c" / "val.tokens.npy").exists()  # no sparse shard left to fail later
    monkeypatch.setattr(os, "posix_fallocate", real)
    _build({"train": train, "val": val}, tmp_path / "c")
    for split in ("train", "val"):
        for kind in ("tokens", "labels"):
            a, b = (np.load(tmp_path / d / f"{split}.{kind}.npy") for d in ("ref", "c"))
            assert np.array_equal(a, b), (split, kind)
    assert len(TokenCacheDataset(tmp_path / "c", "val")) == 3
