"""Panoptic Quality against hand computations and a plain-Python port of panopticapi ``evaluation.py``
(``pq_compute_single_core`` + ``PQStat.pq_average``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fsq_repro.metrics.panoptic import PanopticQuality, two_channel_segments


def row(*runs: tuple[int, int]) -> np.ndarray:
    """A (1, W) id map from ``(id, length)`` runs."""
    return np.array([[i for i, n in runs for _ in range(n)]], dtype=np.int64)


def counts(pq: PanopticQuality, cat: int) -> tuple[int, int, int]:
    s = pq.per_category()[cat]
    return s["tp"], s["fp"], s["fn"]


def test_perfect_prediction_things_and_stuff_torch_input() -> None:
    gt = torch.tensor([[1, 1, 2, 2], [3, 3, 2, 0]])
    pred = torch.tensor([[7, 7, 9, 9], [4, 4, 9, 0]])
    pq = PanopticQuality({1: True, 2: False})
    pq.update(pred, {7: 1, 9: 2, 4: 1}, gt, {1: (1, False), 2: (2, False), 3: (1, False)})
    r = pq.compute()
    for k in ("pq", "sq", "rq", "pq_things", "sq_things", "rq_things", "pq_stuff", "sq_stuff", "rq_stuff"):
        assert r[k] == 1.0, k
    assert (r["n"], r["n_things"], r["n_stuff"], r["num_images"]) == (2, 1, 1, 1)
    assert counts(pq, 1) == (2, 0, 0)


def test_iou_04_unmatched_and_iou_075_matched() -> None:
    # gt: A (id 1, thing cat 1) 8 px, B (id 2, stuff cat 2) 8 px.
    # pred 5 (cat 1): 4 px of A + 2 px of B, area 6 -> IoU(A) = 4 / (6 + 8 - 4) = 0.4 -> FN(A) + FP(5)
    # pred 7 (cat 2): 6 px inside B -> IoU = 6 / (6 + 8 - 6) = 0.75 -> TP
    gt = row((1, 8), (2, 8))
    pred = row((0, 4), (5, 6), (7, 6))
    pq = PanopticQuality({1: True, 2: False})
    pq.update(pred, {5: 1, 7: 2}, gt, {1: (1, False), 2: (2, False)})
    pc = pq.per_category()
    assert (pc[1]["tp"], pc[1]["fp"], pc[1]["fn"], pc[1]["pq"], pc[1]["sq"], pc[1]["rq"]) == (0, 1, 1, 0, 0, 0)
    assert (pc[2]["tp"], pc[2]["fp"], pc[2]["fn"]) == (1, 0, 0)
    assert pc[2]["iou"] == pytest.approx(0.75, abs=1e-15)
    assert (pc[2]["pq"], pc[2]["sq"], pc[2]["rq"]) == pytest.approx((0.75, 0.75, 1.0), abs=1e-15)
    r = pq.compute()
    assert (r["pq"], r["sq"], r["rq"], r["n"]) == pytest.approx((0.375, 0.375, 0.5, 2), abs=1e-15)
    assert (r["pq_things"], r["sq_things"], r["rq_things"]) == (0.0, 0.0, 0.0)
    assert (r["pq_stuff"], r["sq_stuff"], r["rq_stuff"]) == pytest.approx((0.75, 0.75, 1.0), abs=1e-15)


@pytest.mark.parametrize(("inside", "matched"), [(51, True), (50, False)])
def test_iou_threshold_is_strict(inside: int, matched: bool) -> None:
    # gt segment 100 px; pred lies inside it with `inside` px: IoU = inside / 100.
    gt = row((1, 100))
    pred = row((3, inside), (0, 100 - inside))
    pq = PanopticQuality({1: True})
    pq.update(pred, {3: 1}, gt, {1: (1, False)})
    if matched:
        assert counts(pq, 1) == (1, 0, 0)
        assert pq.compute()["sq"] == pytest.approx(0.51, abs=1e-15)
        assert pq.compute()["pq"] == pytest.approx(0.51, abs=1e-15)
    else:
        # unmatched pred lies entirely on gt segment 1 (not VOID) -> FP
        assert counts(pq, 1) == (0, 1, 1)
        assert pq.compute()["pq"] == 0.0


def test_gt_void_inside_prediction_leaves_the_union() -> None:
    # gt A 6 px, then 4 VOID px. pred: 4 px of A + the 4 VOID px (area 8).
    # without the void term: 4 / (8 + 6 - 4) = 0.4; with it: 4 / (10 - 4) = 2/3 > 0.5 -> TP
    gt = row((1, 6), (0, 4))
    pred = row((0, 2), (5, 8))
    pq = PanopticQuality({1: True})
    pq.update(pred, {5: 1}, gt, {1: (1, False)})
    assert counts(pq, 1) == (1, 0, 0)
    assert pq.per_category()[1]["iou"] == pytest.approx(2 / 3, abs=1e-15)
    assert pq.compute()["pq"] == pytest.approx(2 / 3, abs=1e-15)


@pytest.mark.parametrize(("on_void", "fp"), [(3, 0), (2, 1)])
def test_unmatched_prediction_on_void_is_ignored_above_half(on_void: int, fp: int) -> None:
    # gt A (cat 1) 4 px + 6 VOID px; pred 9 (cat 2, never matches A): 2 px of A + on_void VOID px.
    # 3/5 = 0.6 > 0.5 -> ignored; 2/4 = 0.5 -> FP.
    gt = row((1, 4), (0, 6))
    pred = row((0, 2), (9, 2 + on_void), (0, 6 - on_void))
    pq = PanopticQuality({1: True, 2: True})
    pq.update(pred, {9: 2}, gt, {1: (1, False)})
    assert counts(pq, 1) == (0, 0, 1)
    assert counts(pq, 2) == (0, fp, 0)
    assert pq.compute()["n"] == 1 + fp


def test_crowd_region() -> None:
    # gt: crowd C (id 1, cat 1) 6 px, A (id 2, cat 1) 4 px.
    gt = row((1, 6), (2, 4))
    gt_segs = {1: (1, True), 2: (1, False)}
    # pred cat 1: 4 crowd px + 2 px of A (IoU(A) = 2 / (6 + 4 - 2) = 0.25): ignored = 4/6 > 0.5 -> no FP
    pred = row((0, 2), (5, 6), (0, 2))
    same = PanopticQuality({1: True, 2: True})
    same.update(pred, {5: 1}, gt, gt_segs)
    assert counts(same, 1) == (0, 0, 1)  # A is FN, the crowd segment is not
    # the same pixels predicted as cat 2: the cat-1 crowd does not excuse it -> FP
    other = PanopticQuality({1: True, 2: True})
    other.update(pred, {5: 2}, gt, gt_segs)
    assert counts(other, 1) == (0, 0, 1)
    assert counts(other, 2) == (0, 1, 0)
    # a prediction equal to the crowd region (IoU 1) is not a TP, just ignored
    exact = PanopticQuality({1: True, 2: True})
    exact.update(row((5, 6), (0, 4)), {5: 1}, gt, gt_segs)
    assert counts(exact, 1) == (0, 0, 1)
    assert exact.compute()["pq"] == 0.0


def test_only_the_last_crowd_segment_of_a_category_excuses() -> None:
    # two cat-1 crowd segments: ids 1 then 2 in gt_segments order; the API's dict keeps id 2.
    gt = row((1, 4), (2, 4))
    on_first, on_second = PanopticQuality({1: True}), PanopticQuality({1: True})
    on_first.update(row((5, 4), (0, 4)), {5: 1}, gt, {1: (1, True), 2: (1, True)})
    on_second.update(row((0, 4), (5, 4)), {5: 1}, gt, {1: (1, True), 2: (1, True)})
    assert counts(on_first, 1) == (0, 1, 0)
    assert counts(on_second, 1) == (0, 0, 0)


def test_statistics_accumulate_over_images() -> None:
    # image 1: three cat-1 segments predicted exactly (3 TP, iou 3); image 2: one segment, prediction all VOID (1 FN).
    img1 = (
        row((7, 2), (8, 2), (9, 2)),
        {7: 1, 8: 1, 9: 1},
        row((1, 2), (2, 2), (3, 2)),
        {i: (1, False) for i in (1, 2, 3)},
    )
    img2 = (row((0, 4)), {}, row((1, 4)), {1: (1, False)})
    both = PanopticQuality({1: True})
    per_image = []
    for img in (img1, img2):
        both.update(*img)
        single = PanopticQuality({1: True})
        single.update(*img)
        per_image.append(single.compute()["pq"])
    assert per_image == [1.0, 0.0]
    # accumulated: 3 / (3 + 0.5 * 1) = 6/7, not the per-image mean 0.5
    assert both.compute()["pq"] == pytest.approx(6 / 7, abs=1e-15)
    assert both.compute()["rq"] == pytest.approx(6 / 7, abs=1e-15)
    assert both.compute()["sq"] == 1.0
    assert both.compute()["num_images"] == 2
    both.reset()
    assert both.compute()["num_images"] == 0 and counts(both, 1) == (0, 0, 0)


def test_categories_without_counts_are_excluded() -> None:
    pq = PanopticQuality({1: True, 2: False, 3: True})
    pq.update(row((4, 3)), {4: 1}, row((1, 3)), {1: (1, False)})
    r = pq.compute()
    assert (r["pq"], r["n"], r["pq_things"], r["n_things"]) == (1.0, 1, 1.0, 1)
    assert (r["pq_stuff"], r["sq_stuff"], r["rq_stuff"], r["n_stuff"]) == (0.0, 0.0, 0.0, 0)
    assert pq.per_category()[3]["pq"] == 0.0


def test_two_channel_segments() -> None:
    semantics = np.array([[0, 2, 2, 2], [1, 1, 2, 2]])
    instances = np.array([[5, 0, 0, 1], [3, 3, 1, 1]])
    ids, segs = two_channel_segments(torch.from_numpy(semantics), instances)
    # stuff class 2 split into instances 0 and 1 -> two segments; semantic 0 -> VOID whatever the instance
    np.testing.assert_array_equal(ids, [[0, 2000, 2000, 2001], [1003, 1003, 2001, 2001]])
    assert segs == {1003: 1, 2000: 2, 2001: 2}
    gt = np.array([[0, 5, 5, 6], [7, 7, 6, 6]])
    pq = PanopticQuality({1: True, 2: False})
    pq.update(ids, segs, gt, {5: (2, False), 6: (2, False), 7: (1, False)})
    assert counts(pq, 2) == (2, 0, 0) and pq.compute()["pq"] == 1.0


def test_errors() -> None:
    with pytest.raises(ValueError, match="reserved"):
        PanopticQuality({0: False, 1: True})
    pq = PanopticQuality({1: True})
    with pytest.raises(ValueError, match="shape"):
        pq.update(np.zeros((2, 3), dtype=int), {}, np.zeros((3, 2), dtype=int), {})
    with pytest.raises(ValueError, match="not in pred_segments"):
        pq.update(row((4, 2)), {}, row((1, 2)), {1: (1, False)})
    with pytest.raises(ValueError, match="unknown category"):
        pq.update(row((4, 2)), {4: 2}, row((1, 2)), {1: (1, False)})
    with pytest.raises(ValueError, match="unknown category"):
        pq.update(row((4, 2)), {4: 1}, row((1, 2)), {1: (3, False)})
    assert pq.num_images == 0


# --- independent oracle: plain-Python port of panopticapi pq_compute_single_core + PQStat.pq_average ---


def oracle(images, isthing):
    stat = {c: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0} for c in isthing}
    for pred, pred_segs, gt, gt_segs in images:
        pred_area, gt_area, pair = {}, {}, {}
        for prow, grow in zip(pred.tolist(), gt.tolist()):
            for p, g in zip(prow, grow):
                pred_area[p] = pred_area.get(p, 0) + 1
                gt_area[g] = gt_area.get(g, 0) + 1
                pair[(g, p)] = pair.get((g, p), 0) + 1
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in pair.items():
            if g not in gt_segs or p not in pred_segs or gt_segs[g][1] or gt_segs[g][0] != pred_segs[p]:
                continue
            union = pred_area[p] + gt_area[g] - inter - pair.get((0, p), 0)
            iou = inter / union
            if iou > 0.5:
                stat[gt_segs[g][0]]["tp"] += 1
                stat[gt_segs[g][0]]["iou"] += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd = {}
        for g, (cat, iscrowd) in gt_segs.items():
            if g in gt_matched:
                continue
            if iscrowd:
                crowd[cat] = g
                continue
            stat[cat]["fn"] += 1
        for p, cat in pred_segs.items():
            if p in pred_matched:
                continue
            inter = pair.get((0, p), 0)
            if cat in crowd:
                inter += pair.get((crowd[cat], p), 0)
            if inter / pred_area[p] > 0.5:
                continue
            stat[cat]["fp"] += 1
    out = {}
    for suffix, want in (("", None), ("_things", True), ("_stuff", False)):
        pq = sq = rq = n = 0
        for c, s in stat.items():
            if want is not None and isthing[c] != want:
                continue
            tp, fp, fn, iou = s["tp"], s["fp"], s["fn"], s["iou"]
            if tp + fp + fn == 0:
                continue
            n += 1
            pq += iou / (tp + 0.5 * fp + 0.5 * fn)
            sq += iou / tp if tp != 0 else 0
            rq += tp / (tp + 0.5 * fp + 0.5 * fn)
        out.update({"pq" + suffix: pq / n if n else 0.0, "sq" + suffix: sq / n if n else 0.0})
        out.update({"rq" + suffix: rq / n if n else 0.0, "n" + suffix: n})
    return out, stat


def random_image(rng: random.Random):
    h, w = rng.randint(5, 10), rng.randint(5, 10)
    gt = np.zeros((h, w), dtype=np.int64)
    gt_segs = {}
    for gid in range(1, rng.randint(2, 6) + 1):  # rectangles painted over each other; uncovered pixels stay VOID
        y, x = rng.randrange(h), rng.randrange(w)
        gt[y : y + rng.randint(2, 6), x : x + rng.randint(2, 6)] = gid
    for gid in np.unique(gt).tolist():
        if gid:
            gt_segs[gid] = (rng.randint(1, 4), rng.random() < 0.2)
    # prediction: relabel gt ids, noise pixels, sometimes a wrong category
    relabel = {g: g * 3 + 1 for g in gt_segs} | {0: 0}
    pred = np.vectorize(lambda g: relabel[g])(gt) if gt_segs else gt.copy()
    noise = np.array([[rng.random() < 0.25 for _ in range(w)] for _ in range(h)])
    pred[noise] = [rng.choice([0, 2, 5, 20]) for _ in range(int(noise.sum()))]
    gt_cat = {relabel[g]: c for g, (c, _) in gt_segs.items()}
    pred_segs = {}
    for p in np.unique(pred).tolist():
        if p:
            pred_segs[p] = gt_cat[p] if p in gt_cat and rng.random() < 0.8 else rng.randint(1, 4)
    return pred, pred_segs, gt, gt_segs


def test_matches_plain_python_port_of_panopticapi() -> None:
    isthing = {1: True, 2: False, 3: True, 4: False}
    rng = random.Random(0)
    totals = {"tp": 0, "fp": 0, "fn": 0}
    for _ in range(20):
        images = [random_image(rng) for _ in range(rng.randint(1, 3))]
        metric = PanopticQuality(isthing)
        for img in images:
            metric.update(*img)
        want, want_stat = oracle(images, isthing)
        got = metric.compute()
        for k, v in want.items():
            assert got[k] == pytest.approx(v, abs=1e-12), k
        for c, s in want_stat.items():
            g = metric.per_category()[c]
            assert (g["tp"], g["fp"], g["fn"]) == (s["tp"], s["fp"], s["fn"])
            assert g["iou"] == pytest.approx(s["iou"], abs=1e-12)
            totals = {k: totals[k] + s[k] for k in totals}
    assert min(totals.values()) > 5  # the random cases exercise matches, FPs and FNs
