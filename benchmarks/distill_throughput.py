#!/usr/bin/env python
# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Throughput of distillation steps: the inhibitor student against the dot-product student, same recipe and shapes.

One step is what `run_glue_distill.py --mode distill` does per batch: the frozen teacher's forward (no_grad), the
student's forward and backward, the distillation loss (KL on temperature-softened logits times T^2 plus the hard-label
loss), gradient clipping and an AdamW step. Both students are DistilBERT-layout sequence classifiers built from the
same random configuration (MiniLM-sized or DistilBERT-sized) and differ only in the attention; the teacher is a
dot-product DistilBERT of the same size. Prints examples per second for each and the inhibitor/dot ratio.

    python benchmarks/distill_throughput.py                              # MiniLM size, batch 32, seq 128, CPU
    python benchmarks/distill_throughput.py --size distilbert --steps 5 --implementation auto cdist
    python benchmarks/distill_throughput.py --device cuda --mixed_precision bf16 --json outputs/distill_tp.json

`--implementation` picks how the inhibitor student computes attention (`config.inhibitor_implementation`): `auto`
uses the fused kernel of `inhibidistilbert_kernels` where it is importable for the device, `cdist` the pure-PyTorch
form, `fused` insists on the kernel. The report says which one actually ran (calls into the fused kernel are counted).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repository

from modeling_inhibidistilbert import InhibiDistilBertConfig, InhibiDistilBertForSequenceClassification  # noqa: E402
from modeling_inhibidistilbert import modeling_inhibidistilbert as modeling  # noqa: E402
from modeling_inhibidistilbert.distill.losses import DistillationLoss  # noqa: E402
from modeling_inhibidistilbert.distill.training import parameter_groups  # noqa: E402

SIZES = {  # DistilBERT-layout shapes (all-MiniLM-L6-v2 and distilbert-base-uncased)
    "minilm": {"dim": 384, "n_layers": 6, "n_heads": 12, "hidden_dim": 1536},
    "distilbert": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072},
}
VOCAB_SIZE = 30522


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="minilm", help="student and teacher shapes")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per student")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (kernel build, allocator, caches)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed_precision", choices=("no", "bf16", "fp16"), default="no", help="autocast dtype")
    parser.add_argument(
        "--implementation",
        nargs="+",
        choices=("auto", *modeling.ATTENTION_IMPLEMENTATIONS),
        default=["auto", "cdist"],
        help="inhibitor attention implementation(s) to time",
    )
    parser.add_argument("--pad_fraction", type=float, default=0.0, help="share of padded positions per row (0-0.9)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


class ImplementationRecorder:
    """Counts which attention implementation the model file selects per call (`select_implementation`)."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self._original = modeling.select_implementation

    def __enter__(self):
        def recorded(*args, **kwargs):
            name = self._original(*args, **kwargs)
            self.calls[name] = self.calls.get(name, 0) + 1
            return name

        modeling.select_implementation = recorded
        return self

    def __exit__(self, *exc):
        modeling.select_implementation = self._original

    def ran(self) -> str:
        return ", ".join(sorted(self.calls)) or "-"


def make_batch(args, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(args.seed)
    input_ids = torch.randint(1000, VOCAB_SIZE, (args.batch_size, args.seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    padded = int(args.pad_fraction * args.seq_len)
    if padded:
        lengths = torch.randint(args.seq_len - padded, args.seq_len + 1, (args.batch_size,), generator=generator)
        attention_mask = (torch.arange(args.seq_len)[None, :] < lengths[:, None]).long()
        input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    labels = torch.randint(0, 2, (args.batch_size,), generator=generator)
    return {k: v.to(device) for k, v in dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels).items()}


def build_models(args, implementation: str | None, device: torch.device):
    """(student, teacher): an inhibitor (implementation given) or dot-product student and a dot-product teacher."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    shape = dict(SIZES[args.size], vocab_size=VOCAB_SIZE, max_position_embeddings=max(512, args.seq_len), num_labels=2)
    torch.manual_seed(args.seed)
    teacher = DistilBertForSequenceClassification(DistilBertConfig(**shape)).to(device).eval().requires_grad_(False)
    torch.manual_seed(args.seed + 1)
    if implementation is None:
        student = DistilBertForSequenceClassification(DistilBertConfig(**shape))
    else:
        config = InhibiDistilBertConfig(**shape, inhibitor_implementation=implementation)
        student = InhibiDistilBertForSequenceClassification(config)
    return student.to(device).train(), teacher


def time_student(args, implementation: str | None, device: torch.device) -> dict:
    """Warm up, then time `args.steps` full distillation steps; examples/s from the median step time."""
    student, teacher = build_models(args, implementation, device)
    loss_fn = DistillationLoss(is_regression=False, alpha_kd=0.5, alpha_ce=0.5, temperature=2.0)
    optimizer = torch.optim.AdamW(parameter_groups(student, 5e-5, 0.01), lr=5e-5)
    batch = make_batch(args, device)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=args.mixed_precision == "fp16")

    def step():
        with autocast():
            with torch.no_grad():
                teacher_outputs = teacher(**inputs)
            outputs = student(**inputs)
            loss, _ = loss_fn(outputs, batch["labels"], teacher_outputs, batch["attention_mask"])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {float(loss)} in the benchmark")

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with ImplementationRecorder() as recorder:
        for _ in range(args.warmup):
            step()
        synchronize()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            synchronize()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    ran = "dot-product (transformers DistilBERT, " + student.config._attn_implementation + ")"
    if implementation is not None:
        ran = recorder.ran()
    return {
        "student": "dot" if implementation is None else "inhibitor",
        "implementation": implementation or "-",
        "ran": ran,
        "step_seconds_median": median,
        "step_seconds_all": times,
        "examples_per_second": args.batch_size / median,
        "parameters": sum(p.numel() for p in student.parameters()),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    environment = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(f"Distillation step throughput: {args.size} size {SIZES[args.size]}, batch {args.batch_size}, ", end="")
    print(
        f"seq {args.seq_len}, {args.warmup} warmup + {args.steps} timed steps, mixed precision {args.mixed_precision}"
    )
    print(f"{environment['device_name']} ({device}), torch {environment['torch']}, {environment['threads']} threads")

    rows = [time_student(args, None, device)]
    for implementation in args.implementation:
        rows.append(time_student(args, implementation, device))

    dot = rows[0]["examples_per_second"]
    print(f"\n{'student':<10} {'implementation':<15} {'ran':<45} {'s/step':>8} {'examples/s':>11} {'vs dot':>7}")
    for row in rows:
        row["ratio_to_dot"] = row["examples_per_second"] / dot
        print(
            f"{row['student']:<10} {row['implementation']:<15} {row['ran']:<45} {row['step_seconds_median']:>8.3f} "
            f"{row['examples_per_second']:>11.1f} {row['ratio_to_dot']:>7.3f}"
        )
    for row in rows[1:]:
        print(
            f"inhibitor ({row['implementation']}, ran {row['ran']}) / dot throughput ratio: {row['ratio_to_dot']:.3f} "
            f"({1 / row['ratio_to_dot']:.2f}x the dot-product step time)"
        )
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **environment}
    results["rows"] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
