"""The CPU stand-in extractor: a small CNN trained once on the embedded shapes (cached by a hash of its recipe,
seconds on 2 CPU cores on first use). Its Fréchet distance is **FD-shapes**, never FID (docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fsq_repro import hardware
from fsq_repro.atomic import atomic_torch_save
from fsq_repro.data.embedded import ShapesDataset, to_model_range


class ShapesNet(nn.Module):
    """A 3-conv classifier for 32 px shapes; ``features`` are its 128-d penultimate activations."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.head(features)


# 10 000 train images read as one uint8 array (the demo's own rendered split, no per-item DataLoader) and bf16
# autocast: 11 s in `make demo` on 2 cores, val accuracy 0.9955. The recipe is hashed into the extractor's name, which
# results.json records: FD-shapes numbers from classifiers with different recipes (e.g. key eec94a0b3c92: 20 000
# images rendered per item, fp32, which measured some tables in docs/) are not comparable
SHAPES_RECIPE = {
    "net": "ShapesNet/v1",
    "resolution": 32,
    "train_size": 10000,
    "steps": 300,
    "batch": 128,
    "lr": 2e-3,
    "autocast": "bf16",
}


def shapes_recipe() -> dict:
    """``SHAPES_RECIPE`` for this machine: bf16 autocast only where the CPU has fast bf16 (``hardware.py``), else
    float32. The recipe keys the cached classifier, so the two train (and name) different classifiers."""
    return SHAPES_RECIPE if hardware.cpu_has_fast_bf16() else {**SHAPES_RECIPE, "autocast": "none"}


def train_shapes_classifier(
    recipe: dict = SHAPES_RECIPE, seed: int = 0, cache_dir: str | Path | None = None
) -> tuple[ShapesNet, float]:
    """Train on the shapes train split; returns the net and its accuracy on 2 000 val images. The splits are read
    as whole uint8 arrays (rendered once into ``cache_dir`` when given, shared with ``data.cache_dir`` runs; else in
    memory); each step draws its batch from a per-epoch permutation (label = index mod classes, as
    ``ShapesDataset``)."""
    torch.manual_seed(seed)
    train = ShapesDataset("train", size=recipe["train_size"], resolution=recipe["resolution"], cache_dir=cache_dir)
    val = ShapesDataset("val", size=2000, resolution=recipe["resolution"], cache_dir=cache_dir)
    train_images, val_images = train.images_uint8(), val.images_uint8()
    net = ShapesNet(train.num_classes)
    opt = torch.optim.Adam(net.parameters(), recipe["lr"])
    autocast = recipe.get("autocast") == "bf16"  # shapes_recipe(): only where the CPU has fast bf16
    order = torch.empty(0, dtype=torch.int64)
    for _ in range(recipe["steps"]):
        if len(order) < recipe["batch"]:  # a new epoch (the last partial batch is dropped, as drop_last=True)
            order = torch.randperm(len(train_images))
        index, order = order[: recipe["batch"]], order[recipe["batch"] :]
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits = net(to_model_range(train_images[index.numpy()]))[1]
        loss = F.cross_entropy(logits.float(), index % train.num_classes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        labels = torch.arange(len(val_images)) % val.num_classes
        correct = sum(
            int((net(to_model_range(val_images[s : s + 500]))[1].argmax(1) == labels[s : s + 500]).sum())
            for s in range(0, len(val_images), 500)
        )
    return net, correct / len(val_images)


class ShapesClassifierFeatures(nn.Module):
    label = "FD-shapes"

    def __init__(self, cache_dir: str | Path, recipe: dict | None = None) -> None:
        super().__init__()
        recipe = recipe or shapes_recipe()
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"shapes_classifier-{key}.pt"
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed and dist.get_rank() > 0:
            dist.barrier()  # rank 0 trains it once (below) and every rank loads the file
        if path.is_file():
            payload = torch.load(path, map_location="cpu", weights_only=True)
            self.net = ShapesNet()
            self.net.load_state_dict(payload["state_dict"])
            self.val_accuracy = float(payload["val_accuracy"])
        else:
            print(f"training the shapes feature classifier once ({recipe['steps']} steps) -> {path}")
            self.net, self.val_accuracy = train_shapes_classifier(recipe, cache_dir=cache_dir)
            atomic_torch_save({"state_dict": self.net.state_dict(), "val_accuracy": self.val_accuracy}, path)
        if distributed and dist.get_rank() == 0:
            dist.barrier()
        self.net.eval().requires_grad_(False)
        self.resolution = recipe["resolution"]
        self.classes = self.net.head.out_features  # the shapes' classes: sampling reports class_accuracy
        self.name = f"shapes-classifier-{key}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.float() / 127.5 - 1
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        features, logits = self.net(x)
        return {"features": features, "logits": logits}
