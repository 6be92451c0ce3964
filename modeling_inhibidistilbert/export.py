# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Export a saved InhibiDistilBERT folder for deployment: ONNX (onnxruntime, optimum) or torch.export (ExecuTorch,
AOTInductor). Every head; the batch size and the length stay dynamic; the attention mask is an input.

    inhibidistilbert-export FOLDER OUT --format onnx|torch-export [--benchmark]

`--format onnx` writes OUT with the dynamo ONNX exporter (`torch.onnx.export(..., dynamo=True)`); `--format
torch-export` writes OUT as a `torch.export` program (`torch.export.load(OUT).module()(input_ids, attention_mask)`).
Both trace the model, where the model file computes its L1 distances with subtractions and sums instead of
`torch.cdist` (`modeling_inhibidistilbert.l1_distance`). After writing, the command runs the exported model on two
input shapes and compares it with the PyTorch forward (an error above float32 rounding). `--benchmark` then times the
ONNX model in onnxruntime against the PyTorch forward on the CPU (`benchmark_onnx`).
"""

import argparse
import os
import platform
import sys
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig

from . import modeling_inhibidistilbert as modeling

FORMATS = ("onnx", "torch-export")


class ExportWrapper(nn.Module):
    """The model as `(input_ids, attention_mask) -> tuple of output tensors` (no loss, no optional outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)  # a wrapper left in training mode makes the TorchScript exporter keep dropout

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).values())


def load_model(folder: str | os.PathLike) -> nn.Module:
    """The head named in the folder's `config.json` (`architectures`), in eval mode."""
    config = AutoConfig.from_pretrained(folder)
    name = (getattr(config, "architectures", None) or ["InhibiDistilBertModel"])[0]
    if name not in modeling.__all__:
        raise SystemExit(f"error: {folder} holds a {name}, not one of {', '.join(modeling.__all__)}.")
    return getattr(modeling, name).from_pretrained(folder).eval()


