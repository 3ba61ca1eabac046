"""Shared test helpers: the repo root, and a launcher for multi-process (gloo, CPU) runs via torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on a 2-core box: one torch thread per worker (and per subprocess it
    # starts, via OMP_NUM_THREADS) so the workers do not oversubscribe the cores.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def run_distributed(script: Path, *args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``script`` under ``torchrun --standalone --nproc_per_node nproc`` on CPU; raise with its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(script),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def shapes_cache_dir(tmp_path_factory) -> Path:
    """One cache dir per test session, so the shapes feature classifier is trained once for all tests."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def run_cli(
    script: str, run_dir: Path, *overrides: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python <script> hydra.run.dir=<run_dir> <overrides>`` from the repo root (not checked: tests assert);
    ``env`` adds to (or replaces in) the environment."""
    env = dict(
        os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), CUDA_VISIBLE_DEVICES="", **(env or {})
    )
    return subprocess.run(
        [sys.executable, script, f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    )
    return proc
