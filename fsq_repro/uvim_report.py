"""FSQ paper Table 2 (NYU depth rows) and a Fig. 6-style grid from UViM runs (``uvim_eval.json`` +
``uvim_predictions.npz`` in each run dir, written by the ``uvim_eval`` stage).

Runs are grouped by bottleneck — FSQ, VQ (with codebook splitting), VQ without splitting — and seeds are
aggregated as mean ± sample std (Table 2: mean ± std over 3 Stage II runs). The paper's numbers sit next to ours;
on the embedded CPU scenes they are a reference for the *pattern* (FSQ ≈ VQ with splitting; VQ without splitting
uses far fewer codes), not for the values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

# FSQ paper Table 2 (NYU depth): RMSE mean ± std and codebook usage
PAPER = {
    "VQ": {"rmse": 0.468, "rmse_std": 0.012, "usage": 0.99},
    "FSQ": {"rmse": 0.473, "rmse_std": 0.012, "usage": 0.99},
    "VQ without splitting": {"rmse": 0.490, "rmse_std": 0.0037, "usage": 0.0078},
}
ORDER = ("FSQ", "VQ", "VQ without splitting")


def variant(quantizer: dict) -> str:
    """``FSQ`` / ``VQ`` / ``VQ without splitting`` from a quantizer config (``Quantizer.config()``)."""
    if quantizer.get("name") == "fsq" or "levels" in quantizer:
        return "FSQ"
    return "VQ" if quantizer.get("split_dead_codes") else "VQ without splitting"


def find_uvim_runs(roots: list[str | Path]) -> list[Path]:
    found = []
    for root in map(Path, roots):
        found += [p.parent for p in sorted(root.rglob("uvim_eval.json"))]
    return found


def collect_uvim(roots: list[str | Path]) -> list[dict]:
    """One row per bottleneck: RMSE/AbsRel/δ1 mean ± std over seeds, oracle RMSE, usage, run dirs."""
    groups: dict[str, list[tuple[Path, dict]]] = {}
    for run in find_uvim_runs(roots):
        res = json.loads((run / "uvim_eval.json").read_text())
        groups.setdefault(variant(res["quantizer"]), []).append((run, res))
    rows = []
    for name in [n for n in ORDER if n in groups]:
        runs = groups[name]

        def stat(key: str, part: str = "uvim", runs=runs) -> tuple[float, float]:
            values = np.array([r[part][key] if part else r[key] for _, r in runs], dtype=float)
            return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")

        rmse, rmse_std = stat("rmse")
        rows.append({
            "bottleneck": name, "codebook_size": runs[0][1]["codebook_size"], "seeds": len(runs),
            "rmse": rmse, "rmse_std": rmse_std, "abs_rel": stat("abs_rel")[0], "delta1": stat("delta1")[0],
            "oracle_rmse": stat("rmse", "oracle")[0], "usage": stat("usage", "")[0],
            "paper_rmse": PAPER[name]["rmse"], "paper_rmse_std": PAPER[name]["rmse_std"],
            "paper_usage": PAPER[name]["usage"], "runs": [str(run) for run, _ in runs],
        })  # fmt: skip
    return rows


def _pm(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def table2_markdown(rows: list[dict]) -> str:
    lines = [
        "| bottleneck | codebook | seeds | RMSE ↓ | AbsRel ↓ | δ1 ↑ | oracle RMSE | usage | paper RMSE | paper usage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bottleneck']} | {r['codebook_size']} | {r['seeds']} | {_pm(r['rmse'], r['rmse_std'])} | "
            f"{r['abs_rel']:.3f} | {r['delta1']:.3f} | {r['oracle_rmse']:.3f} | {100 * r['usage']:.1f} % | "
            f"{_pm(r['paper_rmse'], r['paper_rmse_std'])} | {100 * r['paper_usage']:.2f} % |"
        )
    return "\n".join(lines)


def fig6_grid(rows: list[dict], path: Path, num: int = 6) -> Path | None:
    """Columns = examples; rows = image, ground truth, then one prediction row per bottleneck (first seed)."""
    from fsq_repro.lit.uvim_module import depth_grid
    from fsq_repro.viz import save_image_grid

    preds, image, truth, max_depth = [], None, None, 10.0
    for r in rows:
        run = Path(r["runs"][0])
        path_npz = run / "uvim_predictions.npz"
        if not path_npz.is_file():
            continue
        data = np.load(path_npz)
        max_depth = json.loads((run / "uvim_eval.json").read_text())["task"].get("max_depth", max_depth)
        if image is None:
            image, truth = torch.from_numpy(data["image"][:num]), torch.from_numpy(data["truth"][:num])
        preds.append(torch.from_numpy(data["uvim"][:num]))
    if image is None:
        return None
    grid = depth_grid(image, [truth, *preds], max_depth)
    return save_image_grid(grid, path, nrow=len(image), upscale=2 if grid.shape[-1] < 128 else 1)


def write_uvim_report(roots: list[str | Path], out_dir: str | Path) -> dict:
    """``uvim_report.md`` + ``uvim_table2.json`` + ``uvim_fig6.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_uvim(roots)
    grid = fig6_grid(rows, out / "uvim_fig6.png")
    names = ", ".join(r["bottleneck"] for r in rows)
    text = [
        "# UViM depth: FSQ vs VQ (FSQ paper Table 2, NYU rows; Fig. 6)",
        "",
        table2_markdown(rows),
        "",
        "RMSE in metres, mean ± std over seeds; usage = fraction of the codebook hit by the validation set's guiding "
        "codes; oracle = the Stage I decoder given the true codes (an upper bound for Stage II).",
        "",
        *([f"![Fig. 6-style grid: image, ground truth, then {names} (near = bright)](uvim_fig6.png)"] if grid else []),
    ]
    (out / "uvim_report.md").write_text("\n".join(text) + "\n")
    (out / "uvim_table2.json").write_text(json.dumps(rows, indent=2) + "\n")
    return {"report": out / "uvim_report.md", "rows": rows, "grid": grid}
