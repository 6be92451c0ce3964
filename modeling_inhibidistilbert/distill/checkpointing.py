"""Checkpoints that resume exactly, written atomically, rotated, and the best model kept apart.

Everything about the training state lives in `OUTPUT/checkpoints/`, so that `OUTPUT/` itself is the final model
folder. A checkpoint `OUTPUT/checkpoints/checkpoint-<step>/` holds `accelerator.save_state` (model, optimizer,
scheduler, gradient scaler, every process's RNG states) plus `trainer_state.json` (position: optimizer steps, epoch,
micro-batches done in that epoch; the best evaluation so far). It is written to a hidden temporary folder first and
renamed when complete, so an interrupted save never leaves a half checkpoint that `latest` would pick.

The best model (by the task's main metric) is saved as a plain Hub folder `OUTPUT/checkpoints/best_model-<step>/`; at
the end of training its files are copied into `OUTPUT/`, which then is the final model folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint-"
BEST_PREFIX = "best_model-"
STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    """Where training stands: enough to resume at the exact micro-batch and to keep the best model."""

    completed_steps: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int = 0
    best_epoch: float = 0.0
    best_metrics: dict = field(default_factory=dict)
    train_runtime: float = 0.0
    evaluations_without_improvement: int = 0  # for --early_stopping_patience
    stopped_early: bool = False

    def is_better(self, value: float, greater_is_better: bool = True) -> bool:
        """Whether `value` beats the best so far: the first evaluation always counts, NaN never beats a number."""
        if self.best_metric is None:
            return True
        if value is None or math.isnan(value):
            return False
        if math.isnan(self.best_metric):
            return True
        return value > self.best_metric if greater_is_better else value < self.best_metric

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / STATE_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> TrainerState:
        return cls(**json.loads((folder / STATE_FILE).read_text()))


def write_json_atomic(path: Path, data, indent: int = 2) -> None:
    """Write JSON to a temporary file next to `path` and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str) + "\n")
    os.replace(tmp, path)


def _step_of(path: Path, prefix: str) -> int:
    suffix = path.name.removeprefix(prefix)
    return int(suffix) if suffix.isdigit() else -1


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    """`OUTPUT/checkpoints`: the checkpoints and best models of the run whose model folder is `OUTPUT`."""
    return Path(output_dir) / CHECKPOINTS_DIR


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (those with a trainer state) of the run in `output_dir`, oldest first."""
    folder = checkpoints_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return sorted(
        (p for p in found if _step_of(p, CHECKPOINT_PREFIX) >= 0), key=lambda p: _step_of(p, CHECKPOINT_PREFIX)
    )


def resolve_checkpoint(output_dir: str | os.PathLike, spec: str | None) -> Path | None:
    """`latest` -> the newest complete checkpoint of `output_dir` (or `None`); a path -> that checkpoint, checked."""
    if spec in (None, ""):
        return None
    if spec == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {spec}: not a complete checkpoint (no {STATE_FILE}); pass 'latest' or a "
            f"{CHECKPOINT_PREFIX}<step> folder written by this script."
        )
    return path


def save_checkpoint(accelerator, output_dir: str | os.PathLike, state: TrainerState, total_limit: int | None) -> Path:
    """Save the full training state atomically as `checkpoints/checkpoint-<step>`, then keep the newest `total_limit`.

    Every process must call this (each saves its RNG state); the main process renames and rotates.
    """
    folder = checkpoints_dir(output_dir)
    final = folder / f"{CHECKPOINT_PREFIX}{state.completed_steps}"
    tmp = folder / f".tmp-{final.name}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.save(tmp)
        if final.exists():  # the same step saved again (e.g. after a resume): replace it
            old = folder / f".old-{final.name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        rotate_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


def rotate_checkpoints(output_dir: Path, total_limit: int | None) -> None:
    """Delete the oldest checkpoints of `output_dir` beyond `total_limit` (the newest is always kept)."""
    if not total_limit or total_limit < 1:
        return
    checkpoints = list_checkpoints(output_dir)
    for old in checkpoints[: max(0, len(checkpoints) - total_limit)]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(accelerator, checkpoint: Path) -> TrainerState:
    """Restore model, optimizer, scheduler, scaler and RNG states; return the saved position."""
    accelerator.load_state(str(checkpoint))
    return TrainerState.load(checkpoint)


def save_best_model(accelerator, model, tokenizer, output_dir: str | os.PathLike, state: TrainerState) -> Path:
    """Save the current model as `checkpoints/best_model-<step>` (a Hub folder, written atomically); all processes
    call this."""
    output_dir = Path(output_dir)
    final = best_model_dir(output_dir, state.completed_steps)
    tmp = final.with_name(f".tmp-{final.name}")
    state_dict = accelerator.get_state_dict(model)  # collective under FSDP
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "best_metrics.json", {"step": state.completed_steps, **state.best_metrics})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        prune_best_models(output_dir, keep={state.completed_steps})
    accelerator.wait_for_everyone()
    return final


def prune_best_models(output_dir: Path, keep: set[int]) -> None:
    """Remove `best_model-*` folders except `keep` and those the remaining checkpoints refer to (for resuming)."""
    referenced = set(keep)
    for checkpoint in list_checkpoints(output_dir):
        referenced.add(TrainerState.load(checkpoint).best_step)
    for folder in checkpoints_dir(output_dir).glob(f"{BEST_PREFIX}*"):
        if folder.is_dir() and _step_of(folder, BEST_PREFIX) not in referenced:
            shutil.rmtree(folder, ignore_errors=True)


def best_model_dir(output_dir: str | os.PathLike, step: int) -> Path:
    """`OUTPUT/checkpoints/best_model-<step>`."""
    return checkpoints_dir(output_dir) / f"{BEST_PREFIX}{step}"


def export_best_model(output_dir: str | os.PathLike, step: int) -> None:
    """Copy the files of `best_model-<step>` into `output_dir` (each file replaced atomically)."""
    output_dir = Path(output_dir)
    source = best_model_dir(output_dir, step)
    if not source.is_dir():
        raise FileNotFoundError(f"The best model of step {step} is missing ({source}); cannot export it.")
    for path in source.iterdir():
        if path.is_file() and path.name != "best_metrics.json":
            tmp = output_dir / f".{path.name}.tmp"
            shutil.copy2(path, tmp)
            os.replace(tmp, output_dir / path.name)
