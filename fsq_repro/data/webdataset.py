"""ImageNet (or any ImageFolder) as WebDataset ``.tar`` shards, for clusters where millions of small files are slow.

``write_shards(dataset, out_dir)`` copies the original encoded bytes of every readable image of an
``ImageFolderDataset`` into shards ``<split>-000000.tar, …`` (entries ``<key>.<ext>`` + ``<key>.cls``) and writes
``<split>-meta.json`` (count, classes, skipped files). ``WebDatasetImages`` streams them back with the same MaskGIT
transforms: shards are split across nodes/ranks and dataloader workers (each shard read by exactly one process),
shuffled in train, and undecodable samples are skipped with a warning.

Items: ``{"image": (3, R, R) float32 in [−1, 1], "label": int, "index": int}`` (``index`` = the sample key).
"""

from __future__ import annotations

import json
from pathlib import Path

import webdataset as wds
from torch.utils.data import IterableDataset

from fsq_repro.data.imagenet import ImageFolderDataset, load_rgb
from fsq_repro.data.transforms import image_transform
from fsq_repro.errors import ConfigError


def write_shards(dataset: ImageFolderDataset, out_dir: str | Path, shard_size: int = 1000) -> dict:
    """Write ``dataset``'s readable images to shards in ``out_dir``; return (and save) the meta dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    with wds.ShardWriter(str(out / f"{dataset.split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for index, (path, label) in enumerate(dataset.samples):
            try:
                load_rgb(path)  # only readable images go into shards
            except (OSError, ValueError, SyntaxError):
                skipped.append(path)
                continue
            ext = Path(path).suffix.lower().lstrip(".") or "jpg"
            ext = "jpg" if ext == "jpeg" else ext
            sink.write({"__key__": f"{index:09d}", ext: Path(path).read_bytes(), "cls": label})
            written += 1
    meta = {
        "split": dataset.split,
        "count": written,
        "num_classes": dataset.num_classes,
        "class_names": dataset.class_names,
        "skipped": skipped,
    }
    (out / f"{dataset.split}-meta.json").write_text(json.dumps(meta, indent=1))
    return meta


class WebDatasetImages(IterableDataset):
    """Stream ``root/<split>-*.tar`` with MaskGIT transforms (see module docstring)."""

    def __init__(
        self,
        root: str | None,
        split: str = "train",
        resolution: int = 256,
        train: bool | None = None,
        shuffle_buffer: int = 2000,
        key: str = "data.root",
    ) -> None:
        if not root:
            raise ConfigError(f"{key} is required: pass {key}=/path/to/shards (made by scripts/make_wds_shards.py)")
        self.shards = sorted(str(p) for p in Path(root).expanduser().glob(f"{split}-*.tar"))
        if not self.shards:
            raise ConfigError(f"{key}={root} has no {split}-*.tar shards (make them with scripts/make_wds_shards.py)")
        meta_path = Path(root).expanduser() / f"{split}-meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.count = meta.get("count")
        self.num_classes = meta.get("num_classes")
        self.class_names = meta.get("class_names")
        self.split = split
        self.train = (split == "train") if train is None else bool(train)
        self.transform = image_transform(int(resolution), train=self.train)
        self.shuffle_buffer = shuffle_buffer

    def fingerprint(self) -> str:
        return f"wds-{self.split}-n{self.count}-{len(self.shards)}shards-{self.shards[0]}"

    def _to_item(self, sample: tuple) -> dict:
        image, label, key = sample
        return {"image": self.transform(image), "label": int(label), "index": int(key)}

    def __iter__(self):
        pipeline = wds.WebDataset(
            self.shards,
            shardshuffle=100 if self.train else False,
            nodesplitter=wds.split_by_node,
            workersplitter=wds.split_by_worker,
            handler=wds.warn_and_continue,
            empty_check=False,
        )
        if self.train:
            pipeline = pipeline.shuffle(self.shuffle_buffer)
        pipeline = pipeline.decode("pil", handler=wds.warn_and_continue).to_tuple(
            "jpg;jpeg;png;bmp;webp;tif;tiff;ppm", "cls", "__key__", handler=wds.warn_and_continue
        )
        for sample in pipeline:
            yield self._to_item(sample)
