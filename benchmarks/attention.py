#!/usr/bin/env python
# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Inhibitor attention against SDPA: every implementation, forward and forward+backward, time and peak memory.

Implementations (per batch element and head, Q, K, V `[N, d]`; docs/method.md):

- `sdpa`: `torch.nn.functional.scaled_dot_product_attention`, the baseline every ratio refers to.
- `naive`: the float64 reference (`modeling_inhibidistilbert/reference.py: naive_inhibitor`, the `[B, H, N, N, d]`
  broadcast), timed in float32 and only where one `[B, H, N, N, d]` float32 tensor fits `--naive_max_gb`.
- `cdist`: the pure-PyTorch memory-lean form (`inhibitor_attention_cdist`).
- `fused`: the fused C++ CPU kernel (`inhibidistilbert_kernels.fused_inhibitor_attention`), forward and backward.
- `compiled`: the third Hub file's Inductor-compiled form (`kernels_inhibidistilbert.compiled_inhibitor_attention`,
  CPU; what a Hub user without the package runs where a C++ compiler exists).
- `triton`: the third Hub file's Triton kernel (`--device cuda` with Triton installed; skipped otherwise, and said so).
- `int8`: the integer inference path (`inhibidistilbert_kernels.quantized.int8_inhibitor_attention`), forward only;
  its relative L2 error against the float32 fused kernel is reported as well.

Before anything is timed at a size, every implementation is checked on that size's own inputs against the float64
reference: the outputs of batch elements 0 and B-1 at `--check_rows` sampled queries (all keys, all heads) against
`naive_inhibitor` (or float64 softmax attention for SDPA) and, for forward+backward, the gradients with respect to
Q, K, V and the per-head scalars of batch element 0 (upstream gradient at the sampled rows). An implementation
that fails the check is not timed.

Timing: `torch.utils.benchmark.Timer.adaptive_autorange` (benchmarks/common.py: warm-up, block sizing, CUDA
synchronisation, the median of the blocks; `--min_run_time` seconds at least per measurement). A measurement whose
interquartile range exceeds 10% of its median says so in its row. An implementation whose predicted call time (its
largest measured smaller size scaled by B * N^2; whole models: by B * N) exceeds `--max_call_seconds`
(`--max_model_call_seconds`) is skipped at that size, and the table says so. Every table names the CPU model, its
vector extensions and the thread count.

Peak memory: the extra memory a call allocates above its inputs (output, workspaces, saved tensors and gradients for
forward+backward). CUDA: `torch.cuda.max_memory_allocated` minus the allocation before the call. CPU: every
allocation and free of PyTorch's CPU allocator is recorded by `torch.profiler` (`profile_memory=True`); the peak of
the running sum in time order (frees matched by address to allocations inside the call) is the peak extra memory. The profiler sees allocations of the calling thread only, so
that call runs with one thread (per-thread kernel workspaces are then counted once); C++ kernels that allocate
through `at::empty`, as ours do, are included. `x[N,d]` divides the peak per (batch element, head) by the bytes of
one `[N, d]` float32 tensor: a constant along the N sweep means O(N * d) per head, growth proportional to N means
O(N^2). The sweep table fits the exponent of N.

