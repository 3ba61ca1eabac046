"""Fault soak (docs/fault-tolerance.md): run a shrunk pipeline once uninterrupted, then again while killing it at
random times and restarting the same command after each kill, and compare every artifact of the two runs.

    python scripts/soak.py                          # MaskGIT and UViM, 20 SIGKILLs each
    python scripts/soak.py --pipeline maskgit --kills 5 --signal TERM --seed 1

A pipeline is a list of commands: ``train.py`` (stage1 → tokenize → stage2 → eval, or UViM's four stages), then for
MaskGIT ``sample.py`` and ``scripts/report.py``. The uninterrupted run times every stage (from the ``[stage]``
headers ``train.py`` prints; ``sample.py`` and the report are one stage each). Each of the ``--kills`` kills aims at
a stage drawn in proportion to its time and lands a uniform delay within that stage's length after the stage starts
in the restarted command (finished stages are skipped quickly on a restart, so a kill may land in a later stage; the
stage it hit is read from the output). A command that finishes first is not killed (the kill counts as not
delivered). After the last kill every command is run to the end.

Compared with the uninterrupted run, bit for bit: every ``.pt`` (state dicts, configs, the numbers they carry),
``.json``, ``.npz`` and ``.npy`` under the run dir (the token cache included) and the report's ``report.json``,
outside ``checkpoints/`` and the loggers' folders. Not compared: timings (keys naming seconds or time), absolute
paths (the run dir is replaced by ``<run>``), PNG grids and logs. The last line reads
``soak: K of K kills survived, 0 artifacts differ``; the script exits 1 when anything differs or a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"checkpoints", "csv", "tensorboard", "wandb", ".hydra", "stage1", "stage2", "uvim_stage1", "uvim_stage2"}
VOLATILE = re.compile(r"seconds|time|wall|duration", re.IGNORECASE)

# Demo-sized pipelines, shrunk so that one uninterrupted run takes about a minute on 2 cores; checkpoints every
# 10 steps, so that a kill loses at most 10 steps of work.
MASKGIT = ["experiment=demo", "data.train.size=2000", "data.val.size=200", "model.stage1.max_steps=40",
           "model.stage1.val_check_interval=20", "model.stage2.max_steps=40", "model.stage2.val_check_interval=20",
           "metrics.reference_size=200", "metrics.num_per_class=4", "logger=csv",
           "callbacks.model_checkpoint.every_n_train_steps=10"]  # fmt: skip
UVIM = ["experiment=uvim_depth_shapes", "data.train.size=256", "data.val.size=32", "model.stage1.max_steps=30",
        "model.stage1.val_check_interval=15", "model.stage2.max_steps=30", "model.stage2.val_check_interval=15",
        "eval_num_images=16", "logger=csv", "callbacks.model_checkpoint.every_n_train_steps=10"]  # fmt: skip


# ``--tiny`` (the CI test): the MaskGIT pipeline at a few steps per stage, a checkpoint every 3 steps
MASKGIT_TINY = ["experiment=demo", "data.train.size=256", "data.val.size=64", "model.stage1.max_steps=12",
                "model.stage1.val_check_interval=6", "model.stage2.max_steps=12", "model.stage2.val_check_interval=6",
                "metrics.reference_size=64", "metrics.num_per_class=2", "logger=csv",
                "callbacks.model_checkpoint.every_n_train_steps=3"]  # fmt: skip


def commands(pipeline: str, run: Path, extra: list[str], tiny: bool = False) -> list[tuple[str, list[str], Path]]:
    """``(name, argv, artifact that exists once the command finished)`` for each command of the pipeline."""
    py = sys.executable
    maskgit = MASKGIT_TINY if tiny else MASKGIT
    if pipeline == "uvim":
        train = [py, "train.py", *UVIM, *extra, f"hydra.run.dir={run}"]
        return [("train", train, run / "uvim_eval.json"),
                ("report", [py, "scripts/report.py", str(run), "--out", str(run / "report")],
                 run / "report" / "uvim_table2.json")]  # fmt: skip
    train = [py, "train.py", *maskgit, *extra, f"hydra.run.dir={run}"]
    sample = [py, "sample.py", *maskgit[:1], f"run={run}", "num_per_class=2", "batch_size=8", f"out={run / 'sample'}",
              f"hydra.run.dir={run / 'sample'}"]  # fmt: skip
    report = [py, "scripts/report.py", str(run), "--out", str(run / "report")]
    return [("train", train, run / "results.json"), ("sample", sample, run / "sample" / "samples.npz"),
            ("report", report, run / "report" / "report.json")]  # fmt: skip


def stage_of(log: Path, command: str) -> str:
    """The stage a killed command was in: the last ``[stage]`` header ``train.py`` printed, else the command."""
    headers = re.findall(r"^\[(\w+)\]$", log.read_text(errors="replace"), re.M) if log.is_file() else []
    return headers[-1] if headers and command == "train" else command


HEADER = re.compile(r"^\[(\w+)\]$", re.M)


def run_once(argv: list[str], log: Path, sig: int, target: tuple[list[str], float] | None = None
             ) -> tuple[int | None, float, dict[str, float]]:  # fmt: skip
    """Run ``argv``, its output appended to ``log``. ``target = (stages, delay)``: send ``sig`` to its process group
    ``delay`` s after the first header of one of ``stages`` (``[stage1]`` …; ``[]``: after the start) appears in its
    output, if it still runs. Returns ``(returncode, seconds, {stage: seconds from the start to its header})``; the
    code is ``None`` when it was signalled."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        offset = out.tell()
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # each header reaches the log when printed, not at exit
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    stamps, kill_at = {}, None if target is None or target[0] else start + target[1]
    pos, partial = offset, b""  # the log is read on from where the last poll stopped, whole lines only
    while True:
        code = proc.poll()
        now = time.perf_counter()
        with open(log, "rb") as f:
            f.seek(pos)
            lines, _, partial = (partial + f.read()).rpartition(b"\n")
            pos = f.tell()
        for stage in HEADER.findall(lines.decode(errors="replace")):
            stamps.setdefault(stage, now - start)
        if code is not None:
            return code, now - start, stamps
        if kill_at is None and target is not None and any(stage in stamps for stage in target[0]):
            kill_at = now + target[1]
        if kill_at is not None and now >= kill_at:
            os.killpg(proc.pid, sig)
            proc.wait()
            return None, time.perf_counter() - start, stamps
        time.sleep(0.05)


