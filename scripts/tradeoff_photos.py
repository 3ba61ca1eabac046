"""Fig. 3 on natural images at CPU scale (FSQ paper §5.1): the trade-off study on crops of the embedded photos, plus
what limits codebook usage there, in one command that writes ``docs/tradeoff_photos_cpu.md``.

1. ``train.py -m experiment=tradeoff_photos``: FSQ at the Table 1 level sets (2^8 … 2^16) and VQ with MaskGIT's
   entropy loss (2^8 … 2^14), 32 px crops, 8×8 tokens; Stage I validates on all 2 048 val crops every 200 steps,
   the eval stage gives PSNR, usage and the compression cost (bits/token under the Stage II transformer).
2. The val-diversity probe: Stage I of FSQ and VQ at 2^10 and 2^14 again, validated on crops of all nine photos
   (``data.val.source=all``) instead of the two held-out ones.

The doc gets the Fig. 3 table, the usage-against-steps table of both val sources and one line per Fig. 3 finding
(``evaluation/tradeoff_findings.py``). Finished jobs are skipped on a re-run (each stage skips when its artifact
exists); ``--doc-only`` rewrites the doc from finished jobs.

    python scripts/tradeoff_photos.py [--out outputs/tradeoff_photos] [--doc docs/tradeoff_photos_cpu.md]
                                      [--no-diversity] [--probe fsq_1000,vq_1024,...] [--doc-only [--minutes M]]
                                      [Hydra overrides for every job ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = "fsq_1000,vq_1024,fsq_15360,vq_16384"  # 2^10 and 2^14, FSQ and VQ: usage against steps and val diversity
PROBE_SIZES = (1000, 1024, 15360, 16384)


def multirun(out: Path, overrides: list[str], dry: bool = False) -> str:
    """``train.py -m experiment=tradeoff_photos`` into ``out``; returns the command line (``dry``: only that)."""
    cmd = [sys.executable, "train.py", "-m", "experiment=tradeoff_photos", f"hydra.sweep.dir={out}",
           "hydra.sweep.subdir=${hydra:job.override_dirname}", *overrides]  # fmt: skip
    if not dry:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return ("python " + " ".join(cmd[1:])).replace(f"{ROOT}/", "")


def runs_of(root: Path) -> dict[str, Path]:
    """``{quantizer label: run dir}`` of the finished Stage I runs under ``root``."""
    from fsq_repro.evaluation.reporting import describe, quantizer_of

    found = {}
    for stage1 in sorted(root.glob("*/stage1.json")):
        found[describe(quantizer_of(stage1.parent))[2]] = stage1.parent
    return found


def fsq_latent_stats(run: Path, num: int = 2048) -> dict:
    """What bounds an FSQ tokenizer's usage: per channel, the share of its ``L_i`` levels the val crops use; their
    product (the joint usage if the channels were independent); the joint usage itself; and the participation
    ratio ``(Σλ)² / Σλ²`` of the bounded latents' covariance (``d`` if every channel carries its own information,
    1 if all move together)."""
    import torch

    from fsq_repro.artifacts import load_tokenizer
    from fsq_repro.data.photos import PhotoCropsDataset

    tok = load_tokenizer(run / "tokenizer.pt")
    val = PhotoCropsDataset("val", size=num, resolution=tok.resolution)
    digits, bounded = [], []
    with torch.no_grad():
        for start in range(0, num, 256):
            images = torch.stack([val[i]["image"] for i in range(start, min(num, start + 256))])
            z = tok.quantizer.bound(tok.encoder(images).permute(0, 2, 3, 1)).reshape(-1, len(tok.quantizer.levels))
            bounded.append(z)
            digits.append(torch.round(z) + torch.as_tensor(tok.quantizer.levels) // 2)
    z, d = torch.cat(bounded).double(), torch.cat(digits).long()
    levels = list(tok.quantizer.levels)
    marginal = [len(torch.unique(d[:, i])) / level for i, level in enumerate(levels)]
    eig = torch.linalg.eigvalsh(torch.cov(z.T))
    joint = len(torch.unique(d, dim=0)) / torch.prod(torch.tensor(levels)).item()
    return {"marginal": marginal, "independent": float(torch.tensor(marginal).prod()), "joint": joint,
            "participation": float(eig.sum() ** 2 / (eig**2).sum()), "d": len(levels)}  # fmt: skip


def write_doc(out: Path, doc: Path, commands: list[str], minutes: float | None) -> str:
    import yaml

    from fsq_repro.evaluation.reporting import collect, describe, quantizer_of
    from fsq_repro.evaluation.tradeoff_findings import curve_table, findings, uniform_ceiling, usage_curves

    rows = collect([out / "sweep"])
    for row in rows:
        res = json.loads((Path(row["path"]) / "results.json").read_text())
        grid = json.loads((Path(row["path"]) / "tokens" / "meta.json").read_text())["token_grid"]
        row["tokens_per_image"] = grid[0] * grid[1]
        row["val_tokens"] = int(res["reconstruction"]["num_images"]) * row["tokens_per_image"]
        row["uniform_bits"] = res.get("compression", {}).get("uniform_bits_per_token")
    cfg = yaml.safe_load((Path(rows[0]["path"]) / ".hydra" / "config.yaml").read_text())
    tokens_per_step = int(cfg["data"]["batch_size"]) * rows[0]["tokens_per_image"]
    lines = [
        "| quantizer | \\|C\\| | val usage | uniform ceiling | PSNR (dB) | bits/token (uniform) |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["codebook_size"], r["kind"])):
        lines.append(f"| {r['quantizer']} | {r['codebook_size']} | {r['usage']:.1%} | "
                     f"{uniform_ceiling(r['codebook_size'], r['val_tokens']):.1%} | {r['psnr']:.2f} | "
                     f"{r['bits_per_token']:.2f} ({r['uniform_bits']:.2f}) |")  # fmt: skip
    curves, sizes = {}, {}
    for part, source in (("sweep", "2 held-out photos"), ("diversity", "all 9 photos")):
        for label, run in runs_of(out / part).items():
            size = describe(quantizer_of(run))[1]
            if size in PROBE_SIZES:
                curves[f"{label}, val: {source}"], sizes[f"{label}, val: {source}"] = usage_curves(run), size
    stats_lines = ["| FSQ levels | levels used per channel | their product | joint usage | participation ratio |",
                   "|---|---|---|---|---|"]  # fmt: skip
    for r in sorted((r for r in rows if r["kind"] == "FSQ"), key=lambda r: r["codebook_size"]):
        st = fsq_latent_stats(Path(r["path"]))
        used = " / ".join(f"{m:.0%}" for m in st["marginal"])
        stats_lines.append(f"| {r['quantizer']} | {used} | {st['independent']:.1%} | {st['joint']:.1%} | "
                           f"{st['participation']:.2f} of {st['d']} |")  # fmt: skip
    text = [
        "# Fig. 3 on natural images, CPU scale (FSQ paper §5.1)",
        "",
        f"`python scripts/tradeoff_photos.py` — {'?' if minutes is None else f'{minutes:.0f}'} min on 2 CPU cores. "
        "Random crops of the photos bundled with scikit-image (train: 7 photos) and scikit-learn (val: 2 photos), "
        f"32 px, 8×8 tokens, Stage I {cfg['model']['stage1']['max_steps']} steps at batch {cfg['data']['batch_size']} "
        f"(L2 only: no LPIPS weights, no GAN on CPU), Stage II {cfg['model']['stage2']['max_steps']} steps (only for "
        "the compression cost). Usage and PSNR on all 2 048 val crops; no feature distance (neither Inception nor the "
        "shapes classifier fits these crops). The *uniform ceiling* is the usage of as many uniformly drawn tokens.",
        "",
        "\n".join(lines),
        "",
        "## Which of Fig. 3's findings reproduce",
        "",
        *[f"- {line}" for line in findings(rows)],
        "",
        "## Val usage (and PSNR) against Stage I steps, and against val diversity",
        "",
        curve_table(curves, tokens_per_step, sizes),
        "",
        "## What bounds FSQ's usage here: the latent's channels (`fsq_latent_stats`, on the 2 048 val crops)",
        "",
        "\n".join(stats_lines),
        "",
        "Commands run:",
        "",
        *[f"    {c}" for c in commands],
    ]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(text) + "\n")
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "tradeoff_photos")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "tradeoff_photos_cpu.md")
    parser.add_argument("--no-diversity", action="store_true", help="skip the val-diversity probe (4 Stage I jobs)")
    parser.add_argument("--probe", default=PROBE, help=f"the quantizers of the val-diversity probe (default {PROBE})")
    parser.add_argument("--minutes", type=float, default=None, help="with --doc-only: the wall time to state")
    parser.add_argument("--doc-only", action="store_true", help="only rewrite the doc from finished jobs")
    args, overrides = parser.parse_known_args()
    start, dry = time.perf_counter(), args.doc_only
    commands = [multirun(args.out / "sweep", overrides, dry)]
    if not args.no_diversity:
        probe = [f"quantizer={args.probe}", "stages=[stage1]", "data.val.source=all"]  # the CLI wins over the params
        commands.append(multirun(args.out / "diversity", [*probe, *overrides], dry))
    minutes = args.minutes if dry else (time.perf_counter() - start) / 60
    print(write_doc(args.out, args.doc, commands, minutes))
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
