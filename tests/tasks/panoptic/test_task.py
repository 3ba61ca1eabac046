"""UViM's panoptic task and labels against independent re-derivations of the official big_vision code (21bd6eb):
``panoptic_task.panoptic_predictions_from_logits`` and ``loss_fn`` (numpy ports with one-hot einsums), the
``coco_panoptic`` and ``make_canonical`` pre-processing ops (hand cases and a numpy port), and the embedded scenes'
ground truth scored through the evaluation path (a perfect prediction has PQ 1, crowd and VOID included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsq_repro.tasks.panoptic.labels import make_canonical, resize_labels, rgb_to_id, two_channels
from fsq_repro.tasks.panoptic.scenes import PanopticScenesDataset, render_panoptic_scene
from fsq_repro.tasks.panoptic.task import PanopticTask, panoptic_from_logits


def official_predictions(semantics: np.ndarray, instances: np.ndarray, min_fraction: float) -> np.ndarray:
    """numpy port of ``panoptic_predictions_from_logits`` (channels-last logits (B, H, W, C))."""
    ins = instances.argmax(-1)
    masks = np.eye(instances.shape[-1], dtype=np.int64)[ins]  # (B, H, W, N)
    label = np.einsum("bhwk,bhwn->bnk", semantics, masks).argmax(-1)
    sem = np.einsum("bhwn,bn->bhw", masks, label)
    out = np.stack([sem, ins], axis=-1)
    fraction = masks.sum(axis=(1, 2), keepdims=True) / np.prod(ins.shape[1:3])
    big = (masks * (fraction > min_fraction)).sum(-1, keepdims=True) > 0
    return out * big


@pytest.mark.parametrize("min_fraction", [0.0, 0.05])
def test_prediction_matches_the_official_post_processing(min_fraction: float) -> None:
    rng = np.random.default_rng(0)
    sem = rng.normal(size=(3, 12, 10, 7)).astype(np.float32)
    ins = rng.normal(size=(3, 12, 10, 5)).astype(np.float32)
    ins[..., 4] -= 1.5  # make instance 4 rare so the size filter bites
    expected = official_predictions(sem, ins, min_fraction)
    got = panoptic_from_logits(torch.from_numpy(sem).permute(0, 3, 1, 2), torch.from_numpy(ins).permute(0, 3, 1, 2),
                               min_fraction)  # fmt: skip
    assert np.array_equal(got.permute(0, 2, 3, 1).numpy(), expected)
    assert min_fraction == 0 or (expected == 0).any()  # the filter removed something


def test_every_instance_takes_one_class_by_summed_logits() -> None:
    """Hand case: instance 1's pixels prefer class 2 twice weakly and class 3 once strongly: the *sum* decides."""
    sem = torch.zeros(1, 4, 1, 3)
    sem[0, 2, 0, 0], sem[0, 2, 0, 1], sem[0, 3, 0, 2] = 1.0, 1.0, 1.5  # sums: class 2 → 2.0, class 3 → 1.5
    ins = torch.zeros(1, 3, 1, 3)
    ins[0, 1] = 5.0
    out = panoptic_from_logits(sem, ins)
    assert out[0, 0].tolist() == [[2, 2, 2]] and out[0, 1].tolist() == [[1, 1, 1]]


def test_loss_is_the_official_summed_cross_entropy_with_empty_one_hots() -> None:
    task = PanopticTask(num_semantic=3, num_instances=4)
    rng = np.random.default_rng(1)
    logits = {"semantics": rng.normal(size=(2, 3, 4, 4)), "instances": rng.normal(size=(2, 4, 4, 4))}
    labels = {"semantics": rng.integers(0, 3, (2, 4, 4)), "instances": rng.integers(0, 4, (2, 4, 4))}
    labels["instances"][0, 0, :2] = 9  # a 10th instance: one_hot(9, 4) = 0 → contributes 0 (still in the mean)
    expected = 0.0
    for key, c in (("semantics", 3), ("instances", 4)):
        z = logits[key].transpose(0, 2, 3, 1)
        log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
        onehot = np.eye(c + 1)[np.minimum(labels[key], c)][..., :c]
        expected += (-(onehot * log_p).sum(-1)).mean()
    loss, logs = task.loss({k: torch.from_numpy(v).float() for k, v in logits.items()},
                           {k: torch.from_numpy(v) for k, v in labels.items()})  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert set(logs) == {"loss_semantics", "loss_instances"}


