# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Fast inhibitor attention that ships to the Hub with the model (the third remote-code file; torch only).

Two entries of the model file's attention table, each with a probe that says whether it can run a call:
- `compiled` (CPU): the broadcast form of docs/method.md compiled by `torch.compile` (Inductor's C++ backend) with a
  hand-written backward, compiled the same way. Compiled on first use, once per process and shape bucket (never at
  import); where Inductor cannot build (no C++ compiler) the probe says so once and the model runs the cdist form.
- `triton` (CUDA): the same computation as Triton kernels, tiled like flash attention (forward and backward); used
  where Triton is importable (PyTorch's CUDA wheels bring it). Without a GPU it runs in Triton's interpreter
  (`TRITON_INTERPRET=1`), which is how the tests check it on CPU.

Every function takes `[B, H, N, d]` query/key/value (keys may have their own length) in the compute dtype, per-head
`[H]` score_scale (gamma), shift (delta), output_scale (eta), a bool key mask `[B, N_k]` (True = real key) or None,
and the `signed` / `center` flags; it returns the un-normalised sum form `eta * sum_j [...]` `[B, H, N, d]`.
Probes: `compiled_unsupported(query, needs_grad)` and `triton_unsupported(query, needs_grad)` return None when the
function can run the call, else a one-line reason.
"""

import math
import os
import threading

import torch
from transformers.utils import logging

try:  # optional: PyTorch's CUDA wheels bring Triton; CPU-only installs have none (`triton_unsupported` says so)
    import triton
    import triton.language as tl

    TRITON_ERROR = None
except ImportError as error:
    triton = tl = None
    TRITON_ERROR = str(error)

logger = logging.get_logger(__name__)


# THE COMPILED FORM (CPU) #
#
# Per (batch, head): D_ij = sum_k |Q_ik - K_jk|, Z = gamma / sqrt(d) * D, centred over the real keys,
# Zbar = relu(Z - delta) (zero for padded keys), and with V zeroed at padded keys
#   signed:   H_il = eta * sum_j sign(V_jl) * relu(|V_jl| - Zbar_ij)   (= relu(V - Zbar) + min(0, V + Zbar), Zbar >= 0)
#   unsigned: H_il = eta * sum_j relu(V_jl - Zbar_ij).
# The soft-threshold form of the signed inhibition needs four operations per (i, j, l) instead of six. Two compiled
# functions (scores, then values) are faster than one: Inductor otherwise recomputes Zbar_ij for every block of l.
# The backward is written out (autograd of the broadcast form through Inductor is 25x slower than this).
# Memory: `[B, H, N, N]` scores (the distances are kept for the backward), never `[B, H, N, N, d]`.

COMPILED_MAX_KEYS = 4096  # longest sequence the compiled form takes (its largest shape bucket)
_compiled_lock = threading.Lock()
_compiled_functions: dict = {}
_compiled_failure: list = []  # the reason the compiler cannot run here, once found


def _scores(query, key, score_scale, shift, keep, n_real, center: bool, with_dist: bool):
    """Returns `Zbar` and (`with_dist`) the distances `D`, `[B, H, N, N_k]`; `keep`: float `[B, 1, 1, N_k]`."""
    dist = (query[..., :, None, :] - key[..., None, :, :]).abs().sum(-1)
    scores = dist * (score_scale / math.sqrt(query.shape[-1]))[:, None, None]
    if center:
        scores = scores - (scores * keep).sum(-1, keepdim=True) / n_real
    return torch.relu(scores - shift[:, None, None]) * keep, (dist if with_dist else None)


def _values(zbar, value, keep, signed: bool):
    """The inhibition sum `sum_j w_jl * relu(x_jl - Zbar_ij)` (without eta): `[B, H, N, d]`."""
    value = value * keep.transpose(-1, -2)  # padded keys: V_j = 0 (and Zbar_ij = 0), so their terms are zero
    x, w = (value.abs(), torch.sign(value)) if signed else (value, None)
    terms = torch.relu(x[..., None, :, :] - zbar[..., None])
    return (terms if w is None else w[..., None, :, :] * terms).sum(-2)


def _grad_zbar(grad, zbar, value, keep, output_scale, signed: bool):
    """d loss / d Zbar `[B, H, N, N_k]` from the upstream gradient `grad` `[B, H, N, d]`."""
    value = value * keep.transpose(-1, -2)
    x, w = (value.abs(), torch.sign(value)) if signed else (value, None)
    g = grad * output_scale[:, None, None]
    terms = torch.where(x[..., None, :, :] > zbar[..., None], g[..., :, None, :], 0.0)  # relu's gradient
    return -(terms if w is None else terms * w[..., None, :, :]).sum(-1)


def _grad_value(grad, zbar, value, keep, output_scale, signed: bool):
    """d loss / d V `[B, H, N_k, d]` (sign(V)^2 = 1 where the signed inhibition is active)."""
    value = value * keep.transpose(-1, -2)
    x = value.abs() if signed else value
    g = grad * output_scale[:, None, None]
    terms = torch.where(x[..., None, :, :] > zbar[..., None], g[..., :, None, :], 0.0)
    return terms.sum(-3) * keep.transpose(-1, -2)


def _grad_dist(grad_zbar, zbar, dist, score_scale, keep, n_real, inv_sqrt_d: float, center: bool):
    """d loss / d D `[B, H, N, N_k]` and the gradients of gamma and delta (Zbar > 0 where relu passes a real key)."""
    grad_u = grad_zbar * (zbar > 0).to(grad_zbar.dtype)
    grad_shift = -grad_u.sum((0, 2, 3))
    if center:
        grad_u = (grad_u - grad_u.sum(-1, keepdim=True) / n_real) * keep
    grad_score_scale = (grad_u * dist).sum((0, 2, 3)) * inv_sqrt_d
    return grad_u * (score_scale * inv_sqrt_d)[:, None, None], grad_score_scale, grad_shift


def _grad_query(grad_dist, query, key):
    """d loss / d Q: sum_j dD_ij * sign(Q_ik - K_jk)."""
    return (grad_dist[..., None] * torch.sign(query[..., :, None, :] - key[..., None, :, :])).sum(-2)


def _grad_key(grad_dist, query, key):
    """d loss / d K: -sum_i dD_ij * sign(Q_ik - K_jk)."""
    return (grad_dist[..., None] * torch.sign(key[..., None, :, :] - query[..., :, None, :])).sum(-3)


def _bucket(n: int) -> int:
    """Sequence lengths are padded up to a bucket (masked keys): at most 10 compilations per function up to 4096."""
    for size in (32, 64, 128, 192, 256, 384, 512, 1024, 2048, COMPILED_MAX_KEYS):
        if n <= size:
            return size
    raise ValueError(f"the compiled form takes at most {COMPILED_MAX_KEYS} keys, got {n}")


def _call(fn, *args):
    """`fn(*args)` compiled by Inductor: static shapes but the batch, one compiled copy per shape bucket and flags.

    Each copy has its own code object, hence its own Dynamo cache: the buckets, dtypes and flags a process meets
    never reach Dynamo's recompile limit (past which it would silently run the uncompiled broadcast).
    """
    tag = (fn.__name__,) + tuple((a.dtype, tuple(a.shape[1:])) if isinstance(a, torch.Tensor) else a for a in args)
    with _compiled_lock:
        if tag not in _compiled_functions:
            code = fn.__code__.replace(co_name=f"{fn.__name__}_{len(_compiled_functions)}")
            copy = type(fn)(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
            _compiled_functions[tag] = torch.compile(copy, dynamic=False)
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.dim() == 4:
            torch._dynamo.maybe_mark_dynamic(arg, 0)  # the batch size does not slow the kernels down; N does
    return _compiled_functions[tag](*args)


class _CompiledInhibitorAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, score_scale, shift, output_scale, keep, n_real, signed, center):
        zbar, dist = _call(_scores, query, key, score_scale, shift, keep, n_real, center, True)
        raw = _call(_values, zbar, value, keep, signed)
        ctx.save_for_backward(query, key, value, score_scale, output_scale, keep, n_real, zbar, dist, raw)
        ctx.flags = (signed, center)
        return raw * output_scale[:, None, None]

    @staticmethod
    def backward(ctx, grad):
        query, key, value, score_scale, output_scale, keep, n_real, zbar, dist, raw = ctx.saved_tensors
        signed, center = ctx.flags
        grad = grad.contiguous()
        grad_zbar = _call(_grad_zbar, grad, zbar, value, keep, output_scale, signed)
        grad_value = _call(_grad_value, grad, zbar, value, keep, output_scale, signed)
        inv_sqrt_d = 1.0 / math.sqrt(query.shape[-1])
        grad_dist, grad_scale, grad_shift = _call(
            _grad_dist, grad_zbar, zbar, dist, score_scale, keep, n_real, inv_sqrt_d, center
        )
        grad_query = _call(_grad_query, grad_dist, query, key)
        grad_key = _call(_grad_key, grad_dist, query, key)
        grad_output_scale = (grad * raw).sum((0, 2, 3))
        return grad_query, grad_key, grad_value, grad_scale, grad_shift, grad_output_scale, None, None, None, None


def _compiler_works() -> str | None:
    """None when Inductor can build a CPU kernel here (tried once per process), else why not."""
    with _compiled_lock:
        if not _compiled_failure:
            try:
                probe = torch.compile(lambda x: (x[:, None, :] - x[None, :, :]).abs().sum(-1), dynamic=False)
                probe(torch.ones(4, 8))
                _compiled_failure.append(None)
            except Exception as error:  # noqa: BLE001 - any failure to build means: use the cdist form
                reason = f"torch.compile cannot build a CPU kernel here ({type(error).__name__}: {error})".split("\n")
                _compiled_failure.append(reason[0][:300])
                logger.debug("inhibitor attention: the compiled form is unavailable: %s", _compiled_failure[0])
        return _compiled_failure[0]


def compiled_unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
    """None when `compiled_inhibitor_attention` can run this call, else a one-line reason (cheap after the first)."""
    if query.device.type != "cpu":
        return (
            f"the compiled form runs on CPU tensors (the query is on {query.device.type}; CUDA has the Triton kernel)"
        )
    if query.dtype not in (torch.float32, torch.float64):
        return f"the compiled form computes in float32 or float64, not {query.dtype}"
    if query.shape[-2] > COMPILED_MAX_KEYS:
        return f"the compiled form takes at most {COMPILED_MAX_KEYS} positions, the call has {query.shape[-2]}"
    if os.environ.get("INHIBIDISTILBERT_COMPILE", "1") == "0":
        return "disabled by INHIBIDISTILBERT_COMPILE=0"
    if torch.compiler.is_compiling():
        return None  # traced into the caller's graph; nothing is compiled separately
    return _compiler_works()


def _pad_keys(t: torch.Tensor, size: int) -> torch.Tensor:
    return t if t.shape[-2] == size else torch.nn.functional.pad(t, (0, 0, 0, size - t.shape[-2]))


def compiled_inhibitor_attention(
    query, key, value, score_scale, shift, output_scale, key_mask=None, signed=True, center=True
) -> torch.Tensor:
    """Inhibitor attention compiled by Inductor (CPU, float32/float64); the sum form `eta * sum_j [...]`.

    Arguments: the attention table's signature (shapes and types: `inhibitor_attention_cdist` in the model file).

    Queries and keys are padded up to a shape bucket (padded keys masked, padded queries dropped), so a process
    compiles at most one graph per bucket, dtype and flag combination. Under an outer `torch.compile` or export the
    broadcast form is traced as it is. NaN and inf propagate as in the cdist form: a padded key multiplies by zero.
    """
    batch, _, n_query, _ = query.shape
    n_key = key.shape[-2]
    mask = torch.ones(batch, n_key, dtype=torch.bool, device=query.device) if key_mask is None else key_mask
    if torch.compiler.is_compiling():
        keep = mask[:, None, None, :].to(query.dtype)
        n_real = keep.sum(-1, keepdim=True).clamp(min=1)
        zbar, _ = _scores(query, key, score_scale, shift, keep, n_real, center, False)
        return _values(zbar, value, keep, signed) * output_scale[:, None, None]
    nq, nk = _bucket(n_query), _bucket(n_key)
    keep = _pad_keys(mask.to(query.dtype)[:, :, None], nk).reshape(batch, 1, 1, nk).contiguous()
    n_real = keep.sum(-1, keepdim=True).clamp(min=1)
    query = _pad_keys(query, nq).contiguous()
    key, value = (_pad_keys(t, nk).contiguous() for t in (key, value))
    params = tuple(p.to(query.dtype).contiguous() for p in (score_scale, shift, output_scale))
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value, *params)):
        out = _CompiledInhibitorAttention.apply(query, key, value, *params, keep, n_real, signed, center)
    else:  # inference: no distances kept, no autograd node
        zbar, _ = _call(_scores, query, key, params[0], params[1], keep, n_real, center, False)
        out = _call(_values, zbar, value, keep, signed) * params[2][:, None, None]
    return out[..., :n_query, :]


# THE TRITON KERNEL (CUDA) #
#
# Per program: a block of BLOCK_M query rows (forward, dQ) or BLOCK_N keys (dK, dV) of one (batch, head); the other
# side streams through in blocks. Nothing of size N^2 is written to memory: the forward keeps the row means of the
# scores (`[B, H, N]`, float32) for the backward, which recomputes the distances block by block; the dQ kernel also
# keeps the row means of d(Zbar) for the dK/dV kernel (the centring's backward), again `[B, H, N]`.
# Inputs may be float32, float16 or bfloat16; every distance, inhibition and gradient accumulates in float32, and
# the outputs and input gradients are stored in the input dtype. There is no tensor-core instruction for an L1
# distance or a ReLU inhibition, so these loops run on the CUDA cores, unlike the two matrix products of softmax
# attention: expect a larger gap to SDPA on a GPU than on a CPU.

if triton is not None:

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


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_unsupported(query: torch.Tensor, needs_grad: bool) -> str | None:
    """None when `triton_inhibitor_attention` can run this call, else a one-line reason."""
    if triton is None:
        return f"triton is not installed ({TRITON_ERROR}); PyTorch's CUDA wheels bring it"
    if query.device.type != "cuda" and not (query.device.type == "cpu" and _triton_interpreted()):
        return f"the Triton kernel runs on CUDA tensors (the query is on {query.device.type})"
    if query.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"the Triton kernel takes float32, float16 or bfloat16, not {query.dtype}"
    if query.shape[-1] > 256:
        return f"the Triton kernel takes head dimensions up to 256, not {query.shape[-1]}"
    if query.device.type == "cuda" and torch.cuda.get_device_capability(query.device) < (7, 0):
        return "the Triton kernel needs a GPU of compute capability 7.0 or newer"
    return None


def triton_inhibitor_attention(
    query, key, value, score_scale, shift, output_scale, key_mask=None, signed=True, center=True
) -> torch.Tensor:
    """Inhibitor attention with the Triton kernels (CUDA; CPU tensors under `TRITON_INTERPRET=1`).

    Arguments: the attention table's signature (shapes and types: `inhibitor_attention_cdist` in the model file).

    `query`, `key`, `value`: `[B, H, N, d]` in float32, float16 or bfloat16; float32 accumulation everywhere; the
    output has the input dtype.
    """
    reason = triton_unsupported(query, True)
    if reason is not None:
        raise RuntimeError(f"triton_inhibitor_attention cannot run this call: {reason}")
    query, key, value = (_unit_inner(t) for t in (query, key, value))
    if key_mask is not None:
        key_mask = key_mask.to(device=query.device, dtype=torch.bool)
    return TritonInhibitorAttention.apply(query, key, value, score_scale, shift, output_scale, key_mask, signed, center)
