"""Panoptic Quality (PQ, SQ, RQ) exactly as the COCO panoptic API computes it, for
FSQ paper §4.4 / Table 2 (COCO panoptic PQ). Reference: cocodataset/panopticapi ``evaluation.py: pq_compute``
(``pq_compute_single_core`` for the per-image statistics, ``PQStat.pq_average`` for the averages).

Per image (all maps are integer arrays or tensors of shape ``(H, W)``, the same shape for prediction and truth):

- ground truth: id map ``gt_ids`` (0 = VOID) + ``gt_segments = {id: (category, iscrowd)}``;
- prediction: id map ``pred_ids`` (0 = VOID, not a segment) + ``pred_segments = {id: category}``;
- areas are pixel counts in the maps; intersections are the counts of every ``(gt_id, pred_id)`` pair;
- a non-crowd gt segment and a predicted segment of the same category match when
  ``IoU = I / (A_pred + A_gt − I − I(VOID, pred)) > 0.5`` (strict; > 0.5 makes the matching unique);
- unmatched non-crowd gt segments are FN; crowd segments are never matched nor counted;
- an unmatched predicted segment is ignored when more than half of it lies on gt VOID plus the crowd segment of its
  own category (the *last* crowd segment of that category in ``gt_segments`` order, as the API's dict keeps it),
  otherwise it is a FP.

Statistics ``tp, fp, fn, iou`` accumulate per category over images (not an average of per-image PQ). For each of
All / Things / Stuff the averages run over the categories with ``tp + fp + fn > 0``:
``PQ_c = iou / (tp + fp/2 + fn/2)``, ``SQ_c = iou / tp`` (0 if tp = 0), ``RQ_c = tp / (tp + fp/2 + fn/2)``.

Why not torchmetrics' ``PanopticQuality``: its inputs are per-pixel ``(category, instance)`` pairs with no crowd
flag, so COCO's crowd rule (an unmatched prediction lying on a same-class crowd region is not an FP) cannot be
expressed, and it merges every stuff segment of a category (the two-channel converter keeps distinct instance ids of
a stuff class as distinct segments). Both change PQ on COCO.

Deviations from the API, all in cases where it fails or its input files differ: a subset without any counted
category gives 0 (the API divides by zero); ground-truth areas are pixel counts (the API reads the JSON ``area``,
equal for COCO); errors are ``ValueError`` (the API raises ``KeyError``). Like the API, gt ids present in the map
but absent from ``gt_segments`` are neither segments nor VOID (they are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

#: Two-channel encoding (panopticapi ``converters/2channels2panoptic_coco_format.py`` uses ``OFFSET = 1000``):
#: segment id = semantic · TWO_CHANNEL_OFFSET + instance, instance in [0, TWO_CHANNEL_OFFSET).
TWO_CHANNEL_OFFSET = 1000


def _to_numpy(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer (H, W) map, got dtype {a.dtype} and shape {tuple(a.shape)}")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} has negative ids")
    return a


def two_channel_segments(
    semantics: np.ndarray | torch.Tensor, instances: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, dict[int, int]]:
    """UViM's two-channel output ``(H, W)`` semantics (0 = void) + ``(H, W)`` instances → ``(ids (H, W) int64,
    {id: category})`` as panopticapi's ``converters/2channels2panoptic_coco_format.py``: every distinct
    ``(semantic, instance)`` pair with semantic ≠ 0 is one segment of category ``semantic``; semantic-0 pixels are
    VOID (id 0) whatever their instance. Ids are ``semantic · 1000 + instance`` (≥ 1000 > 0, unique); the converter
    then draws random ids, which does not change PQ."""
    sem, inst = _to_numpy(semantics, "semantics"), _to_numpy(instances, "instances")
    if sem.shape != inst.shape:
        raise ValueError(f"semantics {sem.shape} and instances {inst.shape} differ in shape")
    if inst.size and inst.max() >= TWO_CHANNEL_OFFSET:
        raise ValueError(f"instance ids must be < {TWO_CHANNEL_OFFSET}")
    ids = np.where(sem != 0, sem * TWO_CHANNEL_OFFSET + inst, 0)
    segments = {int(i): int(i) // TWO_CHANNEL_OFFSET for i in np.unique(ids) if i != 0}
    return ids, segments


class PanopticQuality:
    """Accumulates panopticapi's per-category ``tp, fp, fn, iou`` over images; ``compute`` averages them.

    ``isthing`` maps every category id (small ints, 0 reserved for VOID) to whether it is a *thing*."""

    def __init__(self, isthing: Mapping[int, bool]) -> None:
        if 0 in isthing:
            raise ValueError("category 0 is reserved for VOID and must not be in isthing")
        self.isthing = {int(c): bool(t) for c, t in isthing.items()}
        self.reset()

    def reset(self) -> None:
        self.stats = {c: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0} for c in self.isthing}
        self.num_images = 0

    def _check_category(self, cat: int, what: str) -> int:
        if int(cat) not in self.isthing:
            raise ValueError(f"{what} has unknown category {cat}")
        return int(cat)

    def update(
        self,
        pred_ids: np.ndarray | torch.Tensor,
        pred_segments: Mapping[int, int],
        gt_ids: np.ndarray | torch.Tensor,
        gt_segments: Mapping[int, tuple[int, bool]],
    ) -> None:
        """Add one image: ``pred_ids``, ``gt_ids`` ``(H, W)`` int maps with their segment dictionaries."""
        pred, gt = _to_numpy(pred_ids, "pred_ids"), _to_numpy(gt_ids, "gt_ids")
        if pred.shape != gt.shape:
            raise ValueError(f"pred_ids {pred.shape} and gt_ids {gt.shape} differ in shape")
        pred_cat = {int(i): self._check_category(c, f"pred segment {i}") for i, c in pred_segments.items()}
        gt_info = {int(i): (self._check_category(c, f"gt segment {i}"), bool(cr)) for i, (c, cr) in gt_segments.items()}
        if 0 in pred_cat or 0 in gt_info:
            raise ValueError("segment id 0 is VOID and must not be in pred_segments / gt_segments")

        ids, counts = np.unique(pred, return_counts=True)
        pred_area = {int(i): int(n) for i, n in zip(ids, counts) if i != 0}
        if missing := sorted(set(pred_area) - set(pred_cat)):
            raise ValueError(f"pred ids {missing} are in pred_ids but not in pred_segments")
        if absent := sorted(set(pred_cat) - set(pred_area)):
            raise ValueError(f"pred_segments ids {absent} do not occur in pred_ids")
        ids, counts = np.unique(gt, return_counts=True)
        gt_area = {int(i): int(n) for i, n in zip(ids, counts)}

        # every (gt, pred) pair with its intersection, vectorized via one combined id per pixel
        offset = int(pred.max(initial=0)) + 1
        if int(gt.max(initial=0)) >= np.iinfo(np.int64).max // offset:
            raise ValueError("ids too large to combine into int64")
        pairs, inter = np.unique(gt * offset + pred, return_counts=True)
        pg, pp = pairs // offset, pairs % offset
        void_inter = dict(zip(pp[pg == 0].tolist(), inter[pg == 0].tolist()))

        # matching: candidate pairs = non-crowd gt segment x pred segment of the same category
        g_cat = np.array([gt_info[g][0] if g in gt_info and not gt_info[g][1] else -1 for g in pg.tolist()])
        p_cat = np.array([pred_cat.get(p, -2) for p in pp.tolist()])
        cand = np.flatnonzero(g_cat == p_cat)
        a_pred = np.array([pred_area[p] for p in pp[cand].tolist()], dtype=np.int64)
        a_gt = np.array([gt_area[g] for g in pg[cand].tolist()], dtype=np.int64)
        a_void = np.array([void_inter.get(p, 0) for p in pp[cand].tolist()], dtype=np.int64)
        iou = inter[cand] / (a_pred + a_gt - inter[cand] - a_void)
        hit = iou > 0.5
        gt_matched, pred_matched = set(pg[cand][hit].tolist()), set(pp[cand][hit].tolist())
        for g, v in zip(pg[cand][hit].tolist(), iou[hit].tolist()):
            s = self.stats[gt_info[g][0]]
            s["tp"] += 1
            s["iou"] += v

        crowd_by_category: dict[int, int] = {}
        for g, (cat, crowd) in gt_info.items():
            if crowd:
                crowd_by_category[cat] = g  # the last crowd segment of a category wins, as in the API
            elif g not in gt_matched:
                self.stats[cat]["fn"] += 1

        inter_of = dict(zip(zip(pg.tolist(), pp.tolist()), inter.tolist()))
        for p, cat in pred_cat.items():
            if p in pred_matched:
                continue
            ignored = void_inter.get(p, 0)
            if cat in crowd_by_category:
                ignored += inter_of.get((crowd_by_category[cat], p), 0)
            if ignored / pred_area[p] <= 0.5:
                self.stats[cat]["fp"] += 1
        self.num_images += 1

    def per_category(self) -> dict[int, dict[str, float]]:
        """``{category: {tp, fp, fn, iou, pq, sq, rq}}``; pq = sq = rq = 0 where ``tp + fp + fn = 0``."""
        out = {}
        for c, s in self.stats.items():
            tp, fp, fn, iou = s["tp"], s["fp"], s["fn"], s["iou"]
            denom = tp + 0.5 * fp + 0.5 * fn
            pq = iou / denom if denom else 0.0
            sq = iou / tp if tp else 0.0
            rq = tp / denom if denom else 0.0
            out[c] = {"tp": tp, "fp": fp, "fn": fn, "iou": iou, "pq": pq, "sq": sq, "rq": rq}
        return out

    def _average(self, per_cat: dict[int, dict[str, float]], isthing: bool | None) -> dict[str, float]:
        """``PQStat.pq_average`` over the categories with ``tp + fp + fn > 0``; all 0 when there are none (the API
        would divide by zero)."""
        rows = [
            r
            for c, r in per_cat.items()
            if (isthing is None or self.isthing[c] == isthing) and r["tp"] + r["fp"] + r["fn"] > 0
        ]
        n = len(rows)
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
        # summed in category order like the API's loop
        pq = sq = rq = 0.0
        for r in rows:
            pq, sq, rq = pq + r["pq"], sq + r["sq"], rq + r["rq"]
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}

    def compute(self) -> dict[str, float]:
        """Fractions in [0, 1]: ``pq, sq, rq, n`` (All), ``*_things``, ``*_stuff``, and ``num_images``."""
        per_cat = self.per_category()
        out: dict[str, float] = {}
        for suffix, isthing in (("", None), ("_things", True), ("_stuff", False)):
            for k, v in self._average(per_cat, isthing).items():
                out[k + suffix] = v
        out["num_images"] = self.num_images
        return out
