"""Data (no Lightning), task-free: datasets, transforms, loaders and the Stage II token cache; pixels in [−1, 1].
UViM's task datasets live with their tasks (``fsq_repro/tasks/<task>/``).

- ``embedded.py``: the default embedded data, procedurally drawn class-conditional shapes (nothing to download).
- ``photos.py``: random crops of the natural photos bundled with scikit-image and scikit-learn.
- ``imagenet.py``: ImageNet and any image folder (FSQ paper §4.1 / §4.3).
- ``webdataset.py``: ImageNet (or any image folder) as WebDataset ``.tar`` shards, written and read.
- ``transforms.py``: MaskGIT's image transforms (resize, random or centre crop, flip); UViM's Inception crop box.
- ``loading.py``: corrupt-sample skipping, exact (unpadded) distributed evaluation, the resumable training loader.
- ``cache.py``: a uint8 array rendered once and memory-mapped afterwards (the embedded datasets' ``cache_dir``).
- ``fingerprint.py``: a stable fingerprint of which images a data config describes.
- ``token_cache.py``: the Stage II token cache, a dataset encoded once by the Stage I tokenizer (FSQ paper §4.3).
"""
