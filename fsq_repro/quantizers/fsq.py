"""Finite Scalar Quantization — FSQ paper §3.1–§3.3 and the reference code of App. A.1.

Each of the ``d = len(levels)`` channels of ``z: (..., d)`` is bounded to ``L_i`` values and rounded with a
straight-through estimator; the implicit codebook is the product of the per-channel grids, of size ``∏ L_i``
(Table 1 gives level sets per target size). There are no parameters and no auxiliary loss.

Numerics follow App. A.1 exactly:

- ``bound(z) = tanh(z + shift) · half_l − offset`` with ``half_l = (L − 1)(1 − ε)/2``, ``ε = 1e-3``,
  ``offset = 0.5`` for even ``L`` (else 0) and ``shift = tan(offset / half_l)``. The paper writes ``tan``; many
  ports (e.g. vector-quantize-pytorch 1.32) use ``atanh`` and ``(1 + ε)``, which moves 0.5–1 % of indices by a
  whole level on ``z ~ N(0, 3²)`` (``tests/quantizers/test_fsq.py``). We follow the paper.
- ``quantize(z) = round_ste(bound(z)) / (L // 2)``: odd ``L`` gives ``{−(L−1)/2 … (L−1)/2}/(L//2)``, even ``L``
  the asymmetric grid ``{−L/2 … L/2 − 1}/(L/2)``; all values lie in ``[−1, 1]``.
- ``index = Σ_i (ẑ_i·(L_i//2) + L_i//2) · basis_i`` with ``basis = [1, L_1, L_1·L_2, …]`` (first channel least
  significant, a mixed-radix number).

Everything is computed in float32 with autocast disabled, whatever the caller's precision: rounding a bf16
``bound(z)`` collapses neighbouring levels (a known cause of index collapse in public ports). Indices are cast
to int64 only after rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fsq_repro.errors import ConfigError
from fsq_repro.quantizers.base import LazyMetrics, Quantizer, QuantizerOutput, batch_usage_metrics


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round with a straight-through gradient (App. A.1 ``round_ste``): forward ``round(z)``, backward identity.

    Written ``sg(round(z)) + (z − sg(z))`` rather than App. A.1's ``z + sg(round(z) − z)``: the same gradient, but the
    forward value is exactly ``round(z)`` in floating point, so ``decode(encode(x))`` equals the training-path
    reconstruction bit for bit.
    """
    return torch.round(z).detach() + (z - z.detach())


class _BoundRoundSTE(torch.autograd.Function):
    """``quantize`` as one autograd node (same forward values as ``round_ste(bound(z)) / half_width``).

    Forward, float32: ``t = tanh(z + shift)``; ``r = round(t·half_l − offset)`` (the integer level, in place);
    returns ``(r / half_width, r + half_width)`` — the codes and the mixed-radix digits ``0 … L_i − 1`` (exact
    integers in float32, so the index needs no second rounding). Backward: the straight-through gradient of
    App. A.1, ``∂codes/∂z = (1 − t²)·half_l / half_width``, as one ``tanh_backward``. Autograd through the
    composed ops keeps ~6 intermediate tensors and runs ~8 kernels backward; at tokenizer sizes (10⁵ elements)
    each kernel launch costs as much as its arithmetic, so the op count is the speed (``scripts/bench_fsq.py``).
    """

    @staticmethod
    def forward(ctx, z, shift, half_l, offset, half_width, grad_scale):
        t = torch.tanh(z + shift)
        level = torch.mul(t, half_l).sub_(offset).round_()
        ctx.save_for_backward(t, grad_scale)
        digits = level + half_width
        ctx.mark_non_differentiable(digits)
        return level.div_(half_width), digits

    @staticmethod
    @torch.autograd.function.once_differentiable  # t is saved without its graph: no second derivative
    def backward(ctx, grad_codes, grad_digits):
        t, grad_scale = ctx.saved_tensors
        grad = torch.ops.aten.tanh_backward(grad_codes * grad_scale, t)
        return grad, None, None, None, None, None


