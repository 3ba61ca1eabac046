"""NYU Depth v2 for UViM's depth task (FSQ paper §4.4, Table 2; Silberman et al. 2012) from a local root.

Two layouts (``layout="auto"`` picks ``mat`` when ``root`` is, or holds, ``nyu_depth_v2_labeled.mat``):

- ``mat``: the official labeled file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5, read with h5py lazily,
  one file handle per process). MATLAB stores column-major, so h5py sees ``images (N, 3, W=640, H=480)`` uint8 and
  ``depths (N, W, H)`` float32 metres; both are transposed here to ``H × W``. The official 795 / 654 train / test
  split comes from ``splits.mat`` (MATLAB v5, ``trainNdxs`` / ``testNdxs``, 1-based, read with scipy), next to the
  .mat or given as ``splits_file=``.
- ``folder``: ``root/train/**`` and ``root/test/**`` with RGB images (jpg / png), each paired with a 16-bit PNG
  depth (``depth_scale`` metres per unit; 1e-3 = millimetres; 0 = no measurement). Pairing rules, in the same
  directory: ``X_colors.*`` ↔ ``X_depth.png`` (DenseDepth test), ``X_rgb.*`` ↔ ``X_depth.png``, ``rgb_X.*`` ↔
  ``depth_X.png`` or ``sync_depth_X.png`` (BTS), ``X.jpg`` ↔ ``X.png`` (DenseDepth / BTS-style training frames).
  Pairs are listed once, sorted by path. The raw-sequence training frames are simply more pairs under ``train/``.
  8-bit depth PNGs are refused unless ``depth_scale`` is set for them (e.g. DenseDepth's training PNGs: 10 / 255).

Evaluation (official ``pp/proj/uvim/pp_ops.py: nyu_eval_crop``): rows 54:480, cols 41:601 (426 × 560; the code's
numbers, not its comment's 45:471) of a 480 × 640 frame, applied to image and depth before resizing; frames of
another size are not cropped. Then ``tasks/depth/labels.py: make_item`` (items, ``depth_gt``, training transform). An
unreadable file gives ``None``, which ``collate_skip_corrupt`` drops and counts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fsq_repro.data.imagenet import UNREADABLE_IMAGE
from fsq_repro.errors import ConfigError, first_line
from fsq_repro.tasks.depth.labels import make_item

EVAL_CROP = (54, 41, 426, 560)  # (top, left, height, width) of the official nyu_eval_crop
MAT_NAME = "nyu_depth_v2_labeled.mat"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HINT = (f"pass data.root=/path/to/nyu (the labeled {MAT_NAME} with splits.mat, or train/ and test/ folders of RGB "
        "images + 16-bit depth PNGs)")  # fmt: skip


def _is_depth_name(stem: str) -> bool:
    stem = stem.lower()
    return stem.endswith("_depth") or stem.startswith(("depth_", "sync_depth_"))


def depth_partner(image: Path) -> Path | None:
    """The depth PNG paired with an RGB file (module docstring rules), or None."""
    stem, parent = image.stem, image.parent
    candidates = []
    for rgb_suffix in ("_colors", "_rgb"):
        if stem.endswith(rgb_suffix):
            candidates.append(parent / f"{stem[: -len(rgb_suffix)]}_depth.png")
    if stem.startswith("rgb_"):
        candidates += [parent / f"depth_{stem[4:]}.png", parent / f"sync_depth_{stem[4:]}.png"]
    if image.suffix.lower() in (".jpg", ".jpeg"):
        candidates.append(parent / f"{stem}.png")
    return next((c for c in candidates if c.exists()), None)  # not a file: its read fails, skipped and counted


def find_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """Sorted ``(rgb, depth)`` pairs under ``split_dir`` (files named as depth are never taken as RGB)."""
    pairs = []
    for path in sorted(split_dir.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or _is_depth_name(path.stem) or not path.is_file():
            continue
        partner = depth_partner(path)
        if partner is not None and partner != path:
            pairs.append((path, partner))
    return pairs


class NYUDepthDataset(Dataset):
    """NYU Depth v2 (module docstring). ``split``: ``train`` (795 labeled / the train folder) or ``test`` (654);
    ``augment``: the official training transform; ``eval_crop``: the official crop when not augmenting."""

    def __init__(
        self,
        root: str | None,
        split: str = "train",
        resolution: int = 512,
        augment: bool = False,
        layout: str = "auto",
        depth_scale: float = 1e-3,
        splits_file: str | None = None,
        eval_crop: bool = True,
    ) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"NYU split must be train or test, got {split!r}")
        if not root or not Path(root).exists():
            raise ConfigError(f"data.root={root}: not found; {HINT}")
        self.root, self.split, self.resolution = Path(root), split, int(resolution)
        self.augment, self.depth_scale, self.eval_crop = bool(augment), float(depth_scale), bool(eval_crop)
        mat = self.root if self.root.is_file() else self.root / MAT_NAME
        if mat.is_dir():
            raise ConfigError(f"{mat} is a directory, not the NYU labeled .mat; {HINT}")
        if layout == "auto":
            layout = "mat" if mat.is_file() else "folder"
        self.layout = layout
        self._file, self._file_pid = None, None
        if layout == "mat":
            if not mat.is_file():
                raise ConfigError(f"data.root={root}: no {MAT_NAME}; {HINT}")
            self.mat_path = mat
            self.indices = self._official_split(Path(splits_file) if splits_file else mat.parent / "splits.mat")
            self._check_mat()
        elif layout == "folder":
            self.pairs = find_pairs(self.root / split)
            if not self.pairs:
                raise ConfigError(f"data.root={root}: no RGB + depth pairs under {self.root / split}; {HINT}")
            self._check_depth_bits(self.pairs[0][1])
        else:
            raise ConfigError(f"data.layout must be auto, mat or folder, got {layout!r}")

    def _official_split(self, splits: Path) -> np.ndarray:
        if not splits.is_file():
            raise ConfigError(f"no {splits}: pass data.splits_file=/path/to/splits.mat (the official 795/654 split)")
        from scipy.io import loadmat

        key = "trainNdxs" if self.split == "train" else "testNdxs"
        try:
            indices = np.asarray(loadmat(splits)[key]).reshape(-1)
            if indices.size == 0 or not np.issubdtype(indices.dtype, np.number) or indices.min() < 1:
                raise ValueError(f"{key} is not a list of 1-based frame numbers")
        except Exception as err:  # not a .mat, truncated, no such key, damaged: one line naming the file
            first = first_line(err, 120)
            raise ConfigError(f"{splits} is not the official NYU splits.mat ({first}); pass data.splits_file="
                              "/path/to/splits.mat") from None  # fmt: skip
        return indices.astype(np.int64) - 1  # MATLAB indices are 1-based

    def _check_mat(self) -> None:
        """The labeled .mat opens as HDF5 and holds ``images (N, 3, W, H)`` uint8 and ``depths (N, W, H)`` covering
        every split index; else a one-line error naming the file (a damaged file would else drop every frame)."""
        try:
            with self._open_mat() as f:
                images, depths = f["images"], f["depths"]
                n = images.shape[0]
                if images.ndim != 4 or images.shape[1] != 3 or depths.shape != (n, *images.shape[2:]):
                    raise ValueError(f"images {images.shape} / depths {depths.shape} are not (N, 3, W, H) / (N, W, H)")
                if self.indices.max() >= n:
                    raise ValueError(f"the split names frame {self.indices.max() + 1} of {n}")
        except ConfigError:
            raise
        except Exception as err:  # not HDF5, truncated, no such dataset, damaged
            first = first_line(err, 120)
            raise ConfigError(f"{self.mat_path} is not the NYU labeled .mat ({first}); {HINT}") from None

    def _open_mat(self):
        try:
            import h5py
        except ImportError:
            raise ConfigError("data=nyu_depth with the .mat file needs h5py (requirements-extra.txt): make "
                              "install") from None  # fmt: skip
        return h5py.File(self.mat_path, "r")

    def _check_depth_bits(self, depth_png: Path) -> None:
        try:
            with Image.open(depth_png) as im:
                eight_bit = im.mode in ("L", "P", "RGB", "RGBA")
        except UNREADABLE_IMAGE:
            return  # unreadable: that item will be skipped
        if eight_bit and self.depth_scale == 1e-3:
            raise ConfigError(
                f"{depth_png} is an 8-bit PNG, not 16-bit millimetres: set data.depth_scale to its metres per unit "
                "(e.g. 0.0392156862745098 = 10/255 for DenseDepth's training PNGs)"
            )

    def __len__(self) -> int:
        return len(self.indices) if self.layout == "mat" else len(self.pairs)

    def fingerprint(self) -> str:
        return f"nyu-{self.layout}-{self.split}-n{len(self)}-r{self.resolution}"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_file_pid": None}  # h5py handles do not cross processes

    def _h5(self):
        """The .mat's h5py handle of this process (opened on first use; reopened after a fork)."""
        if self._file is None or self._file_pid != os.getpid():
            self._file, self._file_pid = self._open_mat(), os.getpid()
        return self._file

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index`` at native resolution: ``(image (H, W, 3) uint8, depth (H, W) float32 metres)``."""
        if self.layout == "mat":
            f, i = self._h5(), int(self.indices[index])
            image = np.asarray(f["images"][i]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
            depth = np.asarray(f["depths"][i], dtype=np.float32).T  # (W, H) -> (H, W)
            return image, depth
        rgb_path, depth_path = self.pairs[index]
        with Image.open(rgb_path) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(depth_path) as im:
            depth = np.asarray(im, dtype=np.float32) * np.float32(self.depth_scale)
        if depth.ndim != 2 or depth.shape != image.shape[:2]:
            raise ValueError(f"{depth_path}: depth {depth.shape} does not match image {image.shape[:2]}")
        return image, depth

    def __getitem__(self, index: int) -> dict | None:
        if not 0 <= index < len(self):
            raise IndexError(index)
        try:
            image, depth = self.read(index)
        except (*UNREADABLE_IMAGE, KeyError):
            return None  # unreadable: dropped and counted by collate_skip_corrupt
        image_t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
        depth_t = torch.from_numpy(np.array(depth, dtype=np.float32, copy=True))[None]
        crop = EVAL_CROP if self.eval_crop and tuple(depth.shape) == (480, 640) else None
        return make_item(image_t, depth_t, index, self.resolution, self.augment, crop)
