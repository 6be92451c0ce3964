# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Does the integer path pay? int8 inhibitor attention and an int8 model, timed and scored on CPU.

Three measurements, each printed with the CPU model, its vector extensions and the thread count:

1. Attention (B=8, H=12, d=64 by default, N=128 and 512): the int8 kernel against the float32 fused kernel, on the
   same inputs (a padding mask on one sample). Target: int8 time / float time <= 1.
2. Whole-model forward: InhibiDistilBERT in int8 (`quantize_model_for_inference`: `torch.ao` dynamic quantisation
   of every Linear layer plus the integer attention) against `transformers.DistilBertModel` of the same size
   quantised the same way (`quantize_linear_layers`: dynamic int8 Linear layers with per-channel weights; its own
   float SDPA attention); the float32 models for scale.
   Target: int8 InhibiDistilBERT time / int8 DistilBERT time < 1. The size is the student's (`--model`) or
   DistilBERT-base's; weights are random for timing (the time does not depend on them).
3. Accuracy (`--model FOLDER --data_dir DIR`): an SST-2 classifier folder scored on the full dev set
   (`DIR/dev.tsv`, 872 rows) in float32 and in int8. Target: |int8 - float32| <= 0.5 points.

Usage (a quiet machine; the thread count moves the ratios, so it is printed):
    python benchmarks/quantized.py --threads 2
    python benchmarks/quantized.py --model outputs/quick/sst2/student-inhibitor-seed42 --data_dir /path/SST-2

Saving a quantised model: keep the float checkpoint; `quantize_model_for_inference` after `from_pretrained` rebuilds
the same int8 model (dynamic quantisation is a deterministic function of the float weights).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, measure  # noqa: E402

import inhibidistilbert_kernels as kernels  # noqa: E402
from modeling_inhibidistilbert import (  # noqa: E402
    InhibiDistilBertConfig,
    InhibiDistilBertForSequenceClassification,
    InhibiDistilBertModel,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--min_run_time", type=float, default=1.0, help="seconds of timing per measurement")
    parser.add_argument("--model", type=Path, help="an InhibiDistilBERT SST-2 classifier folder (size and accuracy)")
    parser.add_argument("--data_dir", type=Path, help="folder with SST-2's dev.tsv (accuracy of --model)")
    parser.add_argument("--skip_model", action="store_true", help="attention only")
    args = parser.parse_args(argv)
    if args.data_dir is not None and args.model is None:
        parser.error("--data_dir scores --model; pass the classifier folder with --model")
    if args.data_dir is not None and not (args.data_dir / "dev.tsv").is_file():
        parser.error(f"--data_dir {args.data_dir} has no dev.tsv (SST-2's GLUE layout: sentence<TAB>label)")
    if args.model is not None and not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model} has no config.json; pass a saved InhibiDistilBERT folder")
    return args


