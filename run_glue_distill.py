#!/usr/bin/env python
# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Task-specific distillation (and fine-tuning) of InhibiDistilBERT on GLUE and IMDB, with Accelerate.

    # a teacher: fine-tune a dot-product DistilBERT initialised from a BERT-layout checkpoint (here MiniLM)
    python run_glue_distill.py --config configuration/sst2.yaml --mode finetune --student_attention dot \
        --model_name_or_path MINILM_FOLDER --data_dir ../shared/data --output_dir outputs/sst2-teacher
    # distil it into an inhibitor student (or --student_attention dot for the baseline under the same recipe)
    accelerate launch --config_file configuration/accelerate_single_gpu.yaml run_glue_distill.py \
        --config configuration/sst2.yaml --mode distill --teacher_name_or_path outputs/sst2-teacher \
        --model_name_or_path MINILM_FOLDER --student_attention inhibitor --output_dir outputs/sst2-inhibitor

With `--selection_split heldout` every choice (best checkpoint, early stopping) is made on a fixed, seeded part of the
training set (`--heldout_fraction`, `--heldout_min_rows`, `--heldout_seed`) that is removed from training; the dev
set is scored once, on the chosen model, and only reported.

The procedure, top to bottom: arguments (a recipe gives defaults, the command line wins), the engine (Accelerator,
output folder), data (loaded and checked), models (student and teacher), `engine.train` (evaluation, checkpoints,
the best model saved as a Hub folder with its metrics). The loop lives in `modeling_inhibidistilbert.distill.engine`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate.logging import get_logger
from transformers import AutoTokenizer

import modeling_inhibidistilbert  # noqa: F401  (registers InhibiDistilBERT with the Auto classes)
from modeling_inhibidistilbert.distill.data import (
    drop_token_types,
    limit_splits,
    load_task_splits,
    split_heldout,
    tokenize_splits,
)
from modeling_inhibidistilbert.distill.engine import (
    Engine,
    FineTuning,
    TaskDistillation,
    add_common_arguments,
    check_common_arguments,
    run_cli,
)
from modeling_inhibidistilbert.distill.losses import DistillationLoss, parse_layer_map
from modeling_inhibidistilbert.distill.models import (
    INHIBITOR_OVERRIDES,
    ModelSetupError,
    accepts_token_type_ids,
    build_student,
    check_hidden_alignment,
    check_same_vocabulary,
    load_teacher,
)
from modeling_inhibidistilbert.distill.training import parse_args_with_recipe
from modeling_inhibidistilbert.tasks import TASKS, get_task

