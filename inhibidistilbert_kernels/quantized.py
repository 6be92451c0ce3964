# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Inhibitor attention in integer arithmetic, for inference on CPU.

The mechanism needs only subtractions, absolute values, additions and ReLU, so once Q, K and V are integers the two
O(N^2 d) passes are integer-only (see `Int8Head` in inhibitor_cpu.h):

- Q and K share one symmetric int8 scale per (batch element, head), so that `|q - k|` is meaningful; V has its own.
- Distances `D_ij = sum_k |q_ik - k_jk|` are exact integers (AVX-512: `vpsadbw`, 64 byte-differences per instruction).
- The centred, shifted inhibition is re-expressed on V's integer grid, `z_ij = clamp(round(...), 0, 127)`: the only
  float step, O(N^2) rather than O(N^2 d).
- Outputs `sum_j clamp(v_jl, -z_ij, z_ij)` (signed) or `min(v_jl, z_ij)` (unsigned) are int8 clamps summed in int32
  (AVX-512 VNNI: `vpdpbusd`), then scaled once by `eta * s_v`.

The scales are computed per call from the activations (dynamic quantisation), per (batch element, head), so a
sample's result never depends on the other samples in its batch. Accuracy and speed against float32:
docs/benchmarks.md.

Usage: `quantize_model_for_inference(model)` swaps every inhibitor attention module of a (loaded, eval-mode)
InhibiDistilBERT for `Int8InhibitorAttention`, which keeps the module's weights and runs the integer kernel; or call
`int8_inhibitor_attention` directly on `[B, H, N, d]` tensors.
"""

import torch
from torch import nn

INT8_MAX = 127


def symmetric_scale(*tensors: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One scale per (batch, head): the largest |x| over positions and dimensions of all tensors, divided by 127."""
    amax = None
    for tensor in tensors:
        values = tensor.detach().abs()
        if key_mask is not None and tensor.shape[2] == key_mask.shape[-1]:
            values = values * key_mask[:, None, :, None].to(values.dtype)
        peak = values.amax(dim=(-2, -1))
        amax = peak if amax is None else torch.maximum(amax, peak)
    return (amax.float() / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)


def quantize(tensor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Round `tensor / scale` (scale `[B, H]`) to int8 in [-127, 127]."""
    return torch.round(tensor.float() / scale[:, :, None, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)


def int8_inhibitor_attention(
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
    """Inhibitor attention with int8 Q, K, V (quantised here) and integer accumulation; returns float32 `[B, H, N, d]`.

    Same arguments as `fused_inhibitor_attention`; inference only (no gradient). CPU tensors.
    """
    if key_mask is not None:
        key_mask = key_mask.to(device=query.device, dtype=torch.bool).expand(query.shape[0], key.shape[2])
    qk_scale = symmetric_scale(query, key, key_mask=key_mask)
    v_scale = symmetric_scale(value, key_mask=key_mask)
    q8, k8, v8 = quantize(query, qk_scale), quantize(key, qk_scale), quantize(value, v_scale)
    params = tuple(p.detach().float() for p in (score_scale, shift, output_scale))
    return torch.ops.inhibidistilbert.inhibitor_int8_forward(
        q8, k8, v8, qk_scale, v_scale, *params, key_mask, signed, center
    )


def int8_isa() -> str:
    """The integer kernel's code path: "avx512vnni" or "generic"."""
    return torch.ops.inhibidistilbert.int8_isa()


class Int8InhibitorAttention(nn.Module):
    """Inference replacement of InhibiDistilBERT's `InhibitorAttention`: same weights, integer attention core.

    The projections (`q_lin`, `k_lin`, `v_lin`, `out_lin`) stay float32; only the attention between them runs in
    integers. Padding masks are supported; `output_attentions` and per-query masks are not.
    """

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.config = attention.config
        self.n_heads = attention.n_heads
        self.head_dim = attention.head_dim
        for name in ("q_lin", "k_lin", "v_lin", "out_lin", "dropout"):
            setattr(self, name, getattr(attention, name))
        for name in ("score_scale", "shift", "output_scale"):
            setattr(self, name, getattr(attention, name))

    def forward(
        self, hidden_states: torch.Tensor, allowed: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, None]:
        if output_attentions:
            raise ValueError("Int8InhibitorAttention returns no scores; load the float model for output_attentions.")
        key_mask = None
        if allowed is not None:
            if allowed.shape[1] != 1 or allowed.shape[2] != 1:
                raise ValueError("Int8InhibitorAttention supports key-padding masks only ([batch, N]).")
            key_mask = allowed[:, 0, 0, :]
        batch, seq_len, _ = hidden_states.shape
        shape = (batch, seq_len, self.n_heads, self.head_dim)
        query = self.q_lin(hidden_states).view(shape).transpose(1, 2)
        key = self.k_lin(hidden_states).view(shape).transpose(1, 2)
        value = self.v_lin(hidden_states).view(shape).transpose(1, 2)
        out = int8_inhibitor_attention(
            query,
            key,
            value,
            self.score_scale,
            self.shift,
            self.output_scale,
            key_mask,
            signed=self.config.inhibitor_signed,
            center=self.config.center_scores,
        ).to(hidden_states.dtype)
        out = out.transpose(1, 2).reshape(batch, seq_len, -1)
        return self.out_lin(out), None


def quantize_model_for_inference(model: nn.Module) -> nn.Module:
    """Swap every inhibitor attention module of `model` (in place) for `Int8InhibitorAttention`; returns `model`.

    Works on models built from this repository and on `trust_remote_code` copies (matched by class name). Call it on
    an eval-mode model; the swap is not meant for training.
    """
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child).__name__ == "InhibitorAttention"
    ]
    if not swaps:
        raise ValueError("quantize_model_for_inference found no InhibitorAttention module in this model.")
    for parent, name, child in swaps:
        setattr(parent, name, Int8InhibitorAttention(child))
    return model.eval()
