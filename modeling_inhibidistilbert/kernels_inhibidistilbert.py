# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Fast inhibitor attention that ships to the Hub with the model (the third remote-code file; torch only).

SCAFFOLD (being written): the compiled CPU form and the Triton CUDA kernel. Until then both say they are unavailable,
so `auto` keeps the cdist form.

Interface used by `modeling_inhibidistilbert.py` (every function takes `[B, H, N, d]` query/key/value in the compute
dtype, per-head `[H]` score_scale (gamma), shift (delta), output_scale (eta), a bool key mask `[B, N]` (True = real
key) or None, and the `signed` / `center` flags; it returns the un-normalised sum form `[B, H, N, d]`):
- `compiled_unsupported(query, needs_grad) -> str | None`: None when `compiled_inhibitor_attention` can run the call.
- `compiled_inhibitor_attention(query, key, value, score_scale, shift, output_scale, key_mask, signed, center)`.
- `triton_unsupported(query, needs_grad) -> str | None` and `triton_inhibitor_attention(...)`, the same for CUDA.
"""

import torch


def compiled_unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
    return "the compiled form is not written yet"


def compiled_inhibitor_attention(query, key, value, score_scale, shift, output_scale, key_mask, signed, center):
    raise NotImplementedError("the compiled form is not written yet")


def triton_unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
    return "the Triton kernel is not in this file yet"


def triton_inhibitor_attention(query, key, value, score_scale, shift, output_scale, key_mask, signed, center):
    raise NotImplementedError("the Triton kernel is not in this file yet")
