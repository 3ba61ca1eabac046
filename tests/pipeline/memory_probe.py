"""Subprocess of ``test_memory_plan.py``: the memory plan of one stage on fake tensors (CPU kernels, float32) and
the same two training steps on real CPU tensors, whose peak is read from the process's resident set — an oracle
that owes nothing to the plan's tensor accounting. The real step runs after the plan (which warms up torch's lazy
state) from a reset peak (``clear_refs``), so that no earlier phase's transient memory counts as the step's. Run
with ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc returns every freed buffer to the system (else freed memory
stays resident and the peak reads high).

    python tests/pipeline/memory_probe.py <experiment> <stage> <batch> [overrides...]  → one JSON line
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import warnings

from fsq_repro.pipeline.memory_plan import compose_train_config, step_peak


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Linux ≥ 4.0: writing 5 to ``clear_refs`` resets the peak resident set (``VmHWM``) to the current one, so
    that the peak read after the step is the step's and not an earlier phase's (imports, config composition)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> None:
    warnings.filterwarnings("ignore")
    experiment, stage, batch, *overrides = sys.argv[1:]
    cfg = compose_train_config([f"experiment={experiment}", "trainer=cpu", *overrides])
    plan = step_peak(cfg, stage, int(batch), "32-true", cuda_kernels=False)  # also warms up torch's lazy state
    gc.collect()
    if not reset_peak():  # without a reset the plan's transient memory would count as the step's
        sys.exit("memory_probe: /proc/self/clear_refs is not writable; cannot reset the peak resident set")
    before = resident_bytes()
    tracked = step_peak(cfg, stage, int(batch), "32-true", real=True)
    peak = peak_bytes()
    print(json.dumps({"plan": plan["peak"], "tracked": tracked["peak"], "resident": peak - before}))


if __name__ == "__main__":
    main()
