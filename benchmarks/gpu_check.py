#!/usr/bin/env python
# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""The GPU check of the Triton kernel, in one call: correctness against float64, then speed against SDPA/DistilBERT.

1. Checks: the Triton kernel (the third Hub file, `triton_inhibitor_attention`) against the float64 reference
   `naive_inhibitor`, forward and backward (Q, K, V and the three per-head scalars), float32/bfloat16/float16,
   signed and unsigned, with and without a padding mask. A failed check stops the timing (exit status 1).
2. Attention, `[B, 12, N, 64]` at B in `--batch_sizes` and N in `--seq_lens`: forward and forward+backward of the
   Triton kernel and of SDPA (`scaled_dot_product_attention`), float32 and bfloat16.
3. Whole model (forward, eval, no_grad) and one distillation step of the student (forward, a temperature-2 KL loss
   against fixed teacher logits, backward, AdamW step; sequence classification, 2 labels), InhibiDistilBERT with
   `inhibitor_implementation="triton"` against `transformers.DistilBert*` with SDPA, DistilBERT-base size, N <= 512.
Targets (issue 18): attention forward+backward at most 3x SDPA at N=512, a distillation step at most 1.5x
DistilBERT's. Timing by `torch.utils.benchmark` (CUDA-synchronised). A time budget (`--budget_s`, default 420 s)
skips what would not fit, and says so. Everything goes to `--json`, which `--doc` renders into the `gpu` section of
docs/benchmarks.md.

    python benchmarks/gpu_check.py --json outputs/gpu_check.json --doc docs/benchmarks.md   # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --interpret --json /tmp/smoke.json          # CPU smoke run (tests)
