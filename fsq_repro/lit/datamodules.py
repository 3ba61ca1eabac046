"""``ImageDataModule``: one Lightning DataModule for every image source (shapes, photos, ImageFolder, WebDataset).

Datasets arrive as factories (Hydra ``_partial_: true``) and are built in ``setup`` on every process. Training uses
Lightning's DistributedSampler (each rank a distinct shard) for map-style datasets; validation uses
``ExactDistributedSampler`` under DDP so every validation image is seen exactly once in total. Batches are dicts
``{"image": (B, 3, R, R) in [−1, 1], "label": (B,), "index": (B,), "num_corrupt": ()}``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset

from fsq_repro.data.loading import ExactDistributedSampler, collate_skip_corrupt, train_loader


def val_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool, collate_fn=None) -> DataLoader:
    """In order; under DDP each rank a strided, unpadded share (every sample exactly once overall)."""
    sampler = None
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed and not isinstance(dataset, IterableDataset):
        sampler = ExactDistributedSampler(dataset)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
        collate_fn=collate_fn,
    )  # fmt: skip


class ImageDataModule(LightningDataModule):
    def __init__(
        self,
        train: Callable[[], Dataset],
        val: Callable[[], Dataset],
        name: str = "images",
        resolution: int = 32,
        num_classes: int | None = None,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        drop_last: bool = True,
        shuffle_seed: int = 0,
        **metadata,
    ) -> None:
        super().__init__()
        self._train_factory, self._val_factory = train, val
        self.name, self.resolution = name, int(resolution)
        self._num_classes = num_classes
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.drop_last = bool(drop_last)
        self.shuffle_seed = int(shuffle_seed)  # the run's `seed` (train.py passes it); order = f(seed, epoch)
        self.metadata = metadata
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self._train_factory()
        if self.val_set is None:
            self.val_set = self._val_factory()

    @property
    def num_classes(self) -> int:
        """Class count from the data (checked against ``data.num_classes`` when both are known)."""
        self.setup("fit")
        found = getattr(self.train_set, "num_classes", None) or getattr(self.val_set, "num_classes", None)
        return int(found or self._num_classes or 1)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return train_loader(
            self.train_set,
            self.batch_size,
            seed=self.shuffle_seed,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_skip_corrupt,
        )

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return val_loader(self.val_set, self.val_batch_size, self.num_workers, self.pin_memory, collate_skip_corrupt)


class TokenDataModule(LightningDataModule):
    """Stage II data: a token cache (``data/token_cache.py``). Refuses a cache built from another tokenizer or
    dataset (one-line ``ConfigError`` naming both hashes). Batches: ``{"tokens": (B, h·w), "label": (B,), ...}``."""

    def __init__(
        self,
        cache_dir: str,
        batch_size: int = 256,
        num_workers: int = 0,
        tokenizer_hash: str | None = None,
        data_fingerprint: str | None = None,
        pin_memory: bool = False,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        from fsq_repro.data.token_cache import check_cache

        self.meta = check_cache(cache_dir, tokenizer_hash, data_fingerprint)
        self.cache_dir, self.batch_size, self.num_workers = cache_dir, int(batch_size), int(num_workers)
        self.pin_memory, self.shuffle_seed = pin_memory, int(shuffle_seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    def setup(self, stage: str | None = None) -> None:
        from fsq_repro.data.token_cache import TokenCacheDataset

        if self.train_set is None:
            self.train_set = TokenCacheDataset(self.cache_dir, "train")
            self.val_set = TokenCacheDataset(self.cache_dir, "val")

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return train_loader(
            self.train_set,
            self.batch_size,
            seed=self.shuffle_seed,
            num_workers=self.num_workers,
            drop_last=len(self.train_set) >= self.batch_size,
            pin_memory=self.pin_memory,
            persistent_workers=True,
        )

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return val_loader(self.val_set, self.batch_size, self.num_workers, self.pin_memory)
