"""Nearest-code assignment and MaskGIT's codebook entropy loss for VQ (FSQ paper §4.1 baseline), in row chunks.

The VQ bottleneck needs, for ``flat: (N, d)`` encoder vectors and a ``codebook: (K, d)``,

- the squared distances ``D = ‖x_i − e_k‖²: (N, K)`` and their row argmin (the assignment), and
- MaskGIT's entropy loss on ``p_i = softmax(−D_i / T)``:  ``mean_i H(p_i) − H(mean_i p_i)``, where the second
  entropy uses ``log(q + 1e-5)`` as MaskGIT does (``entropy_loss`` below is the direct definition).

Written directly, autograd keeps about ten ``(N, K)`` temporaries alive between forward and backward. At ImageNet
scale (256 images × 256 tokens against 2¹⁶ codes) that is 2³² elements = 16 GiB *per matrix*; on CPU the fresh
half-gigabyte allocations are page-fault bound (FSQ paper Fig. 3 sizes cost 8.3 s per step at 64 px).
``assign_and_entropy`` computes both in chunks of rows with a hand-derived backward, so only one chunk of
``(rows, K)`` exists at a time, in forward and in backward (which recomputes its chunk). Gradient, with
``l = −D/T``, ``q = mean_i p_i``, ``g = dH(q)/dq = −(log(q + ε) + q / (q + ε))`` and ``h_ik = l_ik + g_k``:

    ∂loss/∂l_ik = −(1/N) · p_ik · (h_ik − Σ_j p_ij h_ij)        ∂loss/∂D = −(1/T) ∂loss/∂l
    ∂loss/∂x_i = 2 (x_i Σ_k G_ik − Σ_k G_ik e_k)               ∂loss/∂e_k = 2 (e_k Σ_i G_ik − Σ_i G_ik x_i)

with ``G = ∂loss/∂D``. Tested against autograd through ``entropy_loss`` and finite differences
(``tests/quantizers/test_vq_assignment.py``). Differences from the direct form: the distances are not clamped at 0
(rounding can make an exact match −1e-7, which changes nothing here), and there is no gradient through the argmin
(there is none in the direct form either).
"""

from __future__ import annotations

import torch


def squared_distances(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(N, d), (K, d) -> (N, K)`` squared Euclidean distances (the direct form, clamped at 0)."""
    return (
        flat.pow(2).sum(dim=1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(dim=1)[None, :]
    ).clamp_min(0)


def entropy_loss(distances: torch.Tensor, temperature: float) -> torch.Tensor:
    """MaskGIT's codebook entropy loss from ``distances: (N, K)``, the direct definition: mean per-row entropy −
    entropy of the mean row, rows ``softmax(−distances / temperature)``; the 1e-5 follows MaskGIT."""
    logits = -distances / temperature
    probs = torch.softmax(logits, dim=-1)
    log_probs = torch.log_softmax(logits, dim=-1)
    sample_entropy = -(probs * log_probs).sum(dim=-1).mean()
    avg_probs = probs.mean(dim=0)
    avg_entropy = -(avg_probs * torch.log(avg_probs + 1e-5)).sum()
    return sample_entropy - avg_entropy


def chunk_rows(num_rows: int, codebook_size: int, device: torch.device) -> int:
    """Rows per chunk: a ``(rows, K)`` block of about ``elements`` floats — 2²⁰ (4 MiB) on CPU, 2²⁶ (256 MiB) on
    accelerators — but at least 64 rows, so each chunk's GEMMs against the ``(K, d)`` codebook stay efficient at
    large K (scripts/bench_vq.py, d = 256: K = 2¹⁶ takes 3.2 s at 16 rows, 2.3 s at 64)."""
    elements = 2**20 if device.type == "cpu" else 2**26
    return max(1, min(num_rows, max(64, elements // max(1, codebook_size))))


def _probs(log_probs: torch.Tensor) -> torch.Tensor:
    """``exp(log p)`` with probabilities below e⁻⁶⁰ ≈ 1e-26 set to exactly 0. At T = 0.01 almost every entry is far
    below float32's normal range (1.2e-38), and subnormal arithmetic is 10–50× slower on CPUs (measured: the
    backward GEMMs ran at 5 GFLOP/s); what is dropped is below float32 resolution of every sum it enters."""
    return log_probs.clamp_min(-60.0).exp_().masked_fill_(log_probs < -60.0, 0.0)


def _block_distances(x: torch.Tensor, codebook: torch.Tensor, code_sq: torch.Tensor) -> torch.Tensor:
    """``(rows, d) -> (rows, K)`` unclamped squared distances, one fresh block (safe to modify in place)."""
    return torch.addmm(code_sq[None, :], x, codebook.t(), alpha=-2).add_(x.pow(2).sum(dim=1, keepdim=True))


@torch.no_grad()
def nearest_codes(flat: torch.Tensor, codebook: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``(N, d), (K, d) -> (N,)`` int64 index of the nearest code, in chunks of ``rows`` (default ``chunk_rows``)."""
    rows = rows or chunk_rows(flat.shape[0], codebook.shape[0], flat.device)
    code_sq = codebook.pow(2).sum(dim=1)
    out = torch.empty(flat.shape[0], dtype=torch.int64, device=flat.device)
    for s in range(0, flat.shape[0], rows):
        out[s : s + rows] = _block_distances(flat[s : s + rows], codebook, code_sq).argmin(dim=1)
    return out


