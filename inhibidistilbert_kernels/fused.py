# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""The fused inhibitor attention as a differentiable function: CPU kernel (C++), GPU kernel (Triton).

Saved for the backward (CPU): query, key, value, the output and the row means of the scores, i.e. O(N * d) per head;
the backward recomputes the scores tile by tile instead of storing anything of size N^2 (flash-attention style).
"""

import torch
from torch.autograd.function import once_differentiable

_ops = torch.ops.inhibidistilbert


class FusedInhibitorAttention(torch.autograd.Function):
    """Autograd wrapper of `torch.ops.inhibidistilbert.inhibitor_forward` / `inhibitor_backward` (CPU)."""

    @staticmethod
    def forward(ctx, query, key, value, score_scale, shift, output_scale, key_mask, signed, center):
        out, row_mean = _ops.inhibitor_forward(
            query, key, value, score_scale, shift, output_scale, key_mask, signed, center
        )
        ctx.save_for_backward(query, key, value, score_scale, shift, output_scale, out, row_mean, key_mask)
        ctx.flags = (signed, center)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        query, key, value, score_scale, shift, output_scale, out, row_mean, key_mask = ctx.saved_tensors
        grads = _ops.inhibitor_backward(
            grad_out, query, key, value, out, row_mean, score_scale, shift, output_scale, key_mask, *ctx.flags
        )
        return (*grads, None, None, None)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def fused_inhibitor_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    score_scale: torch.Tensor,
    shift: torch.Tensor,
    output_scale: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    signed: bool = True,
    center: bool = True,
) -> torch.Tensor:
    """Inhibitor attention in one fused kernel; differentiable w.r.t. query, key, value and the three scalars.

    Args:
        query, key, value: `[B, H, N, d]` (keys may have their own length `N_k`). CPU: float32 or float64 (lower
            precisions are computed in float32 and cast back). CUDA: float32, float16 or bfloat16, with float32
            accumulation (Triton kernel).
        score_scale, shift, output_scale: gamma, delta, eta, one per head (`[H]`).
        key_mask: `None` or a bool `[B, N_k]` (or `[1, N_k]`) tensor, True for real tokens; padded keys contribute
            nothing to the sums or to the centring mean.
        signed: InhibiDistilbert's signed inhibition (`False`: the unsigned 2023 form).
        center: subtract the mean score over the real keys before the shift.

    Returns:
        `[B, H, N, d]`, in the layout of `query` (a transposed view stays one, so the caller's reshape is free).
    """
    if key_mask is not None:
        key_mask = key_mask.to(device=query.device, dtype=torch.bool)
    if query.device.type == "cuda":
        from .triton_inhibitor import triton_inhibitor_attention

        return triton_inhibitor_attention(
            query, key, value, score_scale, shift, output_scale, key_mask, signed=signed, center=center
        )
    if query.device.type != "cpu":
        raise RuntimeError(f"fused_inhibitor_attention runs on CPU and CUDA tensors, got {query.device.type}")
    dtype = query.dtype
    if dtype not in (torch.float32, torch.float64):
        query, key, value = (t.float() for t in (query, key, value))
    params = tuple(p.to(query.dtype) for p in (score_scale, shift, output_scale))
    if _needs_grad(query, key, value, *params):
        out = FusedInhibitorAttention.apply(query, key, value, *params, key_mask, signed, center)
    else:
        out, _ = _ops.inhibitor_forward(query, key, value, *params, key_mask, signed, center)
    return out.to(dtype)


def _register_fakes() -> None:
    """Shapes for torch.compile / FakeTensor tracing of the CPU operators."""

    @torch.library.register_fake("inhibidistilbert::inhibitor_forward")
    def _inhibitor_forward_fake(
        query, key, value, score_scale, shift, output_scale, key_mask, signed_inhibition, center
    ):
        return torch.empty_like(query), query.new_empty(query.shape[:3])

    @torch.library.register_fake("inhibidistilbert::inhibitor_backward")
    def _inhibitor_backward_fake(
        grad_out,
        query,
        key,
        value,
        out,
        row_mean,
        score_scale,
        shift,
        output_scale,
        key_mask,
        signed_inhibition,
        center,
    ):
        return (
            torch.empty_like(query),
            torch.empty_like(key),
            torch.empty_like(value),
            torch.empty_like(score_scale),
            torch.empty_like(shift),
            torch.empty_like(output_scale),
        )

    @torch.library.register_fake("inhibidistilbert::inhibitor_int8_forward")
    def _inhibitor_int8_forward_fake(
        query, key, value, qk_scale, v_scale, score_scale, shift, output_scale, key_mask, signed_inhibition, center
    ):
        return torch.empty_like(query, dtype=torch.float32)


if hasattr(_ops, "inhibitor_forward"):  # absent when only the Triton path is available
    _register_fakes()
