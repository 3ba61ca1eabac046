"""Two train.py on one run dir: the second is refused in one line naming the holder; a killed holder leaves no
stale lock; the other ranks of a DDP launch do not take it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsq_repro.errors import ConfigError
from fsq_repro.pipeline.entry import run_dir_lock


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    with run_dir_lock(tmp_path):
        with pytest.raises(ConfigError, match=rf"run dir {tmp_path} is in use by train.py \(pid {os.getpid()}\)"):
            with run_dir_lock(tmp_path):
                pass
    with run_dir_lock(tmp_path):  # released on exit: the next run goes ahead
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from fsq_repro.pipeline.entry import run_dir_lock\n"
            "with run_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            with run_dir_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.time() + 10
    while True:  # the kernel drops a dead process's flock at once
        try:
            with run_dir_lock(tmp_path):
                break
        except ConfigError:
            assert time.time() < deadline, "the lock outlived its killed holder"
            time.sleep(0.1)


def test_other_ranks_of_a_launch_do_not_take_the_lock(tmp_path: Path, monkeypatch) -> None:
    with run_dir_lock(tmp_path):
        monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank re-launched by Lightning into the same run dir
        with run_dir_lock(tmp_path):
            pass


def test_lightning_info_lines_print_once_and_without_advertisements() -> None:
    """Under Hydra's root handlers, a Lightning INFO line reaches the console once (not also through the handler
    ``import lightning`` attaches), and the litlogger tip not at all."""
    import logging

    import lightning  # noqa: F401  (attaches its console handler to the "lightning" logger)

    from fsq_repro.lit.trainer import quiet_lightning_logging

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root, collect = logging.getLogger(), Collect()
    lightning_logger = logging.getLogger("lightning")
    saved = (list(root.handlers), list(lightning_logger.handlers), lightning_logger.propagate)
    lightning_logger.addHandler(Collect())  # stands for Lightning's own console handler
    root.addHandler(collect)  # stands for Hydra's console handler
    try:
        rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        rank_zero.info("GPU available: False")
        assert seen == ["GPU available: False"] * 2  # the duplicate the console showed
        seen.clear()
        quiet_lightning_logging()
        rank_zero.info("GPU available: False")
        rank_zero.info("💡 Tip: try installing litlogger to ...")
        assert seen == ["GPU available: False"]
    finally:
        root.handlers[:] = saved[0]
        lightning_logger.handlers[:] = saved[1]
        lightning_logger.propagate = saved[2]
        collect.filters.clear()
