"""Worker for tests/metrics/test_usage.py: each of N gloo ranks sees a strided share of the same indices."""

import json
import sys

import torch
import torch.distributed as dist

from fsq_repro.metrics import CodebookUsage

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
indices = torch.randint(0, 50, (1001,), generator=torch.Generator().manual_seed(0)) ** 2 % 97
metric = CodebookUsage(97)
for chunk in indices[rank::world].split(64):
    metric.update(chunk)
result = metric.compute()
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump({k: v.tolist() for k, v in result.items()}, f)
dist.destroy_process_group()
