# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""The fused CPU inhibitor attention (C++), differentiable, and the probes of the package's two implementations.

Saved for the backward: query, key, value, the output and the row means of the scores, i.e. O(N * d) per head; the
backward recomputes the scores tile by tile instead of storing anything of size N^2 (flash-attention style).
"""

import torch
from torch.autograd.function import once_differentiable

from ._build import library_error

_ops = torch.ops.inhibidistilbert  # resolved lazily: nothing is looked up before the library is loaded
COMPUTE_DTYPES = (torch.float32, torch.float64)


def unsupported_reason(query: torch.Tensor) -> str | None:
    """Why the C++ kernels cannot run on `query` (device, dtype, a failed build or INHIBIDISTILBERT_KERNELS=0)."""
    if query.device.type != "cpu":
        return f"the C++ kernels run on CPU tensors, not {query.device.type}"
    if query.dtype not in COMPUTE_DTYPES:
        return f"the C++ kernels compute in float32 or float64, not {query.dtype}"
    return library_error()


def require_library() -> None:
    """Raise a RuntimeError naming the reason and the fix when the C++ library cannot be loaded."""
    error = library_error()
    if error is not None:
        raise RuntimeError(f"inhibidistilbert_kernels: {error}; use inhibitor_implementation='cdist' instead")


def fused_unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
    """Probe of the fused kernel: None when it can run this call (forward and backward), else a one-line reason."""
    return unsupported_reason(query)


class FusedInhibitorAttention(torch.autograd.Function):
    """Autograd wrapper of `torch.ops.inhibidistilbert.inhibitor_forward` / `inhibitor_backward`."""

    @staticmethod
    def forward(ctx, *args):  # the arguments of fused_inhibitor_attention, in order
        out, row_mean = _ops.inhibitor_forward(*args)
        ctx.save_for_backward(*args[:6], out, row_mean, args[6])
        ctx.flags = args[7:]  # signed, center
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        query, key, value, score_scale, shift, output_scale, out, row_mean, key_mask = ctx.saved_tensors
        grads = _ops.inhibitor_backward(
            grad_out, query, key, value, out, row_mean, score_scale, shift, output_scale, key_mask, *ctx.flags
        )
        return (*grads, None, None, None)


def fused_inhibitor_attention(
    query, key, value, score_scale, shift, output_scale, key_mask=None, signed=True, center=True
) -> torch.Tensor:
    """Inhibitor attention in one fused CPU kernel; differentiable w.r.t. query, key, value and the three scalars.

    Args (the attention table's signature):
        query, key, value: `[B, H, N, d]` CPU tensors (keys may have their own length `N_k`), float32 or float64.
        score_scale, shift, output_scale: gamma, delta, eta, one per head (`[H]`).
        key_mask: `None` or a bool `[B, N_k]` (or `[1, N_k]`) tensor, True for real keys; padded keys contribute
            nothing to the sums or to the centring mean.
        signed: InhibiDistilbert's signed inhibition (`False`: the unsigned 2023 form).
        center: subtract the mean score over the real keys before the shift.

    Returns:
        `[B, H, N, d]`, the sum form `eta * sum_j [...]` over the real keys, in the layout of `query` (a transposed
        view stays one, so the caller's reshape is free). NaN and inf in Q, K or V propagate as in the float64
        reference (`modeling_inhibidistilbert/reference.py`).
    """
    require_library()
    args = (query, key, value, score_scale, shift, output_scale, key_mask, signed, center)
    if not _ops.all_finite([query, key, value]):
        return cdist_form(*args)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:6]):
        return FusedInhibitorAttention.apply(*args)
    return _ops.inhibitor_forward(*args)[0]


def cdist_form(query, key, value, score_scale, shift, output_scale, key_mask, signed, center) -> torch.Tensor:
    """The model's cdist form, for calls with NaN or inf in Q, K or V (found by one cheap pass before the kernel).

    Bad values then propagate, forward and backward (padded keys included), exactly as on the path Hub users run and
    as in the float64 reference wherever the two agree; a training guard sees the NaN loss, never a finite loss with
    NaN gradients. Finite calls never come here.
    """
    from modeling_inhibidistilbert.modeling_inhibidistilbert import inhibitor_attention_cdist

    allowed = None if key_mask is None else key_mask[:, None, None, :]
    params = (score_scale, shift, output_scale)
    return inhibitor_attention_cdist(query, key, value, *params, allowed=allowed, signed=signed, center=center)[0]


def register_fakes() -> None:
    """Shapes of the operators for torch.compile / FakeTensor tracing (called once the library is loaded)."""

    @torch.library.register_fake("inhibidistilbert::inhibitor_forward")
    def _forward_fake(query, *args):
        return torch.empty_like(query), query.new_empty(query.shape[:3])

    @torch.library.register_fake("inhibidistilbert::inhibitor_backward")
    def _backward_fake(grad_out, query, key, value, out, row_mean, score_scale, shift, output_scale, *flags):
        return tuple(torch.empty_like(t) for t in (query, key, value, score_scale, shift, output_scale))

    @torch.library.register_fake("inhibidistilbert::inhibitor_int8_forward")
    def _int8_fake(query, *args):
        return torch.empty_like(query)
