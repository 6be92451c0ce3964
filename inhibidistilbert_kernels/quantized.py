# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Inhibitor attention in integer arithmetic, for inference on CPU, and the one call that turns a model to int8.

The mechanism needs only subtractions, absolute values, additions and ReLU, so once Q, K and V are integers the two
O(N^2 d) passes are integer-only (see `Int8Head` in inhibitor_cpu.h). One C++ operator does everything per
(batch element, head), in parallel: the scales, the quantisation while packing, the integer passes:

- Q and K share one symmetric int8 scale per (batch element, head), so that `|q - k|` is meaningful; V has its own.
  The scales come from the call's own activations (dynamic quantisation) over the real keys, so a sample's result
  never depends on the other samples in its batch or on its padding.
- Distances `D_ij = sum_k |q_ik - k_jk|` are exact integers (`vpsadbw`: 32 or 64 byte-differences per instruction).
- The centred, shifted inhibition is re-expressed on V's integer grid, `z_ij = clamp(round(...), 0, 127)`: the only
  float step, O(N^2) rather than O(N^2 d).
- Outputs `sum_j clamp(v_jl, -z_ij, z_ij)` (signed) or `min(v_jl, z_ij)` (unsigned) are int8 clamps summed exactly
  in integers (AVX-512 VNNI `vpdpbusd`, or AVX2 `vpmaddubsw` into 16-bit sums), then scaled once by `eta * s_v`.
- Non-finite inputs give NaN wherever they reach in the float forms: a query row's outputs, the whole head for a
  key, the output column for a value (padded keys count, as in the float64 reference).

Usage: `quantize_model_for_inference(model)` sets `config.inhibitor_implementation = "int8"` (the model's own
dispatcher then calls `int8_inhibitor_attention`, with its masks and `output_normalization`) and quantises the
Linear layers dynamically (`torch.ao`); or call `int8_inhibitor_attention` directly on `[B, H, N, d]` tensors.
"""

import torch
from torch import nn

from .fused import require_library, unsupported_reason

_ops = torch.ops.inhibidistilbert


def int8_unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
    """Probe of the int8 path: None when it can run this call, else a one-line reason (it has no backward)."""
    if needs_grad:
        return "the int8 path is for inference (no gradient); train with 'fused', 'compiled' or 'cdist'"
    return unsupported_reason(query)


def int8_inhibitor_attention(*args, **kwargs) -> torch.Tensor:
    """Inhibitor attention with int8 Q, K, V and integer accumulation, inference only (no gradient).

    Arguments and result as `fused_inhibitor_attention` (the attention table's signature; CPU, float32 or float64 in,
    the same dtype out). The quantisation happens inside the operator.
    """
    require_library()
    return _ops.inhibitor_int8_forward(*args, **kwargs)


def int8_isa() -> str:
    """The integer kernels' code path: "avx512vnni", "avx2" or "generic"."""
    require_library()
    return _ops.int8_isa()


def quantize_model_for_inference(model: nn.Module, linear: bool = True) -> nn.Module:
    """Run `model` (an InhibiDistilBERT, in place) in integers for inference; returns it in eval mode.

    Sets `model.config.inhibitor_implementation = "int8"`: every attention layer then runs the integer kernel through
    the model's one dispatcher (masks, `output_normalization` and the dtype handled there as for every other
    implementation). With `linear=True` the `nn.Linear` layers are quantised dynamically as well
    (`quantize_linear_layers`).

    Saving: a dynamically quantised model is a deterministic function of the float weights, so keep (or save) the
    float model and call this after `from_pretrained`; for a single deployable file, export to ONNX.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "inhibitor_implementation"):
        raise ValueError(
            "quantize_model_for_inference needs an InhibiDistilBERT model (its config has inhibitor_implementation); "
            f"got {type(model).__name__}."
        )
    require_library()
    config.inhibitor_implementation = "int8"
    model.eval()
    if linear:
        quantize_linear_layers(model)
    return model


def quantize_linear_layers(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation (`torch.ao`, in place) of every `nn.Linear`: int8 weights per output channel, int8
    activations with a scale computed per call. The Linear half of `quantize_model_for_inference`, and what
    benchmarks/quantized.py applies to DistilBERT, so both models are quantised the same way. Per-channel weights:
    on an SST-2 student checkpoint, per-tensor ones cost 0.9 points of dev accuracy, per-channel ones none.
    """
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, inplace=True)
