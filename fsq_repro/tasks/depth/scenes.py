"""Embedded stand-in for NYU Depth v2 (FSQ paper §4.4): procedurally rendered scenes with exact per-pixel depth, so
UViM's depth task runs on CPU with nothing downloaded (``configs/data/depth_scenes.yaml``).

Geometry (metres; a pinhole camera with focal length ``f`` pixels at height ``h`` above the floor, looking
horizontally; image row ``y`` and column ``x`` are pixel centres, the horizon at row ``y_h``):

- the floor: depth ``f · h / (y − y_h)`` at rows below the horizon (checkered in world coordinates, so the tiles
  shrink with distance);
- a back wall at depth ``D`` covering everything farther (above the row where the floor meets it; vertical stripes
  in world coordinates): ``D ∈ [3, 9.5]`` uniform in ``1 / D`` with the default fixed camera (``scene_camera``),
  ``[6, 9.5]`` with the per-scene random camera of the v2 scenes;
- 1–4 objects standing on the floor at depths in [1.5, min(8, D − 0.4)], each 0.4–1.1 m tall: a box (its front face),
  a sphere resting on the floor (ray-traced, Lambert-shaded) or a cone (a triangle billboard, two-tone). They are
  intersected with the camera rays, so apparent size ∝ 1/depth and the base sits on the floor row of its depth;
  a z-buffer keeps the nearest surface per pixel (correct occlusion among objects, floor and wall);
- depth fog ``1 − exp(−d / s)`` (``s ∈ [8, 14]`` m) blends every pixel towards a fog colour, plus faint noise; all
  depths lie in [1.3, 9.5] m ⊂ [1e-3, 10].

With the fixed camera the image determines the metric depth, as a model that reads it (UViM's Stage II) needs: the
floor's depth is the same function of the row in every scene, an object's base row gives its depth, the row where the
floor meets the wall gives ``D``. With a per-scene camera it does not: ``f · h`` is unknown, so is the scale.

Scene ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` (numpy ``default_rng([seed, split_id, i])``), any
resolution ≥ 16 (64 px default). Measured on one core: ~1 000 scenes/s at 64 px, ~300 at 128 px. ``cache_dir``
renders a split once into a uint8 ``.npy`` (RGB + the float32 depth's 4 bytes per pixel, so cached items are
bit-identical) and memory-maps it.

Items (``tasks/depth/labels.py: make_item``): ``{"image": (3, R, R) in [−1, 1], "depth": (1, R, R) metres, "label": 0,
"index": i}``; without augmentation also ``"depth_gt"`` = the full frame's depth (no eval crop).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from torch.utils.data import Dataset

from fsq_repro.tasks.depth.labels import make_item

SPLITS = {"train": 0, "val": 1, "test": 2}


def _box(px, py, cam_h, z, x0, size):
    """Front face of a box at depth ``z``, ``|x − x0| ≤ size/2``, height ``size``: ``(mask, depth, shade)``."""
    hit_x, hit_y = px * z, cam_h - py * z  # where each ray crosses the plane at depth z (y up from the floor)
    mask = (np.abs(hit_x - x0) <= size / 2) & (hit_y >= 0) & (hit_y <= size)
    return mask, np.full_like(px, z), 0.9 - 0.2 * (np.abs(hit_x - x0) / size)


def _sphere(px, py, cam_h, z, x0, size):
    """Sphere of radius ``size/2`` resting on the floor, front at depth ``z``: ray ``(px, −py, 1)·t`` meets it."""
    rad, cz = size / 2, z + size / 2
    cy = cam_h - rad  # the centre's drop below the camera
    a = px**2 + py**2 + 1.0
    b = -2 * (px * x0 + py * cy + cz)
    c = x0**2 + cy**2 + cz**2 - rad**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)  # nearer root = z-depth of the hit
    nx, ny, nz = (px * t - x0) / rad, -(py * t - cy) / rad, (t - cz) / rad
    return disc >= 0, t, np.clip(0.3 + 0.7 * (-0.4 * nx + 0.6 * ny - 0.7 * nz), 0.2, 1.0)


def _cone(px, py, cam_h, z, x0, size):
    """Triangle billboard at depth ``z``, base width = height = ``size``, lit from one side."""
    hit_x, hit_y = px * z, cam_h - py * z
    mask = (hit_y >= 0) & (hit_y <= size) & (np.abs(hit_x - x0) <= (size - hit_y) / 2)
    return mask, np.full_like(px, z), 0.75 + 0.25 * np.sign(hit_x - x0)


OBJECTS = (_box, _sphere, _cone)


CAMERAS = ("fixed", "random")
FIXED_CAMERA = (0.95, 0.4, 1.5)  # focal length / R, horizon row / R, height (m): the middle of the random ranges


def check_camera(camera: str) -> None:
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {list(CAMERAS)}, got {camera!r}")


def scene_camera(rng: np.random.Generator, resolution: int, camera: str = "fixed") -> tuple[float, float, float, float]:
    """The scene's first draws: ``(f, y_h, h, D)`` = focal length (pixels), horizon row, camera height, wall depth.

    ``camera="fixed"`` (default): one camera for every scene (NYU's frames all come from one Kinect), so the image
    determines the metric depth: the floor row of an object's base gives its depth, the row where the floor meets
    the wall gives ``D``. ``"random"`` draws ``f``, ``y_h`` and ``h`` per scene (the v2 scenes): then the image
    fixes depth only up to the unknown scale ``f · h`` (±35 %), which no model reading the image can recover. The
    same four numbers are drawn either way, so both cameras see the same rooms and objects.
    """
    check_camera(camera)
    f = resolution * rng.uniform(0.8, 1.1)
    horizon = resolution * rng.uniform(0.3, 0.5)
    cam_h = rng.uniform(1.2, 1.8)
    wall = rng.uniform(6.0, 9.5)
    if camera == "fixed":
        f, horizon, cam_h = resolution * FIXED_CAMERA[0], resolution * FIXED_CAMERA[1], FIXED_CAMERA[2]
        # the same draw mapped to D ∈ [3, 9.5] uniform in 1 / D, i.e. the row where floor and wall meet is uniform
        # over its ~10 rows at 32 px (D ∈ [6, 9.5] would move it by under 3 rows: a far wall's depth is legible
        # from the image only to ±0.7 m)
        wall = 1.0 / (1 / 9.5 + (wall - 6.0) / 3.5 * (1 / 3.0 - 1 / 9.5))
    return f, horizon, cam_h, wall


def background_depth(f: float, horizon: float, cam_h: float, wall: float, resolution: int) -> np.ndarray:
    """``(R, R)`` float64 depth of the empty room: the floor ``f · h / (y − y_h)`` below the horizon, capped by the
    wall at ``D`` (rows ``y`` at pixel centres)."""
    ys = np.arange(resolution, dtype=np.float64)[:, None] + 0.5
    floor = np.where(ys > horizon + 1e-6, f * cam_h / np.maximum(ys - horizon, 1e-6), np.inf)
    return np.broadcast_to(np.minimum(floor, wall), (resolution, resolution))


def render_depth_scene(
    seed: int, split: str, index: int, resolution: int = 64, camera: str = "fixed"
) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` of ``split``: ``(image (R, R, 3) uint8, depth (R, R) float32 metres)`` (module docstring;
    ``camera``: ``scene_camera``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS[split], index])
    r = resolution
    f, horizon, cam_h, wall = scene_camera(rng, r, camera)
    ys, xs = np.mgrid[0:r, 0:r].astype(np.float64) + 0.5  # pixel centres
    depth = background_depth(f, horizon, cam_h, wall, r).copy()
    on_floor = depth < wall

    # textures in world coordinates (x to the right of the camera axis, and depth)
    wx = (xs - r / 2) * depth / f
    floor_rgb, floor_rgb2 = rng.uniform(0.35, 0.75, 3), rng.uniform(0.15, 0.5, 3)
    tile = rng.uniform(0.4, 0.8)
    checker = (np.floor(wx / tile) + np.floor(depth / tile)) % 2
    wall_rgb = rng.uniform(0.3, 0.8, 3)
    stripes = 0.85 + 0.15 * (np.floor(wx / rng.uniform(0.3, 0.7)) % 2)
    floor_image = np.where(checker[..., None] > 0, floor_rgb, floor_rgb2)
    image = np.where(on_floor[..., None], floor_image, wall_rgb * stripes[..., None])

    px, py = (xs - r / 2) / f, (ys - horizon) / f  # ray slopes: pixel (x, y) sees (px·d, −py·d) at depth d
    for _ in range(rng.integers(1, 5)):
        z = rng.uniform(1.5, min(8.0, wall - 0.4))  # depth of the object's front
        size = rng.uniform(0.4, 1.1)
        x0 = rng.uniform(-1.0, 1.0) * z * (r / 2) / f  # lateral position, roughly in view
        kind = rng.integers(0, len(OBJECTS))
        hue, saturation, value = rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.6, 1.0)
        colour = np.array(colorsys.hsv_to_rgb(hue, saturation, value))
        mask, obj_depth, shade = OBJECTS[kind](px, py, cam_h, z, x0, size)
        nearer = mask & (obj_depth < depth) & (obj_depth > 0)  # z-buffer
        depth = np.where(nearer, obj_depth, depth)
        image = np.where(nearer[..., None], colour * shade[..., None], image)

    fog = 1.0 - np.exp(-depth / rng.uniform(8.0, 14.0))
    fog_rgb = rng.uniform(0.6, 0.9, 3)
    image = image * (1 - fog[..., None]) + fog_rgb * fog[..., None] + rng.normal(0, 0.01, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), depth.astype(np.float32)


def _pack(image: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``(R, R, 3) uint8`` + ``(R, R) float32`` → ``(R, R, 7) uint8`` (the depth's little-endian bytes)."""
    return np.concatenate([image, depth.astype("<f4")[..., None].view(np.uint8)], axis=-1)


def _unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    depth = np.ascontiguousarray(packed[..., 3:]).view("<f4")[..., 0].astype(np.float32)
    return np.asarray(packed[..., :3]), depth


class DepthScenesDataset(Dataset):
    """Embedded depth scenes (module docstring): ``len == size``; items as in ``tasks/depth/labels.py``.

    ``augment``: the official training transform (flip + Inception crop, ``tasks/depth/labels.py``); off for validation.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 8000,
        resolution: int = 64,
        seed: int = 0,
        cache_dir: str | None = None,
        augment: bool = False,
        camera: str = "fixed",
        min_crop_area: float = 0.05,
    ) -> None:
        check_camera(camera)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if not 0.0 < min_crop_area <= 1.0:
            raise ValueError(f"min_crop_area must be in (0, 1], got {min_crop_area}")
        if resolution < 16:
            raise ValueError(f"resolution must be >= 16, got {resolution}")
        self.split, self.size, self.resolution, self.seed = split, int(size), int(resolution), int(seed)
        self.augment, self.camera, self.min_crop_area = bool(augment), camera, float(min_crop_area)
        self._cache = None
        if cache_dir:
            from fsq_repro.data.cache import cached_uint8_array

            self._cache = cached_uint8_array(
                cache_dir,
                self.fingerprint(),
                shape=(self.size, self.resolution, self.resolution, 7),
                fill=lambda i: _pack(*render_depth_scene(self.seed, self.split, i, self.resolution, self.camera)),
            )

    def __len__(self) -> int:
        return self.size

    def fingerprint(self) -> str:
        version = "v2" if self.camera == "random" else "v3"  # v3: the fixed camera
        return f"depthscenes-{version}-{self.split}-n{self.size}-r{self.resolution}-s{self.seed}"

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (R, R, 3) uint8, depth (R, R) float32 metres)`` of scene ``index`` (from the cache if any)."""
        if self._cache is not None:
            return _unpack(self._cache[index])
        return render_depth_scene(self.seed, self.split, index, self.resolution, self.camera)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        image, depth = self.scene(index)
        image_t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
        depth_t = torch.from_numpy(np.array(depth, copy=True))[None]
        return make_item(image_t, depth_t, index, self.resolution, self.augment, min_crop_area=self.min_crop_area)
