"""NYU Depth v2 for UViM's depth task (FSQ paper §4.4, Table 2; Silberman et al. 2012) from a local root.

Two layouts (``layout="auto"`` picks by what ``root`` holds):

- ``mat``: the official labeled file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5, read with h5py, opened
  lazily in each worker) — in h5py's view ``images (N, 3, W=640, H=480)`` uint8 and ``depths (N, W, H)`` float32
  metres (MATLAB is column-major: transposed here to ``H × W``) — with the official 795 / 654 train/test split from
  ``splits.mat`` (``trainNdxs`` / ``testNdxs``, 1-based; next to the .mat or ``splits_file=``);
- ``folder``: ``root/train/**`` and ``root/test/**`` with RGB images (jpg/png) each paired with a 16-bit PNG depth
  (``depth_scale`` metres per unit, 1e-3 = millimetres). Pairs: ``X_colors.*`` ↔ ``X_depth.png`` (DenseDepth test
  style), ``X_rgb.*`` ↔ ``X_depth.png``, ``rgb_X.*`` ↔ ``depth_X.png``, ``X.jpg`` ↔ ``X.png`` (DenseDepth / BTS
  train style). The raw-sequence training frames are simply more pairs under ``train/``.

Evaluation (official ``pp/proj/uvim/pp_ops.py: nyu_eval_crop``): rows 54:480, cols 41:601 (426 × 560; the code's
numbers, not its comment's 45:471) of a 480 × 640 frame, applied to image and depth; then ``data/depth.py:
make_item``. An unreadable file gives ``None`` (skipped and counted by ``collate_skip_corrupt``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fsq_repro.data.depth import make_item
from fsq_repro.errors import ConfigError

EVAL_CROP = (54, 41, 426, 560)  # top, left, height, width of the official nyu_eval_crop
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HINT = ("pass data.root=/path/to/nyu (nyu_depth_v2_labeled.mat with splits.mat, or train/ and test/ folders of RGB "
        "images + 16-bit depth PNGs)")  # fmt: skip


def depth_partner(image: Path) -> Path | None:
    """The depth PNG paired with an RGB file (module docstring rules), or None."""
    stem, parent = image.stem, image.parent
    candidates = []
    for a, b in (("_colors", "_depth"), ("_rgb", "_depth")):
        if stem.endswith(a):
            candidates.append(parent / f"{stem[: -len(a)]}{b}.png")
    if stem.startswith("rgb_"):
        candidates.append(parent / f"depth_{stem[4:]}.png")
    if image.suffix.lower() in (".jpg", ".jpeg"):
        candidates.append(parent / f"{stem}.png")
    return next((c for c in candidates if c.is_file()), None)


def find_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """Sorted (rgb, depth) pairs under ``split_dir`` (depth files are never taken as RGB)."""
    pairs = []
    for path in sorted(split_dir.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or "depth" in path.stem.lower():
            continue
        partner = depth_partner(path)
        if partner is not None and partner != path:
            pairs.append((path, partner))
    return pairs


class NYUDepthDataset(Dataset):
    """NYU Depth v2 (module docstring). ``split``: ``train`` or ``test``; items as in ``data/depth.py``."""

    def __init__(self, root: str | None, split: str = "train", resolution: int = 512, augment: bool = False,
                 layout: str = "auto", depth_scale: float = 1e-3, splits_file: str | None = None,
                 eval_crop: bool = True) -> None:  # fmt: skip
        if split not in ("train", "test"):
            raise ConfigError(f"NYU split must be train or test, got {split!r}")
        if not root or not Path(root).exists():
            raise ConfigError(f"data.root={root}: not found; {HINT}")
        self.root, self.split, self.resolution = Path(root), split, int(resolution)
        self.augment, self.depth_scale, self.eval_crop = bool(augment), float(depth_scale), bool(eval_crop)
        mat = self.root if self.root.is_file() else self.root / "nyu_depth_v2_labeled.mat"
        if layout == "auto":
            layout = "mat" if mat.is_file() else "folder"
        self.layout = layout
        if layout == "mat":
            self.mat_path = mat
            self.indices = self._official_split(Path(splits_file) if splits_file else mat.parent / "splits.mat")
            self._file = None
        elif layout == "folder":
            self.pairs = find_pairs(self.root / split)
            if not self.pairs:
                raise ConfigError(f"data.root={root}: no RGB + depth pairs under {self.root / split}; {HINT}")
        else:
            raise ConfigError(f"data.layout must be auto, mat or folder, got {layout!r}")

    def _official_split(self, splits: Path) -> np.ndarray:
        if not splits.is_file():
            raise ConfigError(f"no {splits}: pass data.splits_file=/path/to/splits.mat (the official 795/654 split)")
        from scipy.io import loadmat

        key = "trainNdxs" if self.split == "train" else "testNdxs"
        return np.asarray(loadmat(splits)[key]).reshape(-1).astype(np.int64) - 1  # 1-based in MATLAB

    def __len__(self) -> int:
        return len(self.indices) if self.layout == "mat" else len(self.pairs)

    def fingerprint(self) -> str:
        return f"nyu-{self.layout}-{self.split}-n{len(self)}-r{self.resolution}"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (H, W, 3) uint8, depth (H, W) float32 metres)``."""
        if self.layout == "mat":
            if self._file is None:
                try:
                    import h5py
                except ImportError:
                    raise ConfigError("data=nyu_depth with the .mat file needs h5py: make install") from None
                self._file = h5py.File(self.mat_path, "r")
            i = int(self.indices[index])
            image = np.asarray(self._file["images"][i]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
            depth = np.asarray(self._file["depths"][i], dtype=np.float32).T  # (W, H) -> (H, W)
            return image, depth
        from PIL import Image

        rgb_path, depth_path = self.pairs[index]
        with Image.open(rgb_path) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(depth_path) as im:
            depth = np.asarray(im, dtype=np.float32) * self.depth_scale
        return image, depth

    def __getitem__(self, index: int) -> dict | None:
        try:
            image, depth = self._read(index)
        except (OSError, ValueError, KeyError):
            return None  # unreadable: skipped and counted by collate_skip_corrupt
        image_t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
        depth_t = torch.from_numpy(np.array(depth, dtype=np.float32, copy=True))[None]
        crop = EVAL_CROP if self.eval_crop and not self.augment and tuple(depth.shape) == (480, 640) else None
        return make_item(image_t, depth_t, index, self.resolution, self.augment, crop)
