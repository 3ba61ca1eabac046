"""Convert an ImageFolder split (e.g. ImageNet ``root/train/<wnid>/*.JPEG``) to WebDataset shards.

python scripts/make_wds_shards.py --root /data/imagenet --split train --out /data/imagenet_wds
python train.py data=imagenet_wds data.root=/data/imagenet_wds
"""

from __future__ import annotations

import argparse

from fsq_repro.data.imagenet import ImageFolderDataset
from fsq_repro.data.webdataset import write_shards
from fsq_repro.errors import ConfigError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="ImageFolder root with <split>/<class>/ sub-folders")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", required=True, help="output directory for <split>-NNNNNN.tar shards")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per shard")
    args = parser.parse_args()
    try:
        dataset = ImageFolderDataset(args.root, split=args.split, resolution=8, key="--root")
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    meta = write_shards(dataset, args.out, args.shard_size)
    print(
        f"wrote {meta['count']} images of {meta['num_classes']} classes to {args.out} "
        f"({len(meta['skipped'])} unreadable files skipped)"
    )


if __name__ == "__main__":
    main()
