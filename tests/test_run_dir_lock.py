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

from fsq_repro.entry import run_dir_lock
from fsq_repro.errors import ConfigError


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    with run_dir_lock(tmp_path):
        with pytest.raises(ConfigError, match=rf"run dir {tmp_path} is in use by train.py \(pid {os.getpid()}\)"):
            with run_dir_lock(tmp_path):
                pass
    with run_dir_lock(tmp_path):  # released on exit: the next run goes ahead
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from fsq_repro.entry import run_dir_lock\n"
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
