"""``scripts/demo_uvim.py``'s parallel lanes: each task's jobs run in their own process with ``cores / lanes``
threads and their own log, and a failed job stops the demo with one line naming that log."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import demo_uvim  # noqa: E402


def test_lanes_run_tasks_in_parallel_processes_with_their_own_logs_and_threads(tmp_path, monkeypatch) -> None:
    # a stand-in for train.py that records its thread budget and its start/end times: the lanes' intervals overlap
    fake = tmp_path / "train.py"
    fake.write_text("import os, sys, time\n"
                    "print('threads', os.environ.get('OMP_NUM_THREADS'), 'start', time.time(), flush=True)\n"
                    "time.sleep(1.0)\n"
                    "print('end', time.time())\n"
                    "sys.exit(3 if 'fail' in sys.argv else 0)\n")  # fmt: skip
    monkeypatch.setattr(demo_uvim, "ROOT", tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    walls = demo_uvim.run_lanes({"a": [["x=1"], ["x=2"]], "b": [["x=3"]]}, tmp_path / "out", [], lanes=2)
    assert set(walls) == {"a", "b"} and walls["a"] >= 2.0 and 1.0 <= walls["b"] < walls["a"]
    logs = {task: (tmp_path / "out" / task / "demo.log").read_text().split("\n") for task in "ab"}
    assert sum(line.startswith("$ ") for line in logs["a"]) == 2 and "x=3" in logs["b"][0]
    spans = {}
    for task, lines in logs.items():
        words = " ".join(lines).split()
        assert all(words[i + 1] == "2" for i, w in enumerate(words) if w == "threads")  # 4 cores / 2 lanes
        starts = [float(words[i + 1]) for i, w in enumerate(words) if w == "start"]
        ends = [float(words[i + 1]) for i, w in enumerate(words) if w == "end"]
        spans[task] = (min(starts), max(ends))
    assert spans["b"][0] < spans["a"][1] and spans["a"][0] < spans["b"][1]  # the two lanes overlapped in time

    with pytest.raises(SystemExit, match=r"failed \(exit 3\); its output: .*b/demo\.log"):
        demo_uvim.run_lanes({"a": [["x=1"]], "b": [["fail"]]}, tmp_path / "out2", [], lanes=2)
    assert (tmp_path / "out2" / "a" / "demo.log").read_text().count("end") == 1  # the other lane still finished
