"""`make demo`: FSQ vs VQ bottlenecks on the embedded photos, trained for real on the CPU in about a minute.

Each run trains the same tiny convolutional autoencoder (16×16 RGB crops → 4×4 tokens → 16×16) with a different
bottleneck, then measures held-out PSNR, codebook usage and perplexity (``CodebookUsage``) — the quantities of
FSQ paper Fig. 3 at toy scale. Writes ``outputs/demo/quantizers/report.md`` and prints a table.

The full Stage I → Stage II pipeline is the second part of ``make demo`` (``scripts/demo_pipeline.py`` =
``train.py experiment=demo``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from fsq_repro.data.photos import load_embedded_photos, random_crops
from fsq_repro.metrics import CodebookUsage
from fsq_repro.quantizers import FSQ, Quantizer, VectorQuantizer


class TinyAutoencoder(nn.Module):
    """16×16×3 → (4×4, dim) → 16×16×3; the bottleneck is injected (FSQ paper Fig. 1)."""

    def __init__(self, quantizer: Quantizer, width: int = 64) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, quantizer.dim, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(quantizer.dim, width, 1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, 3, 4, 2, 1),
        )

    def forward(self, x: torch.Tensor):
        z = self.encoder(x).permute(0, 2, 3, 1)  # (B, h, w, d), channel-last for the quantizer
        q = self.quantizer(z)
        return self.decoder(q.codes.permute(0, 3, 1, 2)), q


def to_tensor(crops) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1  # pixels in [-1, 1]


def run(name: str, quantizer: Quantizer, train: torch.Tensor, val: torch.Tensor, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = TinyAutoencoder(quantizer)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (128,), generator=gen)]
        recon, q = model(batch)
        loss = (recon - batch).pow(2).mean() + q.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    usage = CodebookUsage(quantizer.codebook_size)
    mse = 0.0
    with torch.no_grad():
        for chunk in val.split(512):
            recon, q = model(chunk)
            usage.update(q.indices)
            mse += (recon.clamp(-1, 1) - chunk).pow(2).mean(dim=(1, 2, 3)).sum().item()
    mse /= len(val)
    stats = usage.compute()
    return {
        "bottleneck": name,
        "codebook_size": quantizer.codebook_size,
        "psnr_db": 10 * math.log10(4.0 / mse),  # peak-to-peak range 2 in [-1, 1]
        "usage": stats["usage"].item(),
        "perplexity": stats["perplexity"].item(),
        "train_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo/quantizers"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    photos = load_embedded_photos()
    train = to_tensor(random_crops(photos, 16, 20_000, seed=0))
    val = to_tensor(random_crops(photos, 16, 4_000, seed=1))
    bottlenecks = {
        "FSQ [5,5,5]": FSQ([5, 5, 5]),
        "VQ 128": VectorQuantizer(128, dim=16),
        "FSQ [8,5,5,5]": FSQ([8, 5, 5, 5]),  # FSQ paper Table 1, |C| ≈ 2^10
        "VQ 1024": VectorQuantizer(1024, dim=16),
    }
    results = [run(name, q, train, val, args.steps, seed=0) for name, q in bottlenecks.items()]

    table = Table(title=f"Bottlenecks on embedded photos (16×16 crops → 4×4 tokens, {args.steps} steps)")
    for col in ("bottleneck", "|C|", "val PSNR [dB]", "usage", "perplexity", "train s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["bottleneck"],
            str(r["codebook_size"]),
            f"{r['psnr_db']:.2f}",
            f"{r['usage']:.1%}",
            f"{r['perplexity']:.1f}",
            f"{r['train_seconds']:.1f}",
        )
    Console().print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Quantizer demo",
        "",
        f"`python scripts/demo.py --steps {args.steps}`",
        "",
        "| bottleneck | |C| | val PSNR [dB] | usage | perplexity |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['bottleneck']} | {r['codebook_size']} | {r['psnr_db']:.2f} | {r['usage']:.1%} | {r['perplexity']:.1f} |"
        for r in results
    ]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
