"""The pipeline: the only code below the entry points (``train.py``, ``eval.py``, ``sample.py``, ``pretokenize.py``)
that reads a Hydra ``DictConfig``. It turns the config into objects and hands them to ``lit/`` (training),
``evaluation/`` (numbers) and ``generation/`` (samples).

- ``entry.py``: the four commands (stage dispatch, run-dir lock, one-line errors, DDP launch and shard merge).
- ``stages.py``: the stage template every training stage shares (run dir, skip-if-done inputs, Trainer, loggers,
  callbacks, resume, fit + final validation, W&B).
- ``stage1.py``: the ``stage1`` stage, training the tokenizer and exporting ``tokenizer.pt`` (FSQ paper §4.3).
- ``stage2.py``: the ``tokenize`` and ``stage2`` stages (MaskGIT on frozen Stage I tokens).
- ``uvim.py``: UViM's stages, ``uvim_stage1`` → ``uvim_tokenize`` → ``uvim_stage2`` → ``uvim_eval`` (§4.4).
- ``evaluate.py``: ``eval.py task=...`` and the ``eval`` stage (reference statistics, reconstruction, sampling,
  guidance sweep, compression, semantics).
- ``global_batch.py``: the global batch of a stage and the gradient accumulation derived from it (§4.3).
"""
