"""COCO 2017 panoptic for UViM's panoptic task (FSQ paper §4.4, Table 2; Kirillov et al. 2019) from a local root.

Files (the official download, unzipped), looked up under ``root/annotations/`` and then ``root/``:

- ``panoptic_{train,val}2017.json``: ``images`` (id, file_name, height, width), ``annotations`` (image_id, the PNG's
  file_name, ``segments_info`` with id, category_id, iscrowd), ``categories`` (id, name, isthing);
- ``panoptic_{train,val}2017/``: one PNG per image, segment ``id = R + 256 · G + 256² · B`` (0 = VOID);
- ``root/{train,val}2017/``: the JPEG images.

Splits (UViM's, ``configs/proj/uvim/vqvae_coco_panoptic.py``): ``train`` = ``train[4096:]``, ``holdout`` =
``train[:4096]``, ``val`` = the 5 000 validation images (Table 2 reports val). Deliberate difference: TFDS orders the
train split by its own shards; here the images are sorted by image id, so the held-out 4 096 are a different (but
fixed) subset.

Labels: the category's position in the JSON's ``categories`` list is its contiguous label (the order of
``panoptic_coco_categories.json``, which the official evaluator's ``remap`` uses); ``labels.py`` turns id map
+ segments into the two channels and applies the transforms. ``panoptic_target(i)`` returns the native-resolution
ground truth for PQ (``metrics/panoptic.py``), crowd flags included. An unreadable image or PNG gives ``None``,
which ``collate_skip_corrupt`` drops and counts.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fsq_repro.data.imagenet import UNREADABLE_IMAGE
from fsq_repro.errors import ConfigError, first_line
from fsq_repro.tasks.panoptic.labels import make_panoptic_item, rgb_to_id, two_channels

HOLDOUT = 4096  # official train_split 'train[4096:]', holdout eval 'train[:4096]'
SPLITS = {"train": "train2017", "holdout": "train2017", "val": "val2017"}
HINT = ("pass data.root=/path/to/coco holding annotations/panoptic_{train,val}2017.json, the unzipped "
        "annotations/panoptic_{train,val}2017/ PNG folders and the {train,val}2017/ images")  # fmt: skip


def _find(root: Path, name: str) -> Path | None:
    return next((p for p in (root / "annotations" / name, root / name) if p.exists()), None)


class COCOPanopticDataset(Dataset):
    """One UViM split of COCO panoptic (module docstring); items as ``tasks/panoptic/labels.py: make_panoptic_item``."""

    def __init__(self, root: str | None, split: str = "train", resolution: int = 512, augment: bool = False,
                 holdout: int = HOLDOUT, max_items: int | None = None) -> None:  # fmt: skip
        if not root:
            raise ConfigError(f"COCO panoptic needs a dataset root: {HINT}")
        if split not in SPLITS:
            raise ConfigError(f"COCO panoptic split must be one of {list(SPLITS)}, got {split!r}")
        self.root, self.split, self.resolution, self.augment = Path(root), split, int(resolution), augment
        base = SPLITS[split]
        json_path, png_dir = _find(self.root, f"panoptic_{base}.json"), _find(self.root, f"panoptic_{base}")
        image_dir = self.root / base
        missing = [str(p) for p, found in ((f"panoptic_{base}.json", json_path), (f"panoptic_{base}/", png_dir),
                                           (image_dir, image_dir.is_dir())) if not found]  # fmt: skip
        if missing:
            raise ConfigError(f"COCO panoptic under {self.root}: missing {', '.join(missing)}; {HINT}")
        self.png_dir, self.image_dir = png_dir, image_dir
        try:
            data = json.loads(json_path.read_text())
            self.categories = list(data["categories"])
            self.label_of = {c["id"]: i for i, c in enumerate(self.categories)}  # category id → contiguous label
            images = {im["id"]: im for im in data["images"]}
            records = sorted(data["annotations"], key=lambda a: a["image_id"])
            records = [{**a, "image_file": images[a["image_id"]]["file_name"]} for a in records]
            for a in records:
                if not isinstance(a["file_name"], str) or not all(isinstance(s["id"], int) for s in a["segments_info"]):
                    raise ValueError(f"annotation of image {a['image_id']} has no PNG name or integer segment ids")
        except Exception as err:  # not JSON, not UTF-8, missing keys, wrong types: one line naming the file
            first = first_line(err, 120)
            raise ConfigError(f"{json_path} is not a COCO panoptic annotation file ({type(err).__name__}: {first}); "
                              f"{HINT}") from None  # fmt: skip
        if split != "val":
            records = records[holdout:] if split == "train" else records[:holdout]
        self.records = records
        if max_items is not None:
            self.records = self.records[: int(max_items)]
        if not self.records:
            raise ConfigError(f"COCO panoptic {split}: no images in {json_path} (holdout={holdout})")

    @cached_property
    def isthing(self) -> dict[int, bool]:
        """Semantic label (contiguous + 1) → is a thing (the JSON's ``isthing``)."""
        return {i + 1: bool(c.get("isthing", 0)) for i, c in enumerate(self.categories)}

    def __len__(self) -> int:
        return len(self.records)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """``(image (H, W, 3) uint8, ids (H, W) int64, segments_info)`` at native resolution."""
        rec = self.records[index]
        with Image.open(self.image_dir / rec["image_file"]) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(self.png_dir / rec["file_name"]) as im:
            if im.format != "PNG":  # segment ids survive only lossless PNG (a JPEG under the name decodes to noise)
                raise ValueError(f"{rec['file_name']} is {im.format}, not PNG")
            ids = rgb_to_id(np.asarray(im.convert("RGB")))
        if ids.shape != image.shape[:2]:
            raise ValueError(f"{rec['file_name']}: mask {ids.shape} does not match image {image.shape[:2]}")
        for seg in rec["segments_info"]:
            if seg["category_id"] not in self.label_of:
                raise KeyError(f"{rec['file_name']}: unknown category {seg['category_id']}")
        return image, ids, rec["segments_info"]

    def panoptic_target(self, index: int) -> tuple[np.ndarray, dict[int, tuple[int, bool]]]:
        """Ground truth for PQ: ids ``(H, W)`` and ``{id: (semantic label, iscrowd)}`` (semantic = contiguous + 1)."""
        rec = self.records[index]
        with Image.open(self.png_dir / rec["file_name"]) as im:
            ids = rgb_to_id(np.asarray(im.convert("RGB")))
        return ids, {s["id"]: (self.label_of[s["category_id"]] + 1, bool(s.get("iscrowd", 0)))
                     for s in rec["segments_info"]}  # fmt: skip

    def __getitem__(self, index: int) -> dict | None:
        if not 0 <= index < len(self):
            raise IndexError(index)
        try:
            image, ids, segments = self.read(index)
        except (*UNREADABLE_IMAGE, KeyError):
            return None  # unreadable: dropped and counted by collate_skip_corrupt
        semantics, instances = two_channels(ids, [s["id"] for s in segments],
                                            [self.label_of[s["category_id"]] for s in segments])  # fmt: skip
        image_t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
        return make_panoptic_item(image_t, torch.from_numpy(semantics), torch.from_numpy(instances), index,
                                  self.resolution, self.augment)  # fmt: skip
