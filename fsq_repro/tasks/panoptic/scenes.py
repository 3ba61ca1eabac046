"""Embedded stand-in for COCO panoptic (FSQ paper §4.4, Table 2): procedural scenes with exact panoptic ground truth,
so UViM's panoptic task runs on CPU with nothing downloaded (``configs/data/panoptic_scenes.yaml``).

A scene (``R × R``, 64 px default):

- **stuff**: ``sky`` above a horizon row, the ground below split at a random column into two of ``grass`` /
  ``water`` / ``sand`` (one segment per stuff category present, as COCO);
- **things**: 2–7 shapes of the classes ``disc``, ``square``, ``triangle``, several per class, 12–35 % of ``R`` in
  size, painted in order (later ones occlude earlier ones; each keeps only its visible pixels). The colour carries
  only a weak class cue (a class hue ± 0.15), the shape carries the class. A shape with fewer than 6 visible pixels
  becomes VOID (as COCO leaves tiny fragments unlabelled);
- **crowd** (probability 0.25): a tight cluster of 4–7 small discs annotated as one ``disc`` segment with
  ``iscrowd = 1`` (the pixels between them stay ground);
- **VOID** (probability 0.3): a rectangle of grey noise, no segment.

Contiguous labels (the dataset's ``categories``): things first, then stuff (COCO's order): 0 disc, 1 square,
2 triangle, 3 sky, 4 grass, 5 water, 6 sand → ``semantics`` 1…7, 0 = VOID, 8 classes in all.

Scene ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` (numpy ``default_rng([seed, split_id, i])``).
``panoptic_target(i)`` gives the ground truth for PQ: the id map ``(R, R)`` (0 = VOID) and ``{id: (semantic,
iscrowd)}``; items are ``tasks/panoptic/labels.py: make_panoptic_item`` of the rendered scene.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from torch.utils.data import Dataset

from fsq_repro.tasks.panoptic.labels import make_panoptic_item, two_channels

SPLITS = {"train": 0, "val": 1, "test": 2}
CATEGORIES = (  # (name, isthing, hue) in contiguous-label order
    ("disc", True, 0.0),
    ("square", True, 0.15),
    ("triangle", True, 0.75),
    ("sky", False, 0.58),
    ("grass", False, 0.3),
    ("water", False, 0.55),
    ("sand", False, 0.11),
)
MIN_VISIBLE = 6
MEMO_LIMIT = 8192  # scenes a dataset keeps after rendering them once


def _thing_mask(kind: int, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, size: float) -> np.ndarray:
    half = size / 2
    if kind == 0:
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    if kind == 1:
        return (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    depth = (ys - (cy - half)) / size  # 0 at the apex, 1 at the base
    return (depth >= 0) & (depth <= 1) & (np.abs(xs - cx) <= half * depth)


def _colour(rng: np.random.Generator, hue: float, jitter: float = 0.15) -> np.ndarray:
    h = (hue + rng.uniform(-jitter, jitter)) % 1.0
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.45, 0.9), rng.uniform(0.55, 1.0)))


def render_panoptic_scene(
    seed: int,
    split: str,
    index: int,
    resolution: int = 64,
    things: tuple[int, int] = (2, 7),
    thing_size: tuple[float, float] = (0.12, 0.35),
):
    """Scene ``index`` of ``split`` → ``(image (R, R, 3) uint8, ids (R, R) int64, segments)`` where ``segments`` is
    the list of ``(id, label, iscrowd)`` in annotation order (``label`` contiguous, module docstring).
    ``things``: the inclusive range of the number of things; ``thing_size``: their size range as a fraction of
    ``R`` (fewer, larger things make instances learnable at 32 px with 4 × 4 guiding codes)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not 0 <= things[0] <= things[1] or not 0 < thing_size[0] <= thing_size[1] <= 1:
        raise ValueError(f"things must be 0 <= min <= max and 0 < thing_size min <= max <= 1, got {things}, "
                         f"{thing_size}")  # fmt: skip
    rng = np.random.default_rng([seed, SPLITS[split], index])
    r = resolution
    ys, xs = np.mgrid[0:r, 0:r].astype(np.float64) + 0.5
    ids = np.zeros((r, r), dtype=np.int64)
    image = np.zeros((r, r, 3))
    segments: list[tuple[int, int, bool]] = []

    def add(mask: np.ndarray, label: int, colour: np.ndarray, crowd: bool = False) -> None:
        seg_id = len(segments) + 1
        ids[mask] = seg_id
        image[mask] = colour
        segments.append((seg_id, label, crowd))

    horizon = r * rng.uniform(0.3, 0.6)
    split_col = r * rng.uniform(0.2, 0.8)
    ground = rng.choice([4, 5, 6], size=2, replace=False)
    texture = 0.85 + 0.15 * rng.random((r, r))
    sky = ys < horizon
    add(sky, 3, _colour(rng, CATEGORIES[3][2], 0.05))
    image[sky] *= (0.8 + 0.2 * ys[sky] / horizon)[:, None]  # brighter towards the horizon
    for label, side in zip(ground, (xs < split_col, xs >= split_col)):
        mask = ~sky & side
        if mask.any():
            add(mask, int(label), _colour(rng, CATEGORIES[label][2], 0.04))
            stripes = 0.8 + 0.2 * (np.floor(ys / (2 + label)) % 2) if label == 5 else texture
            image[mask] *= stripes[mask][:, None]
    if rng.random() < 0.25:  # a crowd of small discs, one segment
        cx, cy = rng.uniform(0.25, 0.75, 2) * r
        crowd = np.zeros((r, r), dtype=bool)
        for _ in range(rng.integers(4, 8)):
            ox, oy = rng.normal(0, 0.07 * r, 2)
            crowd |= _thing_mask(0, xs, ys, cx + ox, cy + oy, r * rng.uniform(0.06, 0.1))
        add(crowd, 0, _colour(rng, CATEGORIES[0][2]), crowd=True)
    for _ in range(rng.integers(things[0], things[1] + 1)):
        kind = int(rng.integers(0, 3))
        size = r * rng.uniform(*thing_size)
        cx, cy = rng.uniform(0.1, 0.9, 2) * r
        add(_thing_mask(kind, xs, ys, cx, cy, size), kind, _colour(rng, CATEGORIES[kind][2]))
    if rng.random() < 0.3:  # an unlabelled patch
        h, w = (rng.uniform(0.1, 0.25, 2) * r).astype(int) + 1
        top, left = rng.integers(0, r - h), rng.integers(0, r - w)
        ids[top : top + h, left : left + w] = 0
        image[top : top + h, left : left + w] = rng.uniform(0.3, 0.7, (h, w, 1))
    areas = np.bincount(ids.reshape(-1), minlength=len(segments) + 1)
    for seg_id, label, _ in segments:  # fragments too small to annotate become VOID
        if 0 < areas[seg_id] < MIN_VISIBLE and CATEGORIES[label][1]:
            ids[ids == seg_id] = 0
    present = np.bincount(ids.reshape(-1), minlength=len(segments) + 1) > 0
    segments = [s for s in segments if present[s[0]]]
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    return (image * 255 + 0.5).astype(np.uint8), ids, segments


