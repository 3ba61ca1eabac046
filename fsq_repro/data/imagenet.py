"""ImageNet and any image folder (FSQ paper §4.1/§4.3 train on ImageNet 128 / 256).

Layout (torchvision ``ImageFolder``): ``root/{train,val}/<class>/<image>``, labels ``0..C−1`` in **sorted class-
folder order** — for ImageNet the sorted-wnid order that MaskGIT and ADM use. ``data.root`` is required; a missing
or empty root raises a one-line ``ConfigError`` naming ``data.root`` and the expected layout.

``ImageFolderDataset`` also serves user folders (``configs/data/folder.yaml``): class-conditional when the split
folder has sub-folders, unconditional (one class) when the images sit directly in it; when ``root/<split>`` does not
exist, ``root`` itself is split deterministically (every ``holdout_every``-th file is validation).

Unreadable files (truncated JPEGs, zero-byte files, text named ``.JPEG``) are never fatal: ``__getitem__`` returns
``None``, warns with the first few paths, and ``collate_skip_corrupt`` drops and counts them.

Items: ``{"image": (3, R, R) float32 in [−1, 1], "label": int, "index": int}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from fsq_repro.data.transforms import image_transform
from fsq_repro.errors import ConfigError

log = logging.getLogger(__name__)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
LAYOUT = "root/{train,val}/<class>/*.JPEG"
MAX_WARNINGS = 5
# what PIL raises for a file it cannot decode (truncated, bit-flipped, not an image, a directory, a decompression
# bomb); the datasets return ``None`` for it, which ``collate_skip_corrupt`` drops and counts
UNREADABLE_IMAGE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def scan_image_folder(directory: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """``(class_names, [(path, label), ...])`` for a folder; one unnamed class if it has no sub-folders."""
    subdirs = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    if subdirs:
        samples = []
        for label, name in enumerate(subdirs):
            for root, _, files in sorted(os.walk(directory / name)):
                samples += [(os.path.join(root, f), label) for f in sorted(files) if _is_image(f)]
        return subdirs, samples
    files = sorted(e.name for e in os.scandir(directory) if e.is_file() and _is_image(e.name))
    return ["all"], [(str(directory / f), 0) for f in files]


def load_rgb(path: str) -> Image.Image:
    """Open and fully decode an image as RGB (raises ``OSError``/``ValueError`` on a corrupt file)."""
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


class ImageFolderDataset(Dataset):
    """An ImageFolder split with MaskGIT transforms and corrupt-file skipping (see module docstring)."""

    def __init__(
        self,
        root: str | None,
        split: str = "train",
        resolution: int = 256,
        train: bool | None = None,
        expected_num_classes: int | None = None,
        holdout_every: int = 20,
        key: str = "data.root",
    ) -> None:
        if not root:
            raise ConfigError(f"{key} is required: pass {key}=/path/to/images (layout {LAYOUT})")
        base = Path(root).expanduser()
        if not base.is_dir():
            raise ConfigError(f"{key}={root} is not a directory (expected layout {LAYOUT})")
        directory = base / split
        self.split, self.resolution = split, int(resolution)
        self.train = (split == "train") if train is None else bool(train)
        if directory.is_dir():
            self.class_names, self.samples = scan_image_folder(directory)
        else:  # no split folders: hold out every holdout_every-th file of root as validation
            self.class_names, all_samples = scan_image_folder(base)
            keep_val = split != "train"
            self.samples = [s for i, s in enumerate(all_samples) if (i % holdout_every == 0) == keep_val]
        if not self.samples:
            raise ConfigError(f"{key}={root} has no images for split '{split}' (expected layout {LAYOUT})")
        if expected_num_classes is not None and len(self.class_names) != expected_num_classes:
            raise ConfigError(
                f"data.num_classes={expected_num_classes} but {directory} has {len(self.class_names)} class folders"
            )
        self.num_classes = len(self.class_names)
        self.transform = image_transform(self.resolution, train=self.train)
        self._warned = 0

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        first, last = self.samples[0][0], self.samples[-1][0]
        return f"folder-{self.split}-n{len(self)}-c{self.num_classes}-r{self.resolution}-{first}-{last}"

    def __getitem__(self, index: int) -> dict | None:
        path, label = self.samples[index]
        try:
            image = load_rgb(path)
        except UNREADABLE_IMAGE as err:
            if self._warned < MAX_WARNINGS:
                self._warned += 1
                log.warning("skipping unreadable image %s (%s: %s)", path, type(err).__name__, err)
            return None
        return {"image": self.transform(image), "label": label, "index": index}