def stage_spans(name: str, seconds: float, stamps: dict[str, float]) -> list[tuple[str, float]]:
    """``[(stage, seconds)]`` of one uninterrupted command: ``train.py``'s stages from its headers (start-up counted
    from its header on), or the whole command as one stage named after it."""
    if not stamps:
        return [(name, seconds)]
    names = list(stamps)
    ends = [stamps[n] for n in names[1:]] + [seconds]
    return [(n, end - stamps[n]) for n, end in zip(names, ends)]


def normalise(value, run: Path):
    """JSON-like ``value`` with the run dir replaced by ``<run>`` and timing fields dropped."""
    if isinstance(value, dict):
        return {k: normalise(v, run) for k, v in value.items() if not VOLATILE.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [normalise(v, run) for v in value]
    if isinstance(value, str):
        return "<run>" if value == run.name else value.replace(str(run), "<run>")
    return value


def same(a, b) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN == NaN


def load(path: Path, run: Path):
    if path.suffix == ".pt":
        return normalise(torch.load(path, map_location="cpu", weights_only=True), run)
    if path.suffix == ".json":
        return normalise(json.loads(path.read_text()), run)
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: torch.from_numpy(z[k].copy()) for k in z.files}
    return torch.from_numpy(np.load(path))


def artifacts(run: Path) -> list[Path]:
    return sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and p.suffix in {".pt", ".json", ".npz",
                  ".npy"} and not SKIP_DIRS & set(p.relative_to(run).parts[:-1]))  # fmt: skip


def differences(ref: Path, soaked: Path) -> list[str]:
    found = []
    ref_files, soaked_files = artifacts(ref), artifacts(soaked)
    found += [f"{p}: missing after the soak" for p in ref_files if p not in soaked_files]
    found += [f"{p}: only after the soak" for p in soaked_files if p not in ref_files]
    for rel in (p for p in ref_files if p in soaked_files):
        try:
            if not same(load(ref / rel, ref), load(soaked / rel, soaked)):
                found.append(f"{rel}: differs")
        except Exception as err:  # an unreadable artifact is a difference, not a crash of the soak
            found.append(f"{rel}: unreadable after the soak ({type(err).__name__}: {err})")
    return found


