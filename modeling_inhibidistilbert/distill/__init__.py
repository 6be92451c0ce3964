"""Training tools for InhibiDistilBERT: task data, distillation losses, GLUE metrics, checkpointing.

Not part of the shipped model (the Hub folder needs only the configuration and modeling files); the training scripts
`run_glue_distill.py` and `run_distill_general.py` are drivers of its training engine (`engine.py`). Needs the
`train` extra (accelerate, datasets, ...).
"""

from ..tasks import TASKS, TaskSpec, get_task
from .checkpointing import TrainerState, list_checkpoints, resolve_checkpoint
from .data import DataError, load_task_splits, load_text_corpus, tokenize_splits
from .losses import DistillationLoss, hidden_state_loss, parse_layer_map, soft_target_loss
from .metrics import compute_task_metrics

__all__ = [
    "TASKS",
    "DataError",
    "DistillationLoss",
    "TaskSpec",
    "TrainerState",
    "compute_task_metrics",
    "get_task",
    "hidden_state_loss",
    "list_checkpoints",
    "load_task_splits",
    "load_text_corpus",
    "parse_layer_map",
    "resolve_checkpoint",
    "soft_target_loss",
    "tokenize_splits",
]
