"""Bad command lines, fuzzed: every option a user types wrong into ``train.py``, ``eval.py``, ``sample.py`` or
``pretokenize.py`` must end in a one-line error before any expensive work — never a traceback, a hang, or a run that
goes ahead with the bad value (docs/fault-tolerance.md item 5).

    python scripts/fuzz_cli.py [--quick] [--entry train|eval|sample|pretokenize] [--timeout 60]

What is typed (``cases``). Numeric options: every one the README / docs usage lines name for the entry point
(``seed``, ``data.batch_size``, ``data.resolution``, ``trainer.devices``, ``model.stage1|stage2.max_steps``,
``eval_num_images``, ``metrics.num_per_class``, ``metrics.reference_size``, ``num_per_class``, ``batch_size``,
``cfg_scale``, ``cfg_scales``) plus the ones of the composed config of the entry's typical experiment that a user
sets next (learning rates, Stage II batch, ``trainer.num_nodes`` / ``max_steps`` / ``accumulate_grad_batches``,
``metrics.batch_size`` / ``num_images``, ``sampler.steps``), each as ``0``, ``-1``, ``abc``, an empty value and,
where a range exists, an out-of-range one (a seed past 2^32, a resolution the tokenizer cannot halve, more CPU
processes than cores, an EMA decay of 1.5). Names: unknown keys (``foo=1``), a misspelt group (``experimnt=demo``),
unknown group options, stages, eval tasks and metric modes. Paths: every file option (``run=``, ``tokenizer=``,
``maskgit=``, ``uvim_stage1=``, ``uvim_lm=``, ``ckpt_path=``, ``data.root=``, ``metrics.inception_weights=``,
``metrics.reference=``, ``loss.perceptual.weights=``, ``out=``) missing, a directory where a file is expected (or a
file where a directory is), and unreadable (``chmod 000``; skipped with a note when running as root, whom it
does not stop). The rest of each command is a cheap valid one (``base``: the embedded shapes, a tiny tokenizer and
MaskGIT written here), so a bad value that slips through shows as "accepted" instead of failing on something else;
the four base commands run first and must succeed.

Outcomes: **one-line error** — exit code non-zero, no ``Traceback`` in the output, and the last non-empty stderr line
starts with ``error:`` (the entry points' ``one_line_errors``, exit 2); Hydra's own composition errors (unknown
key, group or option: exit 1, no traceback, the first line names what was typed, the next ones say
``+key=`` / list the options, then Hydra's ``HYDRA_FULL_ERROR`` hint) count as one-line errors too: they are
Hydra's standard answer before any of our code runs, and catching them would mean re-implementing its CLI.
**traceback**, **hang** (no answer within ``--timeout``) and **accepted** (exit 0) fail the fuzz.

Design: one worker process imports the four entry modules once (torch and Lightning cost 5-10 s per import on 2
cores, so one process per command would take ~20 min) and calls their Hydra ``main()`` with ``sys.argv`` patched,
file descriptors 1 and 2 redirected to a file (so C-level and logging output is caught too), and the Hydra global
state, cwd, logging handlers and warning filters reset around each call. The parent enforces the time limit: on a
hang it kills the worker, re-runs that command alone as ``python <entry>.py ...`` (so a hang is never an artefact
of shared state) and starts a new worker. State leaks are checked by re-running the first command at the end.

Ends with ``cli fuzz: K commands, K one-line errors, 0 tracebacks`` (exit 1 on any traceback, hang or acceptance).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ("train", "eval", "sample", "pretokenize")
BAD = ("0", "-1", "abc", "")  # zero, negative, non-numeric, empty (``key=``)
# option -> out-of-range or misspelt values beyond BAD (a dict: the whole edit, for a value bad only in a stage)
# fmt: off
NUMERIC = {
    "train": {
        "seed": ["4294967296"], "data.batch_size": ["2.5"],
        "data.resolution": [{"stages": "[stage1]", "data.resolution": "33"}], "data.num_workers": None,
        "trainer.devices": ["4096"], "trainer.num_nodes": None, "trainer.max_steps": None,
        "trainer.accumulate_grad_batches": None, "model.stage1.max_steps": None, "model.stage1.optim.lr": None,
        "model.stage1.optim.ema_decay": ["1.5"],
        "model.stage1.global_batch_size": [{"stages": "[stage1]", "model.stage1.global_batch_size": "100"}],
        "model.stage2.max_steps": None, "model.stage2.batch_size": None, "model.stage2.optim.lr": None,
        "eval_num_images": None, "metrics.reference_size": None, "metrics.num_per_class": None,
        "sampler.steps": None, "sampler.cfg_scale": None, "stages": ["[stage3]"],
        "eval_tasks": [{"stages": "[eval]", "eval_tasks": "[fid]"}], "trainer.precision": ["16-mix"],
    },
    "eval": {
        "seed": ["4294967296"], "cfg_scale": None, "cfg_scales": ["[abc]", "[-1]"], "data.resolution": ["33"],
        "metrics.num_per_class": None, "metrics.batch_size": None, "metrics.num_images": None,
        "metrics.reference_size": None, "metrics.pr_reference_size": None, "sampler.steps": None,
        "task": ["recon"], "metrics.extractor": ["inceptoin"], "metrics.pr_mode": ["fast"],
        "metrics.is_mode": ["foo"], "sampler.cfg_schedule": ["cosine2"],
    },
    "sample": {"num_per_class": ["1.5"], "batch_size": None, "seed": ["4294967296"], "cfg_scale": None,
               "sampler.steps": None, "classes": ["[99]", "[abc]"]},
    "pretokenize": {"batch_size": None, "data.batch_size": None, "data.resolution": ["33"], "seed": None},
}
ZERO_OK = {"seed", "cfg_scale", "sampler.cfg_scale", "data.num_workers", "model.stage1.optim.ema_decay"}  # 0 is valid
NAMES = ["foo=1", "experimnt=demo", "experiment=no_such_experiment", "data=imagenet_512", "quantizer=fsq_7",
         "trainer=tpu", "data.batch_sise=8"]
# fmt: on


def base(entry: str, tmp: Path) -> dict[str, str]:
    """A cheap valid command of each entry point (the fuzzed option replaces or joins these)."""
    small = {"data.cache_dir": "null", "data.train.size": "64", "data.val.size": "32", "logger": "none"}
    run = str(tmp / "run")
    if entry == "train":
        return {"experiment": "demo", "stages": "[data]", **small}
    if entry == "eval":
        return {"task": "reconstruction", "run": run, "metrics.extractor": "none", "metrics.num_images": "8", **small}
    if entry == "sample":
        return {"run": run, "num_per_class": "1", "batch_size": "10", "sampler.steps": "2", **small}
    return {"tokenizer": f"{run}/tokenizer.pt", **small}  # out: null = <run dir>/tokens, one cache per command


def paths(entry: str, tmp: Path, unreadable: bool) -> list[dict[str, str]]:
    """Path options set to a missing path, a directory (or a file where a directory goes), an unreadable file."""
    missing, folder, locked, empty = tmp / "missing.pt", tmp / "folder", tmp / "locked.pt", tmp / "empty_run"
    files = [str(missing), str(folder)] + ([str(locked)] if unreadable else [])
    eval_ = {"stages": "[eval]", "eval_tasks": "[sampling]", "metrics.extractor": "inception"}
    per = {
        "train": [
            ({"stages": "[tokenize]"}, "tokenizer"),
            ({"experiment": "uvim_demo", "stages": "[uvim_tokenize]"}, "uvim_stage1"),
            ({"experiment": "uvim_demo", "stages": "[uvim_eval]"}, "uvim_lm"),
            ({"stages": "[stage1]"}, "ckpt_path"),
            ({"stages": "[stage1]", "model.stage1.perceptual_weight": "0.1"}, "loss.perceptual.weights"),
            (eval_, "metrics.inception_weights"),
            ({**eval_, "metrics.extractor": "shapes"}, "metrics.reference"),
        ],
        "eval": [
            ({}, "tokenizer"),
            ({"task": "sampling"}, "maskgit"),
            ({"task": "sampling"}, "metrics.reference"),
            ({"task": "sampling", "metrics.extractor": "inception"}, "metrics.inception_weights"),
        ],
        "sample": [({}, "tokenizer"), ({}, "maskgit")],
        "pretokenize": [({}, "tokenizer")],
    }[entry]
    cases = [{**extra, key: f} for extra, key in per for f in files]
    root = {"experiment": None, "data": "imagenet_256", "data.resolution": "32", "data.train.size": None}
    root.update({"data.val.size": None, "data.cache_dir": None})
    if entry != "sample":  # sample.py reads no data
        cases += [{**root, "data.root": str(d)} for d in (missing, tmp / "folder" / "file.txt")]
    if entry in ("eval", "sample"):
        cases += [{"run": str(r), "tokenizer": None} for r in (missing, tmp / "folder" / "file.txt", empty)]
    if entry in ("sample", "pretokenize"):
        cases += [{"out": str(tmp / "folder" / "file.txt")}]
    return cases


def cases(entry: str, tmp: Path, unreadable: bool, quick: bool = False) -> list[tuple[list[str], bool]]:
    """Every fuzzed command line of ``entry`` (Hydra overrides, the base's keys replaced) and whether Hydra's own
    composition error is the expected answer (the unknown names only: elsewhere it would hide a fuzzer mistake).
    ``quick`` (the test's subset): ``0`` and ``abc`` of the first two numeric options, ``foo=1``, ``experimnt=demo``
    and the first missing path."""
    numeric = list(NUMERIC[entry].items())[: 2 if quick else None]
    edits = [
        value if isinstance(value, dict) else {key: value}
        for key, extra in numeric
        for value in (*BAD, *(extra or []))
        if not (value == "0" and key in ZERO_OK) and (not quick or value in ("0", "abc"))
    ]
    names = [dict([name.split("=", 1)]) for name in NAMES[: 2 if quick else None]]
    files = paths(entry, tmp, unreadable)[: 1 if quick else None]
    out = []
    for edit in edits + names + files:
        merged = {**base(entry, tmp), **edit}
        out.append(([f"{k}={v}" for k, v in merged.items() if v is not None], edit in names))
    return out


def tails(rc: int | None, out: str, err: str) -> dict:
    """What comes back of one command: its exit code and output tails (a traceback is never cut off)."""
    flag = "Traceback (in the output)\n" if "Traceback" in out + err and "Traceback" not in err[-6000:] else ""
    return {"rc": rc, "out": out[-6000:], "err": flag + err[-6000:]}


def classify(rc: int | None, out: str, err: str, hydra_ok: bool = False) -> str:
    if rc is None:
        return "hang"
    if "Traceback" in out + err:
        return "traceback"
    if rc == 0:
        return "accepted"
    lines = [line for line in err.splitlines() if line.strip()]
    if lines and lines[-1].startswith("error: "):
        return "one-line"
    if hydra_ok and rc == 1 and lines and lines[-1].startswith("Set the environment variable HYDRA_FULL_ERROR=1"):
        return "one-line"  # Hydra's own composition error (module docstring)
    return "other"


# ----------------------------------------------------------------------------------------------------- worker side
def write_fixtures(tmp: Path) -> None:
    """A tiny valid run dir (tokenizer.pt + maskgit.pt for the 32 px shapes) and the bad paths."""
    import torch

    from fsq_repro.artifacts import save_maskgit, save_tokenizer
    from fsq_repro.data.token_cache import file_hash
    from fsq_repro.nets.tokenizer import Tokenizer
    from fsq_repro.nets.transformer import MaskGITTransformer
    from fsq_repro.quantizers import FSQ

    torch.manual_seed(0)
    run = tmp / "run"
    run.mkdir()
    tok = Tokenizer(FSQ([5, 5, 5]), resolution=32, base_channels=8, channel_multipliers=(1, 2, 2), num_res_blocks=1,
                    groups=4)  # fmt: skip
    save_tokenizer(run / "tokenizer.pt", tok)
    gpt = MaskGITTransformer(125, 10, 64, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
    save_maskgit(run / "maskgit.pt", gpt, tokenizer_hash=file_hash(run / "tokenizer.pt"))
    (tmp / "folder").mkdir()
    (tmp / "folder" / "file.txt").write_text("not a directory\n")
    (tmp / "empty_run").mkdir()
    locked = tmp / "locked.pt"
    locked.write_bytes((run / "tokenizer.pt").read_bytes())
    locked.chmod(0)


def worker(tmp: Path) -> None:
    """Read ``[entry, run dir, *overrides]`` JSON lines; answer ``{"rc", "out", "err"}`` JSON lines (the output's
    tails, and ``"Traceback"`` prepended to ``err`` when the whole output holds one)."""
    import importlib.util
    import logging
    import warnings

    from hydra.core.global_hydra import GlobalHydra

    proto = os.fdopen(os.dup(1), "w")
    mains = {}
    for entry in ENTRIES:
        spec = importlib.util.spec_from_file_location(f"fuzz_entry_{entry}", ROOT / f"{entry}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main.__wrapped__.__module__ = "__main__"  # Hydra then finds configs/ next to the file, as when run
        mains[entry] = (module.main, str(ROOT / f"{entry}.py"))
    for line in sys.stdin:
        request = json.loads(line)
        if request == "setup":
            if not (tmp / "run").exists():
                write_fixtures(tmp)
            print(json.dumps("ready"), file=proto, flush=True)
            continue
        entry, run_dir, *overrides = request
        main, script = mains[entry]
        cwd, handlers, argv = os.getcwd(), logging.root.handlers[:], sys.argv
        sys.argv = [script, f"hydra.run.dir={run_dir}", *overrides]
        GlobalHydra.instance().clear()
        saved = os.dup(1), os.dup(2)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            rc = 0
            try:
                with warnings.catch_warnings():
                    main()
            except SystemExit as stop:
                rc = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            except BaseException:  # what Hydra lets through: a traceback like any other
                import traceback

                traceback.print_exc()
                rc = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                [os.close(fd) for fd in saved]
            out.seek(0)
            err.seek(0)
            answer = tails(rc, out.read(), err.read())
        GlobalHydra.instance().clear()
        os.chdir(cwd)
        logging.root.handlers[:] = handlers
        sys.argv = argv
        print(json.dumps(answer), file=proto, flush=True)


# ----------------------------------------------------------------------------------------------------- parent side
def environment() -> dict[str, str]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    env.pop("HYDRA_FULL_ERROR", None)
    return env


class Worker:
    def __init__(self, tmp: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(tmp)], cwd=ROOT, env=environment(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)  # fmt: skip

    def ask(self, request, timeout: float) -> dict | None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def close(self) -> None:  # the worker and anything it started (its own process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def alone(entry: str, run_dir: Path, overrides: list[str], timeout: float) -> dict:
    """The command as its own process (a hang's second opinion)."""
    cmd = [sys.executable, f"{entry}.py", f"hydra.run.dir={run_dir}", *overrides]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": None, "out": "", "err": f"no answer within {timeout:.0f} s"}
    return tails(proc.returncode, proc.stdout, proc.stderr)


def summary(result: tuple) -> tuple:
    """What a repeated command must answer again: exit code, outcome, last stderr line (run dirs masked)."""
    lines = [line for line in result[3]["err"].splitlines() if line.strip()] or [""]
    return result[3]["rc"], result[4], re.sub(r"runs/\d+", "runs/N", lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small subset (tests/test_cli_fuzz.py)")
    parser.add_argument("--entry", choices=ENTRIES, action="append", help="only this entry point (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per command before it is a hang")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every command's last stderr line")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz_cli_") as name:
        tmp = Path(name)
        fuzz = Worker(tmp)
        if fuzz.ask("setup", 300) != "ready":
            print("cli fuzz: the worker did not start", file=sys.stderr)
            return 1
        unreadable = not os.access(tmp / "locked.pt", os.R_OK)
        if not unreadable:
            print("note: running as root, where chmod 000 does not stop reads: unreadable-file cases skipped")
        entries = args.entry or list(ENTRIES)
        commands = [(e, *c) for e in entries for c in cases(e, tmp, unreadable, args.quick)]
        bases = {e: [f"{k}={v}" for k, v in base(e, tmp).items()] for e in entries}
        todo = [(e, bases[e], False, "base") for e in entries]
        todo += [(*c, "fuzz") for c in commands] + [(*commands[0], "repeat")]
        results = []
        for i, (entry, overrides, hydra_ok, kind) in enumerate(todo):
            run_dir = tmp / "runs" / str(i)
            answer = fuzz.ask([entry, str(run_dir), *overrides], args.timeout)
            if answer is None:  # a hang: a fresh process decides, then a fresh worker for the rest
                fuzz.close()
                answer = alone(entry, run_dir, overrides, args.timeout)
                fuzz = Worker(tmp)
                fuzz.ask("setup", 300)
            results.append(
                (entry, overrides, kind, answer, classify(answer["rc"], answer["out"], answer["err"], hydra_ok))
            )
        fuzz.close()
    failures = [r for r in results if r[2] == "base" and r[4] != "accepted"]
    failures += [r for r in results if r[2] != "base" and r[4] != "one-line"]
    first, last = (next(r for r in results if r[2] == "fuzz"), results[-1])
    if summary(first) != summary(last):
        failures.append((*last[:4], "state leak (the first command answered differently when repeated)"))
    fuzzed = [r for r in results if r[2] == "fuzz"]
    counts = {k: sum(r[4] == k for r in fuzzed) for k in ("one-line", "traceback", "hang", "accepted", "other")}
    for entry, overrides, _kind, answer, outcome in results if args.verbose else []:
        lines = [line for line in answer["err"].splitlines() if line.strip()] or [""]
        shown = lines[-1] if lines[-1].startswith("error: ") else lines[0]
        print(f"{outcome:9} {entry}.py {' '.join(o for o in overrides if o not in bases[entry])}\n    {shown[:150]}")
    for entry, overrides, kind, answer, outcome in failures:
        text = (answer["err"].strip() or answer["out"].strip()).splitlines()
        print(f"\n[{outcome}] ({kind}) python {entry}.py {' '.join(overrides)}  (exit {answer['rc']})")
        print("    " + "\n    ".join(text[:3] + (["...", *text[-3:]] if len(text) > 6 else text[3:])))
    extra = "".join(f", {counts[k]} {k}" for k in ("hang", "accepted", "other") if counts[k])
    print(f"wall time {time.perf_counter() - start:.0f} s")
    print(
        f"cli fuzz: {len(fuzzed)} commands, {counts['one-line']} one-line errors, {counts['traceback']} tracebacks"
        + extra
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
