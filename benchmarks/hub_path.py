#!/usr/bin/env python
# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""The speed a Hub user gets: a folder loaded through `trust_remote_code` in a fresh process with only torch and
transformers, against DistilBERT of the same size.

The parent saves a randomly initialised InhibiDistilBERT of DistilBERT-base's size with `save_pretrained`, then runs
a child process in which `modeling_inhibidistilbert` and `inhibidistilbert_kernels` cannot be imported (a meta-path
blocker, no PYTHONPATH) and Inductor's cache is empty, so the first call pays the compilation a user pays. The child
loads the folder with `AutoModel.from_pretrained(..., trust_remote_code=True)` and measures, at batch `--batch` and
each `--seq_lens`:
- the whole-model forward (eval, no_grad, all-ones attention mask) against `transformers.DistilBertModel` (random
  weights, the same size, SDPA attention), and the first call of each (compilation included);
- the attention alone, `[B, 12, N, 64]`: the implementation the model ran (`compiled` where Inductor works, else
  `cdist`) and the cdist form, forward and forward+backward, against `scaled_dot_product_attention`; the compiled
  output's error against the cdist form;
- which attention implementation the model's debug log says ran, and the process's peak resident memory.
Timing: `torch.utils.benchmark` (benchmarks/common.py). Results are kept per machine (CPU model and threads) in
`--results` and every machine's table is regenerated in the `hub-path` section of docs/benchmarks.md.

    python benchmarks/hub_path.py                       # B=8, N=128 and 512, every core; about 10 minutes on 2 cores
    python benchmarks/hub_path.py --quick --no_doc      # tiny smoke run (tests/test_benchmarks.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertModel  # noqa: E402

SIZES = {
    "distilbert": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "vocab_size": 30522},
    "tiny": {"dim": 64, "n_layers": 2, "n_heads": 4, "hidden_dim": 128, "vocab_size": 100},
}
TARGETS = {"model": 1.2, "attention_fwd": 4.0}  # issue 18: whole model <= 1.2x DistilBERT, attention <= 4x SDPA
SECTION = "hub-path"

# Our packages cannot be imported in the child, as on a user's machine that only has torch and transformers.
BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_inhibidistilbert", "inhibidistilbert_kernels"):
            raise ModuleNotFoundError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, _Block())
"""

CHILD = """
import importlib.util, json, logging, resource, sys, time
import torch
import torch.nn.functional as F
from transformers import AutoModel, DistilBertConfig, DistilBertModel

spec = importlib.util.spec_from_file_location("common", {common!r})
common = importlib.util.module_from_spec(spec)
spec.loader.exec_module(common)
args = json.loads({args!r})
torch.set_num_threads(args["threads"])
lines = []
handler = logging.Handler()
handler.emit = lambda record: lines.append(record.getMessage())
logging.getLogger("transformers_modules").addHandler(handler)
logging.getLogger("transformers_modules").setLevel(logging.DEBUG)

model = AutoModel.from_pretrained(args["folder"], trust_remote_code=True).eval()
modeling = sys.modules[type(model).__module__]
kernels = next(m for name, m in sys.modules.items() if name.endswith(".kernels_inhibidistilbert"))
size = args["size"]
distil = DistilBertModel(DistilBertConfig(
    dim=size["dim"], n_layers=size["n_layers"], n_heads=size["n_heads"], hidden_dim=size["hidden_dim"],
    vocab_size=size["vocab_size"], attn_implementation="sdpa")).eval()
