"""Lightning modules, data modules, callbacks and the Trainer's plumbing — the only package that imports Lightning.
Everything here receives objects (models, datasets, options), never the config (``pipeline/`` reads it).

- ``tokenizer_module.py``: the Stage I Lightning module (VQGAN with FSQ or VQ, GAN, EMA).
- ``maskgit_module.py``: the Stage II Lightning module (MaskGIT over cached tokens).
- ``uvim_module.py``: the Lightning modules of UViM's two stages.
- ``nonfinite.py``: the non-finite-loss guard all three share.
- ``datamodules.py``: the image and token-cache data modules.
- ``trainer.py``: what every stage's Trainer carries (callbacks, atomic checkpoints, resume check, fit + validate).
- ``schedules.py``: learning-rate multipliers (warm-up, cosine).
- ``callbacks.py``: image grids, per-step re-seeding for exact resume, preemption handling, peak GPU memory.
"""
