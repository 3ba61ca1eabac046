"""Worker for tests/metrics/test_gathered.py: 2 gloo ranks each update with a strided share of 1 001 rows."""

import json
import sys

import numpy as np
import torch
import torch.distributed as dist

from fsq_repro.metrics.gathered import FrechetDistance, PrecisionRecall

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
rng = np.random.default_rng(0)
ref = rng.normal(size=(500, 6))
feats = torch.from_numpy(rng.normal(size=(1001, 6)) + 0.2)
fd = FrechetDistance(ref.mean(0), np.cov(ref, rowvar=False))
pr = PrecisionRecall(ref)
for chunk in feats[rank::world].split(100):
    fd.update(chunk)
    pr.update(chunk)
out = {**fd.compute(), **pr.compute()}
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
dist.destroy_process_group()
