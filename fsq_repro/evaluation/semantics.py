"""Does a single code stand for a fixed visual concept? (FSQ paper §5.2 "Semantics", App. A.3: the paper finds no
evidence that it does, for VQ or FSQ.) ``python eval.py task=semantics run=<run with tokenizer.pt>``.

For a trained tokenizer and a set of images ``(B, 3, H, W)`` in [−1, 1] (token grid ``(h, w)``, stride
``s = H / h``):

a) **Patches of a code** — ``top_codes`` codes at evenly spaced frequency ranks (the most frequent first, down to
   the last code seen ``patches_per_code`` times: the top ranks alone are all background here); for each, up to
   ``patches_per_code`` image crops around positions that were encoded to it (the token's ``s × s`` cell widened by
   ``s/2`` on every side: most of what the encoder saw, clamped at the border), in dataset order →
   ``semantics_patches.png`` (a row per code).
b) **Painting with a code** — the central ``h/2 × w/2`` tokens of ``paint_images`` images are overwritten with one
   code, for ``paint_codes`` of those codes (evenly spaced again), and decoded → ``semantics_paint.png`` (first
   row: the images decoded untouched; then a row per code). If a code meant a concept, its row would show it in
   every column.
c) **Numbers** — in the extractor's feature space (features centred on the mean of the random patches, cosine):
   ``patch_similarity_within_code`` = mean over codes of the mean pairwise similarity of that code's patches,
   ``patch_similarity_random`` = the same for as many random patches per group; and for b) the similarity of the
   painted regions across images for the same code (``paint_similarity_same_code``) vs for different codes
   (``paint_similarity_other_codes``). A code that is a concept has within ≫ random and same ≫ other.

Deliberate choices (the paper's App. A.3 shows pictures, no number): the crop rule, the centred cosine and the
painted region are ours, written here and in ``results.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from fsq_repro.errors import ConfigError
from fsq_repro.evaluation.maskgit import EvalOptions, uint8_nchw
from fsq_repro.viz import save_image_grid


def crop_box(i: int, j: int, stride: int, size: int) -> tuple[int, int, int, int]:
    """Pixel box ``(top, left, bottom, right)`` around token ``(i, j)``: its cell widened by ``stride // 2``, clamped
    to the image and shifted (not shrunk) at the border, so every crop is ``2·stride`` square."""
    side = 2 * stride
    top = min(max(i * stride - stride // 2, 0), size - side)
    left = min(max(j * stride - stride // 2, 0), size - side)
    return top, left, top + side, left + side


def mean_pairwise_similarity(features: torch.Tensor) -> float:
    """Mean cosine similarity over the ``n (n − 1)`` ordered pairs of distinct rows of ``(n, D)``."""
    x = F.normalize(features.double(), dim=1)
    n = len(x)
    if n < 2:
        return float("nan")
    gram = x @ x.T
    return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


def crops_at(pixels: torch.Tensor, positions: list[int], grid: tuple[int, int]) -> torch.Tensor:
    """Crops ``(k, 3, 2s, 2s)`` around flat token positions ``image · h·w + i · w + j`` of ``pixels (N, 3, H, W)``."""
    h, w = grid
    size = pixels.shape[-1]
    stride = size // h
    boxes = [(k // (h * w), crop_box((k % (h * w)) // w, k % w, stride, size)) for k in positions]
    crops = torch.stack([pixels[img, :, top:bottom, left:right] for img, (top, left, bottom, right) in boxes])
    return crops.float() / 127.5 - 1 if crops.dtype == torch.uint8 else crops  # uint8 store → [-1, 1]


def _features(extractor, crops: torch.Tensor, device: str) -> torch.Tensor:
    return extractor(uint8_nchw(crops).to(device))["features"].double().cpu()


def semantics_study(
    tokenizer,
    extractor,
    images: Iterable[torch.Tensor],
    options: EvalOptions,
    out_dir: Path,
    top_codes: int = 12,
    patches_per_code: int = 12,
    paint_images: int = 8,
    paint_codes: int = 6,
    seed: int = 0,
) -> dict:
    out_dir = Path(out_dir)
    pixels, tokens = [], []
    for batch in images:
        if batch.shape[-1] != tokenizer.resolution:
            raise ConfigError(f"images are {batch.shape[-1]} px but the tokenizer is {tokenizer.resolution} px: "
                              f"pass data.resolution={tokenizer.resolution}")  # fmt: skip
        pixels.append(uint8_nchw(batch.float().cpu()))  # uint8: 1/4 of float32 (metrics.num_images caps N)
        tokens.append(tokenizer.encode(batch.to(options.device)).cpu())
    pixels, tokens = torch.cat(pixels), torch.cat(tokens)  # (N, 3, H, W), (N, h, w)
    n, h, w = tokens.shape
    size, stride = pixels.shape[-1], pixels.shape[-1] // h
    counts = torch.bincount(tokens.flatten(), minlength=tokenizer.codebook_size)
    # codes at evenly spaced frequency ranks, from the most frequent to the last one seen >= patches_per_code times
    # (the top ranks alone are all background on the embedded data)
    ranked = counts.argsort(descending=True)
    usable = max(1, int((counts >= patches_per_code).sum()))
    frequent = ranked[torch.linspace(0, usable - 1, min(top_codes, usable)).round().long()]

    # a) patches of those codes, in dataset order
    flat = tokens.flatten()
    rows = []
    for code in frequent.tolist():
        where = (flat == code).nonzero()[:, 0][:patches_per_code]
        rows.append(crops_at(pixels, where.tolist(), (h, w)))
    # random patches: the same number of groups and group sizes, uniformly over images and positions
    g = torch.Generator().manual_seed(seed)
    random_groups = []
    for crops in rows:
        picks = torch.randint(0, n * h * w, (len(crops),), generator=g).tolist()
        random_groups.append(crops_at(pixels, picks, (h, w)))
    random_feats = [_features(extractor, c, options.device) for c in random_groups]
    centre = torch.cat(random_feats).mean(0)
    within = [mean_pairwise_similarity(_features(extractor, c, options.device) - centre) for c in rows]
    random_sim = [mean_pairwise_similarity(f - centre) for f in random_feats]
    grid_rows = [F.pad(c, (0, 0, 0, 0, 0, 0, 0, patches_per_code - len(c)), value=-1) for c in rows]
    save_image_grid(torch.cat(grid_rows), out_dir / "semantics_patches.png", nrow=patches_per_code,
                    upscale=max(1, 32 // (2 * stride)))  # fmt: skip

    # b) paint the centre h/2 × w/2 tokens of a few images with one code
    chosen = tokens[:paint_images]
    t0, l0 = h // 4, w // 4
    region = (slice(t0 * stride, (t0 + h // 2) * stride), slice(l0 * stride, (l0 + w // 2) * stride))
    painted_rows = [tokenizer.decode(chosen.to(options.device)).clamp(-1, 1).float().cpu()]
    painted_feats = []
    paint = frequent[torch.linspace(0, len(frequent) - 1, min(paint_codes, len(frequent))).round().long()]
    for code in paint.tolist():
        edited = chosen.clone()
        edited[:, t0 : t0 + h // 2, l0 : l0 + w // 2] = code
        decoded = tokenizer.decode(edited.to(options.device)).clamp(-1, 1).float().cpu()
        painted_rows.append(decoded)
        painted_feats.append(_features(extractor, decoded[:, :, region[0], region[1]], options.device) - centre)
    save_image_grid(torch.cat(painted_rows), out_dir / "semantics_paint.png", nrow=len(chosen),
                    upscale=max(1, 128 // size))  # fmt: skip
    same = [mean_pairwise_similarity(f) for f in painted_feats]  # one code across images
    other = [mean_pairwise_similarity(torch.stack([f[i] for f in painted_feats])) for i in range(len(chosen))]

    def mean(values: list[float]) -> float:
        return float(torch.tensor(values, dtype=torch.float64).nanmean())

    return {
        "codebook_size": tokenizer.codebook_size,
        "quantizer": tokenizer.quantizer.__class__.__name__,
        "num_images": n,
        "codes": frequent.tolist(),
        "code_counts": counts[frequent].tolist(),
        "patch_similarity_within_code": mean(within),
        "patch_similarity_random": mean(random_sim),
        "patch_similarity_per_code": within,
        "paint_similarity_same_code": mean(same),
        "paint_similarity_other_codes": mean(other),
        "metric_space": extractor.label,
        "protocol": f"crops = token cell widened by stride/2 ({2 * stride} px); centred cosine of {extractor.name} "
        f"features; painted region = central {h // 2}x{w // 2} tokens",
        "patches": str(out_dir / "semantics_patches.png"),
        "paint": str(out_dir / "semantics_paint.png"),
    }