logger = get_logger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = add_common_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--task_name", type=str.lower, help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--train_file", help="csv/tsv/json/parquet with the task's Hub columns and `label`")
    parser.add_argument("--validation_file", help="csv/tsv/json/parquet with the task's Hub columns and `label`")
    parser.add_argument("--validation_mismatched_file", help="MNLI mismatched validation file (with --validation_file)")
    parser.add_argument(
        "--subset_seed",
        type=int,
        help="with --max_*_samples: keep N rows drawn at random with this seed instead of the first N (for data "
        "sorted by label, such as IMDB); every run with the same seed sees the same rows",
    )
    parser.add_argument("--pad_to_max_length", action="store_true", help="pad every batch to max_seq_length")
    parser.add_argument("--overwrite_cache", action="store_true")
    parser.add_argument("--mode", choices=("distill", "finetune"), default="distill")
    parser.add_argument("--ignore_mismatched_sizes", action="store_true", help="re-initialise a mismatched head")
    parser.add_argument(
        "--classifier_pooling", choices=("first", "mean"), help="inhibitor student's head input (default: first token)"
    )
    parser.add_argument("--alpha_ce", type=float, default=0.5, help="hard-label loss weight (distill mode)")
    parser.add_argument("--metric_for_best_model", help="default: the task's main metric")
    # selection: never on the reported data
    parser.add_argument(
        "--selection_split",
        choices=("dev", "heldout"),
        default="dev",
        help="what the best checkpoint and early stopping are chosen on: the dev set (reported as chosen), or a "
        "held-out part of the training set (dev then scored once, on the chosen model)",
    )
    parser.add_argument("--heldout_fraction", type=float, default=0.1, help="share of the training rows held out")
    parser.add_argument("--heldout_min_rows", type=int, default=500, help="hold out at least this many rows")
    parser.add_argument(
        "--heldout_seed", type=int, default=0, help="draws the held-out rows; independent of --seed, so every model "
        "of a task is chosen on the same rows",
    )  # fmt: skip
    args = parse_args_with_recipe(parser, argv)

    check_common_arguments(parser, args, required=("task_name", "model_name_or_path", "output_dir"))
    try:
        task = get_task(args.task_name)
    except ValueError as err:
        parser.error(str(err))
    args.task_name = task.name
    if args.mode == "distill" and not args.teacher_name_or_path:
        parser.error("--mode distill needs --teacher_name_or_path (or use --mode finetune)")
    if args.mode == "finetune":
        args.teacher_name_or_path = None  # no teacher: hard labels only (weight 1)
    if not 0 < args.heldout_fraction < 1 or args.heldout_min_rows < 1:
        parser.error("--heldout_fraction must lie in (0, 1) and --heldout_min_rows be at least 1")
    args.metric_for_best_model = args.metric_for_best_model or task.main_metric
    if args.metric_for_best_model not in task.metrics:
        parser.error(f"--metric_for_best_model must be one of {', '.join(task.metrics)} for {task.name}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    task = get_task(args.task_name)
    engine = Engine(args, "run_glue_distill")
    accelerator = engine.accelerator

    # Data: the Hub, a GLUE-layout folder, or files; checked (columns, labels, emptiness) before any model loads.
    with accelerator.main_process_first():
        splits = load_task_splits(
            task, args.data_dir, args.train_file, args.validation_file, args.validation_mismatched_file
        )
    if args.selection_split == "heldout":
        splits["train"], splits["heldout"] = split_heldout(
            splits["train"], args.heldout_fraction, args.heldout_min_rows, args.heldout_seed
        )
    splits = limit_splits(splits, args.max_train_samples, args.max_eval_samples, args.subset_seed)

    # Student (inhibitor or dot-product DistilBERT, same initialisation), tokenizer, and the frozen teacher.
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    inhibitor_overrides = {key: getattr(args, key) for key in INHIBITOR_OVERRIDES}
    student, report = build_student(
        args.model_name_or_path, task, args.student_attention, inhibitor_overrides, args.ignore_mismatched_sizes
    )
    logger.info(report.summary())
    if args.max_seq_length > student.config.max_position_embeddings:
        raise ModelSetupError(
            f"--max_seq_length {args.max_seq_length} exceeds the student's {student.config.max_position_embeddings} "
            "positions."
        )
    loss_fn = DistillationLoss(
        task.is_regression, args.alpha_kd, args.alpha_ce, args.alpha_hidden, args.temperature, args.hidden_loss
    )
    objective = FineTuning(student, task, loss_fn, args.metric_for_best_model)
    if args.mode == "distill":
        teacher = load_teacher(args.teacher_name_or_path, task, accelerator.device, args.trust_remote_code)
        check_same_vocabulary(tokenizer, args.teacher_name_or_path, teacher.config)
        if loss_fn.uses_hidden_states:
            loss_fn.layer_map = parse_layer_map(
                args.layer_map, student.config.num_hidden_layers, teacher.config.num_hidden_layers
            )
            check_hidden_alignment(student, teacher, loss_fn.layer_map)
        objective = TaskDistillation(
            student, task, loss_fn, teacher, accepts_token_type_ids(teacher), args.metric_for_best_model
        )

    with accelerator.main_process_first():
        tokenized = tokenize_splits(
            splits, tokenizer, task, args.max_seq_length, args.pad_to_max_length, args.preprocessing_num_workers,
            not args.overwrite_cache,
        )  # fmt: skip
    if not getattr(objective, "teacher_takes_token_types", False):  # DistilBERT students never use token types
        tokenized = {name: drop_token_types(split) for name, split in tokenized.items()}
    dev = {name.removeprefix("validation"): split for name, split in tokenized.items() if name.startswith("validation")}
    heldout = args.selection_split == "heldout"

    # Train, choose the best model on the selection split, score dev, save the folder (and publish).
    teacher_results = Path(args.teacher_name_or_path or "") / "all_results.json"  # for the card's comparison
    return engine.train(
        objective,
        tokenized["train"],
        selection={"": tokenized["heldout"]} if heldout else dev,
        report=dev if heldout else None,
        selection_prefix="heldout" if heldout else "eval",
        collator=engine.collator(tokenizer, args.pad_to_max_length),
        tokenizer=tokenizer,
        task_name=task.name,
        teacher_results=teacher_results if args.teacher_name_or_path and teacher_results.is_file() else None,
    )


if __name__ == "__main__":
    run_cli(main)
