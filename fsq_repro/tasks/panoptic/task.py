"""UViM's panoptic task: what the guiding-code autoencoder reads, its loss, and how logits become a panoptic
segmentation (FSQ paper §4.4, Table 2 COCO panoptic; big_vision ``trainers/proj/uvim/panoptic_task.py`` at 21bd6eb).

- labels: two class maps (``labels.py``), ``semantics`` with ``num_semantic`` = 133 + 1 classes (0 = VOID)
  and ``instances`` with ``num_instances`` = 100 ids; ids outside ``[0, C)`` have an all-zero one-hot in the official
  code, so they add nothing to the label embedding (``nets/uvim_vqvae.py``) and nothing to the loss;
- loss: per pixel, softmax cross-entropy of each map, summed over the two maps, averaged over all pixels (official
  ``softmax_xent(reduction=False)`` per key, then ``jnp.mean`` of the sum);
- prediction (official ``panoptic_predictions_from_logits``): ``ins = argmax`` of the instance logits; each instance
  ``n`` takes the class ``argmax_k Σ_{pixels of n} semantic_logit_k`` (logits summed, not probabilities), so every
  instance is one class; instances covering ``≤ min_fraction`` of the image become 0 in both channels (official
  default 0). Output ``(B, 2, H, W)`` int64 = ``[semantics, instances]``.

PQ (``metrics/panoptic.py``): each distinct ``(semantic, instance)`` pair with semantic ≠ 0 is a segment
(panopticapi's two-channel converter); the prediction is resized nearest to the ground truth's native size first
(official evaluator).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsq_repro.metrics.panoptic import PanopticQuality, two_channel_segments
from fsq_repro.tasks.panoptic.labels import make_canonical

KEYS = ("semantics", "instances")


def panoptic_from_logits(semantics: torch.Tensor, instances: torch.Tensor, min_fraction: float = 0.0) -> torch.Tensor:
    """``semantics (B, K, H, W)``, ``instances (B, N, H, W)`` logits → ``(B, 2, H, W)`` int64 (module docstring)."""
    b, k, h, w = semantics.shape
    n = instances.shape[1]
    ins = instances.argmax(1)  # (B, H, W)
    flat = ins.view(b, h * w)
    sums = torch.zeros(b, n, k, dtype=torch.float32, device=semantics.device)
    sums.scatter_add_(1, flat[..., None].expand(-1, -1, k), semantics.float().view(b, k, h * w).transpose(1, 2))
    label = sums.argmax(-1)  # (B, N): an instance with no pixel gets class 0, never used
    sem = torch.gather(label, 1, flat).view(b, h, w)
    area = torch.zeros(b, n, device=semantics.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float))
    big = torch.gather(area / (h * w) > min_fraction, 1, flat).view(b, h, w)
    return torch.stack([sem, ins], dim=1) * big[:, None]


class PanopticTask:
    """The panoptic task's label coding (module docstring)."""

    name = "panoptic"
    headline = ("pq", False)  # the metric Table 2 reports, lower-is-better
    label_channels: dict[str, int] = {}  # noqa: RUF012 — no continuous maps

    def __init__(self, num_semantic: int = 134, num_instances: int = 100, min_fraction: float = 0.0) -> None:
        if num_semantic < 2 or num_instances < 2 or not 0 <= min_fraction < 1:
            raise ValueError(f"panoptic task needs num_semantic, num_instances >= 2 and 0 <= min_fraction < 1, got "
                             f"{num_semantic}, {num_instances}, {min_fraction}")  # fmt: skip
        self.num_semantic, self.num_instances, self.min_fraction = int(num_semantic), int(num_instances), min_fraction

    @property
    def label_classes(self) -> dict[str, int]:
        return {"semantics": self.num_semantic, "instances": self.num_instances}

    def config(self) -> dict:
        return {"name": self.name, "num_semantic": self.num_semantic, "num_instances": self.num_instances,
                "min_fraction": float(self.min_fraction)}  # fmt: skip

    def labels(self, batch: dict) -> dict[str, torch.Tensor]:
        """``batch["semantics"]``, ``batch["instances"]`` ``(B, H, W)`` → the two class maps (int64)."""
        return {key: batch[key].long() for key in KEYS}

    def cache_labels(self, batch: dict) -> dict[str, torch.Tensor]:
        """The labels the token cache encodes: ``labels`` with canonical instance ids (also for its flipped variant)."""
        return self.canonical(self.labels(batch))

    def canonical(self, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Instance ids renumbered by centre of mass per image (``labels.py: make_canonical``) — for labels
        transformed after loading, e.g. the token cache's flipped variant (the official op runs after the flip);
        idempotent on canonical labels."""
        return {**labels, "instances": torch.stack([make_canonical(x) for x in labels["instances"]])}

    def loss(self, logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Σ over the two maps of the per-pixel CE, mean over pixels; out-of-range ids contribute 0 (float32)."""
        total, logs = 0.0, {}
        for key in KEYS:
            target = labels[key]
            valid = (target >= 0) & (target < logits[key].shape[1])
            ce = F.cross_entropy(logits[key].float(), torch.where(valid, target, 0), reduction="none") * valid
            logs[f"loss_{key}"] = ce.mean().detach()
            total = total + ce.mean()
        return total, logs

    def predict(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits → ``(B, 2, H, W)`` ``[semantics, instances]`` (official post-processing)."""
        return panoptic_from_logits(logits["semantics"], logits["instances"], self.min_fraction)

    def truth(self, batch: dict) -> torch.Tensor:
        """The batch's labels as a prediction-shaped ``(B, 2, H, W)`` map (for grids)."""
        return torch.stack([batch["semantics"], batch["instances"]], dim=1).long()

    def baseline_statistic(self, batch: dict) -> torch.Tensor:
        """What the constant baseline averages over training items: one-hot semantics ``(B, K, H, W)``."""
        sem = batch["semantics"].long().clamp(0, self.num_semantic - 1)
        return F.one_hot(sem, self.num_semantic).permute(0, 3, 1, 2).float()

    def baseline_prediction(self, mean: torch.Tensor, batch: dict) -> torch.Tensor:
        """The constant ("all-stuff") baseline: every pixel takes its most frequent training class (VOID excluded),
        one segment per class (instance 0) → ``(B, 2, H, W)``."""
        frequent = mean[1:].argmax(0) + 1  # (H, W)
        pred = torch.stack([frequent, torch.zeros_like(frequent)])
        return pred.to(batch["image"].device).expand(batch["image"].shape[0], -1, -1, -1)

    def metric(self, dataset=None) -> PanopticMetric:
        return PanopticMetric(dataset, self.num_semantic)

    def validation_metric(self, val_set=None) -> PanopticMetric:
        """PQ against the val set's native ground truth (crowd regions, VOID) when it has one, else the labels."""
        return self.metric(val_set if hasattr(val_set, "panoptic_target") else None)

    @staticmethod
    def render(pred: torch.Tensor) -> torch.Tensor:
        """``(B, 2, H, W)`` → ``(B, 3, H, W)`` in [−1, 1]: a colour per (class, instance), VOID black; the class sets
        the hue family, the instance the shade, so instances of one class look alike but distinct."""
        sem, ins = pred[:, 0].long().cpu(), pred[:, 1].long().cpu()
        g = torch.Generator().manual_seed(0)
        hue = torch.rand(int(sem.max()) + 1, 3, generator=g)
        shade = 0.55 + 0.45 * torch.rand(int(ins.max()) + 1, generator=g)
        rgb = hue[sem] * shade[ins][..., None]
        rgb[sem == 0] = 0.0
        return (rgb * 2 - 1).permute(0, 3, 1, 2)


class PanopticMetric:
    """PQ of predictions against the dataset's native ground truth (``dataset.panoptic_target(index)`` and
    ``dataset.isthing``) — or, without a dataset, against the batch's own labels with no crowd region (the Stage I
    validation proxy)."""

    def __init__(self, dataset, num_semantic: int) -> None:
        self.dataset = dataset
        isthing = getattr(dataset, "isthing", None) or {k: True for k in range(1, num_semantic)}
        self.pq = PanopticQuality(isthing)
        # a class the dataset does not have (the model predicts among num_semantic; a dataset may define fewer) is
        # scored as VOID — never the case on COCO, where the 133 classes are the dataset's
        self.known = torch.zeros(max(num_semantic, max(isthing) + 1), dtype=torch.bool)
        self.known[list(isthing)] = True

    def update(self, pred: torch.Tensor, batch: dict) -> None:
        pred = pred.cpu()
        for i in range(pred.shape[0]):
            if self.dataset is not None:
                gt_ids, gt_segments = self.dataset.panoptic_target(int(batch["index"][i]))
            else:
                gt_ids, segs = two_channel_segments(batch["semantics"][i].cpu(), batch["instances"][i].cpu())
                gt_segments = {seg_id: (cat, False) for seg_id, cat in segs.items()}
            p = pred[i]
            if tuple(p.shape[-2:]) != tuple(gt_ids.shape):
                p = F.interpolate(p[None].double(), size=tuple(gt_ids.shape), mode="nearest-exact")[0].long()
            sem = torch.where(self.known[p[0].clamp(0, len(self.known) - 1)] & (p[0] < len(self.known)), p[0], 0)
            ids, segments = two_channel_segments(sem, p[1])
            self.pq.update(ids, segments, gt_ids, gt_segments)

    def compute(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.pq.compute().items()}

    def reset(self) -> None:
        self.pq.reset()
