# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""The float64 reference of inhibitor attention, straight from the spec (docs/method.md).

It broadcasts a `[B, H, N, N, d]` tensor, so it is only for small checks: every fast path (the cdist form, the
compiled form, the fused and Triton kernels, the int8 path, the exported models) is held to it by the tests, and the
benchmarks report their error against it. Not shipped to the Hub.
"""

import math

import torch


def naive_inhibitor(q, k, v, gamma, delta, eta, key_mask=None, signed=True, center=True):
    """Inhibitor attention with the `[B, H, N, N, d]` broadcast; returns (`[B, H, N, d]` output, `Zbar`).

    `q`, `k`, `v`: `[B, H, N, d]`; `gamma`, `delta`, `eta`: `[H]`; `key_mask`: bool `[B, N]` (True = real key) or None.
    The output is the sum form `eta * sum_j [...]` over real keys (no `output_normalization`).
    """
    d = q.shape[-1]
    z = gamma[:, None, None] / math.sqrt(d) * (q[..., :, None, :] - k[..., None, :, :]).abs().sum(-1)
    m = (
        torch.ones(z.shape[0], 1, 1, z.shape[-1], dtype=z.dtype, device=z.device)
        if key_mask is None
        else key_mask[:, None, None, :].to(z.dtype)
    )
    if center:
        z = z - (z * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True)
    zbar = torch.relu(z - delta[:, None, None])
    vv, zz = v[..., None, :, :], zbar[..., None]  # [B, H, 1, N, d], [B, H, N, N, 1]
    terms = torch.relu(vv - zz) + (torch.clamp(vv + zz, max=0.0) if signed else 0.0)
    out = (terms * m[..., None]).sum(-2)  # m[..., None]: [B, 1, 1, N, 1] masks the key axis
    return eta[:, None, None] * out, zbar


def random_case(batch=2, heads=3, n=6, d=5, seed=0, pad=True, dtype=torch.float64):
    """Random `q, k, v, gamma, delta, eta, key_mask` (the first sequence padded by two keys when `pad`)."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, d, generator=gen, dtype=dtype) for _ in range(3))
    gamma = 0.5 + torch.rand(heads, generator=gen, dtype=dtype)
    delta = 0.3 * torch.randn(heads, generator=gen, dtype=dtype)
    eta = 0.5 + torch.rand(heads, generator=gen, dtype=dtype)
    key_mask = None
    if pad:
        key_mask = torch.ones(batch, n, dtype=torch.bool)
        key_mask[0, n - 2 :] = False
    return q, k, v, gamma, delta, eta, key_mask