def example_inputs(model: nn.Module, batch: int = 2, length: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids and a padding mask (the first row padded); `[B, C, N]` for the multiple-choice head."""
    shape = (batch, 2, length) if isinstance(model, modeling.InhibiDistilBertForMultipleChoice) else (batch, length)
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, model.config.vocab_size, shape, generator=gen)
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[0, ..., length // 2 :] = 0
    return {
        "input_ids": input_ids.masked_fill(attention_mask == 0, model.config.pad_token_id),
        "attention_mask": attention_mask,
    }


def output_names(model: nn.Module) -> list[str]:
    with torch.no_grad():
        return list(model(**example_inputs(model), return_dict=True).keys())


def dynamic_shapes(model: nn.Module) -> dict:
    """Dynamic batch (and choices) and length, up to `max_position_embeddings`, for both inputs."""
    batch = torch.export.Dim("batch", max=65536)
    length = torch.export.Dim("length", max=model.config.max_position_embeddings)
    if isinstance(model, modeling.InhibiDistilBertForMultipleChoice):
        axes = {0: batch, 1: torch.export.Dim("choices", max=1024), 2: length}
    else:
        axes = {0: batch, 1: length}
    return {"input_ids": axes, "attention_mask": axes}


def export_program(model: nn.Module, path: str | os.PathLike) -> Path:
    """`torch.export.export` of the model (dynamic shapes), saved with `torch.export.save`."""
    program = torch.export.export(
        ExportWrapper(model), (), example_inputs(model), dynamic_shapes=dynamic_shapes(model), strict=False
    )
    torch.export.save(program, path)
    return Path(path)


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int | None = None) -> Path:
    """The dynamo ONNX export of the model (dynamic shapes; inputs `input_ids`, `attention_mask`), one file."""
    program = torch.onnx.export(
        ExportWrapper(model),
        (),
        kwargs=example_inputs(model),
        dynamo=True,
        dynamic_shapes=dynamic_shapes(model),
        input_names=["input_ids", "attention_mask"],
        output_names=output_names(model),
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    program.save(str(path))
    return Path(path)


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exported_runner(path: str | os.PathLike, fmt: str):
    """A function `inputs -> list of numpy outputs` for an exported file."""
    if fmt == "onnx":
        session = onnx_session(path)
        return lambda inputs: session.run(None, {name: t.numpy() for name, t in inputs.items()})
    program = torch.export.load(str(path)).module()
    return lambda inputs: [t.detach().numpy() for t in program(**inputs)]


def max_difference(model: nn.Module, run, shapes=((1, 5), (3, 11))) -> float:
    """Largest |exported - PyTorch| over the outputs, relative to max(1, largest |output|), on inputs of shapes other
    than the traced one."""
    worst = 0.0
    for seed, (batch, length) in enumerate(shapes):
        inputs = example_inputs(model, batch, length, seed=seed + 1)
        with torch.no_grad():
            expected = ExportWrapper(model)(**inputs)
        for got, want in zip(run(inputs), expected):
            error = (torch.as_tensor(got) - want).abs().max() / want.abs().max().clamp(min=1.0)
            worst = max(worst, float(error))
    return worst


def cpu_description() -> str:
    """CPU model name (from /proc/cpuinfo where there is one) and its vector extensions."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(vector) or 'no AVX2'})"


def benchmark_onnx(
    model: nn.Module,
    onnx_path: str | os.PathLike,
    batch: int = 8,
    length: int = 128,
    threads: int | None = None,
    min_run_time: float = 2.0,
) -> dict:
    """Median latency of the ONNX model in onnxruntime and of the PyTorch forward (no grad) on the CPU.

    Both get the same inputs (a padding mask included) and `threads` threads (default: torch's). Timed with
    `torch.utils.benchmark.Timer.blocked_autorange`; prints and returns the two medians and their ratio.
    """
    from torch.utils import benchmark

    threads = threads or torch.get_num_threads()
    inputs = example_inputs(model, batch, length)
    session = onnx_session(onnx_path, threads)
    feed = {name: t.numpy() for name, t in inputs.items()}
    wrapper = ExportWrapper(model).eval()
    with torch.no_grad():  # first calls outside the timing (a compiled attention compiles here)
        wrapper(**inputs)
    session.run(None, feed)
    timers = {
        "onnxruntime": benchmark.Timer("session.run(None, feed)", globals={"session": session, "feed": feed}),
        "pytorch": benchmark.Timer(
            "with torch.no_grad(): wrapper(**inputs)",
            globals={"wrapper": wrapper, "inputs": inputs, "torch": torch},
            num_threads=threads,
        ),
    }
    config = model.config
    query = torch.empty(batch, config.n_heads, length, config.dim // config.n_heads)
    mask = modeling.attention_mask_to_allowed(inputs["attention_mask"], batch, length)
    result = {
        "cpu": cpu_description(),
        "threads": threads,
        "batch": batch,
        "length": length,
        "pytorch_attention": modeling.select_implementation(config, query, mask, False, False),
    }
    for name, timer in timers.items():
        result[f"{name}_ms"] = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
    result["onnx_over_pytorch"] = result["onnxruntime_ms"] / result["pytorch_ms"]
    print(
        f"CPU: {result['cpu']}; threads: {threads}; B={batch}, N={length}, {type(model).__name__}\n"
        f"onnxruntime {result['onnxruntime_ms']:.1f} ms, PyTorch forward {result['pytorch_ms']:.1f} ms with the "
        f"{result['pytorch_attention']!r} attention (ratio {result['onnx_over_pytorch']:.2f})"
    )
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inhibidistilbert-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a folder saved with save_pretrained (config.json and model.safetensors)")
    parser.add_argument("out", help="the file to write (e.g. model.onnx or model.pt2)")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--benchmark", action="store_true", help="time the ONNX model against PyTorch on the CPU")
    parser.add_argument("--batch", type=int, default=8, help="batch size of --benchmark")
    parser.add_argument("--length", type=int, default=128, help="sequence length of --benchmark")
    parser.add_argument("--threads", type=int, default=None, help="threads of --benchmark (default: torch's)")
    args = parser.parse_args(argv)
    if not Path(args.folder, "config.json").is_file():
        parser.error(f"{args.folder} has no config.json; pass a folder written by save_pretrained")
    if args.benchmark and args.format != "onnx":
        parser.error("--benchmark times the ONNX model; use it with --format onnx")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    model = load_model(args.folder)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.format == "onnx":
        export_onnx(model, args.out, args.opset)
    else:
        export_program(model, args.out)
    worst = max_difference(model, exported_runner(args.out, args.format))
    print(f"wrote {args.out} ({args.format}); largest relative |exported - PyTorch| on new shapes: {worst:.2e}")
    if not worst <= 1e-4:
        print(f"error: the exported model differs from PyTorch by {worst:.2e}; please report it", file=sys.stderr)
        return 1
    if args.benchmark:
        benchmark_onnx(model, args.out, args.batch, args.length, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
