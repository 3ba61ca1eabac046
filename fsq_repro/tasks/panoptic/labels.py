"""Panoptic labels for UViM (FSQ paper §4.4, Table 2 COCO panoptic rows): the two-channel label coding and the train /
eval transforms shared by every panoptic dataset. The datasets: ``tasks/panoptic/scenes.py`` (embedded stand-in with
exact ground truth) and ``tasks/panoptic/coco.py`` (COCO 2017 panoptic).

Two channels (big_vision ``pp/proj/uvim/pp_ops.py: coco_panoptic`` at 21bd6eb), from a panoptic id map whose
segments are listed in order ``s = 0, 1, …``:

- ``semantics = label_s + 1`` on the pixels of segment ``s`` (``label`` = the category's contiguous index), ``0`` on
  VOID pixels (no segment);
- ``instances = s + 1`` on segment ``s``, ``0`` on VOID — things, stuff and crowd regions alike.

``make_canonical`` (official op of the same name) then renumbers the instance ids ``> 0`` ``1 … N`` in the order of
their centre of mass, row-major (key ``x̄ + H · ȳ``), so the ids the autoencoder sees do not depend on annotation
order; it runs last, after cropping, so ids stay consecutive.

Transforms (official ``configs/proj/uvim/vqvae_coco_panoptic.py``): training = flip with probability 1/2, Inception
crop box (``data/transforms.py: inception_box``, TF's rule), resize; evaluation = resize only. The image is resized
bilinearly (antialiased, as for depth), the labels nearest (``nearest-exact`` = TF2's half-pixel nearest),
both to a square ``size`` (aspect ratio not kept, as the official ``resize(512)``).

Items: ``{"image": (3, R, R) float32 in [−1, 1], "semantics": (R, R) int64, "instances": (R, R) int64, "label": 0,
"index": i}``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fsq_repro.data.transforms import inception_box, uniform


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG ``(H, W, 3)`` uint8 → segment ids ``R + 256 · G + 256² · B`` (int64, 0 = VOID)."""
    rgb = np.asarray(rgb).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def two_channels(ids: np.ndarray, segment_ids: list[int], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Id map ``(H, W)`` and the image's segments (ids and contiguous labels, in annotation order) → ``(semantics,
    instances)`` int64 maps (module docstring). Pixels whose id is not listed are VOID."""
    semantics = np.zeros(ids.shape, dtype=np.int64)
    instances = np.zeros(ids.shape, dtype=np.int64)
    if len(segment_ids):
        order = np.argsort(np.asarray(segment_ids, dtype=np.int64))
        sorted_ids = np.asarray(segment_ids, dtype=np.int64)[order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        seg = order[pos]  # annotation index of each pixel's segment
        semantics[found] = np.asarray(labels, dtype=np.int64)[seg[found]] + 1
        instances[found] = seg[found] + 1
    return semantics, instances


def make_canonical(instances: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` instance ids → ids ``1 … N`` by centre of mass, row-major; 0 stays 0, negative ids become −1
    (official ``make_canonical(random=False, main_sort_axis="y")``: key ``x̄ + H · ȳ``, float32 centres)."""
    height = instances.shape[0]
    flat = instances.reshape(-1)
    ids = torch.unique(flat)
    ids = ids[ids > 0]
    out = torch.where(flat == 0, torch.zeros_like(flat), torch.full_like(flat, -1))
    if len(ids) == 0:
        return out.view_as(instances)
    # centres by per-segment sums (bincount over each pixel's segment index): O(H·W) memory, not segments × pixels
    positive = (flat > 0).nonzero()[:, 0]
    segment = torch.searchsorted(ids, flat[positive])
    counts = torch.bincount(segment, minlength=len(ids)).double()
    rows, cols = positive // instances.shape[1], positive % instances.shape[1]
    cy = (torch.bincount(segment, weights=rows.double(), minlength=len(ids)) / counts).float()
    cx = (torch.bincount(segment, weights=cols.double(), minlength=len(ids)) / counts).float()
    rank = torch.argsort(cx + float(height) * cy, stable=True)  # position k holds the k-th segment in order
    new_id = torch.empty_like(ids)
    new_id[rank] = torch.arange(1, len(ids) + 1, dtype=ids.dtype)
    lookup = torch.searchsorted(ids, flat.clamp(min=0)).clamp(max=len(ids) - 1)
    hit = (flat > 0) & (ids[lookup] == flat)
    out = torch.where(hit, new_id[lookup], out)
    return out.view_as(instances)


def resize_labels(labels: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``(..., H, W)`` int64 labels → nearest with half-pixel centres (TF2 / jax ``nearest``)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if labels.shape[-2:] == size:
        return labels
    shape = labels.shape
    x = labels.reshape(-1, 1, *shape[-2:]).double()  # float64 keeps every int id exact
    return F.interpolate(x, size=size, mode="nearest-exact").long().reshape(*shape[:-2], *size)


def make_panoptic_item(
    image: torch.Tensor,
    semantics: torch.Tensor,
    instances: torch.Tensor,
    index: int,
    size: int,
    augment: bool,
    generator: torch.Generator | None = None,
) -> dict:
    """``image (3, H, W)`` in [−1, 1], ``semantics`` / ``instances (H, W)`` int64 at native resolution → an item
    (module docstring): training transform when ``augment``, then resize and canonical instance ids."""
    if augment:
        if uniform(generator) > 0.5:  # official randu("fliplr") | det_fliplr
            image, semantics, instances = image.flip(-1), semantics.flip(-1), instances.flip(-1)
        top, left, h, w = inception_box(*image.shape[-2:], generator=generator)
        image = image[:, top : top + h, left : left + w]
        semantics = semantics[top : top + h, left : left + w]
        instances = instances[top : top + h, left : left + w]
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    labels = resize_labels(torch.stack([semantics, instances]), size)
    return {
        "image": image.contiguous(),
        "semantics": labels[0].contiguous(),
        "instances": make_canonical(labels[1]).contiguous(),
        "label": 0,
        "index": index,
    }
