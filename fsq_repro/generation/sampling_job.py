"""Generate class-conditional samples in the ADM evaluator's format (FSQ paper §4.3 evaluates 50 000 samples,
50 per ImageNet class, with the ADM TensorFlow suite: openai/guided-diffusion ``evaluations/evaluator.py``).

Output: ``samples.npz`` with ``arr_0`` = uint8 images ``(M, H, W, 3)`` and ``arr_1`` = int64 labels ``(M,)``, ordered
**class-interleaved**: sample ``i`` is of class ``classes[i mod K]``. The ADM evaluator computes IS over *consecutive*
chunks of 5 000 samples (``compute_inception_score(split_size=5000)``); class-major order (all of class 0, then
class 1, …) would give each chunk 100 of ImageNet's 1 000 classes and cap its IS near 100. Interleaved, every chunk
holds every class equally often (5 each at 50 per class). Sharded across processes without duplicates: sample ``i`` is
made by rank ``i mod W`` with a generator seeded from ``(seed, batch)``, so the set of images does not depend on the
number of processes; rank 0 merges the shards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fsq_repro.atomic import atomic_path


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [−1, 1] → ``(B, H, W, 3)`` uint8 (round half up, as ADM's ``((x + 1) · 127.5).clip``)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def labels_for(num_classes: int, num_per_class: int, classes: list[int] | None = None) -> torch.Tensor:
    """``(K · num_per_class,)`` labels in the class-interleaved order: ``labels[i] = classes[i mod K]``."""
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    return torch.tensor(classes).repeat(num_per_class)


def batch_generator(seed: int, start: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The random stream of the batch whose first sample is number ``start``: the one definition shared by
    ``sample.py`` and the eval tasks, so the same seed gives the same images however the batches are sharded."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + start)


def generate_shard(
    sample_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    labels: torch.Tensor,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This rank's batches ``b ≡ rank (mod W)``: ``(positions, uint8 images, labels)``.

    ``sample_fn(labels (B,), generator) -> images (B, 3, H, W)`` in [−1, 1]."""
    starts = list(range(0, len(labels), batch_size))[rank::world_size]
    if progress and rank == 0:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sampling", unit="batch")
    positions, images, out_labels = [], [], []
    for start in starts:
        batch_labels = labels[start : start + batch_size].to(device)
        generator = batch_generator(seed, start, device)
        images.append(to_uint8(sample_fn(batch_labels, generator)))
        positions.append(np.arange(start, start + len(batch_labels)))
        out_labels.append(batch_labels.cpu().numpy())
    if not positions:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(positions), np.concatenate(images), np.concatenate(out_labels)


def write_npz(path: str | Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """ADM format (``arr_0`` images, ``arr_1`` labels), written to a temp name and renamed."""
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to any other name
        np.savez(tmp, images, labels)
    return Path(path)


def merge_shards(paths: list[Path], total: int) -> tuple[np.ndarray, np.ndarray]:
    """Shards written as ``positions, arr_0, arr_1`` → images and labels in position order; checks coverage."""
    positions, images, labels = [], [], []
    for p in paths:
        with np.load(p) as z:
            if len(z["positions"]):
                positions.append(z["positions"])
                images.append(z["images"])
                labels.append(z["labels"])
    pos = np.concatenate(positions)
    if len(pos) != total or len(np.unique(pos)) != total:
        raise RuntimeError(f"sample shards cover {len(np.unique(pos))} of {total} positions ({len(pos)} written)")
    order = np.argsort(pos)
    return np.concatenate(images)[order], np.concatenate(labels)[order]


def gather_shards(out: Path, rank: int, world: int, shard: tuple[np.ndarray, np.ndarray, np.ndarray], total: int,
                  barrier: Callable[[], None]) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """Every rank's ``shard = (positions, images, labels)`` (``generate_shard``) → on rank 0 the ``total`` images and
    labels in position order, through ``<out>/.shard-<rank>.npz`` files on the shared filesystem (removed after);
    ``None`` on the other ranks. One process (``world == 1``) returns its shard as it is."""
    positions, images, labels = shard
    if world == 1:
        return images, labels
    with atomic_path(out / f".shard-{rank}.npz", suffix=".npz") as tmp:
        np.savez(tmp, positions=positions, images=images, labels=labels)
    barrier()
    merged = None
    if rank == 0:
        paths = [out / f".shard-{r}.npz" for r in range(world)]
        merged = merge_shards(paths, total)
        for path in paths:
            path.unlink()
    barrier()
    return merged