class _AssignAndEntropy(torch.autograd.Function):
    """Forward: ``(indices (N,), entropy loss ())`` in row chunks; backward: the closed form in the module
    docstring, recomputing each chunk's probabilities."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, codebook: torch.Tensor, temperature: float, rows: int):
        # float32 throughout, in forward and (below) in backward, which runs under whatever autocast is active when
        # `.backward()` is called (Lightning: bf16) — bf16 distances at T = 0.01 make the probabilities noise
        with torch.autocast(flat.device.type, enabled=False):
            return _AssignAndEntropy._forward(ctx, flat, codebook, temperature, rows)

    @staticmethod
    def backward(ctx, _grad_indices, grad_loss):
        with torch.autocast(grad_loss.device.type, enabled=False):
            return _AssignAndEntropy._backward(ctx, grad_loss)

    @staticmethod
    def _forward(ctx, flat: torch.Tensor, codebook: torch.Tensor, temperature: float, rows: int):
        n, k = flat.shape[0], codebook.shape[0]
        code_sq = codebook.pow(2).sum(dim=1)
        indices = torch.empty(n, dtype=torch.int64, device=flat.device)
        prob_sum = flat.new_zeros(k)
        entropy_sum = flat.new_zeros(())
        for s in range(0, n, rows):
            dist = _block_distances(flat[s : s + rows], codebook, code_sq)
            indices[s : s + rows] = dist.argmin(dim=1)
            log_probs = torch.log_softmax(dist.mul_(-1.0 / temperature), dim=1)
            probs = _probs(log_probs)
            entropy_sum -= (probs * log_probs).sum()  # Σ_i H(p_i)
            prob_sum += probs.sum(dim=0)
        avg = prob_sum / n
        loss = entropy_sum / n + (avg * torch.log(avg + 1e-5)).sum()
        ctx.save_for_backward(flat, codebook, avg)
        ctx.temperature, ctx.rows = float(temperature), int(rows)
        ctx.mark_non_differentiable(indices)
        return indices, loss

    @staticmethod
    def _backward(ctx, grad_loss: torch.Tensor):
        flat, codebook, avg = ctx.saved_tensors
        need_x, need_e = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, temperature = flat.shape[0], ctx.temperature
        g = -(torch.log(avg + 1e-5) + avg / (avg + 1e-5))  # dH(q)/dq
        code_sq = codebook.pow(2).sum(dim=1)
        scale = grad_loss.to(flat.dtype) / (n * temperature)  # ∂loss/∂D = (1/(N T)) p (h − <h>)
        grad_x = torch.empty_like(flat) if need_x else None
        grad_e = torch.zeros_like(codebook) if need_e else None
        grad_e_rows = torch.zeros_like(code_sq) if need_e else None
        for s in range(0, n, ctx.rows):
            x = flat[s : s + ctx.rows]
            logits = _block_distances(x, codebook, code_sq).mul_(-1.0 / temperature)
            # h − <h> is unchanged by a per-row shift of l: log p (≈ 0 where p matters) instead of l keeps the
            # subtraction free of float32 cancellation
            h = torch.log_softmax(logits, dim=1)
            probs = _probs(h)
            h += g
            h -= (probs * h).sum(dim=1, keepdim=True)
            grad_d = h.mul_(probs).mul_(scale)  # G = ∂loss/∂D for this chunk
            if need_x:
                grad_x[s : s + ctx.rows] = 2 * (x * grad_d.sum(dim=1, keepdim=True) - grad_d @ codebook)
            if need_e:
                grad_e_rows += grad_d.sum(dim=0)
                grad_e.addmm_(grad_d.t(), x, alpha=-2)
        if need_e:
            grad_e += 2 * codebook * grad_e_rows[:, None]
        return grad_x, grad_e, None, None


def assign_and_entropy(
    flat: torch.Tensor, codebook: torch.Tensor, temperature: float, rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``flat: (N, d), codebook: (K, d)`` float32 → ``(indices (N,) int64, entropy loss ())``, differentiable in
    both inputs, with memory ``O(rows · K)`` instead of ``O(N · K)`` (module docstring; ``rows`` default
    ``chunk_rows``)."""
    rows = rows or chunk_rows(flat.shape[0], codebook.shape[0], flat.device)
    return _AssignAndEntropy.apply(flat, codebook, float(temperature), rows)