def test_two_channels_and_rgb_ids_by_hand() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 1, 0)  # id 257
    rgb[0, 1] = (0, 0, 1)  # id 65536
    rgb[1, :] = (5, 0, 0)  # id 5
    ids = rgb_to_id(rgb)
    assert ids.tolist() == [[257, 65536, 0], [5, 5, 5]]
    sem, ins = two_channels(ids, [5, 257, 65536], [10, 0, 3])  # annotation order: 5 first
    assert sem.tolist() == [[1, 4, 0], [11, 11, 11]]  # label + 1, VOID 0
    assert ins.tolist() == [[2, 3, 0], [1, 1, 1]]  # annotation index + 1
    sem, ins = two_channels(ids, [257], [2])  # unlisted ids are VOID
    assert sem.tolist() == [[3, 0, 0], [0, 0, 0]] and ins.tolist() == [[1, 0, 0], [0, 0, 0]]


def official_make_canonical(inst: np.ndarray) -> np.ndarray:
    """numpy port of ``pp_ops.make_canonical(random=False, main_sort_axis="y")``."""
    ids = [i for i in dict.fromkeys(inst.reshape(-1).tolist()) if i > 0]  # tf.unique keeps first-seen order
    masks = np.stack([inst == i for i in ids]) if ids else np.zeros((0, *inst.shape), bool)
    centers = np.array([np.argwhere(m).astype(np.float32).mean(0) for m in masks]).reshape(-1, 2)
    perm = np.argsort(centers[:, 1] + np.float32(inst.shape[0]) * centers[:, 0], kind="stable")
    masks = masks[perm]
    can = np.einsum("chw,c->hw", masks.astype(np.int64), np.arange(len(ids)) + 2) - 1
    return np.where(inst == 0, 0, can)


def test_make_canonical_by_hand_and_against_the_official_op() -> None:
    inst = torch.tensor([[0, 7, 7], [3, 3, 0], [9, -2, 0]])
    # centres (y, x): 7 → (0, 1.5), 3 → (1, 0.5), 9 → (2, 0): row-major order 7, 3, 9; −2 → −1, 0 stays
    assert make_canonical(inst).tolist() == [[0, 1, 1], [2, 2, 0], [3, -1, 0]]
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.integers(0, 6, (9, 11)) * rng.integers(1, 40)
        assert np.array_equal(make_canonical(torch.from_numpy(x)).numpy(), official_make_canonical(x))


def test_label_resize_is_half_pixel_nearest() -> None:
    x = torch.arange(16).view(4, 4) * 1000  # large ids stay exact
    out = resize_labels(x, 2)
    assert out.tolist() == [[5000, 7000], [13000, 15000]]  # source pixel floor((i + 0.5) · 2) = 1, 3


def test_scenes_are_deterministic_with_consistent_ground_truth() -> None:
    a, b = render_panoptic_scene(0, "val", 3), render_panoptic_scene(0, "val", 3)
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2])) and a[2] == b[2]
    assert not np.array_equal(a[1], render_panoptic_scene(0, "val", 4)[1])
    data = PanopticScenesDataset("val", size=40)
    crowds = voids = 0
    for i in range(40):
        item = data[i]
        ids, segments = data.panoptic_target(i)
        assert set(np.unique(ids)) - {0} == set(segments)
        for seg_id, (cat, crowd) in segments.items():
            mask = torch.from_numpy(ids == seg_id)
            assert set(item["semantics"][mask].tolist()) == {cat}  # one class per segment
            assert len(set(item["instances"][mask].tolist())) == 1  # one instance id per segment
            crowds += crowd
        assert (item["semantics"] == 0).equal(item["instances"] == 0) and (item["semantics"][ids == 0] == 0).all()
        voids += int((ids == 0).any())
        n = len(segments)
        assert sorted(item["instances"].unique().tolist()) == list(range(int((ids == 0).any()) ^ 1, n + 1))
    assert crowds > 0 and voids > 0  # the stand-in exercises crowd and VOID


