"""The training engine's tools: recipes (a base YAML plus overrides), the output folder and its resume rules, the
optimizer's parameter groups, the run log, and the non-finite guards (loss and gradients).

The loop itself is `engine.Engine`; the scripts (`run_glue_distill.py`, `run_distill_general.py`) drive it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from .checkpointing import BEST_PREFIX, CHECKPOINT_PREFIX, CHECKPOINTS_DIR, resolve_checkpoint

INHIBITOR_SCALARS = ("score_scale", "shift", "output_scale")
RECIPE_KEY = "run_recipe"  # training_args.json: the arguments a resumed run must repeat
LEGACY_IDENTITY = ("task_name", "mode", "student_attention", "model_name_or_path", "teacher_name_or_path")
RESULT_FILES = ("all_results.json", "eval_results.json", "training_args.json", "log_history.jsonl")
# The weights a run writes next to its results: one file, or shards with their index (stale shards next to a new
# single file would be uploaded with it). `--overwrite_output_dir` removes them with the rest of the old run.
WEIGHT_FILE_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")


class OutputDirError(ValueError):
    """The output folder holds another run, or files that would be overwritten without --overwrite_output_dir."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the optimizer step (checkpoints left intact)."""


# ARGUMENTS AND RECIPES #


def str2bool(value) -> bool:
    """`true/false/yes/no/1/0` (any case) as a bool, for `--flag true|false` arguments."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


BASE_KEY = "base"


def load_recipe(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """Read a YAML recipe: a mapping of argument names (as on the command line, without dashes) to values.

    `base: other.yaml` (relative to the recipe's folder) starts from that recipe's values, which this one overrides;
    the task recipes share `configuration/base/task.yaml` this way.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe {path} does not exist.")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"error: recipe {path} must be a mapping of argument names to values.")
    base = values.pop(BASE_KEY, None)
    if base is None:
        return values
    base_path = (path.parent / base).resolve()
    if base_path in _seen:
        raise SystemExit(f"error: recipe {path}: its bases form a cycle through {base_path}.")
    return {**load_recipe(base_path, (*_seen, base_path)), **values}


def parse_args_with_recipe(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; values from `--config recipe.yaml` become defaults, so the command line wins.

    Unknown recipe keys are an error (a typo would otherwise be silently ignored). The namespace gets `recipe`
    (the path) and `recipe_values` (what the recipe set).
    """
    pre, _ = parser.parse_known_args(argv)
    recipe_values: dict = {}
    if getattr(pre, "config", None):
        recipe_values = load_recipe(pre.config)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe_values) - known)
        if unknown:
            raise SystemExit(f"error: recipe {pre.config} sets unknown argument(s): {', '.join(unknown)}")
        defaults = {}
        for action in parser._actions:
            if action.dest in recipe_values:
                value = recipe_values[action.dest]
                if action.type is not None and value is not None and not isinstance(value, bool | list):
                    value = action.type(value) if isinstance(value, str) else value
                defaults[action.dest] = value
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    args.recipe = getattr(pre, "config", None)
    args.recipe_values = recipe_values
    return args


def save_training_args(args: argparse.Namespace, path: Path, **extra) -> None:
    """Every resolved argument plus `extra` (versions, processes, ...), as JSON."""
    from .checkpointing import write_json_atomic

    values = {key: value for key, value in vars(args).items()}
    values.update(extra)
    write_json_atomic(path, values)


# OUTPUT FOLDER #


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def prepare_output_dir(
    output_dir: str | os.PathLike,
    identity: dict,
    resume_from_checkpoint: str | None,
    overwrite: bool,
    is_main_process: bool = True,
    barrier=None,
) -> Path | None:
    """Check the output folder before anything runs; return the checkpoint to resume from (or `None`).

    Rerunning the same command after an interruption resumes; nothing else in the folder is lost silently:

    - `--resume_from_checkpoint latest|PATH` with a checkpoint: resume from it. The folder's `training_args.json`
      must describe the same run with the same recipe (`identity`, recorded there as `run_recipe`: task, models,
      learning rate, data limits, seed, steps, ...; the differing fields are named; a folder written before the recipe
      was recorded compares `LEGACY_IDENTITY`); what is resumed is never removed, with or without
      `--overwrite_output_dir`.
    - `latest` with no checkpoint yet: start from scratch if the folder is empty or holds an unfinished attempt of the
      same run; a folder holding anything else (another run, a finished run, other files) needs `overwrite`.
    - No resuming: a non-empty folder is an error unless `overwrite`.
    - `overwrite` (and nothing to resume) removes what a previous run wrote (checkpoints, best models, result files)
      and lets the new model files replace the old ones; other files stay. With `latest` and another run in the
      folder, `overwrite` starts over instead of failing.

    Every process decides (the same verdict); `barrier` (e.g. `accelerator.wait_for_everyone`) runs after deciding
    and before the main process cleans, so no process looks at a half-cleaned folder.
    """
    folder = Path(output_dir)
    entries = [name for name in _entries(folder) if not name.startswith(".")]
    previous = None
    if (folder / "training_args.json").is_file():
        previous = json.loads((folder / "training_args.json").read_text())
    recorded = None if previous is None else previous.get(RECIPE_KEY)
    if previous is not None and recorded is None:  # written before the recipe was recorded: the run's identity
        recorded = {k: previous[k] for k in LEGACY_IDENTITY if k in previous}
    # a field the folder's run did not record (a flag added since) is not compared
    differing = {k: (recorded[k], v) for k, v in identity.items() if recorded and k in recorded and recorded[k] != v}
    checkpoint = None
    if resume_from_checkpoint:
        if differing and not (overwrite and resume_from_checkpoint == "latest"):
            details = "; ".join(f"{k}: folder has {old!r}, this run {new!r}" for k, (old, new) in differing.items())
            raise OutputDirError(
                f"{folder} holds another run, or this run with a changed recipe ({details}); resuming it would "
                "continue the old run's optimizer state under the new values. Resume with the same arguments, or use "
                "another --output_dir (or --overwrite_output_dir to replace that run)."
            )
        if not differing:
            checkpoint = resolve_checkpoint(folder, resume_from_checkpoint)
        elif is_main_process:
            fields = ", ".join(differing)
            logging.getLogger(__name__).warning(
                f"{folder} holds another run or this run with a changed recipe ({fields}); --overwrite_output_dir: "
                "it is replaced and this run starts from step 0 (nothing of the old run is resumed)."
            )
        if checkpoint is None and entries and not overwrite:
            if previous is None:
                raise OutputDirError(
                    f"{folder} is not empty and holds no run of this script ({', '.join(entries[:8])}); nothing to "
                    "resume. Use another --output_dir or pass --overwrite_output_dir."
                )
            if (folder / "all_results.json").is_file():
                raise OutputDirError(
                    f"{folder} holds this run, finished, and no checkpoint to resume from; pass "
                    "--overwrite_output_dir to run it again."
                )
            # an attempt of this run that stopped before its first checkpoint: it starts again
    elif entries and not overwrite:
        raise OutputDirError(
            f"{folder} is not empty ({', '.join(entries[:8])}{', ...' if len(entries) > 8 else ''}); pass "
            "--overwrite_output_dir to replace its run, --resume_from_checkpoint latest to continue it, or choose "
            "another --output_dir."
        )
    if barrier is not None:
        barrier()
    if checkpoint is None and entries and is_main_process:
        clean_output_dir(folder)
    return checkpoint


def clean_output_dir(folder: Path) -> None:
    """Remove what a previous run of these scripts wrote: checkpoints, best models, weights, results, logs,
    temporaries."""
    for pattern in WEIGHT_FILE_PATTERNS:
        for path in folder.glob(pattern):
            path.unlink()
    for path in folder.iterdir():
        name = path.name
        if path.is_dir() and (
            name in (CHECKPOINTS_DIR, "runs") or name.startswith((CHECKPOINT_PREFIX, BEST_PREFIX, ".tmp-", ".old-"))
        ):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and (name in RESULT_FILES or name.startswith(".") and name.endswith(".tmp")):
            path.unlink()


# OPTIMIZER #


def parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, scalar_learning_rate: float | None = None
) -> list[dict]:
    """AdamW groups: weights with decay; biases and LayerNorm without; inhibitor scalars alone, own LR, no decay."""
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    groups = {"decay": [], "no_decay": [], "scalars": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.rsplit(".", 1)[-1] in INHIBITOR_SCALARS and ".attention." in name:
            groups["scalars"].append(param)
        elif name.endswith(".bias") or id(param) in no_decay_ids:
            groups["no_decay"].append(param)
        else:
            groups["decay"].append(param)
    out = [
        {"params": groups["decay"], "weight_decay": weight_decay, "lr": learning_rate, "name": "decay"},
        {"params": groups["no_decay"], "weight_decay": 0.0, "lr": learning_rate, "name": "no_decay"},
    ]
    if groups["scalars"]:
        lr = learning_rate if scalar_learning_rate is None else scalar_learning_rate
        out.append({"params": groups["scalars"], "weight_decay": 0.0, "lr": lr, "name": "inhibitor_scalars"})
    return [group for group in out if group["params"]]


# LOGGING AND SAFETY #


class RunLogger:
    """Writes `log_history.jsonl` (one JSON object per logging or evaluation event) and feeds the trackers.

    On resume the file is cut back to the events at or before the resumed step, so no event appears twice.
    """

    def __init__(self, accelerator, output_dir: str | os.PathLike, resume_step: int | None = None):
        self.accelerator = accelerator
        self.path = Path(output_dir) / "log_history.jsonl"
        if accelerator.is_main_process:
            kept = []
            if resume_step is not None and self.path.is_file():
                for line in self.path.read_text().splitlines():
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
            self.path.write_text("".join(f"{line}\n" for line in kept))

    def log(self, record: dict) -> None:
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and k not in ("step",)}
        self.accelerator.log(numbers, step=record.get("step"))
        if self.accelerator.is_main_process:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


def check_finite_loss(accelerator, loss: torch.Tensor, components: dict, where: str, last_checkpoint) -> None:
    """Stop every process with a clear message when any process's loss is NaN or infinite.

    Called before `backward`, so no bad gradient reaches the weights and the last checkpoint stays the last good one.
    """
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if float(bad.item()) > 0:
        parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in components.items())
        raise NonFiniteLossError(
            f"Non-finite loss ({float(loss.detach()):.4g}) at {where} [{parts}]. Training stopped before the optimizer "
            f"step. {_resume_hint(last_checkpoint)}"
        )


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient became NaN or infinite with a finite loss; training stopped before the optimizer step."""


def check_finite_gradients(accelerator, model, where: str, last_checkpoint) -> None:
    """Stop every process when any gradient is NaN or infinite (a finite loss can have them), before the optimizer
    step writes them into the weights. Skipped under fp16, whose gradient scaler skips such steps by design."""
    if getattr(accelerator, "scaler", None) is not None:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    finite = torch.stack([torch.isfinite(g).all() for g in grads])
    bad = (~finite).sum().float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if float(bad.item()) > 0:
        names = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        raise NonFiniteGradientError(
            f"Non-finite gradients at {where} (the loss was finite) in {len(names)} parameter(s), e.g. "
            f"{', '.join(names[:3]) or 'on another process'}; a NaN or inf in the inputs or activations (or an "
            f"unstable kernel) produced them. Training stopped before the optimizer step. {_resume_hint(last_checkpoint)}"
        )


def _resume_hint(last_checkpoint) -> str:
    resume = (
        f"The last good checkpoint is {last_checkpoint}; resume from it with --resume_from_checkpoint latest"
        if last_checkpoint
        else "No checkpoint was written yet"
    )
    return f"{resume} after lowering --learning_rate, raising --warmup_ratio, or with --mixed_precision no."


def multi_process_without_accelerator() -> bool:
    """Several processes on a machine without a GPU: tell Accelerate to use CPU (gloo), not N unrelated processes.

    `accelerate launch --multi_gpu --num_processes N` (or `torchrun`) on a CPU-only machine otherwise starts N
    processes that each believe they are alone and write over each other's files.
    """
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return not has_accelerator and int(os.environ.get("WORLD_SIZE", "1")) > 1


def cpu_launch_runs_one_process() -> bool:
    """Whether `accelerate launch --cpu --num_processes N` (N > 1) started this single process.

    Without mpirun, Accelerate's `--cpu` launcher starts one process however many are asked for (it sets
    `MASTER_PORT` but no `WORLD_SIZE`). The scripts then say so; `--multi_gpu --num_processes N` on a machine without
    GPU starts N processes that run as one gloo group (see `multi_process_without_accelerator`).
    """
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("true", "1", "yes")
    return use_cpu and "MASTER_PORT" in os.environ and "WORLD_SIZE" not in os.environ


def format_metrics(metrics: dict) -> str:
    return ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}" for k, v in metrics.items()
    )


def environment_info(accelerator) -> dict:
    import accelerate
    import transformers

    return {
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "resolved_mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "accelerate_version": accelerate.__version__,
        "python": sys.version.split()[0],
    }
