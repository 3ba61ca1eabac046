"""Data-loading pieces that are pure torch: corrupt-sample skipping and exact distributed evaluation.

- Datasets return ``None`` for an unreadable file; ``collate_skip_corrupt`` drops those from the batch and records
  how many it dropped in ``batch["num_corrupt"]`` so the training module can count and log them (the count crosses
  the worker-process boundary inside the batch).
- ``ExactDistributedSampler`` gives rank ``r`` the indices ``r, r + W, r + 2W, …`` with **no padding**, so an
  evaluation over W processes sees every sample exactly once (``torch``'s ``DistributedSampler`` pads by repeating
  samples, which biases FID/usage). It subclasses ``DistributedSampler`` so
  that Lightning keeps it instead of wrapping it.
- ``train_loader`` is the training loader of both stages: a torchdata ``StatefulDataLoader`` (Lightning saves its
  position in every checkpoint and restores it, so a run resumed mid-epoch neither replays nor skips a batch)
  over ``EpochShuffleSampler``, whose order is a pure function of ``(seed, epoch)`` (docs/fault-tolerance.md,
  item 1); under DDP each rank draws its own share of that permutation. Each item is loaded under its own seed, a
  pure function of ``(seed, epoch, index)`` (``SeededItems``), so random crops and flips are the same after a
  resume too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, IterableDataset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader


def collate_skip_corrupt(batch: list) -> dict:
    """Collate dict samples, dropping ``None`` (unreadable files); adds ``num_corrupt`` (int64 scalar)."""
    valid = [item for item in batch if item is not None]
    num_corrupt = torch.tensor(len(batch) - len(valid), dtype=torch.int64)
    if not valid:
        return {
            "image": torch.empty(0),
            "label": torch.empty(0, dtype=torch.int64),
            "index": torch.empty(0, dtype=torch.int64),
            "num_corrupt": num_corrupt,
        }
    out = default_collate(valid)
    out["num_corrupt"] = num_corrupt
    return out


class ExactDistributedSampler(DistributedSampler):
    """Strided, unpadded, unshuffled split of a dataset over processes (each index exactly once overall)."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(self.rank, len(self.dataset), self.num_replicas))
        self.total_size = len(self.dataset)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


class EpochShuffleSampler(DistributedSampler):
    """Rank ``rank``'s share of a permutation of ``range(n)`` drawn from a generator seeded with ``seed + epoch``
    (``DistributedSampler``'s rule; with ``num_replicas=1`` the whole permutation). Lightning calls ``set_epoch``
    before each epoch, so epoch ``e`` always has the same order; it keeps this sampler under DDP because it is a
    ``DistributedSampler``. The tail that does not divide by the number of ranks is dropped for the epoch (no
    padding duplicates). The iterator is stateful (``{"epoch", "yielded"}``): the ``StatefulDataLoader`` saves
    it in every checkpoint and hands it back on resume, and it continues epoch ``e`` at sample ``yielded`` (the
    loader is restored before Lightning calls ``set_epoch``, so the epoch travels with the position)."""

    def __init__(self, n: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.num_samples = self.n // self.num_replicas

    def __iter__(self) -> _EpochPermutation:
        return _EpochPermutation(self, self.epoch)

    def __len__(self) -> int:
        return self.num_samples

    def order(self, epoch: int) -> list[int]:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
        return perm[: self.num_samples * self.num_replicas][self.rank :: self.num_replicas].tolist()


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index``'s load-time randomness (random crops, flips) in ``epoch``: a pure function, so a run
    resumed mid-epoch draws the same augmentations as an uninterrupted one (tuples of ints hash the same in every
    process)."""
    return hash((int(seed), int(epoch), int(index))) & 0x7FFF_FFFF_FFFF_FFFF


class SeededItems(Dataset):
    """``dataset[index]`` loaded under the global torch RNG seeded with the sampler's ``item_seed`` (and the global
    state restored afterwards): the load-time draws of an item depend on (seed, epoch, index) only — not on which
    batch the loader fetched before it, nor on the training step's draws, nor on a resume. Keys are the
    ``(index, seed)`` pairs ``EpochShuffleSampler`` yields; attributes are the wrapped dataset's."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _EpochPermutation:
    def __init__(self, sampler: EpochShuffleSampler, epoch: int, yielded: int = 0) -> None:
        self.sampler, self.epoch, self.yielded = sampler, epoch, yielded
        self.indices = sampler.order(epoch)

    def __iter__(self) -> _EpochPermutation:
        return self

    def __next__(self) -> tuple[int, int]:
        if self.yielded >= len(self.indices):
            raise StopIteration
        self.yielded += 1
        index = self.indices[self.yielded - 1]
        return index, item_seed(self.sampler.seed, self.epoch, index)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict) -> None:
        self.__init__(self.sampler, int(state["epoch"]), int(state["yielded"]))


class ResumableLoader(StatefulDataLoader):
    """A ``StatefulDataLoader`` that also resumes correctly from a state saved right after an epoch's last batch.
    torchdata counts an epoch finished only once ``next`` has raised ``StopIteration``, and Lightning knows the
    length and never asks for the batch after the last; a checkpoint written there (a SIGTERM at the epoch's last
    batch, or a step-interval ``ModelCheckpoint`` that lands on it) held an unfinished iterator with nothing left,
    so the resumed run's next epoch was empty and it went on one epoch ahead of the uninterrupted run. Such a state
    is saved as ``{"epoch_finished": e}``; loading it leaves no iterator to resume and sets the sampler to epoch
    ``e + 1`` — Lightning creates the resumed iterator before it calls ``set_epoch``, so the epoch must be set here."""

    def state_dict(self) -> dict:
        if self._epoch_finished():
            return {"epoch_finished": int(self.sampler.epoch)}
        return super().state_dict()

    def load_state_dict(self, state: dict) -> None:
        if "epoch_finished" in state:
            super().load_state_dict({})  # the next iter() starts a fresh epoch
            self.sampler.set_epoch(int(state["epoch_finished"]) + 1)
            return
        super().load_state_dict(state)

    def _epoch_finished(self) -> bool:
        if not isinstance(self.sampler, EpochShuffleSampler) or self._iterator is None:
            return False  # iterable datasets (WebDataset) keep torchdata's own rule
        return self._iterator._num_yielded >= len(self)


def train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = True,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    collate_fn: Callable | None = None,
) -> ResumableLoader:
    """The resumable, deterministic training loader (see the module docstring). Iterable datasets (WebDataset
    shards) are not shuffled here and resume at the start of their shard stream."""
    sampler = None
    if not isinstance(dataset, IterableDataset):
        distributed = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        sampler = EpochShuffleSampler(len(dataset), seed, num_replicas=world, rank=rank)
        dataset = SeededItems(dataset)
    return ResumableLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=collate_fn,
    )
