"""Embedded default data: procedurally generated, class-conditional "shapes" (no download needed).

The FSQ paper's experiments use ImageNet (§4.1, §4.3), which cannot be downloaded here; the demo, the tests and CI
need images that a tokenizer and a class-conditional generator can really learn. ``ShapesDataset`` draws one
anti-aliased shape per image on a textured background:

- 10 classes = shape × colour family (class ``c`` has its own shape and hue ``c / 10``, jittered), so classes are
  distinct both in form and colour; ``hue="random"`` draws the hue uniformly instead, independent of the class
  (UViM colorization: a colour the grayscale context cannot predict, so the guiding code must carry it);
- random position, scale, rotation, colour jitter; a smooth two-colour gradient plus faint noise as background;
- image ``i`` of split ``s`` is a pure function of ``(seed, split, i)`` (numpy ``default_rng([seed, split, i])``), so
  splits are disjoint random streams and any worker can produce any image;
- labels are balanced: ``label = i % num_classes``;
- drawn with PIL at 4× and box-downsampled (anti-aliasing), any resolution (32 px default; 64 / 128 supported);
- measured on 2 CPU cores: ~2 000 images/s at 32 px, ~235 at 128 px per process; ``cache_dir`` renders a split
  once into a uint8 ``.npy`` keyed by its parameters and memory-maps it (worth it from 64 px up).

Items are dicts ``{"image": (3, R, R) float32 in [−1, 1], "label": int64, "index": int64}`` — the pixel convention
of the whole project is [−1, 1].
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SPLITS = {"train": 0, "val": 1, "test": 2}
CLASS_NAMES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon", "crescent", "bars")
SUPERSAMPLE = 4


def _polygon(cx: float, cy: float, radius: float, angle: float, n: int, inner: float | None = None):
    """Vertices of a regular n-gon (or a 2n-vertex star when ``inner`` is given)."""
    pts = []
    count = 2 * n if inner is not None else n
    for k in range(count):
        r = radius * (inner if (inner is not None and k % 2) else 1.0)
        a = angle + 2 * math.pi * k / count
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _rotated_rects(cx, cy, half_w, half_h, angle):
    c, s = math.cos(angle), math.sin(angle)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def draw_shape(draw: ImageDraw.ImageDraw, label: int, cx, cy, r, angle, fill, background) -> None:
    """Draw the shape of class ``label`` centred at (cx, cy) with radius ``r`` (canvas pixels)."""
    name = CLASS_NAMES[label % len(CLASS_NAMES)]
    if name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, r * 1.1, angle, 4), fill=fill)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.15, angle, 3), fill=fill)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, r * 1.15, angle, 5, inner=0.45), fill=fill)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=background)
    elif name == "cross":
        draw.polygon(_rotated_rects(cx, cy, r, 0.3 * r, angle), fill=fill)
        draw.polygon(_rotated_rects(cx, cy, 0.3 * r, r, angle), fill=fill)
    elif name == "diamond":
        c, s = math.cos(angle), math.sin(angle)
        pts = [(0, -1.2 * r), (0.65 * r, 0), (0, 1.2 * r), (-0.65 * r, 0)]
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=fill)
    elif name == "hexagon":
        draw.polygon(_polygon(cx, cy, r * 1.05, angle, 6), fill=fill)
    elif name == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        ox, oy = cx + 0.45 * r * math.cos(angle), cy + 0.45 * r * math.sin(angle)
        draw.ellipse([ox - 0.85 * r, oy - 0.85 * r, ox + 0.85 * r, oy + 0.85 * r], fill=background)
    else:  # bars: three parallel stripes
        for off in (-0.7, 0.0, 0.7):
            ox, oy = cx - off * r * math.sin(angle), cy + off * r * math.cos(angle)
            draw.polygon(_rotated_rects(ox, oy, r, 0.2 * r, angle), fill=fill)


def render_shape_image(
    seed: int, split: str, index: int, resolution: int = 32, num_classes: int = 10, hue: str = "class"
) -> np.ndarray:
    """Image ``index`` of ``split``: a ``(resolution, resolution, 3)`` uint8 array (pure function of its args).
    ``hue``: ``class`` (hue ``c / 10`` ± 0.03) or ``random`` (uniform, one draw in the same place of the stream, so
    everything else about the image is the same as in ``class`` mode)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if hue not in ("class", "random"):
        raise ValueError(f"hue must be 'class' or 'random', got {hue!r}")
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = index % num_classes
    size = resolution * SUPERSAMPLE

    # Background: a smooth gradient between two dark, desaturated colours, plus faint noise.
    c0 = rng.uniform(0.05, 0.35, 3)
    c1 = np.clip(c0 + rng.uniform(-0.12, 0.12, 3), 0, 1)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-1, 1, resolution)
    t = (math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None] + 1) / 2
    bg = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]

    # Foreground: class hue with jitter, bright and saturated.
    # one draw either way: the hue itself (random mode) or the class hue's jitter
    h = rng.uniform() if hue == "random" else (label / num_classes + rng.uniform(-0.03, 0.03)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(0.65, 1.0), rng.uniform(0.75, 1.0))
    fill = tuple(int(255 * v) for v in rgb)
    radius = rng.uniform(0.26, 0.38) * size
    cx = size / 2 + rng.uniform(-0.12, 0.12) * size
    cy = size / 2 + rng.uniform(-0.12, 0.12) * size
    angle = rng.uniform(0, 2 * math.pi)

    mask = Image.new("RGB", (size, size), (0, 0, 0))
    draw_shape(ImageDraw.Draw(mask), label, cx, cy, radius, angle, fill=(255, 255, 255), background=(0, 0, 0))
    alpha = np.asarray(mask.resize((resolution, resolution), Image.Resampling.BOX), dtype=np.float32)[..., :1] / 255
    fg = np.asarray(fill, dtype=np.float32)[None, None] / 255
    img = bg * (1 - alpha) + fg * alpha + rng.normal(0, 0.015, (resolution, resolution, 3))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def to_model_range(image_uint8: np.ndarray) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8 → ``(..., 3, H, W)`` float32 in [−1, 1] (the project's pixel convention; one image or
    a batch)."""
    return torch.from_numpy(np.array(image_uint8, copy=True)).movedim(-1, -3).float() / 127.5 - 1.0


class ShapesDataset(Dataset):
    """Class-conditional shapes (see module docstring). ``len == size``; items are dicts (image, label, index)."""

    def __init__(
        self,
        split: str = "train",
        size: int = 20_000,
        resolution: int = 32,
        num_classes: int = 10,
        seed: int = 0,
        cache_dir: str | None = None,
        hue: str = "class",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if hue not in ("class", "random"):
            raise ValueError(f"hue must be 'class' or 'random', got {hue!r}")
        if not 1 <= num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {num_classes}")
        if resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {resolution}")
        self.split, self.size, self.resolution = split, int(size), int(resolution)
        self.num_classes, self.seed, self.hue = int(num_classes), int(seed), hue
        self.class_names = CLASS_NAMES[: self.num_classes]
        self._cache = None
        if cache_dir:
            from fsq_repro.data.cache import cached_uint8_array

            self._cache = cached_uint8_array(
                cache_dir,
                self.fingerprint(),
                shape=(self.size, self.resolution, self.resolution, 3),
                fill=self._render,
            )

    def __len__(self) -> int:
        return self.size

    def fingerprint(self) -> str:
        hue = "" if self.hue == "class" else f"-hue{self.hue}"
        return f"shapes-v1-{self.split}-n{self.size}-r{self.resolution}-c{self.num_classes}-s{self.seed}{hue}"

    def _render(self, index: int) -> np.ndarray:
        return render_shape_image(self.seed, self.split, index, self.resolution, self.num_classes, self.hue)

    def images_uint8(self) -> np.ndarray:
        """Every image as one in-memory ``(size, H, W, 3)`` uint8 array (label of row ``i``: ``i % num_classes``)."""
        if self._cache is not None:
            return np.array(self._cache)
        return np.stack([self._render(i) for i in range(self.size)])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        if self._cache is not None:
            image = self._cache[index]
        else:
            image = self._render(index)
        return {"image": to_model_range(image), "label": index % self.num_classes, "index": index}
