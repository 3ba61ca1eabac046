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