def test_a_perfect_prediction_scores_pq_one_through_the_eval_path() -> None:
    data = PanopticScenesDataset("val", size=16)
    task = PanopticTask(num_semantic=8, num_instances=16)
    metric = task.metric(data)
    batch = torch.utils.data.default_collate([data[i] for i in range(16)])
    metric.update(task.truth(batch), batch)
    res = metric.compute()
    assert res["pq"] == pytest.approx(1.0) and res["pq_things"] == pytest.approx(1.0) and res["n_stuff"] == 4
    # swapping the class of every thing segment (disc ↔ square) makes each an FN and an FP of those classes
    wrong = task.truth(batch).clone()
    sem = wrong[:, 0]
    wrong[:, 0] = torch.where(sem == 1, 2, torch.where(sem == 2, 1, sem))
    metric.reset()
    metric.update(wrong, batch)
    res = metric.compute()
    assert res["pq_stuff"] == pytest.approx(1.0) and res["pq_things"] < 0.5


def test_canonical_labels_after_a_flip_match_a_flipped_scene() -> None:
    """The token cache flips loaded items; the official pipeline flips *before* make_canonical. Renumbering the
    flipped labels must give the ids of an item built from the flipped scene."""
    data = PanopticScenesDataset("val", size=4)
    task = PanopticTask(num_semantic=8, num_instances=16)
    differs = 0
    for i in range(4):
        item = data[i]
        flipped = task.cache_labels({k: item[k].flip(-1)[None] for k in ("semantics", "instances")})
        expected = make_canonical(item["instances"].flip(-1))
        assert torch.equal(flipped["instances"][0], expected)
        assert torch.equal(task.canonical({k: item[k][None] for k in ("semantics", "instances")})["instances"][0],
                           item["instances"])  # idempotent  # fmt: skip
        differs += not torch.equal(item["instances"].flip(-1), expected)
    assert differs > 0  # without renumbering the flipped ids would be wrong


def test_classes_the_dataset_does_not_have_are_scored_as_void() -> None:
    """The model predicts among num_semantic classes; a class outside the dataset's categories counts as VOID (a
    segment of it would make panopticapi raise): the same result as writing VOID there explicitly."""
    data = PanopticScenesDataset("val", size=2)
    task = PanopticTask(num_semantic=20, num_instances=16)
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    unknown, void = task.truth(batch).clone(), task.truth(batch).clone()
    unknown[:, 0, :20, :20] = 15
    void[:, 0, :20, :20] = 0
    results = []
    for pred in (unknown, void):
        metric = task.metric(data)
        metric.update(pred, batch)
        results.append(metric.compute())
    assert results[0] == results[1] and results[0]["pq"] < 1.0  # the corner did hurt the matched segments


def test_fewer_larger_things_are_counted_and_sized_as_asked() -> None:
    """things / thing_size (the demo's learnable-at-32-px scenes): at most ``things[1]`` non-crowd thing segments,
    each drawn at ``thing_size`` × R, so their mean visible area grows; the defaults are the original scenes."""
    default, explicit = (
        render_panoptic_scene(0, "train", 5),
        render_panoptic_scene(0, "train", 5, 64, (2, 7), (0.12, 0.35)),
    )
    assert all(np.array_equal(x, y) for x, y in zip(default[:2], explicit[:2]))

    def stats(**kw) -> tuple[list[int], float]:
        counts, areas = [], []
        for i in range(60):
            _, ids, segments = render_panoptic_scene(1, "train", i, 32, **kw)
            things = [s for s, label, crowd in segments if label < 3 and not crowd]
            counts.append(len(things))
            areas += [float((ids == s).mean()) for s in things]
        return counts, float(np.mean(areas))

    small_counts, small_area = stats()
    big_counts, big_area = stats(things=(1, 2), thing_size=(0.3, 0.45))
    assert max(big_counts) <= 2 and min(big_counts) >= 1 and max(small_counts) > 2
    # a square of side s·R covers s² of the image: E[s²] = 0.142 for U(0.3, 0.45), minus occlusion
    assert big_area > 2 * small_area and 0.06 < big_area < 0.16
    a = PanopticScenesDataset("val", size=4, resolution=32, things=(1, 2), thing_size=(0.3, 0.45))
    b = PanopticScenesDataset("val", size=4, resolution=32, things=(1, 2), thing_size=(0.3, 0.45))
    assert all(torch.equal(a[i]["semantics"], b[i]["semantics"]) for i in range(4))
    with pytest.raises(ValueError, match="things"):
        render_panoptic_scene(0, "val", 0, 32, things=(3, 1))