The whole-model part times the forward of `InhibiDistilBertModel` (fused and cdist, and int8 after
`quantize_model_for_inference`) against `transformers.DistilBertModel` (SDPA and eager attention), DistilBERT-base
shapes, random initialisation, eval mode, no_grad, float32, all-ones attention mask, by default at batch 1 and 8
(`--model_batch_sizes 1 8 32` for the attention grid's sizes); each model is first checked against its float64 copy
on batch element 0.

    python benchmarks/attention.py                                  # full grid, CPU, all cores
    python benchmarks/attention.py --quick                          # tiny smoke run
    python benchmarks/attention.py --skip_model --json outputs/bench_attention.json
    python benchmarks/attention.py --device cuda --json outputs/bench_attention_cuda.json   # adds Triton
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from anywhere in the repository

import common  # noqa: E402  (the sibling module, on sys.path[0])
from distill_throughput import ImplementationRecorder  # noqa: E402

from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertModel  # noqa: E402
from modeling_inhibidistilbert import kernels_inhibidistilbert as hub_kernels  # noqa: E402
from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling  # noqa: E402
from modeling_inhibidistilbert.modeling_inhibidistilbert import inhibitor_attention_cdist  # noqa: E402
from modeling_inhibidistilbert.reference import naive_inhibitor  # noqa: E402  (the reference the tests use)

try:
    import inhibidistilbert_kernels as kernels

    KERNELS_ERROR = None
except ImportError as error:  # no compiler, or INHIBIDISTILBERT_KERNELS=0: the fast rows are skipped, with reason
    kernels = None
    KERNELS_ERROR = str(error)

MODEL_SIZES = {
    "distilbert": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072},  # distilbert-base-uncased
    "tiny": {"dim": 128, "n_layers": 2, "n_heads": 4, "hidden_dim": 256},  # --quick
}
VOCAB_SIZE = 30522
TOLERANCE = {"float32": 1e-4, "float32_grad": 2e-2, "int8": 5e-2}  # relative L2 error against float64
IMPLEMENTATIONS = ("sdpa", "naive", "cdist", "compiled", "fused", "triton", "int8")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seq_lens", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: every core this process may use)")
    parser.add_argument("--implementations", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--passes", nargs="+", choices=("fwd", "fwd+bwd"), default=["fwd", "fwd+bwd"])
    parser.add_argument("--unsigned", action="store_true", help="the unsigned 2023 inhibition (default: signed)")
    parser.add_argument("--no_center", action="store_true", help="center_scores=False (default: centred scores)")
    parser.add_argument("--min_run_time", type=float, default=1.0, help="seconds of timing per measurement")
    parser.add_argument("--max_call_seconds", type=float, default=3.0, help="skip attention calls predicted longer")
    parser.add_argument("--max_model_call_seconds", type=float, default=30.0, help="same for whole-model forwards")
    parser.add_argument("--naive_max_gb", type=float, default=0.5, help="time naive where [B,H,N,N,d] fp32 fits")
    parser.add_argument("--check_rows", type=int, default=32, help="sampled query rows checked against float64")
    parser.add_argument("--no_memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--skip_attention", action="store_true", help="only the whole-model part")
    parser.add_argument("--skip_model", action="store_true", help="only the attention part")
    parser.add_argument("--model_size", choices=MODEL_SIZES, default="distilbert")
    parser.add_argument(
        "--model_batch_sizes",
        type=int,
        nargs="+",
        default=[1, 8],
        help="whole-model grid (add 32 for the attention grid's sizes: about 7 more minutes on 2 cores)",
    )
    parser.add_argument("--model_seq_lens", type=int, nargs="+", help="default: --seq_lens")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: replaces the grids with a tiny one and a tiny model"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.seq_lens, args.heads = [1, 2], [32, 64], 4
        args.min_run_time, args.model_size, args.model_batch_sizes = 0.1, "tiny", [1, 2]
    args.model_seq_lens = args.model_seq_lens or args.seq_lens
    return args


# TIMING AND MEMORY #


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device: torch.device, args) -> dict:
    return common.measure(fn, args.min_run_time)


@contextlib.contextmanager
def silenced_stderr():
    """The profiler's C++ side prints start/stop lines on fd 2; hide them while it runs."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_peak_bytes(fn) -> int:
    """Peak of (allocated - freed) bytes of the CPU allocator during `fn()`, from the profiler's allocation events.

    Only frees of blocks allocated inside the profiled region count (matched by address): the allocator's size
    table can hold stale entries from earlier profiling sessions, which would report a free of an older block.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the profiler records the calling thread's allocations only
    try:
        with (
            silenced_stderr(),
            torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof,
        ):
            fn()
    finally:
        torch.set_num_threads(threads)
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        fields = node.typed[1]
        if type(fields).__name__.endswith("Allocation") and str(fields.device) == "cpu":
            events.append((node.start_time_ns, fields.alloc_size, fields.ptr))
    live, current, peak = {}, 0, 0
    for _, nbytes, ptr in sorted(events, key=lambda e: (e[0], -e[1])):
        if nbytes > 0:
            live[ptr] = live.get(ptr, 0) + nbytes
        elif live.get(ptr, 0) >= -nbytes:
            live[ptr] += nbytes
        else:
            continue  # a block allocated before the region
        current += nbytes
        peak = max(peak, current)
    return peak


def peak_bytes(fn, device: torch.device) -> int:
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    return cpu_peak_bytes(fn)


