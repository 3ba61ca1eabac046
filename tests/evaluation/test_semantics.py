"""The semantics study (FSQ paper §5.2, App. A.3): crop rule and similarity by hand, and the study's numbers tell a
tokenizer whose codes *are* concepts (a code = a cell's colour) from one whose codes are not (a hash of position)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsq_repro.errors import ConfigError
from fsq_repro.evaluation.maskgit import EvalOptions
from fsq_repro.evaluation.semantics import crop_box, crops_at, mean_pairwise_similarity, semantics_study

PALETTE = torch.tensor([[-1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1], [1, 1, 1]], dtype=torch.float)


def test_crop_box_and_crops_by_hand() -> None:
    assert crop_box(0, 0, 8, 64) == (0, 0, 16, 16)  # shifted in at the border, not shrunk
    assert crop_box(3, 5, 8, 64) == (20, 36, 36, 52)  # cell (24..32, 40..48) widened by 4
    assert crop_box(7, 7, 8, 64) == (48, 48, 64, 64)
    pixels = torch.arange(2 * 3 * 64 * 64, dtype=torch.float).view(2, 3, 64, 64)
    crops = crops_at(pixels, [1 * 64 + 3 * 8 + 5], (8, 8))  # image 1, token (3, 5)
    assert torch.equal(crops[0], pixels[1, :, 20:36, 36:52])


def test_mean_pairwise_similarity_against_a_double_loop() -> None:
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pairs = [F.cosine_similarity(x[i], x[j], dim=0).item() for i, j in itertools.permutations(range(7), 2)]
    assert mean_pairwise_similarity(x) == pytest.approx(np.mean(pairs), rel=1e-9)
    assert mean_pairwise_similarity(x[:1].repeat(4, 1)) == pytest.approx(1.0)


class ColourTokenizer(torch.nn.Module):
    """Codes that *are* concepts: a token is the palette colour nearest its 8×8 cell; decoding paints it."""

    codebook_size, resolution, token_grid = len(PALETTE), 64, (8, 8)
    quantizer = torch.nn.Identity()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        cells = F.avg_pool2d(images, 8).permute(0, 2, 3, 1)  # (B, 8, 8, 3)
        return torch.cdist(cells.reshape(-1, 3), PALETTE).argmin(1).view(len(images), 8, 8)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.interpolate(PALETTE[tokens].permute(0, 3, 1, 2), scale_factor=8, mode="nearest")


class HashTokenizer(ColourTokenizer):
    """Codes that are not concepts: a fixed function of (position, image index parity), blind to content;
    decoding gives a code-seeded random texture."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(64).view(8, 8)
        return torch.stack([(pos * 7 + b) % len(PALETTE) for b in range(len(images))])

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        texture = torch.rand(len(PALETTE), 3, 8, 8, generator=g) * 2 - 1
        tiles = texture[tokens]  # (B, 8, 8, 3, 8, 8)
        return tiles.permute(0, 3, 1, 4, 2, 5).reshape(len(tokens), 3, 64, 64)


class MeanColour(torch.nn.Module):
    """Stand-in extractor: the mean colour of a crop's central half, and of the whole crop at half weight."""

    label, name = "FD-test", "mean-colour"

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.float() / 127.5 - 1
        s = x.shape[-1] // 4
        return {"features": torch.cat([x[..., s:-s, s:-s].mean((2, 3)), 0.5 * x.mean((2, 3))], 1)}


def _images(n: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    colours = torch.randint(0, len(PALETTE), (n, 8, 8), generator=g)
    pixels = F.interpolate(PALETTE[colours].permute(0, 3, 1, 2), scale_factor=8, mode="nearest")
    return list((pixels + 0.1 * torch.randn(pixels.shape, generator=g)).clamp(-1, 1).split(8))


def test_the_numbers_tell_concept_codes_from_blind_codes(tmp_path: Path) -> None:
    options = EvalOptions(device="cpu")
    kwargs = dict(top_codes=4, patches_per_code=6, paint_images=5, paint_codes=4)
    colour = semantics_study(ColourTokenizer(), MeanColour(), _images(), options, tmp_path / "c", **kwargs)
    blind = semantics_study(HashTokenizer(), MeanColour(), _images(), options, tmp_path / "h", **kwargs)
    # concept codes: a code's patches look alike (far more than random ones) and paint the same thing everywhere
    assert colour["patch_similarity_within_code"] > colour["patch_similarity_random"] + 0.3
    assert colour["paint_similarity_same_code"] > 0.99 and colour["paint_similarity_other_codes"] < 0.5
    # blind codes: a code's patches are as alike as random patches (its painted texture is still the same texture)
    assert abs(blind["patch_similarity_within_code"] - blind["patch_similarity_random"]) < 0.25
    assert colour["num_images"] == 24 and len(colour["codes"]) == 4 and sorted(colour["code_counts"], reverse=True)
    for out in (colour, blind):
        assert Path(out["patches"]).is_file() and Path(out["paint"]).is_file()
    with pytest.raises(ConfigError, match=r"data\.resolution=64"):
        semantics_study(ColourTokenizer(), MeanColour(), [torch.zeros(2, 3, 32, 32)], options, tmp_path, **kwargs)
