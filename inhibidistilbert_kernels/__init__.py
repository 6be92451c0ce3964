# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""CPU C++ kernels for InhibiDistilBERT (optional; the model runs without them).

Two entries of the model's attention table (signature and probes: the interface in the model file):
- `fused`: a fused C++ kernel, forward and backward, that never materialises `[N, N, d]` (O(N * d) per head).
- `int8`: inference with int8 Q, K, V and integer accumulation (`quantize_model_for_inference` turns a model to it).

Importing this package is cheap and never compiles: the C++ library is built (once per machine, cached, see
`_build.py`) on the first probe or call that needs it. A probe returns the reason when a kernel cannot run (no
compiler, not a CPU tensor, `INHIBIDISTILBERT_KERNELS=0`), and the model then runs its own PyTorch forms.
"""

import torch

from ._build import build_info, library_error
from .fused import fused_inhibitor_attention, fused_unsupported
from .quantized import (
    int8_inhibitor_attention,
    int8_isa,
    int8_unsupported,
    quantize_linear_layers,
    quantize_model_for_inference,
)

__all__ = [
    "build_info",
    "cpu_isa",
    "fused_inhibitor_attention",
    "fused_unsupported",
    "int8_inhibitor_attention",
    "int8_isa",
    "int8_unsupported",
    "library_error",
    "quantize_linear_layers",
    "quantize_model_for_inference",
    "set_cpu_isa",
]


def cpu_isa() -> str:
    """The instruction set the float kernel runs: "avx512", "avx2" or "generic" (chosen from CPUID at load)."""
    return "unavailable" if library_error() else torch.ops.inhibidistilbert.cpu_isa()


def set_cpu_isa(name: str) -> None:
    """Force "avx512", "avx2" or "generic" (or back to "auto"), e.g. to test or time every code path."""
    if library_error() or not torch.ops.inhibidistilbert.set_cpu_isa(name):
        raise ValueError(f"instruction set {name!r} is not available on this CPU (the best one is used by default)")
