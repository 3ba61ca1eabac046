"""The codebook-size trade-off (FSQ paper §5.1, Fig. 3) as findings that a small run can confirm or refute.

Fig. 3 plots, against log2 |C|, a) reconstruction, c) codebook usage and d) compression cost for FSQ and VQ. The
paper's findings, each turned into a check on the rows of ``reporting.collect`` (one per run, with ``kind``,
``codebook_size``, ``usage``, ``psnr``, ``bits_per_token``) plus ``val_tokens``, the number of val tokens the usage
was counted on:

1. FSQ uses (almost) all of its codebook at every size: usage / uniform ceiling ≥ 0.9. The *uniform ceiling*
   ``1 − (1 − 1/|C|)^T`` is the expected usage of T tokens drawn uniformly from |C| codes: no tokenizer can be
   expected to beat it, and at |C| = 2^16 with 131 072 val tokens it is 86 %, not 100 %.
2. FSQ's reconstruction improves with |C| (PSNR rises from the smallest to the largest codebook; strictly at each
   size, or not).
3. VQ's usage falls as |C| grows (Fig. 3 c).
4. The compression cost rises with |C| (Fig. 3 d; both quantizers).

``usage_curves`` reads the val usage and PSNR that Stage I logged every ``val_check_interval`` steps
(``csv/stage1/metrics.csv``), the CPU-scale form of "the claim is about trained models": how usage grows with the
tokens seen per code. Pure functions over dicts: ``scripts/tradeoff_photos.py`` runs the study and writes the doc.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

USAGE_SHARE = 0.9  # finding 1: FSQ usage ≥ 90 % of the uniform ceiling


def uniform_ceiling(codebook_size: int, tokens: int) -> float:
    """Expected share of ``codebook_size`` codes hit by ``tokens`` uniform draws: ``1 − (1 − 1/|C|)^T``."""
    return 1.0 - math.exp(tokens * math.log1p(-1.0 / codebook_size))


def usage_curves(run: Path) -> list[dict]:
    """``[{"step", "usage", "psnr"}, …]`` from a run's ``csv/stage1/metrics.csv`` (rows with a ``val/usage``; the
    logged step is Lightning's 0-based one, so ``step + 1`` optimizer steps were done)."""
    path = Path(run) / "csv" / "stage1" / "metrics.csv"
    if not path.is_file():
        return []
    curve = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/usage"):
                curve[int(row["step"]) + 1] = {"step": int(row["step"]) + 1, "usage": float(row["val/usage"]),
                                               "psnr": float(row["val/psnr"])}  # fmt: skip
    if not curve:
        return []
    interval = min(curve)  # the first validation is at val_check_interval; a stage's final re-validation on a
    # subset of the val split logs one step later (e.g. 601): not a point of the curve
    return [curve[k] for k in sorted(curve) if k % interval == 0]


def _rising(values: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def _by_size(rows: list[dict], kind: str, key: str) -> list[tuple[int, float]]:
    return sorted((r["codebook_size"], r[key]) for r in rows if r["kind"] == kind and r.get(key) is not None)


def findings(rows: list[dict]) -> list[str]:
    """One line per Fig. 3 finding: ``reproduces`` / ``does not reproduce`` and the numbers behind it."""
    out = []
    fsq = [r for r in rows if r["kind"] == "FSQ" and r.get("usage") is not None]
    if fsq:
        shares = [(r["codebook_size"], r["usage"] / uniform_ceiling(r["codebook_size"], r["val_tokens"])) for r in fsq]
        low = [f"|C| = {size}: {share:.0%}" for size, share in sorted(shares) if share < USAGE_SHARE]
        verdict = "reproduces" if not low else "does not reproduce"
        listed = ", ".join(f"{share:.0%}" for _, share in sorted(shares))
        below = f"; below: {', '.join(low)}" if low else ""
        out.append(f"FSQ usage ≥ {USAGE_SHARE:.0%} of the uniform ceiling at every |C|: {verdict} (usage / ceiling "
                   f"{listed}{below})")  # fmt: skip
    psnr = _by_size(rows, "FSQ", "psnr")
    if len(psnr) >= 2:
        better = psnr[-1][1] > psnr[0][1]
        how = "strictly at every step" if _rising([p for _, p in psnr]) else "not at every step"
        (s0, p0), (s1, p1) = psnr[0], psnr[-1]
        out.append(f"FSQ reconstruction improves with |C|: {'reproduces' if better else 'does not reproduce'} "
                   f"(PSNR {p0:.2f} dB at {s0} → {p1:.2f} dB at {s1}; {how})")  # fmt: skip
    vq = _by_size(rows, "VQ", "usage")
    if len(vq) >= 2:
        falls = vq[-1][1] < vq[0][1]
        out.append(f"VQ usage falls as |C| grows: {'reproduces' if falls else 'does not reproduce'} ("
                   + ", ".join(f"{u:.1%} at {s}" for s, u in vq) + ")")  # fmt: skip
    for kind in ("FSQ", "VQ"):
        bits = _by_size(rows, kind, "bits_per_token")
        if len(bits) >= 2:
            rises = bits[-1][1] > bits[0][1]
            out.append(f"{kind} compression cost rises with |C|: {'reproduces' if rises else 'does not reproduce'} ("
                       + ", ".join(f"{b:.2f} bits at {s}" for s, b in bits) + ")")  # fmt: skip
    return out


def curve_table(curves: dict[str, list[dict]], tokens_per_step: int, sizes: dict[str, int]) -> str:
    """Markdown: one row per run label, val usage (and PSNR) at each logged step, and the tokens seen per code at
    the last step (``tokens_per_step · steps / |C|``)."""
    steps = sorted({p["step"] for curve in curves.values() for p in curve})
    lines = ["| run | " + " | ".join(f"{s} steps" for s in steps) + " | tokens seen per code |",
             "|---" * (len(steps) + 2) + "|"]  # fmt: skip
    for label, curve in curves.items():
        at = {p["step"]: p for p in curve}
        cells = [f"{at[s]['usage']:.1%} ({at[s]['psnr']:.1f} dB)" if s in at else "–" for s in steps]
        seen = tokens_per_step * (curve[-1]["step"] if curve else 0) / sizes[label]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seen:.0f} |")
    return "\n".join(lines)
