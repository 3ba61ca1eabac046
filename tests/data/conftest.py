"""A small ImageFolder stand-in for ImageNet, with corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image_folder(
    root: Path, classes=("n01", "n02", "n03"), per_class: int = 4, size: int = 40, corrupt: bool = True
) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, wnid in enumerate(classes):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = (rng.random((size, size + 8 * c, 3)) * 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"img_{i}.JPEG", format="JPEG")
    if corrupt:
        bad = root / "train" / classes[0]
        good = (bad / "img_0.JPEG").read_bytes()
        (bad / "truncated.JPEG").write_bytes(good[: len(good) // 3])
        (bad / "empty.JPEG").write_bytes(b"")
        (bad / "text.JPEG").write_text("this is not an image\n")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "imagenet")
