"""``samples.npz`` gives the right IS in the ADM evaluator (consecutive chunks of 5 000), and our ``is_mode``s.

The oracle is an independent numpy port of ``guided-diffusion/evaluations/evaluator.py:compute_inception_score``
(softmax predictions, chunks of ``split_size`` in file order, the improved-GAN KL formula, mean of the chunks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsq_repro.errors import ConfigError
from fsq_repro.generation.sampling_job import generate_shard, labels_for, merge_shards, write_npz
from fsq_repro.metrics.inception_score import inception_score, inception_score_mode


def adm_inception_score(preds: np.ndarray, split_size: int = 5000) -> float:
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


def label_painter(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 'sampler' whose image encodes its class in two uint8 channels (label mod 250, label div 250), so the
    perfect classifier below reads it back from the npz."""
    channels = torch.stack([labels % 250, labels // 250, torch.zeros_like(labels)], 1).float() / 127.5 - 1
    return channels[:, :, None, None].expand(len(labels), 3, 2, 2)


def perfect_predictions(images: np.ndarray, num_classes: int) -> np.ndarray:
    classes = images[:, 0, 0, 0].astype(int) + 250 * images[:, 0, 0, 1].astype(int)
    preds = np.full((len(images), num_classes), 1e-12, np.float32)
    preds[np.arange(len(images)), classes] = 1.0
    return preds / preds.sum(1, keepdims=True)


@pytest.mark.parametrize("world", [1, 3])
def test_samples_npz_is_class_interleaved_so_adm_chunks_see_every_class(tmp_path: Path, world: int) -> None:
    k, per = 1000, 50  # ImageNet's protocol: 50 000 samples, ADM chunks of 5 000
    labels = labels_for(k, per)
    shards = []
    for rank in range(world):
        pos, imgs, lab = generate_shard(
            label_painter, labels, 2500, seed=0, rank=rank, world_size=world, progress=False
        )
        np.savez(tmp_path / f"s{rank}.npz", positions=pos, images=imgs, labels=lab)
        shards.append(tmp_path / f"s{rank}.npz")
    write_npz(tmp_path / "samples.npz", *merge_shards(shards, len(labels)))
    with np.load(tmp_path / "samples.npz") as z:
        images, npz_labels = z["arr_0"], z["arr_1"]
    preds = perfect_predictions(images, k)
    assert np.array_equal(preds.argmax(1), npz_labels)  # labels aligned with the images
    for start in range(0, len(npz_labels), 5000):  # every chunk holds every class exactly 5 times
        assert np.array_equal(np.bincount(npz_labels[start : start + 5000], minlength=k), np.full(k, 5))
    assert adm_inception_score(preds) == pytest.approx(k, rel=1e-6)
    class_major = np.argsort(npz_labels, kind="stable")  # class-major order: all of class 0, then class 1, ...
    assert adm_inception_score(preds[class_major]) == pytest.approx(k / 10, rel=1e-6)


def test_is_modes_match_the_adm_port_and_equal_splits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12_345, 30)) * 3
    preds = np.exp(logits - logits.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    adm = inception_score_mode(logits, "adm")
    assert adm["is"] == pytest.approx(adm_inception_score(preds), rel=1e-9) and adm["is_mode"].startswith("adm")
    # three chunks: 5000, 5000 and a short last one of 2345
    parts = [preds[:5000], preds[5000:10000], preds[10000:]]
    assert adm["is_std"] == pytest.approx(np.std([adm_inception_score(p, 10**9) for p in parts]), rel=1e-9)
    ten = inception_score_mode(logits, "splits", splits=10)
    by_hand = [adm_inception_score(p, 10**9) for p in np.array_split(preds, 10)]
    assert ten["is"] == pytest.approx(np.mean(by_hand), rel=1e-9) and ten["is"] != pytest.approx(adm["is"], rel=1e-3)
    assert inception_score(logits, split_size=20_000)[0] == pytest.approx(adm_inception_score(preds, 20_000), rel=1e-9)
    with pytest.raises(ConfigError, match="is_mode"):
        inception_score_mode(logits, "tf")


def test_class_accuracy_by_hand() -> None:
    from fsq_repro.evaluation.maskgit import class_accuracy

    logits = np.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 5.0, 0.0]])
    assert class_accuracy(logits, [*labels_for(3, 1).numpy().tolist(), 2]) == 0.25  # asked 0, 1, 2, 2
