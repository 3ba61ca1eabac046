"""MaskGIT iterative decoding with classifier-free guidance (MaskGIT §3.2; FSQ paper §4.3).

Follows the official ``maskgit/libml/parallel_decode.py: decode``. Start from all-MASK. At step ``t = 0 … T−1``:

1. logits ``l`` for every position; with guidance ``l' = l_c + α_t (l_c − l_∅)`` where the conditional and the
   unconditional (null class) rows run as **one batch of 2B** (``batched_cfg=True``) or two passes;
2. sample every masked position from ``softmax(l')`` (categorical; ``greedy=True``: argmax); already known positions
   keep their code;
3. confidence = ``log p(sampled) + τ_t · g``, ``g ~ Gumbel(0, 1)``, ``τ_t = choice_temperature · (1 − (t + 1)/T)``;
   known positions get ``+∞``, so a decoded token is never re-masked or changed;
4. re-mask the ``mask_len`` least confident positions, ``mask_len = floor(N · mask_schedule((t + 1)/T))`` clipped to
   ``[1, #masked − 1]``; at the last step nothing is re-masked (the official loop returns the step's sampled ids).

``mask_schedule`` is the same function training uses (``generation/masking.py``). Guidance lives here only; the
model never sees α.

Deliberate differences from the official code, each tested in ``tests/generation/test_sampler.py``:

* the schedule is computed in float64 (the exact formula); ``official_float32=True`` uses the official float32
  arithmetic (at N = 256, T = 12 it keeps 127 masked after step 8 instead of 128; ``masking.tokens_masked_after_step``);
* the official code re-masks the positions whose confidence is *strictly below* the ``mask_len``-th smallest, so
  tied confidences can re-mask fewer than ``mask_len``; here exactly ``mask_len`` are re-masked (ties broken by
  position). With continuous logits and Gumbel noise, ties have probability zero;
* classifier-free guidance (FSQ paper §4.3) is not in the official decoder.

Shapes: ``labels (B,)`` in ``[0, K)`` → tokens ``(B, N)`` int64 in ``[0, C)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fsq_repro.generation.masking import tokens_masked_after_step

CFG_SCHEDULES = ("constant", "linear")


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """``l_c + α (l_c − l_∅)`` (α = 0 → the conditional logits exactly)."""
    return cond if cfg_scale == 0 else cond + cfg_scale * (cond - uncond)


def cfg_scale_at(step: int, total_steps: int, cfg_scale: float, schedule: str = "constant") -> float:
    """α_t: ``constant`` α, or ``linear`` ramp ``α · (t + 1)/T`` (weak guidance while the layout forms)."""
    if schedule == "constant":
        return cfg_scale
    if schedule == "linear":
        return cfg_scale * (step + 1) / total_steps
    raise ValueError(f"unknown cfg schedule {schedule!r}; choose one of {CFG_SCHEDULES}")


def gumbel(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise ``−log(−log u)``, ``u ~ U(0, 1)``: mean γ ≈ 0.5772, std π/√6 ≈ 1.2825.

    ``u`` is drawn in float64 and kept in ``[tiny, 1)``, so both logs are finite (``−log u > 0`` for ``u < 1``)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    u = u.clamp_min(torch.finfo(torch.float64).tiny)
    return (-torch.log(-torch.log(u))).float()


@torch.no_grad()
def maskgit_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    num_tokens: int,
    mask_token_id: int,
    class_ids: Callable[[torch.Tensor], torch.Tensor],
    null_class_id: int,
    steps: int = 12,  # MaskGIT §3.2 / FSQ paper §4.3
    choice_temperature: float = 4.5,  # MaskGIT code
    cfg_scale: float = 0.0,
    cfg_schedule: str = "constant",
    schedule: str = "cosine",  # MaskGIT §3.2
    batched_cfg: bool = True,
    greedy: bool = False,
    official_float32: bool = False,
    generator: torch.Generator | None = None,
    return_history: bool = False,
):
    """Decode ``len(labels)`` token maps. ``model(tokens (B, N), class_ids (B,)) -> logits (B, N, C)``;
    ``class_ids(labels)`` maps labels to class-token ids (the model's embedder in eval mode). ``greedy``: argmax
    instead of categorical sampling; ``official_float32``: the official float32 schedule arithmetic (module docstring).

    Returns tokens ``(B, N)``; with ``return_history`` also the list of per-step masks (True = still masked)."""
    device = labels.device
    b = labels.shape[0]
    tokens = torch.full((b, num_tokens), mask_token_id, dtype=torch.long, device=device)
    cond_ids = class_ids(labels)
    null_ids = torch.full_like(cond_ids, null_class_id)
    history = []
    for t in range(steps):
        masked = tokens == mask_token_id
        alpha = cfg_scale_at(t, steps, cfg_scale, cfg_schedule)
        if alpha == 0:
            logits = model(tokens, cond_ids)
        elif batched_cfg:
            both = model(torch.cat([tokens, tokens]), torch.cat([cond_ids, null_ids]))
            logits = guided_logits(both[:b], both[b:], alpha)
        else:
            logits = guided_logits(model(tokens, cond_ids), model(tokens, null_ids), alpha)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if greedy:
            sampled = log_probs.argmax(-1)
        else:
            sampled = torch.multinomial(log_probs.exp().flatten(0, 1), 1, generator=generator).view(b, num_tokens)
        sampled = torch.where(masked, sampled, tokens)  # a known token is never changed
        if t == steps - 1:
            tokens = sampled
            history.append(torch.zeros_like(masked))
            break
        confidence = torch.gather(log_probs, -1, sampled[..., None])[..., 0]
        temperature = choice_temperature * (1 - (t + 1) / steps)
        if temperature > 0:
            confidence = confidence + temperature * gumbel(confidence.shape, generator, device)
        confidence = torch.where(masked, confidence, torch.full_like(confidence, float("inf")))
        target = tokens_masked_after_step(num_tokens, t, steps, schedule, float32=official_float32)
        mask_len = torch.clamp(torch.full((b,), target, device=device), max=masked.sum(1) - 1).clamp_min(1)
        ranks = confidence.argsort(dim=1, stable=True).argsort(dim=1)  # 0 = least confident; ties by position
        remask = ranks < mask_len[:, None]
        tokens = torch.where(remask, torch.full_like(sampled, mask_token_id), sampled)
        history.append(remask)
    return (tokens, history) if return_history else tokens


def sample_with_model(model, labels: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """``maskgit_sample`` for a ``MaskGITTransformer`` (eval mode, so no label dropout)."""
    was_training = model.training
    model.eval()
    try:
        return maskgit_sample(
            model,
            labels,
            num_tokens=model.num_tokens,
            mask_token_id=model.mask_token_id,
            class_ids=model.class_embedder,
            null_class_id=model.class_embedder.null_id,
            generator=generator,
            **kwargs,
        )
    finally:
        model.train(was_training)
