"""Depth data for UViM (FSQ paper §4.4, Table 2 NYU rows): the depth discretisation and the train / eval transforms
shared by every depth dataset. The datasets: ``tasks/depth/scenes.py`` (embedded stand-in with exact ground truth)
and ``tasks/depth/nyu.py`` (NYU Depth v2).

Discretisation (big_vision ``trainers/proj/uvim/depth_task.py`` at 21bd6eb): ``bins = floor((d − min) / (max − min)
· num_bins)`` clipped to ``[0, num_bins − 1]``; back to metres at the bin centre ``(b + 0.5) / num_bins · (max −
min) + min`` ("undoes floor in expectation"), so the round trip is off by at most half a bin inside the range.

Transforms (official ``configs/proj/uvim/vqvae_nyu_depth.py`` pre-processing):

- training (``augment=True``, ``pp_train``): a horizontal flip with probability 1/2, then an Inception crop box
  (``pp/proj/uvim/pp_ops.py: inception_box`` = TF's ``sample_distorted_bounding_box`` with area ∈ [5 %, 100 %] and
  aspect ratio w/h ∈ [0.75, 1.33], ``data/transforms.py``), both applied identically to image and depth;
- evaluation (``pp_eval``): an optional fixed crop (NYU's ``nyu_eval_crop``, ``nyu.py``); the cropped depth at
  native resolution is kept as ``depth_gt`` (metrics compare the prediction, resized to it, against it);
- then both: the image resized bilinearly with antialiasing (the official TF resize has antialias off; here it is
  on) and the depth with nearest neighbour (``nearest-exact`` = TF2's half-pixel-centre nearest; depth is never
  interpolated, so every output depth is a measured value and 0 = "no measurement" survives).

Items: ``{"image": (3, R, R) float32 in [−1, 1], "depth": (1, R, R) float32 metres, "label": 0, "index": i}`` plus
``"depth_gt": (1, Hc, Wc) float32`` when not augmenting.

Randomness: by default the global torch RNG, which the training loop re-seeds every step (``lit/callbacks.py:
ReseedEveryStep``), so with ``num_workers=0`` a run is reproducible; with worker processes each worker has its own
torch seed (PyTorch's ``base_seed + worker_id``). Pass ``generator=`` for a private stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsq_repro.data.transforms import inception_box, uniform


def depth_to_bins(depth: torch.Tensor, num_bins: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0):
    """Metres (any shape) → int64 bins in ``[0, num_bins − 1]`` (official ``depth_task.input_pp``)."""
    scaled = (depth.float() - min_depth) / (max_depth - min_depth) * num_bins
    return scaled.floor().long().clamp(0, num_bins - 1)


def bins_to_depth(bins: torch.Tensor, num_bins: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0):
    """Bins (any shape) → float32 metres at the bin centre (official ``depth_task.predict_outputs``)."""
    return (bins.float() + 0.5) / num_bins * (max_depth - min_depth) + min_depth


def crop_pair(image: torch.Tensor, depth: torch.Tensor, box: tuple[int, int, int, int]):
    """The same ``(top, left, h, w)`` window of ``image (3, H, W)`` and ``depth (1, H, W)``."""
    top, left, h, w = box
    return image[:, top : top + h, left : left + w], depth[:, top : top + h, left : left + w]


def resize_pair(image: torch.Tensor, depth: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (3, H, W)`` bilinear (antialiased), ``depth (1, H, W)`` nearest, both to ``(size, size)``."""
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if depth.shape[-2:] != (size, size):
        depth = F.interpolate(depth[None], size=(size, size), mode="nearest-exact")[0]
    return image, depth


def make_item(
    image: torch.Tensor,
    depth: torch.Tensor,
    index: int,
    size: int,
    augment: bool,
    crop: tuple[int, int, int, int] | None = None,
    generator: torch.Generator | None = None,
    min_crop_area: float = 0.05,
) -> dict:
    """``image (3, H, W)`` in [−1, 1] and ``depth (1, H, W)`` metres at native resolution → a dataset item (module
    docstring): training transform when ``augment``, else the optional eval ``crop`` ``(top, left, h, w)``.
    ``min_crop_area``: the Inception box's smallest area share (official 0.05; 1.0 = flip only)."""
    if augment:
        if uniform(generator) > 0.5:  # official randu("fliplr") | det_fliplr: flip when u > 0.5
            image, depth = image.flip(-1), depth.flip(-1)
        if min_crop_area < 1.0:
            box = inception_box(*image.shape[-2:], area=(min_crop_area, 1.0), generator=generator)
            image, depth = crop_pair(image, depth, box)
        image, depth = resize_pair(image, depth, size)
        return {"image": image.contiguous(), "depth": depth.contiguous(), "label": 0, "index": index}
    if crop is not None:
        image, depth = crop_pair(image, depth, crop)
    depth_gt = depth.contiguous().clone()
    image, depth = resize_pair(image, depth, size)
    return {"image": image.contiguous(), "depth": depth.contiguous(), "depth_gt": depth_gt, "label": 0, "index": index}
