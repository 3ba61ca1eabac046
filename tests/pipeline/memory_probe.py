"""Subprocess of ``test_memory_plan.py``: the memory plan of one stage on fake tensors (CPU kernels, float32) and
the same two training steps on real CPU tensors, whose peak is read from the process's resident set — an oracle
that owes nothing to the plan's tensor accounting. Run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc
returns every freed buffer to the system (else freed memory stays resident and the peak reads high).

    python tests/pipeline/memory_probe.py <experiment> <stage> <batch> [overrides...]  → one JSON line
"""

from __future__ import annotations

import json
import os
import resource
import sys
import warnings

from fsq_repro.pipeline.memory_plan import compose_train_config, step_peak


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    warnings.filterwarnings("ignore")
    experiment, stage, batch, *overrides = sys.argv[1:]
    cfg = compose_train_config([f"experiment={experiment}", "trainer=cpu", *overrides])
    plan = step_peak(cfg, stage, int(batch), "32-true", cuda_kernels=False)
    before = resident_bytes()
    tracked = step_peak(cfg, stage, int(batch), "32-true", real=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"plan": plan["peak"], "tracked": tracked["peak"], "resident": peak - before}))


if __name__ == "__main__":
    main()