"""

from __future__ import annotations

import os
import sys

if "--interpret" in sys.argv:  # Triton reads TRITON_INTERPRET when it is imported: before anything imports it
    os.environ["TRITON_INTERPRET"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel  # noqa: E402

from modeling_inhibidistilbert import (  # noqa: E402
    InhibiDistilBertConfig,
    InhibiDistilBertForSequenceClassification,
    InhibiDistilBertModel,
)
from modeling_inhibidistilbert.kernels_inhibidistilbert import (  # noqa: E402
    triton_inhibitor_attention,
    triton_unsupported,
)
from modeling_inhibidistilbert.reference import naive_inhibitor, random_case  # noqa: E402

SIZES = {
    "distilbert": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "vocab_size": 30522},
    "tiny": {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64, "vocab_size": 50},
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 3e-2}  # max error / max |reference|
TARGETS = {"attention_fwd+bwd_n512": 3.0, "distill_step": 1.5}
SECTION = "gpu"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--interpret", action="store_true", help="Triton's interpreter (CPU tensors), tiny sizes")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seq_lens", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["float32", "bfloat16"])
    parser.add_argument("--min_run_time", type=float, default=0.3, help="seconds of timing per measurement")
    parser.add_argument("--budget_s", type=float, default=420.0, help="skip measurements past this wall time")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--doc", type=Path, help="render the results into this file's `gpu` section")
    args = parser.parse_args(argv)
    if args.interpret:
        args.batch_sizes, args.seq_lens, args.dtypes, args.min_run_time = [2], [16], ["float32"], 0.01
    return args


def check_kernel(device: torch.device, dtypes: list[str], interpret: bool) -> list[dict]:
    """Forward and backward against float64 for every dtype, signed/unsigned, with and without padding."""
    rows = []
    n, d = (19, 8) if interpret else (150, 64)
    for dtype_name in ["float32", "bfloat16", "float16"] if not interpret else dtypes:
        for signed in (True, False):
            for pad in (False, True):
                case = random_case(batch=2, heads=3, n=n, d=d, seed=n + signed + 2 * pad, pad=pad)
                mask = None if case[6] is None else case[6].to(device)
                dtype = DTYPES[dtype_name]
                inputs = [
                    t.to(device, dtype if i < 3 else torch.float32).requires_grad_() for i, t in enumerate(case[:6])
                ]
                out = triton_inhibitor_attention(*inputs, mask, signed, True)
                weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
                grads = torch.autograd.grad((out.double() * weights.to(device)).sum(), inputs)
                ref_inputs = [t.detach().cpu().double().requires_grad_() for t in inputs]
                ref = naive_inhibitor(*ref_inputs, case[6], signed, True)[0]
                ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
                errors = {
                    name: ((a.detach().double().cpu() - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()
                    for name, a, b in zip(
                        ("out", "dQ", "dK", "dV", "dgamma", "ddelta", "deta"), (out, *grads), (ref, *ref_grads)
                    )
                }
                ok = out.dtype == dtype and max(errors.values()) < TOLERANCE[dtype_name]
                rows.append({"dtype": dtype_name, "signed": signed, "pad": pad, "errors": errors, "ok": ok})
                print(
                    f"check {dtype_name} signed={signed} pad={pad}: max error {max(errors.values()):.1e} {'ok' if ok else 'FAILED'}"
                )
    return rows


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> bool:
        return time.perf_counter() - self.start < self.seconds


def timed(fn, args, budget: Budget) -> dict:
    if not budget.left():
        return {"median_s": None, "note": "skipped: past --budget_s"}
    try:
        return common.measure(fn, args.min_run_time)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"median_s": None, "note": "out of memory"}


def time_attention(args, device, budget: Budget) -> list[dict]:
    rows, heads, head_dim = [], 12 if not args.interpret else 2, 64 if not args.interpret else 8
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for batch in args.batch_sizes:
            for n in args.seq_lens:
                gen = torch.Generator().manual_seed(n)
                q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen).to(device, dtype) for _ in range(3))
                gamma, delta, eta = (
                    t.to(device) for t in (0.5 + torch.rand(heads), 0.1 * torch.randn(heads), 0.5 + torch.rand(heads))
                )
                forms = {
                    "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                    "triton": lambda q, k, v, p=(gamma, delta, eta): triton_inhibitor_attention(q, k, v, *p, None),
                }
                grad_out = torch.randn_like(q)
                for name, fn in forms.items():
                    row = {"dtype": dtype_name, "batch": batch, "seq_len": n, "form": name}
                    with torch.no_grad():
                        row["fwd"] = timed(lambda fn=fn, qkv=(q, k, v): fn(*qkv), args, budget)
                    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
                    row["fwd+bwd"] = timed(
                        lambda fn=fn, x=leaves, g=grad_out: torch.autograd.grad(fn(*x), x, g), args, budget
                    )
                    rows.append(row)
                    print(
                        f"attention {dtype_name} B={batch} N={n} {name}: {fmt(row['fwd'])} / {fmt(row['fwd+bwd'])} ms"
                    )
    return rows


def fmt(entry: dict) -> str:
    return "-" if entry.get("median_s") is None else f"{1e3 * entry['median_s']:.2f}"


def time_models(args, device, budget: Budget) -> list[dict]:
    size = SIZES["tiny" if args.interpret else "distilbert"]
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        torch.manual_seed(0)
        inhibi_config = InhibiDistilBertConfig(**size, inhibitor_implementation="triton")
        distil_config = DistilBertConfig(**size, attn_implementation="sdpa")
        models = {
            "inhibi": InhibiDistilBertModel(inhibi_config).to(device, dtype).eval(),
            "distilbert": DistilBertModel(distil_config).to(device, dtype).eval(),
        }
        students = {
            "inhibi": InhibiDistilBertForSequenceClassification(inhibi_config).to(device, dtype).train(),
            "distilbert": DistilBertForSequenceClassification(distil_config).to(device, dtype).train(),
        }
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-5) for name, m in students.items()}
        for batch in args.batch_sizes:
            for n in [n for n in args.seq_lens if n <= 512]:
                ids = torch.randint(0, size["vocab_size"], (batch, n), device=device)
                mask = torch.ones_like(ids)
                teacher_logits = torch.randn(batch, 2, device=device)
                for name in models:
                    row = {"dtype": dtype_name, "batch": batch, "seq_len": n, "model": name}
                    with torch.no_grad():
                        row["forward"] = timed(
                            lambda m=models[name], x=ids, a=mask: m(input_ids=x, attention_mask=a), args, budget
                        )

                    def step(student=students[name], optimizer=optimizers[name], x=ids, a=mask, t=teacher_logits):
                        logits = student(input_ids=x, attention_mask=a).logits.float()
                        loss = F.kl_div(F.log_softmax(logits / 2, -1), F.softmax(t / 2, -1), reduction="batchmean")
                        loss.backward()
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)

                    row["distill_step"] = timed(step, args, budget)
                    rows.append(row)
                    print(
                        f"model {dtype_name} B={batch} N={n} {name}: {fmt(row['forward'])} / {fmt(row['distill_step'])} ms"
                    )
    return rows


def ratio(rows: list[dict], match: dict, field: str, name_key: str, name: str, base: str) -> float | None:
    found = {r[name_key]: r[field].get("median_s") for r in rows if all(r[k] == v for k, v in match.items())}
    if found.get(name) is None or found.get(base) is None:
        return None
    return found[name] / found[base]


def render(result: dict | None) -> str:
    lines = ["## GPU (the Triton kernel): `benchmarks/gpu_check.py`", ""]
    if result is None or result["machine"].get("gpu") is None:
        lines.append(
            "**Not run on a GPU yet.** The script is ready (one call, under 8 minutes, `python benchmarks/gpu_check.py "
            "--json outputs/gpu_check.json --doc docs/benchmarks.md`); on CPU it is tested in Triton's interpreter "
            "at tiny sizes (`--device cpu --interpret`), which proves that it runs and that the kernel is correct, "
            "not how fast it is."
        )
        return "\n".join(lines)
    lines += [f"{common.machine_line(result['machine'])}. Command: `{result['command']}`.", ""]
    failed = [c for c in result["checks"] if not c["ok"]]
    lines.append(f"Checks against float64: {len(result['checks']) - len(failed)} of {len(result['checks'])} passed.")
    lines += ["", "| dtype | B | N | Triton fwd ms | SDPA fwd ms | fwd ratio | Triton fwd+bwd ms | SDPA fwd+bwd ms | "
              "fwd+bwd ratio |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in [r for r in result["attention"] if r["form"] == "triton"]:
        match = {"dtype": r["dtype"], "batch": r["batch"], "seq_len": r["seq_len"]}
        base = next(x for x in result["attention"] if x["form"] == "sdpa" and all(x[k] == v for k, v in match.items()))
        cells = []
        for field in ("fwd", "fwd+bwd"):
            value = ratio(result["attention"], match, field, "form", "triton", "sdpa")
            cells += [fmt(r[field]), fmt(base[field]), "-" if value is None else f"{value:.2f}x"]
        lines.append(f"| {r['dtype']} | {r['batch']} | {r['seq_len']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| dtype | B | N | forward ratio | distillation step ratio (target <= 1.5x) |",
        "|---|---|---|---|---|",
    ]
    for r in [r for r in result["model"] if r["model"] == "inhibi"]:
        match = {"dtype": r["dtype"], "batch": r["batch"], "seq_len": r["seq_len"]}
        values = [
            ratio(result["model"], match, f, "model", "inhibi", "distilbert") for f in ("forward", "distill_step")
        ]
        cells = ["-" if v is None else f"{v:.2f}x" for v in values]
        lines.append(f"| {r['dtype']} | {r['batch']} | {r['seq_len']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu --interpret for the smoke run)")
    reason = triton_unsupported(torch.zeros(1, 1, 1, 8, device=device), True)
    if reason is not None:
        raise SystemExit(f"the Triton kernel cannot run here: {reason}")
    budget = Budget(args.budget_s)
    result = {
        "machine": common.machine(device),
        "interpret": args.interpret,
        "args": vars(args) | {"json": str(args.json), "doc": str(args.doc)},
    }
    result["command"] = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["checks"] = check_kernel(device, args.dtypes, args.interpret)
    if all(c["ok"] for c in result["checks"]):
        result["attention"] = time_attention(args, device, budget)
        result["model"] = time_models(args, device, budget)
    result["wall_s"] = time.perf_counter() - budget.start
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.doc and "attention" in result:
        common.replace_section(args.doc, SECTION, render(result))
    print(f"wrote {args.json} ({result['wall_s']:.0f} s)")
    if not all(c["ok"] for c in result["checks"]):
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