def memory_self_test(device: torch.device) -> str | None:
    """The memory method must see a known allocation exactly; returns an error message or None."""
    if device.type == "cuda":
        return None
    nbytes = 4 << 20

    def allocate():
        a = torch.empty(nbytes // 4)
        b = torch.empty(nbytes // 4)
        del a, b

    try:
        measured = cpu_peak_bytes(allocate)
    except Exception as err:  # a torch without kineto memory events
        return f"{type(err).__name__}: {err}"
    return None if measured == 2 * nbytes else f"self-test measured {measured} bytes for {2 * nbytes}"


# IMPLEMENTATIONS #


def attention_functions(args, device: torch.device) -> tuple[dict, dict]:
    """{name: fn(q, k, v, gamma, delta, eta) -> out} for what runs here, and {name: reason} for what does not."""
    signed, center = not args.unsigned, not args.no_center
    available, skipped = {}, {}

    def sdpa(q, k, v, gamma, delta, eta):
        return F.scaled_dot_product_attention(q, k, v)

    def naive(q, k, v, gamma, delta, eta):
        return naive_inhibitor(q, k, v, gamma, delta, eta, None, signed, center)[0]

    def cdist(q, k, v, gamma, delta, eta):
        return inhibitor_attention_cdist(q, k, v, gamma, delta, eta, None, signed, center)[0]

    available.update(sdpa=sdpa, naive=naive, cdist=cdist)
    why_not = hub_kernels.compiled_unsupported(torch.zeros(1, 1, 1, 1, device=device), True)
    if why_not is None:
        available["compiled"] = lambda q, k, v, g, dl, e: hub_kernels.compiled_inhibitor_attention(
            q, k, v, g, dl, e, None, signed, center
        )
    else:
        skipped["compiled"] = why_not
    probe = torch.zeros(1, 1, 1, 1, device=device)
    for name, forward, unsupported in (
        ("fused", "fused_inhibitor_attention", "fused_unsupported"),
        ("int8", "int8_inhibitor_attention", "int8_unsupported"),
    ):
        why_not = f"inhibidistilbert_kernels not importable: {KERNELS_ERROR}" if kernels is None else None
        why_not = why_not or getattr(kernels, unsupported)(probe, name == "fused")
        if why_not is None:
            fn = getattr(kernels, forward)
            available[name] = lambda q, k, v, g, dl, e, fn=fn: fn(q, k, v, g, dl, e, None, signed, center)
        else:
            skipped[name] = why_not
    why_not = hub_kernels.triton_unsupported(torch.zeros(1, 1, 1, 1, device=device), True)
    if why_not is None:
        available["triton"] = lambda q, k, v, g, dl, e: hub_kernels.triton_inhibitor_attention(
            q, k, v, g, dl, e, None, signed, center
        )
    else:
        skipped["triton"] = why_not
    available = {name: fn for name, fn in available.items() if name in args.implementations}
    skipped = {name: why for name, why in skipped.items() if name in args.implementations}
    return available, skipped


def sdpa_reference(q, k, v, *_):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v


def rel_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return float((actual.double() - expected).norm() / expected.norm().clamp(min=1e-300))


def make_inputs(batch, heads, n, d, device, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, n, d, generator=gen) for _ in range(3))
    gamma = 0.5 + torch.rand(heads, generator=gen)  # per-head scalars away from their initial values
    delta = 0.3 * torch.randn(heads, generator=gen)
    eta = 0.5 + torch.rand(heads, generator=gen)
    grad_out = torch.randn(batch, heads, n, d, generator=gen)
    return [t.to(device) for t in (q, k, v, gamma, delta, eta)], grad_out.to(device)


def float64_without_ties(inputs: list) -> list:
    """Float64 copies with a 1e-9 relative jitter on Q, K, V.

    Float32 inputs hold exact ties Q_ik == K_jk (about one per 10^7 pairs), where |x| has no derivative and the
    subgradient is a convention (autograd and the cdist form take sign(0) = 0, the fused CPU kernel +1); the jitter
    moves the float64 gradient check off those points without changing anything else measurably.
    """
    gen = torch.Generator().manual_seed(2)
    out = []
    for i, t in enumerate(inputs):
        t = t.double()
        if i < 3:
            t = t * (1 + 1e-9 * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device))
        out.append(t)
    return out


def check_rows(n: int, count: int) -> torch.Tensor:
    return torch.unique(torch.linspace(0, n - 1, min(n, count)).round().long())


def reference_for(name):
    return sdpa_reference if name == "sdpa" else (lambda *a: naive_inhibitor(*a[:6], None, *a[6:])[0])


def forward_error(name, fn, out, inputs, rows, flags) -> float:
    """Relative L2 error of `out` (the implementation's output on all inputs) at batch 0 and B-1, sampled rows."""
    batch = inputs[0].shape[0]
    picks = sorted({0, batch - 1})
    q, k, v = (t[picks].double() for t in inputs[:3])
    scalars = [p.double() for p in inputs[3:]]
    expected = reference_for(name)(q[:, :, rows.to(q.device)], k, v, *scalars, *flags)
    return rel_l2(out[picks][:, :, rows.to(out.device)], expected)


