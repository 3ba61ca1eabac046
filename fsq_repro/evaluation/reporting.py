"""Collect the ``results.json`` of many pipeline runs (a Hydra multirun) into the paper's tables and figures.

- FSQ paper Table 1 / §5.1 Fig. 3: per run, the quantizer, codebook size |C|, reconstruction FID (a), sampling
  FID (b), codebook usage (c) and compression cost (d), FSQ against VQ, plotted against log2 |C|;
- Fig. 4 (§5.2): sampling FID against the CFG weight α and precision against recall, from each run's ``cfg_sweep``;
- Fig. 10 (App. A.4.1): sampling FID against log2 |C| coloured by the smallest level min L_i (levels ablation).

A run is a directory with ``results.json`` (written by the ``eval`` stage) and the quantizer description from
``stage1.json`` (or the run's ``tokenizer.pt``). The metric names come from the runs themselves: ``FID`` with the
Inception extractor, ``FD-shapes`` on the embedded data (never called FID).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fsq_repro.errors import ConfigError

COLUMNS = [  # (key in the row, header)
    ("run", "run"),
    ("quantizer", "quantizer"),
    ("codebook_size", "|C|"),
    ("log2_codebook", "log2 |C|"),
    ("usage", "usage"),
    ("psnr", "PSNR (dB)"),
    ("rfd", "r{metric}"),
    ("fd", "sampling {metric}"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("is", "IS"),
    ("cfg_scale", "α"),
    ("bits_per_token", "compression (bits/token)"),
]


def find_runs(roots: list[str | Path]) -> list[Path]:
    """Every directory under ``roots`` (the roots included) that holds a ``results.json``, sorted."""
    found = set()
    for root in map(Path, roots):
        if not root.exists():
            raise ConfigError(f"{root} does not exist")
        found.update(p.parent for p in root.rglob("results.json"))
    if not found:
        raise ConfigError(f"no results.json under {', '.join(map(str, roots))}: run the pipeline's eval stage first")
    return sorted(found)


def quantizer_of(run: Path) -> dict:
    """The quantizer config of a run (``stage1.json``, else the ``tokenizer.pt`` it used)."""
    stage1 = run / "stage1.json"
    if stage1.is_file():
        return json.loads(stage1.read_text())["quantizer"]
    from fsq_repro.artifacts import read_tokenizer_file

    return read_tokenizer_file(run / "tokenizer.pt")["config"]["quantizer"]


def describe(quantizer: dict) -> tuple[str, int, str]:
    """``(kind, |C|, label)``: e.g. ``("FSQ", 1000, "FSQ [8, 5, 5, 5]")`` or ``("VQ", 1024, "VQ 1024")``."""
    if quantizer.get("name") == "fsq":
        levels = [int(v) for v in quantizer["levels"]]
        return "FSQ", math.prod(levels), f"FSQ {levels}"
    size = int(quantizer["codebook_size"])
    return "VQ", size, f"VQ {size}"


def collect(roots: list[str | Path]) -> list[dict]:
    """One row per run (see ``COLUMNS``) plus ``kind``, ``min_level``, ``metric`` and the ``cfg_sweep`` curve."""
    rows = []
    for run in find_runs(roots):
        results = json.loads((run / "results.json").read_text())
        quantizer = quantizer_of(run)
        kind, size, label = describe(quantizer)
        rec, samp = results.get("reconstruction", {}), results.get("sampling", {})
        metric = rec.get("metric_space") or samp.get("metric_space") or "FD"
        rows.append({
            "run": run.name if run.name not in ("", ".") else str(run),
            "path": str(run),
            "kind": kind,
            "quantizer": label,
            "min_level": min(quantizer["levels"]) if kind == "FSQ" else None,
            "codebook_size": size,
            "log2_codebook": math.log2(size),
            "usage": rec.get("usage"),
            "psnr": rec.get("psnr"),
            "rfd": rec.get("rfd"),
            "fd": samp.get("fd"),
            "precision": samp.get("precision"),
            "recall": samp.get("recall"),
            "is": samp.get("is"),
            "cfg_scale": samp.get("cfg_scale"),
            "bits_per_token": results.get("compression", {}).get("bits_per_token"),
            "metric": metric,
            "curve": results.get("cfg_sweep", {}).get("curve"),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["kind"], r["codebook_size"], r["quantizer"], r["run"]))


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.0f}"
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    metric = rows[0]["metric"] if rows else "FD"
    headers = [h.format(metric=metric) for _, h in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, axes: list, path: Path) -> Path:
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    """Fig. 3 a)–d): rFID, sampling FID, usage and compression cost against log2 |C|, one line per quantizer kind."""
    plt = _plt()
    metric = rows[0]["metric"]
    panels = [("rfd", f"a) reconstruction {metric}"), ("fd", f"b) sampling {metric}"), ("usage", "c) codebook usage"),
              ("bits_per_token", "d) compression cost (bits/token)")]  # fmt: skip
    panels = [(key, title) for key, title in panels if any(r[key] is not None for r in rows)]  # e.g. no sampling
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    axes = axes[0]
    for ax, (key, title) in zip(axes, panels):
        for kind, marker in (("FSQ", "o-"), ("VQ", "s--")):
            points = sorted((r["log2_codebook"], r[key]) for r in rows if r["kind"] == kind and r[key] is not None)
            if points:
                ax.plot(*zip(*points), marker, label=kind)
        ax.set(title=title, xlabel="log2 |C|")
    return _save(fig, list(axes), path)


def plot_cfg(rows: list[dict], path: Path) -> Path | None:
    """Fig. 4: sampling FID against α, and precision against recall, one line per run with a ``cfg_sweep``."""
    swept = [r for r in rows if r["curve"]]
    if not swept:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for row in swept:
        curve = row["curve"]
        ax1.plot([c["cfg_scale"] for c in curve], [c["fd"] for c in curve], "o-", label=row["quantizer"])
        if "precision" in curve[0]:
            ax2.plot([c["recall"] for c in curve], [c["precision"] for c in curve], "o-", label=row["quantizer"])
    ax1.set(xlabel="CFG weight α", ylabel=f"sampling {rows[0]['metric']}", title="Fig. 4: FID vs α")
    ax2.set(xlabel="recall", ylabel="precision", title="Fig. 4: precision vs recall")
    return _save(fig, [ax1, ax2], path)


def plot_levels(rows: list[dict], path: Path) -> Path | None:
    """Fig. 10: sampling FID against log2 |C| for FSQ runs, coloured by min L_i (only when min L_i varies)."""
    fsq = [r for r in rows if r["kind"] == "FSQ" and r["fd"] is not None]
    if len({r["min_level"] for r in fsq}) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for level in sorted({r["min_level"] for r in fsq}):
        group = [r for r in fsq if r["min_level"] == level]
        ax.scatter([r["log2_codebook"] for r in group], [r["fd"] for r in group], label=f"min L_i = {level}")
    ax.set(xlabel="log2 |C|", ylabel=f"sampling {rows[0]['metric']}", title="Fig. 10: levels per channel")
    return _save(fig, [ax], path)


def write_report(roots: list[str | Path], out_dir: str | Path) -> dict:
    """``report.md`` (table + figures), ``report.json`` and the PNGs in ``out_dir``; returns what was written."""
    rows = collect(roots)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"tradeoff": plot_tradeoff(rows, out / "tradeoff.png"), "cfg": plot_cfg(rows, out / "cfg_sweep.png"),
               "levels": plot_levels(rows, out / "levels.png")}  # fmt: skip
    figures = {k: v for k, v in figures.items() if v is not None}
    metric = rows[0]["metric"]
    text = [f"# Report: {len(rows)} runs", "", f"Sources: {', '.join(map(str, roots))}. Metric space: {metric}"
            + (" (not FID: features of the embedded shapes classifier)" if metric != "FID" else "") + ".", "",
            "## FSQ paper Table 1 / Fig. 3: codebook size trade-off", "", markdown_table(rows), ""]  # fmt: skip
    captions = {"tradeoff": "Fig. 3 a)–d) against log2 |C|", "cfg": "Fig. 4: CFG sweep", "levels": "Fig. 10: min L_i"}
    for key, png in figures.items():
        text += [f"### {captions[key]}", "", f"![{key}]({png.name})", ""]
    (out / "report.md").write_text("\n".join(text))
    (out / "report.json").write_text(json.dumps(rows, indent=2, default=str))
    return {"rows": rows, "report": out / "report.md", "figures": figures}
