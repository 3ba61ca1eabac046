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