def gradient_error(name, fn, inputs, rows, flags) -> float:
    """Largest relative L2 error of dQ, dK, dV (and d gamma, delta, eta) of batch element 0, upstream at `rows`."""
    device = inputs[0].device
    rows_d = rows.to(device)
    q, k, v = (t[:1] for t in inputs[:3])
    if name == "naive":  # it materialises [N, N, d]: give it the sampled queries only (same gradients)
        q = q[:, :, rows_d]
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v, *inputs[3:])]
    gen = torch.Generator().manual_seed(1)
    upstream = torch.randn(1, q.shape[1], len(rows), q.shape[-1], generator=gen).to(device)
    out = fn(*leaves)
    picked = out if name == "naive" else out[:, :, rows_d]
    grads = torch.autograd.grad((picked * upstream).sum(), leaves, allow_unused=True)
    ref_leaves = [t.detach().double().requires_grad_() for t in (inputs[0][:1, :, rows_d], k, v, *inputs[3:])]
    ref_out = reference_for(name)(*ref_leaves, *flags)
    ref_grads = torch.autograd.grad((ref_out * upstream.double()).sum(), ref_leaves, allow_unused=True)
    if name != "naive":  # dQ of the unsampled rows is exactly zero
        full = torch.zeros_like(leaves[0], dtype=torch.float64)
        full[:, :, rows_d] = ref_grads[0]
        ref_grads = (full, *ref_grads[1:])
    errors = [rel_l2(g, r) for g, r in zip(grads, ref_grads) if r is not None and g is not None]
    if any(g is None for g, r in zip(grads, ref_grads) if r is not None):
        errors.append(float("inf"))  # an input the reference differentiates was not differentiated
    return max(errors)


def predicted_seconds(history: list, work: float) -> float | None:
    smaller = [(w, t) for w, t in history if w <= work]
    if not smaller:
        return None
    w, t = max(smaller)
    return t * work / w


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    return (
        f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}" if seconds < 10 else f"{seconds * 1e3:.0f}"
    )


def run_attention(args, device: torch.device, memory_ok: bool) -> list:
    functions, skipped = attention_functions(args, device)
    flags = (not args.unsigned, not args.no_center)
    heads, d = args.heads, args.head_dim
    history = {}  # (name, pass) -> [(B * N^2, seconds per call)]
    rows_out = []
    configs = sorted((b, n) for b in args.batch_sizes for n in args.seq_lens)  # smaller sizes first (skip prediction)
    for batch, n in configs:
        inputs, grad_out = make_inputs(batch, heads, n, d, device, args.seed)
        rows = check_rows(n, args.check_rows)
        naive_gb = batch * heads * n * n * d * 4 / 1e9
        work = batch * n * n
        fused_out = cdist_out = None
        for name in IMPLEMENTATIONS:
            if name not in args.implementations:
                continue
            for pass_name in args.passes:
                row = {
                    "batch": batch,
                    "seq_len": n,
                    "heads": heads,
                    "head_dim": d,
                    "implementation": name,
                    "pass": pass_name,
                    "median_s": None,
                    "note": "",
                }
                rows_out.append(row)
                if name in skipped:
                    row["note"] = f"skipped: {skipped[name]}"
                    continue
                if pass_name == "fwd+bwd" and name == "int8":
                    row["note"] = "skipped: inference only (no backward)"
                    continue
                fn = functions[name]
                # check against the float64 reference first (sampled rows, see forward_error / gradient_error)
                too_big = name == "naive" and naive_gb > args.naive_max_gb
                if pass_name == "fwd":
                    with torch.no_grad():
                        if too_big:  # check the same code on the sampled queries only
                            rows_d = rows.to(device)
                            out = fn(inputs[0][:, :, rows_d], *inputs[1:])
                            picks = sorted({0, batch - 1})
                            q, k, v = (t[picks].double() for t in (inputs[0][:, :, rows_d], *inputs[1:3]))
                            expected = naive_inhibitor(q, k, v, *(p.double() for p in inputs[3:]), None, *flags)[0]
                            row["rel_err"] = rel_l2(out[picks], expected)
                        else:
                            out = fn(*inputs)
                            row["rel_err"] = forward_error(name, fn, out, inputs, rows, flags)
                            if name == "cdist":
                                cdist_out = out
                            elif name in ("fused", "triton", "int8") and cdist_out is not None:
                                row["rel_err_vs_cdist"] = rel_l2(out, cdist_out)  # every row and batch element
                            if name == "fused" or (name == "triton" and fused_out is None):
                                fused_out = out
                            if name == "int8" and fused_out is not None:
                                row["rel_err_vs_float32"] = rel_l2(out, fused_out)
                        del out
                    tolerance = TOLERANCE["int8" if name == "int8" else "float32"]
                    passed = row["rel_err"] <= tolerance
                    failure = f"rel. L2 error {row['rel_err']:.2e} > {tolerance:g}"
                else:
                    # float32 gradients differ from float64 ones in isolated entries where a ReLU kink flips sides
                    # (a jump of eta * upstream), so the gate is the same code run in float64, which must agree to
                    # 1e-8; the float32 gradient error is reported and only guards against gross errors
                    row["rel_err"] = gradient_error(name, fn, inputs, rows, flags)
                    if name != "triton":  # Triton has no float64
                        row["rel_err_float64"] = gradient_error(name, fn, float64_without_ties(inputs), rows, flags)
                    passed = row["rel_err"] <= TOLERANCE["float32_grad"] and row.get("rel_err_float64", 0) <= 1e-8
                    failure = (
                        f"gradient rel. L2 error float32 {row['rel_err']:.2e} (max {TOLERANCE['float32_grad']:g}), "
                        f"float64 {row.get('rel_err_float64', float('nan')):.2e} (max 1e-8)"
                    )
                if not passed:
                    row["note"] = f"FAILED the float64 check ({failure}): not timed"
                    continue
                if too_big:
                    row["note"] = (
                        f"skipped: [B,H,N,N,d] float32 would be {naive_gb:.1f} GB > --naive_max_gb "
                        f"{args.naive_max_gb:g} (checked on {len(rows)} rows)"
                    )
                    continue
                predicted = predicted_seconds(history.get((name, pass_name), []), work)
                if name != "sdpa" and predicted is not None and predicted > args.max_call_seconds:
                    row["note"] = f"skipped: predicted {predicted:.1f} s per call > --max_call_seconds"
                    continue
                if pass_name == "fwd":

                    def call(fn=fn, inputs=inputs):
                        with torch.no_grad():
                            fn(*inputs)

                else:
                    leaves = [t.detach().clone().requires_grad_() for t in inputs]

                    def call(fn=fn, leaves=leaves, grad_out=grad_out):
                        for leaf in leaves:
                            leaf.grad = None
                        fn(*leaves).backward(grad_out)

                row.update(measure(call, device, args))
                history.setdefault((name, pass_name), []).append((work, row["median_s"]))
                if memory_ok and not args.no_memory:
                    if pass_name == "fwd+bwd":
                        for leaf in leaves:  # free the last call's gradients outside the measured region
                            leaf.grad = None
                    row["peak_bytes"] = peak_bytes(call, device)
                    row["per_head_nd"] = row["peak_bytes"] / (batch * heads * n * d * 4)
                if pass_name == "fwd+bwd":
                    del leaves
            print_progress(rows_out, batch, n, name)
        del inputs, grad_out, fused_out, cdist_out
    for row in rows_out:
        base = next(
            (
                r
                for r in rows_out
                if r["implementation"] == "sdpa"
                and r["pass"] == row["pass"]
                and r["batch"] == row["batch"]
                and r["seq_len"] == row["seq_len"]
            ),
            None,
        )
        if base and base["median_s"] and row["median_s"]:
            row["ratio_to_sdpa"] = row["median_s"] / base["median_s"]
    return rows_out