heads, head_dim = size["n_heads"], size["dim"] // size["n_heads"]
rows = []
for n in args["seq_lens"]:
    batch = args["batch"]
    ids = torch.randint(0, size["vocab_size"], (batch, n))
    mask = torch.ones_like(ids)
    row = {{"batch": batch, "seq_len": n}}
    with torch.no_grad():
        for label, net in (("inhibi", model), ("distilbert", distil)):
            start = time.perf_counter()
            net(input_ids=ids, attention_mask=mask)
            row[label + "_first_call_s"] = time.perf_counter() - start
            row[label] = common.measure(lambda: net(input_ids=ids, attention_mask=mask), args["min_run_time"])
    row["ran"] = sorted({{line.split("'")[1] for line in lines if "implementation" in line and "'" in line}})
    gen = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen) for _ in range(3))
    gamma, delta, eta = 0.5 + torch.rand(heads), 0.1 * torch.randn(heads), 0.5 + torch.rand(heads)
    forms = {{"sdpa": lambda q, k, v, g, dl, e: F.scaled_dot_product_attention(q, k, v),
              "cdist": lambda q, k, v, g, dl, e: modeling.inhibitor_attention_cdist(q, k, v, g, dl, e)[0]}}
    if kernels.compiled_unsupported(q, True) is None:
        forms["compiled"] = lambda q, k, v, g, dl, e: kernels.compiled_inhibitor_attention(q, k, v, g, dl, e)
    with torch.no_grad():
        if "compiled" in forms:
            start = time.perf_counter()
            fast = forms["compiled"](q, k, v, gamma, delta, eta)
            row["attention_compiled_first_call_s"] = time.perf_counter() - start
            ref = forms["cdist"](q, k, v, gamma, delta, eta)
            row["compiled_vs_cdist_rel_err"] = ((fast - ref).norm() / ref.norm()).item()
        for name, fn in forms.items():
            row["attention_fwd_" + name] = common.measure(lambda: fn(q, k, v, gamma, delta, eta), args["min_run_time"])
    if not args["skip_backward"]:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        grad_out = torch.randn_like(q)
        for name, fn in forms.items():
            def step(fn=fn):
                out = fn(*leaves, gamma, delta, eta)
                return torch.autograd.grad(out, leaves, grad_out)
            start = time.perf_counter()
            step()
            row["attention_fwd+bwd_" + name + "_first_call_s"] = time.perf_counter() - start
            row["attention_fwd+bwd_" + name] = common.measure(step, args["min_run_time"])
    rows.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
json.dump({{"rows": rows, "machine": common.machine(), "kernels_file": kernels.__file__, "heads": heads, "head_dim": head_dim,
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}, open(args["out"], "w"))
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_lens", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--threads", type=int, default=common.usable_cores(), help="torch threads (default: all)")
    parser.add_argument("--min_run_time", type=float, default=2.0, help="seconds of timing per measurement")
    parser.add_argument("--skip_backward", action="store_true", help="forward only")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes (a smoke run)")
    parser.add_argument("--note", default="", help="a line printed under this machine's table")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "docs" / "benchmarks_hub_path.json")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no_doc", action="store_true", help="print only; keep --results and --doc as they are")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seq_lens, args.min_run_time = 2, [16], 0.05
    return args


