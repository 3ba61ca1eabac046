"""Depth data for UViM (FSQ paper §4.4, Table 2 NYU rows): discretisation, the train/eval transforms, and the
embedded stand-in with exact ground truth (``DepthScenesDataset``). NYU Depth v2 itself: ``data/nyu.py``.

Discretisation (big_vision ``trainers/proj/uvim/depth_task.py`` at 21bd6eb): ``bins = floor((d − min) / (max − min)
· num_bins)`` clipped to ``[0, num_bins − 1]``; back to metres at the bin centre ``(b + 0.5) / num_bins``.

Transforms (official ``vqvae_nyu_depth.py`` pre-processing): training = random horizontal flip + Inception crop
(a random box covering U[5 %, 100 %] of the area with aspect ratio log-uniform in [3/4, 4/3], as big_vision's
``inception_box``), applied identically to image and depth; then the image is resized bilinearly (antialiased) and
the depth with NEAREST (depth is never interpolated). Evaluation = an optional eval crop, then the same resizes; the
cropped native-resolution depth is kept as ``depth_gt`` (metrics compare against it, ``metrics/depth.py``).

Items: ``{"image": (3, R, R) float32 in [−1, 1], "depth": (1, R, R) float32 metres (0 = no measurement),
"label": 0, "index": i}`` plus ``"depth_gt": (1, Hc, Wc)`` when not augmenting. Random draws use the global torch
RNG, which the training loop re-seeds every step (``lit/callbacks.py: ReseedEveryStep``).

``DepthScenesDataset``: procedurally rendered scenes with a pinhole camera at height ``h`` looking horizontally — a
checkered floor (depth ``f·h / (y − y_horizon)`` at image row ``y``), a striped back wall at a sampled depth, and 1–4
objects (boxes, spheres, cones) standing on the floor at sampled depths, drawn with a z-buffer (correct occlusion),
apparent size ∝ 1/depth, Lambert shading on spheres and depth fog, so depth is inferable from the image. Scene ``i``
of split ``s`` is a pure function of ``(seed, s, i)``; ~1 500 scenes/s at 64 px on one core.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLITS = {"train": 0, "val": 1, "test": 2}


def depth_to_bins(depth: torch.Tensor, num_bins: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0):
    """Metres → int64 bins (official ``depth_task.input_pp``)."""
    scaled = (depth.float() - min_depth) / (max_depth - min_depth) * num_bins
    return scaled.floor().long().clamp(0, num_bins - 1)


def bins_to_depth(bins: torch.Tensor, num_bins: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0):
    """Bins → metres at the bin centre (official ``depth_task.predict_outputs``)."""
    return (bins.float() + 0.5) / num_bins * (max_depth - min_depth) + min_depth


def inception_box(height: int, width: int, area=(0.05, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10):
    """``(top, left, h, w)`` of a random crop (global torch RNG); the whole frame when no attempt fits."""
    for _ in range(attempts):
        target = height * width * float(torch.empty(()).uniform_(*area))
        aspect = math.exp(float(torch.empty(()).uniform_(math.log(ratio[0]), math.log(ratio[1]))))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, ()))
            left = int(torch.randint(0, width - w + 1, ()))
            return top, left, h, w
    return 0, 0, height, width


def resize_pair(image: torch.Tensor, depth: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image bilinear (antialiased), depth nearest, both to ``size × size``."""
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        depth = F.interpolate(depth[None], size=(size, size), mode="nearest-exact")[0]
    return image, depth


def make_item(image: torch.Tensor, depth: torch.Tensor, index: int, size: int, augment: bool,
              crop: tuple[int, int, int, int] | None = None) -> dict:  # fmt: skip
    """``image (3, H, W)`` in [−1, 1] and ``depth (1, H, W)`` metres at native resolution → a dataset item."""
    if augment:
        if bool(torch.rand(()) < 0.5):
            image, depth = image.flip(-1), depth.flip(-1)
        top, left, h, w = inception_box(*image.shape[-2:])
        image, depth = image[:, top : top + h, left : left + w], depth[:, top : top + h, left : left + w]
        image, depth = resize_pair(image, depth, size)
        return {"image": image.contiguous(), "depth": depth.contiguous(), "label": 0, "index": index}
    if crop is not None:
        top, left, h, w = crop
        image, depth = image[:, top : top + h, left : left + w], depth[:, top : top + h, left : left + w]
    gt = depth.clone()
    image, depth = resize_pair(image, depth, size)
    return {"image": image.contiguous(), "depth": depth.contiguous(), "depth_gt": gt, "label": 0, "index": index}


