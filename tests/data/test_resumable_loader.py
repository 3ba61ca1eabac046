"""``train_loader``: the order is a function of (seed, epoch), and a loader restored from a mid-epoch
``state_dict`` yields exactly the batches the uninterrupted loader would have (no replay, no skip), with and
without worker processes — what Lightning relies on when it resumes a run (docs/fault-tolerance.md,
item 1)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from fsq_repro.data.loading import train_loader


def batches(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
    return [batch[0].flatten().tolist() for batch in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_continues_the_same_epoch_then_the_next(workers: int) -> None:
    data = TensorDataset(torch.arange(40).view(40, 1))
    full = train_loader(data, batch_size=4, seed=3, num_workers=workers)
    epoch0, epoch1 = batches(full, 0), batches(full, 1)
    assert sorted(i for batch in epoch0 for i in batch) == list(range(40))  # a permutation
    assert epoch0 != epoch1  # a new one each epoch
    assert batches(train_loader(data, 4, seed=3), 1) == epoch1  # a pure function of (seed, epoch)
    assert batches(train_loader(data, 4, seed=4), 1) != epoch1

    cut = train_loader(data, batch_size=4, seed=3, num_workers=workers)
    cut.sampler.set_epoch(1)
    it = iter(cut)
    seen = [next(it)[0].flatten().tolist() for _ in range(3)]
    state = cut.state_dict()
    del it

    resumed = train_loader(data, batch_size=4, seed=3, num_workers=workers)
    resumed.load_state_dict(state)  # as Lightning does: before set_epoch and before iter()
    resumed.sampler.set_epoch(1)
    rest = [b[0].flatten().tolist() for b in resumed]
    assert seen + rest == epoch1
    assert batches(resumed, 2) == batches(full, 2)


class _Augmented(torch.utils.data.Dataset):
    """Each item draws from the global torch RNG at load time, as random crops and flips do."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), torch.rand(()).item()])


@pytest.mark.parametrize("workers", [0, 2])
def test_load_time_draws_are_the_same_after_a_resume(workers: int) -> None:
    """A resumed run fetches its first batches under another global RNG state than the uninterrupted run did (the
    loader prefetches before the step re-seeds); each item's draws must still be the same."""
    torch.manual_seed(0)
    full = train_loader(_Augmented(), batch_size=4, seed=3, num_workers=workers)
    full.sampler.set_epoch(1)
    uninterrupted = [b.tolist() for b in full]

    cut = train_loader(_Augmented(), batch_size=4, seed=3, num_workers=workers)
    cut.sampler.set_epoch(1)
    it = iter(cut)
    seen = [next(it).tolist() for _ in range(2)]
    state = cut.state_dict()
    del it
    torch.manual_seed(1234)  # the restarted process: another RNG state
    resumed = train_loader(_Augmented(), batch_size=4, seed=3, num_workers=workers)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    assert seen + [b.tolist() for b in resumed] == uninterrupted
    draws = [row[1] for batch in uninterrupted for row in batch]
    assert len(set(draws)) == len(draws)  # still random: a different draw for every item
    full.sampler.set_epoch(2)
    assert [row[1] for b in full for row in b.tolist()] != draws  # and a new one every epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_a_state_saved_after_the_last_batch_resumes_at_the_next_epoch(workers: int) -> None:
    """A checkpoint written after an epoch's last batch but before the loader was asked for one more (Lightning
    knows the length and never asks; a SIGTERM there stops the run at the batch boundary) must resume at the next
    epoch's first batch. Found by the SIGTERM soak: the restored iterator thought the epoch unfinished, yielded
    nothing, and the resumed run silently skipped a whole epoch."""
    data = TensorDataset(torch.arange(40).view(40, 1))
    full = train_loader(data, batch_size=4, seed=3, num_workers=workers)
    epoch0, epoch1 = batches(full, 0), batches(full, 1)

    cut = train_loader(data, batch_size=4, seed=3, num_workers=workers)
    cut.sampler.set_epoch(0)
    it = iter(cut)
    seen = [next(it)[0].flatten().tolist() for _ in range(len(cut))]  # all of them, no StopIteration yet
    state = cut.state_dict()
    del it
    assert seen == epoch0

    resumed = train_loader(data, batch_size=4, seed=3, num_workers=workers)
    resumed.load_state_dict(state)
    it = iter(resumed)  # Lightning's order on resume: load the state, create the iterator, then set the epoch
    resumed.sampler.set_epoch(1)
    assert [b[0].flatten().tolist() for b in it] == epoch1
    assert batches(resumed, 2) == batches(full, 2)
