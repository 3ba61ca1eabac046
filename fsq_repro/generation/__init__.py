"""Stage II generation (pure torch).

- ``masking.py``: MaskGIT's masking schedule with the FSQ paper's minimum masking rate, for training and sampling.
- ``sampler.py``: MaskGIT iterative decoding with classifier-free guidance.
- ``sampling_job.py``: class-conditional samples in the ADM evaluator's format (class-interleaved ``samples.npz``).
- ``compression.py``: the compression cost of token maps under the Stage II transformer (M2T schedule).
- ``autoregressive.py``: autoregressive decoding of UViM's guiding code with key/value caches.
"""