# --- the embedded stand-in ------------------------------------------------------------------------------
def render_depth_scene(seed: int, split: str, index: int, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(image (R, R, 3) uint8, depth (R, R) float32 metres)`` of scene ``index`` (module docstring)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    r = resolution
    f = r * rng.uniform(0.8, 1.1)  # focal length in pixels
    horizon = r * rng.uniform(0.3, 0.5)  # image row of the horizon
    cam_h = rng.uniform(1.2, 1.8)  # camera height above the floor, metres
    wall = rng.uniform(6.0, 9.5)  # back wall depth
    ys, xs = np.mgrid[0:r, 0:r].astype(np.float64) + 0.5
    below = ys > horizon + 1e-6
    floor_depth = np.where(below, f * cam_h / np.maximum(ys - horizon, 1e-6), np.inf)
    depth = np.minimum(floor_depth, wall)
    on_floor = floor_depth < wall
    # world coordinates of every visible surface point (x to the right, y up from the floor)
    wx = (xs - r / 2) * depth / f
    floor_rgb, floor_rgb2 = rng.uniform(0.35, 0.75, 3), rng.uniform(0.15, 0.5, 3)
    tile = rng.uniform(0.4, 0.8)
    checker = (np.floor(wx / tile) + np.floor(depth / tile)) % 2
    wall_rgb = rng.uniform(0.3, 0.8, 3)
    stripes = 0.85 + 0.15 * (np.floor(wx / rng.uniform(0.3, 0.7)) % 2)
    image = np.where(on_floor[..., None], np.where(checker[..., None] > 0, floor_rgb, floor_rgb2),
                     wall_rgb * stripes[..., None])  # fmt: skip
    for _ in range(rng.integers(1, 5)):
        z = rng.uniform(1.5, min(8.0, wall - 0.4))  # distance of the object's front
        size = rng.uniform(0.4, 1.1)  # metres
        x0 = rng.uniform(-1.0, 1.0) * z * (r / 2) / f  # keep it roughly in view
        kind = rng.integers(0, 3)
        colour = np.array([float(c) for c in __import__("colorsys").hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 0.9),
                                                                                   rng.uniform(0.6, 1.0))])  # fmt: skip
        # object surface in camera rays: pixel (x, y) sees world point (x·d/f, ·) at depth d
        px, py = (xs - r / 2) / f, (ys - horizon) / f  # ray slopes
        if kind == 0:  # box: front face at depth z, x in [x0 - s/2, x0 + s/2], height s
            hit_x, hit_y = px * z, cam_h - py * z
            mask = (np.abs(hit_x - x0) <= size / 2) & (hit_y >= 0) & (hit_y <= size)
            obj_depth, shade = np.full_like(xs, z), 0.9 - 0.2 * (np.abs(hit_x - x0) / size)
        elif kind == 1:  # sphere of radius s/2 resting on the floor, centre at depth z + s/2
            rad, cz = size / 2, z + size / 2
            cy = cam_h - rad  # centre height relative to the camera (positive = below the camera)
            a = px**2 + py**2 + 1.0  # ray (px, -py, 1)·t hits |p - c|² = rad²
            b = -2 * (px * x0 + py * cy + cz)
            c = x0**2 + cy**2 + cz**2 - rad**2
            disc = b * b - 4 * a * c
            mask = disc >= 0
            t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            obj_depth = t
            nx, ny, nz = (px * t - x0) / rad, -(py * t - cy) / rad, (t - cz) / rad
            shade = np.clip(0.3 + 0.7 * (-0.4 * nx + 0.6 * ny - 0.7 * nz), 0.2, 1.0)
        else:  # cone (triangle billboard) at depth z
            hit_x, hit_y = px * z, cam_h - py * z
            mask = (hit_y >= 0) & (hit_y <= size) & (np.abs(hit_x - x0) <= (size - hit_y) / 2)
            obj_depth, shade = np.full_like(xs, z), 0.75 + 0.25 * np.sign(hit_x - x0)
        closer = mask & (obj_depth < depth) & (obj_depth > 0)
        depth = np.where(closer, obj_depth, depth)
        image = np.where(closer[..., None], colour * np.asarray(shade)[..., None] if np.ndim(shade) else colour * shade,
                         image)  # fmt: skip
    fog = 1.0 - np.exp(-depth / rng.uniform(8.0, 14.0))
    fog_rgb = rng.uniform(0.6, 0.9, 3)
    image = image * (1 - fog[..., None]) + fog_rgb * fog[..., None] + rng.normal(0, 0.01, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), depth.astype(np.float32)


class DepthScenesDataset(Dataset):
    """Embedded depth scenes (module docstring): ``len == size``; items as in the module docstring."""

    def __init__(self, split: str = "train", size: int = 8000, resolution: int = 64, seed: int = 0,
                 augment: bool = False, cache_dir: str | None = None) -> None:  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if resolution < 16:
            raise ValueError(f"resolution must be >= 16, got {resolution}")
        self.split, self.size, self.resolution, self.seed = split, int(size), int(resolution), int(seed)
        self.augment = bool(augment)
        self._cache = None
        if cache_dir:
            from fsq_repro.data.cache import cached_uint8_array

            # depth in centimetres fits uint8 pairs: store it as 2 bytes (little endian) next to the RGB bytes
            def fill(i: int) -> np.ndarray:
                image, depth = render_depth_scene(self.seed, self.split, i, self.resolution)
                cm = np.round(depth * 1000).astype("<u2").view(np.uint8).reshape(*depth.shape, 2)
                return np.concatenate([image, cm], axis=-1)

            shape = (self.size, self.resolution, self.resolution, 5)
            self._cache = cached_uint8_array(cache_dir, self.fingerprint(), shape=shape, fill=fill)

    def __len__(self) -> int:
        return self.size

    def fingerprint(self) -> str:
        return f"depthscenes-v1-{self.split}-n{self.size}-r{self.resolution}-s{self.seed}"

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None:
            packed = np.asarray(self._cache[index])
            depth = np.ascontiguousarray(packed[..., 3:]).view("<u2")[..., 0].astype(np.float32) / 1000
            return packed[..., :3], depth
        return render_depth_scene(self.seed, self.split, index, self.resolution)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        image, depth = self.scene(index)
        image_t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1.0
        depth_t = torch.from_numpy(np.array(depth))[None]
        return make_item(image_t, depth_t, index, self.resolution, self.augment)