def time_attention(batch: int, lengths: list[int], min_run_time: float) -> list[dict]:
    rows = []
    heads, head_dim = 12, 64
    gen = torch.Generator().manual_seed(0)
    params = (torch.full((heads,), 1.0), torch.zeros(heads), torch.full((heads,), 0.05))
    for n in lengths:
        q, k, v = (torch.randn(batch, heads, n, head_dim, generator=gen) for _ in range(3))
        key_mask = torch.ones(batch, n, dtype=torch.bool)
        key_mask[-1, n // 2 :] = False
        args = (q, k, v, *params, key_mask, True, True)
        with torch.inference_mode():
            fused = measure(lambda a=args: kernels.fused_inhibitor_attention(*a), min_run_time)
            int8 = measure(lambda a=args: kernels.int8_inhibitor_attention(*a), min_run_time)
        rows.append({"n": n, "float32 fused": fused, "int8": int8, "ratio": int8["median_s"] / fused["median_s"]})
    return rows


def student_config(folder: Path | None) -> InhibiDistilBertConfig:
    if folder is not None:
        return InhibiDistilBertConfig.from_pretrained(folder)
    return InhibiDistilBertConfig(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)  # DistilBERT-base's size


def same_size_distilbert(config: InhibiDistilBertConfig) -> DistilBertModel:
    fields = ("vocab_size", "dim", "n_layers", "n_heads", "hidden_dim", "max_position_embeddings")
    return DistilBertModel(DistilBertConfig(**{f: getattr(config, f) for f in fields}, attn_implementation="sdpa"))


def time_models(config: InhibiDistilBertConfig, batch: int, lengths: list[int], min_run_time: float) -> list[dict]:
    torch.manual_seed(0)
    config.inhibitor_implementation = "auto"
    inhibitor = InhibiDistilBertModel(config).eval()
    models = {
        "InhibiDistilBERT float32": inhibitor,
        "DistilBERT float32": same_size_distilbert(config).eval(),
    }
    int8_inhibitor = InhibiDistilBertModel(config).eval()
    int8_inhibitor.load_state_dict(inhibitor.state_dict())
    models["InhibiDistilBERT int8"] = kernels.quantize_model_for_inference(int8_inhibitor)
    models["DistilBERT int8"] = kernels.quantize_linear_layers(same_size_distilbert(config).eval())
    rows = []
    for n in lengths:
        input_ids = torch.randint(1000, min(config.vocab_size, 30000), (batch, n), generator=torch.Generator())
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        row = {"n": n}
        with torch.inference_mode():
            for name, model in models.items():
                row[name] = measure(lambda m=model, x=inputs: m(**x), min_run_time)
        row["ratio"] = row["InhibiDistilBERT int8"]["median_s"] / row["DistilBERT int8"]["median_s"]
        rows.append(row)
    return rows


def read_sst2_dev(data_dir: Path) -> tuple[list[str], list[int]]:
    with open(data_dir / "dev.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def accuracy(model, tokenizer, sentences: list[str], labels: list[int], batch_size: int = 32) -> float:
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(sentences), batch_size):
            inputs = tokenizer(sentences[start : start + batch_size], padding=True, truncation=True, max_length=128)
            inputs = {name: torch.tensor(value) for name, value in inputs.items() if name != "token_type_ids"}
            predictions = model(**inputs).logits.argmax(-1)
            correct += int((predictions == torch.tensor(labels[start : start + batch_size])).sum())
    return 100.0 * correct / len(sentences)


def score_folder(folder: Path, data_dir: Path) -> dict:
    sentences, labels = read_sst2_dev(data_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = InhibiDistilBertForSequenceClassification.from_pretrained(folder).eval()
    model.config.inhibitor_implementation = "auto"
    start = time.perf_counter()
    float_accuracy = accuracy(model, tokenizer, sentences, labels)
    float_seconds = time.perf_counter() - start
    kernels.quantize_model_for_inference(model)
    start = time.perf_counter()
    int8_accuracy = accuracy(model, tokenizer, sentences, labels)
    int8_seconds = time.perf_counter() - start
    return {
        "rows": len(labels),
        "float32": float_accuracy,
        "int8": int8_accuracy,
        "difference": int8_accuracy - float_accuracy,
        "seconds": (float_seconds, int8_seconds),
    }


def ms(entry: dict) -> str:
    note = f" ({entry['note']})" if entry["note"] else ""
    return f"{1e3 * entry['median_s']:.2f} ms{note}"


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    error = kernels.library_error()
    if error is not None:
        raise SystemExit(f"error: the int8 and fused kernels cannot run here: {error}")
    print(f"Machine: {machine_line(machine())}")
    print(f"Kernel paths: float {kernels.cpu_isa()}, int8 {kernels.int8_isa()}")
    print(f"Command: python benchmarks/quantized.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"\nAttention, B={args.batch}, H=12, d=64, forward (median of torch.utils.benchmark)")
    print("| N | float32 fused | int8 | int8 / float32 |\n|---|---|---|---|")
    for row in time_attention(args.batch, args.lengths, args.min_run_time):
        print(f"| {row['n']} | {ms(row['float32 fused'])} | {ms(row['int8'])} | {row['ratio']:.2f}x |")
    if not args.skip_model:
        config = student_config(args.model)
        size = f"dim {config.dim}, {config.n_layers} layers, {config.n_heads} heads, FFN {config.hidden_dim}"
        print(f"\nWhole-model forward, B={args.batch}, same size ({size}), int8 = dynamic int8 Linear layers")
        names = ("InhibiDistilBERT float32", "DistilBERT float32", "InhibiDistilBERT int8", "DistilBERT int8")
        print(f"| N | {' | '.join(names)} | InhibiDistilBERT int8 / DistilBERT int8 |")
        print("|---" * (len(names) + 2) + "|")
        for row in time_models(config, args.batch, args.lengths, args.min_run_time):
            print(f"| {row['n']} | {' | '.join(ms(row[name]) for name in names)} | {row['ratio']:.2f}x |")
    if args.data_dir is not None:
        scores = score_folder(args.model, args.data_dir)
        print(f"\nSST-2 dev accuracy of {args.model} ({scores['rows']} rows, batches of 32, max length 128)")
        print("| float32 | int8 | int8 - float32 (points) |\n|---|---|---|")
        print(f"| {scores['float32']:.2f} | {scores['int8']:.2f} | {scores['difference']:+.2f} |")
        print(f"(evaluation took {scores['seconds'][0]:.1f} s in float32, {scores['seconds'][1]:.1f} s in int8)")


if __name__ == "__main__":
    main()