class FSQ(Quantizer):
    """FSQ bottleneck with levels ``L = [L_1, …, L_d]`` (FSQ paper App. A.1).

    Args:
        levels: number of values per channel, each ≥ 2 (the paper recommends ``L_i ≥ 5``, §3.3 / A.4.1).
        eps: the ``ε`` of ``bound`` (App. A.1 uses 1e-3).
        codebook_size: optional, the size the config means (``∏ L_i``, Table 1); checked at construction so that
            overriding ``quantizer.levels`` without it (or a typo in a level) is a one-line error, not a silent
            run with another codebook.

    Shapes: ``forward(z: (..., d)) -> QuantizerOutput(codes (..., d), indices (...), loss (), metrics)``.
    """

    def __init__(self, levels: Sequence[int], eps: float = 1e-3, codebook_size: int | None = None) -> None:
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or any(level < 2 for level in levels):
            raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {list(levels)}")
        self.levels = tuple(levels)
        self.eps = float(eps)
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        if codebook_size is not None and int(codebook_size) != self.codebook_size:
            raise ConfigError(
                f"quantizer.levels={list(levels)} give {self.codebook_size} codes, not quantizer.codebook_size="
                f"{codebook_size}: fix one of them"
            )
        if self.codebook_size > 2**31:
            raise ValueError(f"FSQ codebook of {self.codebook_size} codes is too large for int64 tokens math")

        levels_t = torch.tensor(levels, dtype=torch.int64)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), dim=0)
        half_l = (levels_t.float() - 1) * (1 - self.eps) / 2
        offset = torch.where(levels_t % 2 == 1, 0.0, 0.5)
        # All derived constants are float32, as in the JAX reference (x64 disabled).
        self.register_buffer("_levels", levels_t, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half_width", (levels_t // 2).float(), persistent=False)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", torch.tan(offset / half_l), persistent=False)  # App. A.1: tan, not atanh
        self.register_buffer("_grad_scale", half_l / (levels_t // 2).float(), persistent=False)  # d codes / d t
        self._tiles: dict[tuple[int, torch.device], tuple[torch.Tensor, ...]] = {}  # see `_bound_round`
        self.register_buffer(
            "implicit_codebook",
            self.indexes_to_codes(torch.arange(self.codebook_size)),
            persistent=False,
        )

    # --- App. A.1 API ---------------------------------------------------------------------------------
    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., d) -> (..., d)``: ``tanh(z + shift)·half_l − offset`` in float32."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            return torch.tanh(z + self._shift) * self._half_l - self._offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., d) -> (..., d)`` float32 codes in ``[−1, 1]`` with a straight-through gradient
        (``round_ste(bound(z)) / (L // 2)``; computed by the fused node, see ``_bound_round``)."""
        return self._bound_round(z)[0]

    def _bound_round(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., d)`` → float32 codes (straight-through gradient) and float32 digits ``0 … L_i − 1``."""
        self._check_dim(z)
        if torch.is_autocast_enabled(z.device.type):  # the op is elementwise: only the input's dtype matters
            with torch.autocast(device_type=z.device.type, enabled=False):
                return self._bound_round(z)
        # (..., d) viewed as (rows / k, k·d) with the per-channel constants tiled k times: broadcasting a (d,)
        # vector over an inner dimension of 4–6 elements runs 7× slower than the same op on a wide one (measured:
        # 71 vs 9 µs for 16 384 × 5 elements), and every elementwise op of the node broadcasts one
        rows = z.numel() // self.dim
        k = max(1, min(rows & -rows, 64))  # the largest power of two ≤ 64 that divides the row count
        codes, digits = _BoundRoundSTE.apply(z.float().reshape(rows // k, k * self.dim), *self._tiled_constants(k))
        return codes.view(z.shape), digits.view(z.shape)

    def _tiled_constants(self, k: int) -> tuple[torch.Tensor, ...]:
        """``shift, half_l, offset, half_width, grad_scale`` repeated ``k`` times, cached per ``(k, device)``."""
        key = (k, self._shift.device)
        if key not in self._tiles:
            names = ("_shift", "_half_l", "_offset", "_half_width", "_grad_scale")
            with torch.inference_mode(False):  # a first call under inference mode must not cache inference tensors
                self._tiles[key] = tuple(getattr(self, name).repeat(k) for name in names)
        return self._tiles[key]

    def _apply(self, fn, recurse: bool = True):  # .to() / .cuda() / .double(): the tiles are rebuilt from the buffers
        self._tiles = {}
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_tiles": {}}

    def _digits_to_indexes(self, digits: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` float32 integer digits → ``(...)`` int64 mixed-radix indices (first channel least
        significant)."""
        if self.codebook_size <= 2**24:  # float32 holds every index exactly: one matrix-vector product
            return digits.matmul(self._basis.float()).to(torch.int64)
        return (digits.to(torch.int64) * self._basis).sum(dim=-1)

    def codes_to_indexes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` normalized codes → ``(...)`` int64 indices (mixed radix, first channel least significant)."""
        self._check_dim(codes)
        with torch.autocast(device_type=codes.device.type, enabled=False):
            digits = torch.addcmul(self._half_width, codes.float(), self._half_width).round_()
            return self._digits_to_indexes(digits)

    def indexes_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` integer indices → ``(..., d)`` float32 normalized codes."""
        digits = torch.div(indices.to(torch.int64)[..., None], self._basis, rounding_mode="floor") % self._levels
        return (digits.float() - self._half_width) / self._half_width

    # --- nn.Module -------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if torch.is_autocast_enabled(z.device.type):  # float32 throughout (module docstring)
            with torch.autocast(device_type=z.device.type, enabled=False):
                return self.forward(z)
        codes, digits = self._bound_round(z)
        indices = self._digits_to_indexes(digits)
        return QuantizerOutput(
            codes=codes,
            indices=indices,
            loss=torch.zeros((), device=z.device, dtype=torch.float32),
            metrics=LazyMetrics(lambda: batch_usage_metrics(indices, self.codebook_size)),
        )

    def config(self) -> dict:
        return {"name": "fsq", "levels": list(self.levels), "eps": self.eps}

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}, codebook_size={self.codebook_size}, eps={self.eps}"

    def _check_dim(self, z: torch.Tensor) -> None:
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"FSQ with levels {list(self.levels)} expects channel-last inputs (..., {self.dim}), "
                f"got shape {tuple(z.shape)}"
            )
