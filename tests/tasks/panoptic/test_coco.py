"""COCO 2017 panoptic loader (``tasks/panoptic/coco.py``) on a tiny COCO-format folder generated here: JSON with
categories (things and stuff), RGB-id PNG masks (``id = R + 256·G + 256²·B``), a crowd segment, VOID pixels, a
corrupt image; UViM's train / holdout split; one-line errors for missing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsq_repro.data.loading import collate_skip_corrupt
from fsq_repro.errors import ConfigError
from fsq_repro.tasks.panoptic.coco import COCOPanopticDataset
from fsq_repro.tasks.panoptic.task import PanopticTask

CATEGORIES = [  # deliberately not sorted by id: the list order is the contiguous label
    {"id": 18, "name": "dog", "isthing": 1},
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 184, "name": "tree-merged", "isthing": 0},
]


def _id_rgb(seg_id: int) -> tuple[int, int, int]:
    return seg_id % 256, (seg_id // 256) % 256, seg_id // 65536


def make_coco(root: Path, n_train: int = 5, n_val: int = 2, corrupt: bool = True) -> Path:
    """Images ``H × W = 12 × 16``: left half tree (stuff), a dog square, a person square, a crowd of persons,
    a VOID strip at the bottom row. Segment ids are large (257·k) to exercise all three PNG channels."""
    rng = np.random.default_rng(0)
    for split, n in (("train2017", n_train), ("val2017", n_val)):
        (root / split).mkdir(parents=True)
        (root / "annotations" / f"panoptic_{split}").mkdir(parents=True)
        images, annotations = [], []
        for k in range(n):
            image_id = 1000 - 7 * k  # reversed ids: the loader sorts by image id
            ids = np.zeros((12, 16), dtype=np.int64)
            segs = [(70000 + k, 184, 0), (769 + k, 18, 0), (513 + k, 1, 0), (131072 + k, 1, 1)]
            ids[:11, :8] = segs[0][0]
            ids[2:6, 9:13] = segs[1][0]
            ids[7:11, 9:12] = segs[2][0]
            ids[7:11, 13:16] = segs[3][0]  # crowd
            png = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
            name = f"{image_id:012d}"
            Image.fromarray(png).save(root / "annotations" / f"panoptic_{split}" / f"{name}.png")
            Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(root / split / f"{name}.jpg")
            images.append({"id": image_id, "file_name": f"{name}.jpg", "height": 12, "width": 16})
            annotations.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": [
                {"id": s, "category_id": c, "iscrowd": crowd, "area": int((ids == s).sum())} for s, c, crowd in segs
            ]})  # fmt: skip
        if corrupt and split == "train2017":
            (root / split / images[0]["file_name"]).write_bytes(b"not a jpeg")  # image id 1000: the last by id
        data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
        (root / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(data))
    return root


def test_items_labels_and_ground_truth(tmp_path: Path) -> None:
    root = make_coco(tmp_path)
    val = COCOPanopticDataset(str(root), "val", resolution=8)
    assert val.isthing == {1: True, 2: True, 3: False}
    item = val[0]  # image id 993 < 1000: sorted by id
    assert item["image"].shape == (3, 8, 8) and item["semantics"].shape == (8, 8)
    ids, segments = val.panoptic_target(0)
    assert ids.shape == (12, 16) and ids[0, 0] == 70001 and ids[3, 10] == 770 and ids[11, 0] == 0
    assert segments == {70001: (3, False), 770: (1, False), 514: (2, False), 131073: (2, True)}
    # semantics = contiguous label + 1 (dog → 1, person → 2, tree → 3), VOID bottom row → 0
    it = COCOPanopticDataset(str(root), "val", resolution=16)[0]
    assert it["semantics"].shape == (16, 16) and set(it["semantics"].unique().tolist()) == {0, 1, 2, 3}
    assert (it["semantics"][-1] == 0).all() and it["semantics"][0, 0] == 3
    # canonical instance ids: 4 segments → 1..4 by centre of mass, row-major (dog ȳ ≈ 4.5, tree ȳ ≈ 7, then person
    # and crowd at ȳ ≈ 12, person left of crowd), VOID 0
    ins = it["instances"]
    assert (ins[4, 11], ins[0, 0], ins[12, 10], ins[12, 14]) == (1, 2, 3, 4) and ins[-1].eq(0).all()
    assert sorted(it["instances"].unique().tolist()) == [0, 1, 2, 3, 4]
    # a perfect prediction at model resolution (16 × 16), resized by the metric to the native 12 × 16 ground truth
    # (nearest 12 → 16 → 12 is the identity here) → PQ 1: the crowd prediction is ignored, not an FP
    task = PanopticTask(num_semantic=4, num_instances=8)
    metric = task.metric(val)
    exact = COCOPanopticDataset(str(root), "val", resolution=16)
    batch = collate_skip_corrupt([exact[i] for i in range(len(exact))])
    metric.update(task.truth(batch), batch)
    res = metric.compute()
    assert res["pq"] == pytest.approx(1.0) and res["n_things"] == 2 and res["n_stuff"] == 1


def test_uvim_split_corrupt_files_and_errors(tmp_path: Path) -> None:
    root = make_coco(tmp_path)
    train = COCOPanopticDataset(str(root), "train", resolution=8, holdout=2)
    hold = COCOPanopticDataset(str(root), "holdout", resolution=8, holdout=2)
    assert len(train) == 3 and len(hold) == 2
    assert [r["image_id"] for r in hold.records] == [972, 979] and train.records[-1]["image_id"] == 1000
    batch = collate_skip_corrupt([train[i] for i in range(len(train))])  # image 1000 is corrupt
    assert int(batch["num_corrupt"]) == 1 and batch["image"].shape[0] == 2
    aug = COCOPanopticDataset(str(root), "train", resolution=8, holdout=2, augment=True)
    torch.manual_seed(0)
    assert aug[0]["semantics"].shape == (8, 8)
    with pytest.raises(ConfigError, match=r"data\.root"):
        COCOPanopticDataset(None, "train")
    (root / "annotations" / "panoptic_val2017.json").unlink()
    with pytest.raises(ConfigError, match=r"missing panoptic_val2017\.json"):
        COCOPanopticDataset(str(root), "val")