def run_child(args, folder: Path, work: Path) -> dict:
    child_args = {
        "folder": str(folder),
        "seq_lens": args.seq_lens,
        "batch": args.batch,
        "threads": args.threads,
        "min_run_time": args.min_run_time,
        "skip_backward": args.skip_backward,
        "size": SIZES["tiny" if args.quick else "distilbert"],
        "out": str(work / "result.json"),
    }
    code = BLOCKER + textwrap.dedent(
        CHILD.format(common=str(Path(common.__file__).resolve()), args=json.dumps(child_args))
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(work / "hf_home"),
        TORCHINDUCTOR_CACHE_DIR=str(work / "inductor"),  # empty: the first call compiles, as for a new user
        OMP_NUM_THREADS=str(args.threads),
        PYTHONNOUSERSITE="1",
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the Hub-path child failed:\n{result.stderr[-4000:]}")
    return json.loads((work / "result.json").read_text())


def ratio(row: dict, name: str, base: str) -> float | None:
    if name not in row or base not in row:
        return None
    return row[name]["median_s"] / row[base]["median_s"]


def ms(entry: dict | None) -> str:
    return "-" if not entry else f"{1e3 * entry['median_s']:.1f}"


def verdict(value: float | None, target: float) -> str:
    return "-" if value is None else f"{value:.2f}x ({'met' if value <= target else 'MISSED'})"


def machine_table(entry: dict) -> str:
    """One machine's tables (markdown)."""
    rows = entry["rows"]
    lines = [f"### {common.machine_line(entry['machine'])}", ""]
    if entry.get("note"):
        lines += [f"*{entry['note']}*", ""]
    lines += [
        f"Command: `{entry['command']}`. The model ran: {', '.join(sorted({n for r in rows for n in r['ran']}))}. "
        f"Peak resident memory of the child process: {entry['max_rss_mb']:.0f} MB.",
        "",
        "| B | N | InhibiDistilBERT (Hub) ms | DistilBERT (SDPA) ms | ratio (target <= 1.2x) | first call: Inhibi / "
        "DistilBERT s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['seq_len']} | {ms(r['inhibi'])} | {ms(r['distilbert'])} | "
            f"{verdict(ratio(r, 'inhibi', 'distilbert'), TARGETS['model'])} | "
            f"{r['inhibi_first_call_s']:.1f} / {r['distilbert_first_call_s']:.1f} |"
        )
    lines += [
        "",
        f"Attention alone, `[B, {entry['heads']}, N, {entry['head_dim']}]`, the Hub file's functions:",
        "",
        "| B | N | pass | compiled ms | cdist ms | SDPA ms | compiled / SDPA | cdist / SDPA | compiled first call s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for pass_name in ("fwd", "fwd+bwd"):
            key = f"attention_{pass_name}_"
            if key + "sdpa" not in r:
                continue
            first = r.get("attention_compiled_first_call_s" if pass_name == "fwd" else key + "compiled_first_call_s")
            compiled_ratio, cdist_ratio = (
                ratio(r, key + "compiled", key + "sdpa"),
                ratio(r, key + "cdist", key + "sdpa"),
            )
            if pass_name == "fwd":
                compiled_text = verdict(compiled_ratio, TARGETS["attention_fwd"])
            else:
                compiled_text = "-" if compiled_ratio is None else f"{compiled_ratio:.2f}x"
            lines.append(
                f"| {r['batch']} | {r['seq_len']} | {pass_name} | {ms(r.get(key + 'compiled'))} | "
                f"{ms(r.get(key + 'cdist'))} | {ms(r.get(key + 'sdpa'))} | {compiled_text} | "
                f"{'-' if cdist_ratio is None else f'{cdist_ratio:.1f}x'} | {'-' if first is None else f'{first:.1f}'} |"
            )
    errors = [r["compiled_vs_cdist_rel_err"] for r in rows if "compiled_vs_cdist_rel_err" in r]
    if errors:
        lines += ["", f"Compiled form against the cdist form: relative L2 error at most {max(errors):.1e}."]
    noisy = [f"{r['seq_len']}" for r in rows for v in r.values() if isinstance(v, dict) and v.get("note")]
    if noisy:
        lines += [
            "",
            f"Some measurements were noisy (IQR above 10% of the median) at N = {', '.join(sorted(set(noisy)))}.",
        ]
    return "\n".join(lines)


def render(results: dict) -> str:
    header = textwrap.dedent(
        """
        ## The Hub path: a folder loaded with `trust_remote_code` and nothing else installed

        Regenerated by `python benchmarks/hub_path.py` (one table per machine; results kept in
        `docs/benchmarks_hub_path.json`). Random weights of DistilBERT-base's size, eval mode, no_grad, float32,
        all-ones attention mask; DistilBERT is `transformers.DistilBertModel` with SDPA attention. First calls
        include Inductor's compilation on an empty cache (once per process and shape bucket).
        """
    )
    return header + "\n" + "\n\n".join(machine_table(results[key]) for key in sorted(results))


def main(argv=None) -> dict:
    args = parse_args(argv)
    size = SIZES["tiny" if args.quick else "distilbert"]
    with tempfile.TemporaryDirectory(prefix="hub_path_") as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        config = InhibiDistilBertConfig(**size)
        InhibiDistilBertModel(config).save_pretrained(work / "folder")
        entry = run_child(args, work / "folder", work)
    if REPO_ROOT.as_posix() in entry["kernels_file"]:
        raise SystemExit(f"the child ran the repository's file ({entry['kernels_file']}), not the folder's copy")
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--note", args.note)]
    entry["command"] = " ".join(["python benchmarks/hub_path.py", *shown, *(['--note "..."'] if args.note else [])])
    entry["note"] = args.note
    key = f"{entry['machine']['cpu']}, {entry['machine']['threads']} threads"
    print(machine_table(entry))
    if not args.no_doc and not args.quick:
        results = common.merge_results(args.results, key, entry)
        common.replace_section(args.doc, SECTION, render(results))
        print(f"\nwrote {args.results} and the {SECTION!r} section of {args.doc}")
    return entry


if __name__ == "__main__":
    main()
