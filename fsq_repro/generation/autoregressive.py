"""Autoregressive decoding of UViM's guiding code (FSQ paper §4.4; big_vision ``models/proj/uvim/decode.py``
``temperature_sampling`` with ``prefill=False`` and no EOS, i.e. always the full ``seq_len``).

The image is encoded once; then token ``t`` is chosen from the decoder's logits at position ``t`` given tokens
``< t``. With ``use_cache=True`` every self-attention layer keeps the keys and values of the positions already
decoded, so each step runs the decoder on one new position (``L`` single-position passes instead of ``L`` passes
over growing prefixes); ``use_cache=False`` is that reference. The cross-attention reads the encoded image, which
does not change.

Temperature: the official predictor uses 1e-7, i.e. greedy; ``temperature <= 1e-6`` takes the argmax (a categorical
draw at 1e-7 equals it except for exact ties). Token 0 (BOS / padding) is never emitted: its logit is masked.
Shapes: ``image (B, 3, R, R)`` → codes ``(B, seq_len)`` int64 in ``[0, C)``.
"""

from __future__ import annotations

import torch

GREEDY_BELOW = 1e-6


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    logits = logits.float().clone()
    logits[:, 0] = float("-inf")  # never BOS / padding
    if temperature <= GREEDY_BELOW:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.inference_mode()
def decode(model, image: torch.Tensor, temperature: float = 1e-7, generator: torch.Generator | None = None,
           use_cache: bool = True) -> torch.Tensor:  # fmt: skip
    """Greedy (default) or temperature sampling of ``model.seq_len`` codes per image (module docstring)."""
    was_training = model.training
    model.eval()
    encoded = model.encode(image)
    b = image.shape[0]
    tokens = torch.zeros(b, 1, dtype=torch.long, device=image.device)  # BOS
    caches = [{"self": {}} for _ in model.blocks] if use_cache else None
    for t in range(model.seq_len):
        if use_cache:
            logits = model.decode(encoded, tokens[:, t : t + 1], offset=t, caches=caches)[:, -1]
        else:
            logits = model.decode(encoded, tokens)[:, -1]
        tokens = torch.cat([tokens, _choose(logits, temperature, generator)[:, None]], dim=1)
    model.train(was_training)
    return tokens[:, 1:] - 1
