"""torchmetrics wrappers that gather *features* across processes before computing a statistic
(an FID is not an average of per-rank FIDs): 50 000 samples on 8 GPUs are 50 000 feature rows,
provided the loaders do not pad (``ExactDistributedSampler``, ``generation/sampling_job.py``).

``FeatureSet`` keeps ``(n, D)`` feature rows (``dist_reduce_fx="cat"``); ``FrechetDistance`` compares them with
reference ``(mu, sigma)``; ``PrecisionRecall`` with reference features; ``InceptionScore`` works on logits.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fsq_repro.metrics.fid import feature_statistics, frechet_distance
from fsq_repro.metrics.inception_score import inception_score
from fsq_repro.metrics.precision_recall import precision_recall


class FeatureSet(Metric):
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("features", default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor) -> None:
        self.features.append(features.detach().double().flatten(1))

    def compute(self) -> torch.Tensor:
        """All rows of all processes, ``(N, D)`` float64."""
        return dim_zero_cat(self.features)


class FrechetDistance(FeatureSet):
    def __init__(self, ref_mu, ref_sigma, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ref_mu, self.ref_sigma = np.asarray(ref_mu, np.float64), np.asarray(ref_sigma, np.float64)

    def compute(self) -> dict:
        features = super().compute()
        mu, sigma = feature_statistics(features)
        return {"fd": frechet_distance(mu, sigma, self.ref_mu, self.ref_sigma), "count": len(features)}


class PrecisionRecall(FeatureSet):
    def __init__(self, ref_features, k: int = 3, mode: str = "exact", **kwargs) -> None:
        super().__init__(**kwargs)
        self.ref_features, self.k, self.mode = np.asarray(ref_features), k, mode

    def compute(self) -> dict:
        features = super().compute()
        p, r = precision_recall(self.ref_features, features, k=self.k, mode=self.mode)
        return {"precision": p, "recall": r, "count": len(features)}


class InceptionScore(FeatureSet):
    def __init__(self, splits: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.splits = splits

    def compute(self) -> dict:
        logits = super().compute()
        mean, std = inception_score(logits, self.splits)
        return {"is": mean, "is_std": std, "count": len(logits)}