class PanopticScenesDataset(Dataset):
    """``size`` scenes of ``split`` (module docstring); ``augment`` = the official training transform."""

    categories: tuple[dict, ...] = tuple({"name": n, "isthing": t} for n, t, _ in CATEGORIES)

    def __init__(self, split: str = "train", size: int = 4000, resolution: int = 64, seed: int = 0,
                 augment: bool = False, render_resolution: int | None = None, things: tuple[int, int] = (2, 7),
                 thing_size: tuple[float, float] = (0.12, 0.35)) -> None:  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.split, self.size, self.resolution, self.seed = split, int(size), int(resolution), int(seed)
        self.things = (int(things[0]), int(things[1]))
        self.thing_size = (float(thing_size[0]), float(thing_size[1]))
        self._memo: dict[int, tuple] = {}
        self.augment = augment
        self.render_resolution = int(render_resolution or resolution)

    @property
    def isthing(self) -> dict[int, bool]:
        """Semantic label (contiguous + 1) → is a thing."""
        return {i + 1: bool(c["isthing"]) for i, c in enumerate(self.categories)}

    def __len__(self) -> int:
        return self.size

    def render(self, index: int):
        """The scene (memoised: training, the token cache and every metric of ``uvim_eval`` ask for the same
        scenes again; up to ``MEMO_LIMIT`` scenes are kept, e.g. 4 000 scenes at 32 px take 44 MB)."""
        if index in self._memo:
            return self._memo[index]
        scene = render_panoptic_scene(self.seed, self.split, index, self.render_resolution, self.things,
                                      self.thing_size)  # fmt: skip
        if len(self._memo) < MEMO_LIMIT:
            for array in scene[:2]:
                array.flags.writeable = False  # shared by every later caller: nobody may change it
            self._memo[index] = scene
        return scene

    def panoptic_target(self, index: int) -> tuple[np.ndarray, dict[int, tuple[int, bool]]]:
        """Ground truth for PQ at native resolution: ids ``(H, W)`` and ``{id: (semantic label, iscrowd)}``."""
        _, ids, segments = self.render(index)
        return ids, {seg_id: (label + 1, crowd) for seg_id, label, crowd in segments}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        rgb, ids, segments = self.render(index)
        semantics, instances = two_channels(ids, [s[0] for s in segments], [s[1] for s in segments])
        image = torch.tensor(rgb).permute(2, 0, 1).float() / 127.5 - 1  # a copy: the memoised scene is read-only
        return make_panoptic_item(image, torch.from_numpy(semantics), torch.from_numpy(instances), index,
                                  self.resolution, self.augment)  # fmt: skip
