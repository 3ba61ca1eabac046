"""Bad command lines, fuzzed (scripts/fuzz_cli.py --quick): zero, negative and non-numeric values of the first
numeric options of each entry point, an unknown key, a misspelt group and a missing file each end in a one-line
error before any expensive work — never a traceback, a hang or a run that goes ahead with the bad value. The full
run (no ``--quick``) types every option the README and docs name; its line is in docs/fault-tolerance.md item 5."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_bad_command_line_is_a_one_line_error() -> None:
    proc = subprocess.run([sys.executable, "scripts/fuzz_cli.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert last == "cli fuzz: 25 commands, 25 one-line errors, 0 tracebacks"
