# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Inhibitor attention in Triton, tiled like flash attention (forward and backward, CUDA; optional dependency).

Per program: a block of BLOCK_M query rows (forward, dQ) or BLOCK_N keys (dK, dV) of one (batch, head); the other
side streams through in blocks. Nothing of size N^2 is written to memory: the forward keeps the row means of the
scores (`[B, H, N]`, float32) for the backward, which recomputes the distances block by block; the dQ kernel also
keeps the row means of d(Zbar) for the dK/dV kernel (the centring's backward), again `[B, H, N]`.

Inputs may be float32, float16 or bfloat16; every distance, inhibition and gradient accumulates in float32, and the
outputs and input gradients are stored in the input dtype.

There is no tensor-core instruction for an L1 distance or a ReLU inhibition, so these loops run on the CUDA cores,
unlike the two matrix products of softmax attention: expect a larger gap to SDPA on a GPU than on a CPU.

Without a GPU the kernels run in Triton's interpreter (`TRITON_INTERPRET=1`, set before importing triton), which is
how `tests/test_triton_kernel.py` checks them on CPU tensors.
"""

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _distances(q_base, stride_qn, k_base, stride_kn, offs_m, offs_n, NQ, NK,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """D[m, n] = sum_k |Q[m, k] - K[n, k]| in float32, over chunks of BLOCK_K dimensions."""
    dist = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.static_range(0, BLOCK_D, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_k[None, :],
                    mask=(offs_m[:, None] < NQ) & (offs_k[None, :] < HEAD_DIM), other=0.0).to(tl.float32)  # fmt: skip
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_k[None, :],
                    mask=(offs_n[:, None] < NK) & (offs_k[None, :] < HEAD_DIM), other=0.0).to(tl.float32)  # fmt: skip
        dist += tl.sum(tl.abs(q[:, None, :] - k[None, :, :]), axis=2)
    return dist


@triton.jit
def _key_keep(mask_base, offs_n, NK, HAS_MASK: tl.constexpr):
    keep = offs_n < NK
    if HAS_MASK:
        keep = keep & (tl.load(mask_base + offs_n, mask=offs_n < NK, other=0) != 0)
    return keep


@triton.jit
def _inhibitor_fwd(Q, K, V, Out, RowMean, Gamma, Delta, Eta, KeyMask, NReal,
                   stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on, stride_mb,
                   H, NQ, NK, inv_sqrt_d,
                   HAS_MASK: tl.constexpr, SIGNED: tl.constexpr, CENTER: tl.constexpr,
                   HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    c = tl.load(Gamma + h).to(tl.float32) * inv_sqrt_d
    delta = tl.load(Delta + h).to(tl.float32)
    eta = tl.load(Eta + h).to(tl.float32)
    n_real = tl.maximum(tl.load(NReal + b).to(tl.float32), 1.0)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_base = KeyMask + b * stride_mb
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)

    # Pass 1: row means of the scores over the real keys (centring).
    mean = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if CENTER:
        for start_n in range(0, NK, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            dist = _distances(q_base, stride_qn, k_base, stride_kn, offs_m, offs_n, NQ, NK,
                              HEAD_DIM, BLOCK_D, BLOCK_K, BLOCK_M, BLOCK_N)  # fmt: skip
            keep = _key_keep(m_base, offs_n, NK, HAS_MASK)
            mean += tl.sum(tl.where(keep[None, :], dist, 0.0), axis=1)
        mean = c * mean / n_real
    tl.store(RowMean + pid_bh * NQ + offs_m, mean, mask=offs_m < NQ)

    # Pass 2: H_il = eta * sum_j sign(V_jl) relu(|V_jl| - Zbar_ij) (unsigned: relu(V_jl - Zbar_ij)).
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for start_n in range(0, NK, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        dist = _distances(q_base, stride_qn, k_base, stride_kn, offs_m, offs_n, NQ, NK,
                          HEAD_DIM, BLOCK_D, BLOCK_K, BLOCK_M, BLOCK_N)  # fmt: skip
        keep = _key_keep(m_base, offs_n, NK, HAS_MASK)
        zbar = tl.maximum(c * dist - mean[:, None] - delta, 0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=keep[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0).to(tl.float32)  # fmt: skip
        if SIGNED:
            t = tl.maximum(tl.abs(v)[None, :, :] - zbar[:, :, None], 0.0)
            t = tl.where(v[None, :, :] < 0.0, -t, t)
        else:
            t = tl.maximum(v[None, :, :] - zbar[:, :, None], 0.0)
        acc += tl.sum(tl.where(keep[None, :, None], t, 0.0), axis=1)
    o_base = Out + b * stride_ob + h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_on + offs_d[None, :], (eta * acc).to(Out.dtype.element_ty),
             mask=(offs_m[:, None] < NQ) & (offs_d[None, :] < HEAD_DIM))  # fmt: skip


@triton.jit
def _du_tile(dist, g, v, keep, mean, c, delta, eta, SIGNED: tl.constexpr):
    """d loss / d(pre-ReLU score) for a [BLOCK_M, BLOCK_N] tile, and the [M, N, D] mask-weighted output grads."""
    zbar = tl.maximum(c * dist - mean[:, None] - delta, 0.0)
    if SIGNED:
        active = tl.abs(v)[None, :, :] > zbar[:, :, None]
        gm = tl.where(active & keep[None, :, None], g[:, None, :], 0.0)
        dz = tl.sum(tl.where(v[None, :, :] < 0.0, -gm, gm), axis=2)
    else:
        active = v[None, :, :] > zbar[:, :, None]
        gm = tl.where(active & keep[None, :, None], g[:, None, :], 0.0)
        dz = tl.sum(gm, axis=2)
    du = tl.where((zbar > 0.0) & keep[None, :], -eta * dz, 0.0)
    return du, gm


@triton.jit
def _inhibitor_bwd_dq(Q, K, V, G, RowMean, Gamma, Delta, Eta, KeyMask, NReal, DQ, RowMeanDu, Partials,
                      stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                      stride_vb, stride_vh, stride_vn, stride_gb, stride_gh, stride_gn,
                      stride_dqb, stride_dqh, stride_dqn, stride_mb,
                      H, NQ, NK, inv_sqrt_d, num_m_blocks,
                      HAS_MASK: tl.constexpr, SIGNED: tl.constexpr, CENTER: tl.constexpr,
                      HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    c = tl.load(Gamma + h).to(tl.float32) * inv_sqrt_d
    delta = tl.load(Delta + h).to(tl.float32)
    eta = tl.load(Eta + h).to(tl.float32)
    n_real = tl.maximum(tl.load(NReal + b).to(tl.float32), 1.0)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_base = KeyMask + b * stride_mb
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < NQ
    d_ok = offs_d < HEAD_DIM
    mean = tl.load(RowMean + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
    g = tl.load(G + b * stride_gb + h * stride_gh + offs_m[:, None] * stride_gn + offs_d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
    q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip

    # Pass 1: row sums of du (centring), sum du * D and sum D (d gamma).
    sum_du = tl.zeros((BLOCK_M,), dtype=tl.float32)
    sum_du_dist = tl.zeros((BLOCK_M,), dtype=tl.float32)
    sum_dist = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for start_n in range(0, NK, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        keep = _key_keep(m_base, offs_n, NK, HAS_MASK)
        dist = _distances(q_base, stride_qn, k_base, stride_kn, offs_m, offs_n, NQ, NK,
                          HEAD_DIM, BLOCK_D, BLOCK_K, BLOCK_M, BLOCK_N)  # fmt: skip
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=keep[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        du, gm = _du_tile(dist, g, v, keep, mean, c, delta, eta, SIGNED)
        sum_du += tl.sum(du, axis=1)
        sum_du_dist += tl.sum(du * dist, axis=1)
        sum_dist += tl.sum(tl.where(keep[None, :], dist, 0.0), axis=1)
    mean_du = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if CENTER:
        mean_du = tl.where(row_ok, sum_du / n_real, 0.0)
    tl.store(RowMeanDu + pid_bh * NQ + offs_m, mean_du, mask=row_ok)
    # d gamma = sum dZ * D / sqrt(d) with dZ = du - mean du; d delta = -sum du. One partial per program.
    part = pid_bh * num_m_blocks + pid_m
    tl.store(Partials + 2 * part, tl.sum(sum_du_dist - mean_du * sum_dist, axis=0) * inv_sqrt_d)
    tl.store(Partials + 2 * part + 1, -tl.sum(sum_du, axis=0))

    # Pass 2: dQ_i = sum_j c * dZ_ij * sign(Q_i - K_j).
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for start_n in range(0, NK, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        keep = _key_keep(m_base, offs_n, NK, HAS_MASK)
        dist = _distances(q_base, stride_qn, k_base, stride_kn, offs_m, offs_n, NQ, NK,
                          HEAD_DIM, BLOCK_D, BLOCK_K, BLOCK_M, BLOCK_N)  # fmt: skip
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=keep[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :],
                    mask=keep[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        du, gm = _du_tile(dist, g, v, keep, mean, c, delta, eta, SIGNED)
        w = c * tl.where(keep[None, :] & row_ok[:, None], du - mean_du[:, None], 0.0)
        diff = q[:, None, :] - k[None, :, :]
        w3 = w[:, :, None]
        dq += tl.sum(tl.where(diff > 0.0, w3, tl.where(diff < 0.0, -w3, 0.0)), axis=1)
    tl.store(DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqn + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])  # fmt: skip


@triton.jit
def _inhibitor_bwd_dkdv(Q, K, V, G, RowMean, RowMeanDu, Gamma, Delta, Eta, KeyMask, DK, DV,
                        stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                        stride_vb, stride_vh, stride_vn, stride_gb, stride_gh, stride_gn,
                        stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn, stride_mb,
                        H, NQ, NK, inv_sqrt_d,
                        HAS_MASK: tl.constexpr, SIGNED: tl.constexpr,
                        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    c = tl.load(Gamma + h).to(tl.float32) * inv_sqrt_d
    delta = tl.load(Delta + h).to(tl.float32)
    eta = tl.load(Eta + h).to(tl.float32)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    g_base = G + b * stride_gb + h * stride_gh
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    keep = _key_keep(KeyMask + b * stride_mb, offs_n, NK, HAS_MASK)
    k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :],
                mask=keep[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
    v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                mask=keep[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for start_m in range(0, NQ, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < NQ
        mean = tl.load(RowMean + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
        mean_du = tl.load(RowMeanDu + pid_bh * NQ + offs_m, mask=row_ok, other=0.0)
        g = tl.load(g_base + offs_m[:, None] * stride_gn + offs_d[None, :],
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_d[None, :],
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        dist = _distances(q_base, stride_qn, k_base, stride_kn, offs_m, offs_n, NQ, NK,
                          HEAD_DIM, BLOCK_D, BLOCK_K, BLOCK_M, BLOCK_N)  # fmt: skip
        du, gm = _du_tile(dist, g, v, keep, mean, c, delta, eta, SIGNED)
        dv += tl.sum(gm, axis=0)
        w = c * tl.where(keep[None, :] & row_ok[:, None], du - mean_du[:, None], 0.0)
        diff = q[:, None, :] - k[None, :, :]
        w3 = w[:, :, None]
        dk -= tl.sum(tl.where(diff > 0.0, w3, tl.where(diff < 0.0, -w3, 0.0)), axis=0)
    out_mask = keep[:, None] & d_ok[None, :]
    tl.store(DK + b * stride_dkb + h * stride_dkh + offs_n[:, None] * stride_dkn + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=(offs_n[:, None] < NK) & d_ok[None, :])  # fmt: skip
    tl.store(DV + b * stride_dvb + h * stride_dvh + offs_n[:, None] * stride_dvn + offs_d[None, :],
             tl.where(out_mask, eta * dv, 0.0).to(DV.dtype.element_ty), mask=(offs_n[:, None] < NK) & d_ok[None, :])  # fmt: skip


def _unit_inner(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class _Config:
    """Block sizes. The [BLOCK_M, BLOCK_N, BLOCK_D] inhibition tile lives in registers, hence the small BLOCK_N."""

    block_m = 32
    block_n = 16
    block_k = 16
    num_warps = 8


def _launch_args(query, key_mask):
    batch, heads, nq, d = query.shape
    block_d = max(16, triton.next_power_of_2(d))
    return batch, heads, nq, d, block_d, min(_Config.block_k, block_d)


def _mask_args(key_mask, batch, nk, device):
    if key_mask is None:
        n_real = torch.full((batch,), nk, dtype=torch.int32, device=device)
        return torch.ones(1, dtype=torch.int8, device=device), 0, n_real, False
    mask = key_mask.to(device=device, dtype=torch.int8).expand(batch, nk).contiguous()
    return mask, mask.stride(0), mask.sum(-1, dtype=torch.int32), True


def _forward(query, key, value, score_scale, shift, output_scale, key_mask, signed, center):
    batch, heads, nq, d, block_d, block_k = _launch_args(query, key_mask)
    nk = key.shape[2]
    mask, stride_mb, n_real, has_mask = _mask_args(key_mask, batch, nk, query.device)
    out = torch.empty_like(query)
    row_mean = torch.empty(batch, heads, nq, dtype=torch.float32, device=query.device)
    grid = (triton.cdiv(nq, _Config.block_m), batch * heads)
    _inhibitor_fwd[grid](
        query, key, value, out, row_mean, score_scale, shift, output_scale, mask, n_real,
        *query.stride()[:3], *key.stride()[:3], *value.stride()[:3], *out.stride()[:3], stride_mb,
        heads, nq, nk, 1.0 / math.sqrt(d),
        HAS_MASK=has_mask, SIGNED=signed, CENTER=center, HEAD_DIM=d, BLOCK_D=block_d, BLOCK_K=block_k,
        BLOCK_M=_Config.block_m, BLOCK_N=_Config.block_n, num_warps=_Config.num_warps,
    )  # fmt: skip
    return out, row_mean


class TritonInhibitorAttention(torch.autograd.Function):
    """Autograd wrapper of the Triton forward and the two backward kernels (dQ; dK and dV)."""

    @staticmethod
    def forward(ctx, query, key, value, score_scale, shift, output_scale, key_mask, signed, center):
        params = tuple(p.detach().float().contiguous() for p in (score_scale, shift, output_scale))
        out, row_mean = _forward(query, key, value, *params, key_mask, signed, center)
        ctx.save_for_backward(query, key, value, out, row_mean, *params, key_mask)
        ctx.flags = (signed, center)
        ctx.param_dtypes = tuple(p.dtype for p in (score_scale, shift, output_scale))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, row_mean, gamma, delta, eta, key_mask = ctx.saved_tensors
        signed, center = ctx.flags
        grad_out = _unit_inner(grad_out)
        batch, heads, nq, d, block_d, block_k = _launch_args(query, key_mask)
        nk = key.shape[2]
        mask, stride_mb, n_real, has_mask = _mask_args(key_mask, batch, nk, query.device)
        dq, dk, dv = torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)
        row_mean_du = torch.empty_like(row_mean)
        m_blocks = triton.cdiv(nq, _Config.block_m)
        partials = torch.zeros(batch * heads * m_blocks * 2, dtype=torch.float32, device=query.device)
        common = dict(
            HAS_MASK=has_mask, SIGNED=signed, HEAD_DIM=d, BLOCK_D=block_d, BLOCK_K=block_k,
            BLOCK_M=_Config.block_m, BLOCK_N=_Config.block_n, num_warps=_Config.num_warps,
        )  # fmt: skip
        _inhibitor_bwd_dq[(m_blocks, batch * heads)](
            query, key, value, grad_out, row_mean, gamma, delta, eta, mask, n_real, dq, row_mean_du, partials,
            *query.stride()[:3], *key.stride()[:3], *value.stride()[:3], *grad_out.stride()[:3],
            *dq.stride()[:3], stride_mb, heads, nq, nk, 1.0 / math.sqrt(d), m_blocks, CENTER=center, **common,
        )  # fmt: skip
        _inhibitor_bwd_dkdv[(triton.cdiv(nk, _Config.block_n), batch * heads)](
            query, key, value, grad_out, row_mean, row_mean_du, gamma, delta, eta, mask, dk, dv,
            *query.stride()[:3], *key.stride()[:3], *value.stride()[:3], *grad_out.stride()[:3],
            *dk.stride()[:3], *dv.stride()[:3], stride_mb, heads, nq, nk, 1.0 / math.sqrt(d), **common,
        )  # fmt: skip
        sums = partials.view(batch, heads, m_blocks, 2).sum(dim=(0, 2))
        # d eta = sum G * out / eta; a head with eta == 0 has a zero output, so its raw sums are recomputed.
        g_out = (grad_out.float() * out.float()).sum(dim=(0, 2, 3))
        deta = g_out / torch.where(eta == 0, torch.ones_like(eta), eta)
        if bool((eta == 0).any()):
            raw, _ = _forward(query, key, value, gamma, delta, torch.ones_like(eta), key_mask, signed, center)
            deta = torch.where(eta == 0, (grad_out.float() * raw.float()).sum(dim=(0, 2, 3)), deta)
        dgamma, ddelta = sums[:, 0], sums[:, 1]
        grads = (dgamma, ddelta, deta)
        return dq, dk, dv, *(g.to(dt) for g, dt in zip(grads, ctx.param_dtypes)), None, None, None


def triton_inhibitor_attention(
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
    """Inhibitor attention with the Triton kernels; same contract as `fused_inhibitor_attention`.

    `query`, `key`, `value`: `[B, H, N, d]` CUDA tensors in float32, float16 or bfloat16 (or CPU tensors under
    `TRITON_INTERPRET=1`); float32 accumulation everywhere.
    """
    query, key, value = (_unit_inner(t) for t in (query, key, value))
    if key_mask is not None:
        key_mask = key_mask.to(device=query.device, dtype=torch.bool)
    return TritonInhibitorAttention.apply(query, key, value, score_scale, shift, output_scale, key_mask, signed, center)
