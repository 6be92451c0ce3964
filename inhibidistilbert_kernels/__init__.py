# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Fast inhibitor attention kernels for InhibiDistilBERT (optional; the model runs without them).

- CPU: a fused C++ kernel (forward and backward), compiled on first import with the installed torch and cached
  (see `_build.py`; about 10 s once per machine). It never materialises `[N, N, d]` and keeps O(N * d) per head.
- CUDA: a Triton kernel, tiled like flash attention (`triton_inhibitor.py`), used when `triton` is installed.
- Inference in integers: `inhibidistilbert_kernels.quantized` (int8 Q/K/V with per-head scales).

Importing this package raises `ImportError` when no kernel can run here (no C++ toolchain and no CUDA GPU with
Triton, or `INHIBIDISTILBERT_KERNELS=0`); the model's guarded import then falls back to the cdist form.
`fused_inhibitor_attention` runs on the devices in `SUPPORTED_DEVICES`.
"""

import importlib.util

import torch

from ._build import disabled, load_library

__all__ = ["BUILD_INFO", "CPU_KERNEL_ERROR", "SUPPORTED_DEVICES", "cpu_isa", "fused_inhibitor_attention", "set_cpu_isa"]

if disabled():
    raise ImportError(
        "inhibidistilbert_kernels is disabled by INHIBIDISTILBERT_KERNELS=0; the model runs the cdist form"
    )

CPU_KERNEL_ERROR: str | None = None
BUILD_INFO: dict | None = None
try:
    BUILD_INFO = load_library()
except Exception as err:  # no compiler, no ninja, unsupported platform, failed load: fall back, never crash
    CPU_KERNEL_ERROR = f"{type(err).__name__}: {err}".strip()

_triton_gpu = torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
SUPPORTED_DEVICES = frozenset(({"cpu"} if CPU_KERNEL_ERROR is None else set()) | ({"cuda"} if _triton_gpu else set()))

if not SUPPORTED_DEVICES:
    raise ImportError(
        "inhibidistilbert_kernels: the CPU kernel could not be built or loaded "
        f"({CPU_KERNEL_ERROR[:2000]}) and there is no CUDA GPU with Triton; InhibiDistilBERT falls back to the cdist "
        "form. The kernel needs a C++ compiler (g++ or clang++) and ninja (`pip install ninja`); run with "
        "INHIBIDISTILBERT_KERNELS_VERBOSE=1 to see the build log."
    )

from .fused import fused_inhibitor_attention  # noqa: E402  (needs the operators loaded above)


def cpu_isa() -> str:
    """The instruction set the CPU kernel runs: "avx512", "avx2" or "generic" (chosen from CPUID at load)."""
    return torch.ops.inhibidistilbert.cpu_isa() if CPU_KERNEL_ERROR is None else "unavailable"


def set_cpu_isa(name: str) -> None:
    """Force "avx512", "avx2" or "generic" (or back to "auto"), e.g. to test or time every code path."""
    if CPU_KERNEL_ERROR is not None or not torch.ops.inhibidistilbert.set_cpu_isa(name):
        raise ValueError(f"instruction set {name!r} is not available on this CPU (the best one is used by default)")
