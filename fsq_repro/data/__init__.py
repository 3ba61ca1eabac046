"""Data (no Lightning): datasets, transforms, loaders and the Stage II token cache; pixels in [−1, 1].

- ``embedded.py``: the default embedded data, procedurally drawn class-conditional shapes (nothing to download).
- ``photos.py``: random crops of the natural photos bundled with scikit-image and scikit-learn.
- ``imagenet.py``: ImageNet and any image folder (FSQ paper §4.1 / §4.3).
- ``webdataset.py``: ImageNet (or any image folder) as WebDataset ``.tar`` shards, written and read.
- ``transforms.py``: MaskGIT's image transforms (resize, random or centre crop, flip).
- ``loading.py``: corrupt-sample skipping, exact (unpadded) distributed evaluation, the resumable training loader.
- ``cache.py``: a uint8 array rendered once and memory-mapped afterwards (the embedded datasets' ``cache_dir``).
- ``fingerprint.py``: a stable fingerprint of which images a data config describes.
- ``token_cache.py``: the Stage II token cache, a dataset encoded once by the Stage I tokenizer (FSQ paper §4.3).
- ``depth.py``: UViM depth discretisation and the train / eval transforms of every depth dataset (§4.4).
- ``depth_scenes.py``: embedded stand-in for NYU Depth v2, rendered scenes with exact per-pixel depth.
- ``nyu.py``: NYU Depth v2 from a local root.
- ``panoptic.py``: UViM's two-channel panoptic labels and the transforms of every panoptic dataset.
- ``panoptic_scenes.py``: embedded stand-in for COCO panoptic, procedural scenes with exact ground truth.
- ``coco_panoptic.py``: COCO 2017 panoptic from a local root.
- ``colorization.py``: (grayscale context, colour label) pairs from any RGB image dataset.
"""