def print_progress(rows, batch, n, name):
    done = [r for r in rows if r["batch"] == batch and r["seq_len"] == n and r["implementation"] == name]
    parts = [f"{r['pass']} {fmt_ms(r['median_s'])} ms" if r["median_s"] else f"{r['pass']} -" for r in done]
    print(f"  measured B={batch} N={n} {name}: {', '.join(parts)}", file=sys.stderr, flush=True)


def print_attention_tables(rows, args):
    for pass_name in args.passes:
        print(
            f"\nAttention {pass_name} ({args.heads} heads, d={args.head_dim}, float32; "
            f"{'signed' if not args.unsigned else 'unsigned'}, {'centred' if not args.no_center else 'uncentred'})"
        )
        grads = pass_name == "fwd+bwd"
        header = (
            f"{'B':>3} {'N':>4}  {'impl':<7} {'median ms':>10} {'x SDPA':>7} {'peak MiB':>9} {'x[N,d]':>7} "
            f"{'rel err':>8}{' f64 err' if grads else ''} {'runs':>7}  note"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            if row["pass"] != pass_name:
                continue
            ratio = f"{row['ratio_to_sdpa']:.2f}" if row.get("ratio_to_sdpa") else "-"
            peak = f"{row['peak_bytes'] / 2**20:.2f}" if row.get("peak_bytes") is not None else "-"
            per_head = f"{row['per_head_nd']:.1f}" if row.get("per_head_nd") is not None else "-"
            err = f"{row['rel_err']:.1e}" if row.get("rel_err") is not None else "-"
            runs = f"{row['samples']}x{row['calls_per_sample']}" if row.get("samples") else "-"
            err64 = f"{row['rel_err_float64']:.1e}" if row.get("rel_err_float64") is not None else "-"
            print(
                f"{row['batch']:>3} {row['seq_len']:>4}  {row['implementation']:<7} {fmt_ms(row['median_s']):>10} "
                f"{ratio:>7} {peak:>9} {per_head:>7} {err:>8}{f' {err64:>8}' if grads else ''} {runs:>7}  "
                f"{row['note']}"
            )
    for name in ("fused", "triton", "int8"):
        errors = [
            r["rel_err_vs_cdist"] for r in rows if r.get("rel_err_vs_cdist") is not None and r["implementation"] == name
        ]
        if errors:
            print(
                f"{name}: whole output (every batch element and query) against the cdist form, largest relative L2 "
                f"error over the grid {max(errors):.1e}"
            )
    print("\nrel err: relative L2 error against the float64 reference (fwd: outputs; fwd+bwd: worst of the Q, K, V and")
    print("scalar gradients in float32, where single entries can jump at ReLU kinks; f64 err: the same implementation")
    print("run in float64, the gate for the backward). runs: samples x calls per sample (median of the samples).")
    print(
        "peak MiB: extra memory of one call above its inputs; x[N,d]: that peak per (batch element, head) in units of"
    )
    print("one [N, d] float32 tensor.")


def memory_sweep(rows, args) -> list:
    """Per implementation, pass and batch size: x[N,d] along N and the fitted exponent of N in the peak bytes."""
    sweep = []
    for pass_name in args.passes:
        for name in IMPLEMENTATIONS:
            for batch in sorted(set(args.batch_sizes)):
                points = sorted(
                    (r["seq_len"], r["peak_bytes"], r["per_head_nd"])
                    for r in rows
                    if r["implementation"] == name
                    and r["pass"] == pass_name
                    and r["batch"] == batch
                    and r.get("peak_bytes")
                )
                if len(points) < 2:
                    continue
                xs = [math.log(p[0]) for p in points]
                ys = [math.log(p[1]) for p in points]
                mx, my = statistics.fmean(xs), statistics.fmean(ys)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
                sweep.append(
                    {
                        "implementation": name,
                        "pass": pass_name,
                        "batch": batch,
                        "exponent": slope,
                        "per_head_nd": {p[0]: p[2] for p in points},
                    }
                )
    return sweep


def print_memory_sweep(sweep, args):
    if not sweep:
        return
    lens = sorted(set(args.seq_lens))
    print("\nMemory sweep: peak extra memory per (batch element, head) in units of one [N, d] float32 tensor;")
    print("exponent: least-squares slope of log(peak bytes) against log N (1: O(N*d), 2: O(N^2) at fixed d)")
    print(f"{'pass':<8} {'impl':<7} {'B':>3}  " + " ".join(f"{'N=' + str(n):>8}" for n in lens) + f" {'exponent':>9}")
    for s in sweep:
        cells = " ".join(f"{s['per_head_nd'][n]:>8.1f}" if n in s["per_head_nd"] else f"{'-':>8}" for n in lens)
        print(f"{s['pass']:<8} {s['implementation']:<7} {s['batch']:>3}  {cells} {s['exponent']:>9.2f}")


def print_int8(rows):
    int8 = [r for r in rows if r["implementation"] == "int8" and r["pass"] == "fwd" and r.get("rel_err") is not None]
    if not int8:
        return
    print("\nint8 inference path (forward): time against the float32 fused kernel and SDPA; relative L2 error")
    print(
        f"{'B':>3} {'N':>4} {'int8 ms':>9} {'fused ms':>9} {'int8/fused':>10} {'int8/SDPA':>9} {'err vs fp32':>11} "
        f"{'err vs fp64':>11}"
    )
    for r in int8:
        fused = next(
            (
                f
                for f in rows
                if f["implementation"] == "fused"
                and f["pass"] == "fwd"
                and f["batch"] == r["batch"]
                and f["seq_len"] == r["seq_len"]
            ),
            {},
        )
        vs_fused = f"{r['median_s'] / fused['median_s']:.2f}" if r["median_s"] and fused.get("median_s") else "-"
        vs_sdpa = f"{r['ratio_to_sdpa']:.2f}" if r.get("ratio_to_sdpa") else "-"
        vs32 = f"{r['rel_err_vs_float32']:.2e}" if r.get("rel_err_vs_float32") is not None else "-"
        print(
            f"{r['batch']:>3} {r['seq_len']:>4} {fmt_ms(r['median_s']):>9} {fmt_ms(fused.get('median_s')):>9} "
            f"{vs_fused:>10} {vs_sdpa:>9} {vs32:>11} {r['rel_err']:>11.2e}"
        )


# WHOLE MODEL #


def build_models(args, device: torch.device) -> tuple[dict, dict]:
    """{label: (model, inhibitor_implementation or None)} and {label: reason skipped}."""
    from transformers import DistilBertConfig, DistilBertModel

    seq_max = max(512, *args.model_seq_lens)
    shape = dict(MODEL_SIZES[args.model_size], vocab_size=VOCAB_SIZE, max_position_embeddings=seq_max)
    models, skipped = {}, {}
    torch.manual_seed(args.seed)
    models["distilbert sdpa"] = (DistilBertModel(DistilBertConfig(**shape)).to(device).eval(), None)
    models["distilbert eager"] = (DistilBertModel(DistilBertConfig(**shape, attn_implementation="eager")), None)
    models["distilbert eager"][0].load_state_dict(models["distilbert sdpa"][0].state_dict())
    models["distilbert eager"][0].to(device).eval()
    torch.manual_seed(args.seed)
    inhibitor = InhibiDistilBertModel(InhibiDistilBertConfig(**shape)).to(device).eval()
    probe = torch.zeros(1, 1, 1, 1, device=device)
    for name in ("fused", "compiled", "triton", "cdist", "int8"):
        why_not = modeling.ATTENTION_IMPLEMENTATIONS[name].unsupported(probe, False)
        if why_not is None:
            models[f"inhibi {name}"] = (inhibitor, name)
        else:
            skipped[f"inhibi {name}"] = why_not
    return models, skipped


def run_model(args, device: torch.device) -> list:
    models, skipped = build_models(args, device)
    inhibitor = models["inhibi cdist"][0]
    reference_inhibitor = copy.deepcopy(inhibitor).double()
    reference_inhibitor.config.inhibitor_implementation = "cdist"
    reference_distilbert = copy.deepcopy(models["distilbert eager"][0]).double()
    rows, history = [], {}
    configs = sorted((b, n) for b in args.model_batch_sizes for n in args.model_seq_lens)
    for batch, n in configs:
        gen = torch.Generator().manual_seed(args.seed + batch * 1000 + n)
        ids = torch.randint(1000, VOCAB_SIZE, (batch, n), generator=gen).to(device)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            ref_inhibitor = reference_inhibitor(input_ids=ids[:1], attention_mask=mask[:1]).last_hidden_state
            ref_distilbert = reference_distilbert(input_ids=ids[:1], attention_mask=mask[:1]).last_hidden_state
        fast_out = None
        for label in (
            "distilbert sdpa",
            "distilbert eager",
            "inhibi fused",
            "inhibi compiled",
            "inhibi triton",
            "inhibi cdist",
            "inhibi int8",
        ):
            if label not in models and label not in skipped:
                continue
            row = {"batch": batch, "seq_len": n, "model": label, "median_s": None, "note": ""}
            rows.append(row)
            if label in skipped:
                row["note"] = f"skipped: {skipped[label]}"
                continue
            model, implementation = models[label]
            if implementation is not None:
                model.config.inhibitor_implementation = implementation

            def call(model=model, ids=ids, mask=mask):
                with torch.no_grad():
                    return model(input_ids=ids, attention_mask=mask).last_hidden_state

            reference = ref_distilbert if label.startswith("distilbert") else ref_inhibitor
            with torch.no_grad():
                first = model(input_ids=ids[:1], attention_mask=mask[:1]).last_hidden_state
            row["rel_err"] = rel_l2(first, reference)
            tolerance = TOLERANCE["int8" if label.endswith("int8") else "float32"]
            if not row["rel_err"] <= tolerance:
                row["note"] = f"FAILED the float64 check (rel. L2 error {row['rel_err']:.2e}): not timed"
                continue
            predicted = predicted_seconds(history.get(label, []), batch * n)
            if label != "distilbert sdpa" and predicted is not None and predicted > args.max_model_call_seconds:
                row["note"] = f"skipped: predicted {predicted:.0f} s per call > --max_model_call_seconds"
                continue
            with ImplementationRecorder() as recorder:
                row.update(measure(call, device, args))
            if label.startswith("inhibi"):
                row["ran"] = recorder.ran()
            history.setdefault(label, []).append((batch * n, row["median_s"]))
            if label in ("inhibi fused", "inhibi triton"):
                fast_out = first
            elif label == "inhibi int8" and fast_out is not None:
                row["rel_err_vs_float32"] = rel_l2(first, fast_out)  # batch element 0
            print(
                f"  measured model B={batch} N={n} {label}: {fmt_ms(row['median_s'])} ms", file=sys.stderr, flush=True
            )
    for row in rows:
        base = next(
            (
                r
                for r in rows
                if r["model"] == "distilbert sdpa" and r["batch"] == row["batch"] and r["seq_len"] == row["seq_len"]
            ),
            None,
        )
        if base and base["median_s"] and row["median_s"]:
            row["ratio_to_distilbert"] = row["median_s"] / base["median_s"]
    return rows


def print_model_table(rows, args):
    shape = MODEL_SIZES[args.model_size]
    print(f"\nWhole-model forward ({args.model_size}: {shape}; random init, eval, no_grad, float32)")
    header = f"{'B':>3} {'N':>4}  {'model':<17} {'median ms':>10} {'x DistilBERT':>12} {'rel err':>8} {'runs':>6}  note"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio_to_distilbert']:.3f}" if row.get("ratio_to_distilbert") else "-"
        err = f"{row['rel_err']:.1e}" if row.get("rel_err") is not None else "-"
        runs = f"{row['samples']}x{row['calls_per_sample']}" if row.get("samples") else "-"
        note = row["note"]
        if row.get("ran"):
            note = (note + "; " if note else "") + f"ran: {row['ran']}"
        if row.get("rel_err_vs_float32") is not None:
            note = (note + "; " if note else "") + f"rel err vs float32 model {row['rel_err_vs_float32']:.1e}"
        print(
            f"{row['batch']:>3} {row['seq_len']:>4}  {row['model']:<17} {fmt_ms(row['median_s']):>10} {ratio:>12} "
            f"{err:>8} {runs:>6}  {note}"
        )
    print("x DistilBERT: median time over transformers' DistilBertModel with SDPA (its default) at the same shape;")
    print("rel err: last hidden state of batch element 0 against the same model in float64 (InhibiDistilBERT: its")
    print("cdist form in float64); int8: also against the float32 model with the fused kernel.")


def print_targets(attention_rows, model_rows, sweep, device):
    print(f"\nTargets ({device.type}, B=8, N=128)")

    def find(rows, key, value, pass_name="fwd"):
        return next(
            (
                r
                for r in rows
                if r.get(key) == value and r["batch"] == 8 and r["seq_len"] == 128 and r.get("pass", "fwd") == pass_name
            ),
            {},
        )

    fast = "triton" if device.type == "cuda" else "fused"
    lines = []
    for name in ("cdist", fast, "int8"):
        for pass_name in ("fwd", "fwd+bwd"):
            value = find(attention_rows, "implementation", name, pass_name).get("ratio_to_sdpa")
            if value is not None:
                verdict = (
                    f"target <= 5x: {'met' if value <= 5 else 'NOT met'}"
                    if (name, pass_name) == (fast, "fwd")
                    else "no target"
                )
                lines.append(f"  attention {pass_name:<7} {name:<6} / SDPA {pass_name:<7}: {value:6.2f}x  ({verdict})")
    row = find(model_rows, "model", f"inhibi {fast}")
    if row.get("ratio_to_distilbert") is not None:
        eager = find(model_rows, "model", "distilbert eager").get("median_s")
        vs_eager = f", {row['median_s'] / eager:.3f}x DistilBERT eager" if eager else ""
        lines.append(
            f"  whole-model forward inhibi {fast} / DistilBERT sdpa: {row['ratio_to_distilbert']:.3f}x{vs_eager}  "
            f"(target <= 1.15x: {'met' if row['ratio_to_distilbert'] <= 1.15 else 'NOT met'})"
        )
    for s in sweep:
        if s["implementation"] == fast:
            lines.append(
                f"  memory {s['pass']:<7} {fast} B={s['batch']:<2}: peak bytes grow as N^{s['exponent']:.2f} "
                f"(target O(N*d) per head, i.e. ~N^1: {'met' if s['exponent'] < 1.2 else 'NOT met'})"
            )
    print("\n".join(lines) if lines else "  B=8, N=128 is not in this grid")


def main(argv=None) -> dict:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep the tables in order with the progress lines (stderr)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    torch.set_num_threads(args.threads or common.usable_cores())
    started = time.perf_counter()
    environment = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else common.cpu_name(),
        "machine": common.machine(device),
        "cores": common.usable_cores(),
        "threads": torch.get_num_threads(),
        "cpu_isa": kernels.cpu_isa() if hasattr(kernels, "cpu_isa") else "unavailable",
        "int8_isa": torch.ops.inhibidistilbert.int8_isa()
        if kernels is not None and hasattr(torch.ops.inhibidistilbert, "int8_isa")
        else "unavailable",
        "triton": importlib.util.find_spec("triton") is not None,
        "kernel_library": Path(
            ((kernels.build_info() if kernels is not None else None) or {}).get("library") or "-"
        ).name,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
    }
    print(f"command: {' '.join(sys.argv) if argv is None else ' '.join(argv)}")
    print(f"machine: {common.machine_line(environment['machine'])}; python {environment['python']}")
    print(
        f"device: {environment['device_name']} ({device}); {environment['cores']} cores usable, "
        f"torch threads {environment['threads']}; CPU kernel ISA {environment['cpu_isa']}, int8 {environment['int8_isa']}; "
        f"load average at start {environment['loadavg_start']}"
    )
    print(f"kernel library: {environment['kernel_library']}; triton installed: {environment['triton']}")
    memory_error = None if args.no_memory else memory_self_test(device)
    if memory_error:
        print(f"peak memory not measured: the profiler's memory events failed their self-test ({memory_error})")
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **environment}
    attention_rows, model_rows, sweep = [], [], []
    if not args.skip_attention:
        _, skipped = attention_functions(args, device)
        for name, why in skipped.items():
            print(f"{name}: skipped ({why})")
        attention_rows = run_attention(args, device, memory_ok=memory_error is None)
        print_attention_tables(attention_rows, args)
        sweep = memory_sweep(attention_rows, args)
        print_memory_sweep(sweep, args)
        print_int8(attention_rows)
    if not args.skip_model:
        model_rows = run_model(args, device)
        print_model_table(model_rows, args)
    print_targets(attention_rows, model_rows, sweep, device)
    results.update(attention=attention_rows, memory_sweep=sweep, model=model_rows)
    results["wall_seconds"] = time.perf_counter() - started
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    print(f"\nwall time {results['wall_seconds']:.0f} s; load average at the end {results['loadavg_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
