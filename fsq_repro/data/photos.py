"""Natural photos that ship inside scikit-image and scikit-learn — the only natural images available offline.

Used for checking tokenizers on natural-image statistics (``configs/data/photos.yaml``) and by the quantizer demo.
``load_embedded_photos()`` returns a list of ``(H, W, 3)`` uint8 arrays; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

# skimage.data images bundled in the wheel (others need pooch downloads and are left out).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def load_embedded_photos() -> list[np.ndarray]:
    """All bundled RGB photos as ``(H, W, 3)`` uint8 arrays (9 images, 300–1411 px)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in SKIMAGE_PHOTOS]
    photos += [np.ascontiguousarray(img) for img in load_sample_images().images]
    return photos


def random_crops(photos: list[np.ndarray], size: int, count: int, seed: int) -> np.ndarray:
    """``count`` random ``size × size`` crops (random photo, position, horizontal flip): ``(count, size, size, 3)``."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        img = photos[rng.integers(len(photos))]
        y = rng.integers(0, img.shape[0] - size + 1)
        x = rng.integers(0, img.shape[1] - size + 1)
        crop = img[y : y + size, x : x + size]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


class PhotoCropsDataset:
    """Unconditional random crops of the embedded photos (``configs/data/photos.yaml``).

    Train crops come from the seven scikit-image photos, val/test crops from the two scikit-learn photos, so the
    splits share no pixels. ``source="all"`` draws the val/test crops from all nine photos instead: a more diverse
    val split (what limits codebook usage at CPU scale, ``scripts/tradeoff_photos.py``) that shares photos, though
    not crops, with train. Crop ``i`` is a pure function of ``(seed, split, i)``: a random square of side
    ``resolution × U(1, 2.5)`` (capped by the photo), resized to ``resolution`` (bicubic), flipped with p = 0.5 in
    train. Items: ``{"image": (3, R, R) float32 in [−1, 1], "label": 0, "index": i}``.
    """

    num_classes = 1
    class_names = ("photo",)

    def __init__(self, split: str = "train", size: int = 10_000, resolution: int = 32, seed: int = 0,
                 source: str = "held_out") -> None:  # fmt: skip
        from fsq_repro.data.embedded import SPLITS

        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if source not in ("held_out", "all"):
            raise ValueError(
                f"source must be 'held_out' (val/test from the 2 scikit-learn photos) or 'all', got {source!r}"
            )
        self.split, self.size, self.resolution, self.seed = split, int(size), int(resolution), int(seed)
        self.source = "held_out" if split == "train" else source  # train always uses the seven scikit-image photos
        self._split_id = SPLITS[split]
        photos = load_embedded_photos()
        if split == "train":
            self.photos = photos[: len(SKIMAGE_PHOTOS)]
        else:
            self.photos = photos if self.source == "all" else photos[len(SKIMAGE_PHOTOS) :]
        if self.resolution > min(min(p.shape[:2]) for p in self.photos):
            raise ValueError(f"resolution {resolution} is larger than the smallest embedded photo")

    def __len__(self) -> int:
        return self.size

    def fingerprint(self) -> str:
        suffix = "-all" if self.source == "all" else ""
        return f"photos-v1-{self.split}-n{self.size}-r{self.resolution}-s{self.seed}{suffix}"

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        from fsq_repro.data.embedded import to_model_range

        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self._split_id, index])
        img = self.photos[rng.integers(len(self.photos))]
        side = int(min(self.resolution * rng.uniform(1.0, 2.5), *img.shape[:2]))
        y = rng.integers(0, img.shape[0] - side + 1)
        x = rng.integers(0, img.shape[1] - side + 1)
        crop = Image.fromarray(img[y : y + side, x : x + side]).resize(
            (self.resolution, self.resolution), Image.Resampling.BICUBIC
        )
        array = np.array(crop)
        if self.split == "train" and rng.random() < 0.5:
            array = array[:, ::-1]
        return {"image": to_model_range(array), "label": 0, "index": index}