def soak(pipeline: str, out: Path, kills: int, seed: int, sig: int, extra: list[str], tiny: bool = False) -> dict:
    rng = random.Random(seed)
    ref, soaked = out / f"{pipeline}-reference", out / f"{pipeline}-soaked"
    for d in (ref, soaked):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    spans, total = {}, 0.0
    for name, argv, done in commands(pipeline, ref, extra, tiny):
        code, seconds, stamps = run_once(argv, ref / "soak.log", sig)
        if code != 0 or not done.is_file():
            raise SystemExit(f"soak: the uninterrupted {pipeline} {name} failed (code {code}); see {ref / 'soak.log'}")
        spans[name], total = stage_spans(name, seconds, stamps), total + seconds
    # every kill aims at a stage, drawn in proportion to the stage's uninterrupted time, and lands at a uniform
    # delay within that stage's length after the stage starts (in the restarted run, whose finished stages are
    # skipped quickly: the kill may land in a later one; the stage it hit is read from the output)
    targets = [(name, i) for name in spans for i in range(len(spans[name]))]
    plan = rng.choices(targets, weights=[spans[n][i][1] for n, i in targets], k=kills)
    delivered, hits, exits, start = 0, [], [], time.perf_counter()
    for name, argv, done in commands(pipeline, soaked, extra, tiny):
        stages = [stage for stage, _ in spans[name]]
        for _, i in sorted(t for t in plan if t[0] == name):
            if done.is_file():
                break
            aim = stages[i:] if stages != [name] else []  # this stage or a later one; [] = the command's start
            # the stage's length shared among the kills aimed at it: a restart resumes the stage part-way, and a
            # delay over its whole length would often let the command finish with kills unspent
            window = spans[name][i][1] / plan.count((name, i))
            code, _, _ = run_once(argv, soaked / "soak.log", sig, (aim, rng.uniform(0.2, max(0.5, window))))
            if code is None:
                delivered += 1
                hits.append(stage_of(soaked / "soak.log", name))
            else:
                exits.append(code)  # finished (or, after a SIGTERM, stopped cleanly) before the kill time
        for _ in range(10):  # run to the end (a SIGTERM'd run exits 0 and resumes on the next call)
            if done.is_file():
                break
            code, _, _ = run_once(argv, soaked / "soak.log", sig)
            exits.append(code)
        if not done.is_file():
            raise SystemExit(f"soak: {pipeline} {name} did not finish after the kills; see {soaked / 'soak.log'}")
    return {"pipeline": pipeline, "kills": delivered, "drawn": kills, "stages": hits, "exit_codes": exits,
            "differences": differences(ref, soaked), "reference_s": round(total, 1),
            "soak_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", choices=["maskgit", "uvim", "both"], default="both")
    parser.add_argument("--kills", type=int, default=20, help="kills per pipeline (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill times")
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "soak")
    parser.add_argument("--tiny", action="store_true", help="MaskGIT only, a few steps per stage (the CI test)")
    args, extra = parser.parse_known_args()
    if args.kills < 0:
        parser.error("--kills must be >= 0")
    sig = getattr(signal, f"SIG{args.signal}")
    start, results = time.perf_counter(), []
    pipelines = ["maskgit"] if args.tiny else ["maskgit", "uvim"] if args.pipeline == "both" else [args.pipeline]
    for pipeline in pipelines:
        result = soak(pipeline, args.out, args.kills, args.seed, sig, extra, args.tiny)
        results.append(result)
        stages = {s: result["stages"].count(s) for s in dict.fromkeys(result["stages"])}
        print(f"{pipeline}: {result['kills']} of {result['drawn']} SIG{args.signal}s delivered, stages hit {stages}, "
              f"{len(result['differences'])} artifacts differ; uninterrupted {result['reference_s']} s, "
              f"soaked {result['soak_s']} s", flush=True)  # fmt: skip
        for line in result["differences"]:
            print(f"  {line}")
    (args.out / "soak.json").write_text(json.dumps(results, indent=2))
    k = sum(r["kills"] for r in results)
    differ = sum(len(r["differences"]) for r in results)
    survived = k if differ == 0 else 0
    minutes = (time.perf_counter() - start) / 60
    print(f"soak: {survived} of {k} kills survived, {differ} artifacts differ ({minutes:.1f} min, seed {args.seed}, "
          f"SIG{args.signal})")  # fmt: skip
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
