"""Lightning modules, data modules, callbacks and the training stages — the only place that imports Lightning.

- ``stages.py``: what every training stage shares (run dir, Trainer, loggers, callbacks, resume, atomic JSON).
- ``stage1.py``: the ``stage1`` stage, training the tokenizer and exporting ``tokenizer.pt``.
- ``stage2.py``: the ``tokenize`` and ``stage2`` stages (MaskGIT on frozen Stage I tokens).
- ``uvim.py``: UViM's stages, ``uvim_stage1`` → ``uvim_tokenize`` → ``uvim_stage2`` → ``uvim_eval``.
- ``tokenizer_module.py``: the Stage I Lightning module (VQGAN with FSQ or VQ, GAN, EMA).
- ``maskgit_module.py``: the Stage II Lightning module (MaskGIT over cached tokens).
- ``uvim_module.py``: the Lightning modules of UViM's two stages.
- ``datamodules.py``: the image and token-cache data modules.
- ``global_batch.py``: the global batch of a stage and the gradient accumulation derived from it.
- ``schedules.py``: learning-rate multipliers (warm-up, cosine).
- ``callbacks.py``: image grids, per-step re-seeding for exact resume, preemption handling.
"""
