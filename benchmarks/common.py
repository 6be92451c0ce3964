# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""What every benchmark shares: the machine description its tables carry, timing with `torch.utils.benchmark`, and
the per-machine JSON results that regenerate a marked section of docs/benchmarks.md.

Only torch and the standard library: the Hub-path child process imports this file by path (our packages are not
importable there).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils import benchmark

VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile")
NOISY_IQR = 0.1  # a measurement whose interquartile range exceeds this share of its median is flagged


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_vector_extensions() -> list[str]:
    """The vector extensions of /proc/cpuinfo's flags that move these ratios (AVX2, AVX-512, AMX...)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in VECTOR_FLAGS if flag in flags]
    return []


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine(device: torch.device | str = "cpu") -> dict:
    """The description every table carries: CPU model, vector extensions, threads (and the GPU where one is used)."""
    info = {
        "cpu": cpu_name(),
        "vector_extensions": cpu_vector_extensions(),
        "threads": torch.get_num_threads(),
        "cores": usable_cores(),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_line(info: dict) -> str:
    extensions = ", ".join(info["vector_extensions"]) or "none found"
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return (
        f"{info['cpu']} ({extensions}), {info['threads']} thread{'s' if info['threads'] != 1 else ''} of {info['cores']} "
        f"cores{gpu}; torch {info['torch']}, "
        f"{info['date']}"
    )


def measure(fn, min_run_time: float = 1.0) -> dict:
    """Median time of `fn()` by `torch.utils.benchmark` (warm-up, block sizing, CUDA synchronisation included)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    result = timer.adaptive_autorange(threshold=NOISY_IQR, min_run_time=min_run_time, max_run_time=10 * min_run_time)
    noisy = result.iqr / result.median > NOISY_IQR if result.median > 0 else False
    return {
        "median_s": result.median,
        "iqr_s": result.iqr,
        "samples": len(result.times),
        "calls_per_sample": result.number_per_run,
        "note": f"noisy: IQR {100 * result.iqr / result.median:.0f}% of the median" if noisy else "",
    }


def merge_results(path: Path, key: str, entry: dict) -> dict:
    """Adds `entry` under `key` (one machine) to the JSON file at `path`, keeping every other machine's entry."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


def replace_section(doc: Path, name: str, text: str) -> None:
    """Replaces the text between `<!-- name:begin -->` and `<!-- name:end -->` in `doc` (appended when absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    content = doc.read_text() if doc.exists() else ""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), flags=re.DOTALL)
    content = pattern.sub(lambda _: block, content) if pattern.search(content) else content.rstrip() + "\n\n" + block
    doc.write_text(content.strip() + "\n")
