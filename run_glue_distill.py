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

The procedure, top to bottom: parse arguments (a recipe gives defaults, the command line wins), check the output
folder, load and check the data, build student (and teacher), prepare with Accelerate, train with evaluation and
checkpoints, save the best model as a Hub folder with its metrics. Losses, metrics, data loading and checkpointing
live in `modeling_inhibidistilbert.distill`.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer, DataCollatorWithPadding, default_data_collator, get_scheduler

import modeling_inhibidistilbert  # noqa: F401  (registers InhibiDistilBERT with the Auto classes)
from modeling_inhibidistilbert.distill.checkpointing import (
    TrainerState,
    best_model_dir,
    export_best_model,
    load_checkpoint,
    prune_best_models,
    save_best_model,
    save_checkpoint,
    write_json_atomic,
)
from modeling_inhibidistilbert.distill.data import DataError, limit_splits, load_task_splits, tokenize_splits
from modeling_inhibidistilbert.distill.losses import HIDDEN_LOSSES, DistillationLoss, parse_layer_map
from modeling_inhibidistilbert.distill.metrics import compute_task_metrics, logits_to_predictions
from modeling_inhibidistilbert.distill.models import (
    INHIBITOR_OVERRIDES,
    ModelSetupError,
    accepts_token_type_ids,
    build_student,
    check_hidden_alignment,
    check_same_vocabulary,
    load_teacher,
)
from modeling_inhibidistilbert.distill.tasks import TASKS, get_task
from modeling_inhibidistilbert.distill.training import (
    NonFiniteLossError,
    OutputDirError,
    RunLogger,
    check_finite_loss,
    cpu_launch_runs_one_process,
    environment_info,
    format_metrics,
    multi_process_without_accelerator,
    parameter_groups,
    parse_args_with_recipe,
    prepare_output_dir,
    save_training_args,
    str2bool,
)

logger = get_logger(__name__)

# What makes two runs "the same run" (resuming into a folder checks these).
IDENTITY = ("task_name", "mode", "student_attention", "model_name_or_path", "teacher_name_or_path")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML recipe (configuration/<task>.yaml); command-line values win")
    # task and data
    parser.add_argument("--task_name", type=str.lower, help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--data_dir", help="folder in the original GLUE layout (default: $INHIBI_DATA_DIR, else Hub)")
    parser.add_argument("--train_file", help="csv/tsv/json/parquet with the task's Hub columns and `label`")
    parser.add_argument("--validation_file", help="csv/tsv/json/parquet with the task's Hub columns and `label`")
    parser.add_argument("--validation_mismatched_file", help="MNLI mismatched validation file (with --validation_file)")
    parser.add_argument("--max_train_samples", type=int, help="keep the first N training rows")
    parser.add_argument("--max_eval_samples", type=int, help="keep the first N rows of each validation split")
    parser.add_argument(
        "--subset_seed",
        type=int,
        help="with --max_*_samples: keep N rows drawn at random with this seed instead of the first N (for data "
        "sorted by label, such as IMDB); every run with the same seed sees the same rows",
    )
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--pad_to_max_length", action="store_true", help="pad every batch to max_seq_length")
    parser.add_argument("--preprocessing_num_workers", type=int)
    parser.add_argument("--overwrite_cache", action="store_true")
    # models
    parser.add_argument("--mode", choices=("distill", "finetune"), default="distill")
    parser.add_argument("--model_name_or_path", help="student init: InhibiDistilBERT, DistilBERT or BERT-layout")
    parser.add_argument("--teacher_name_or_path", help="fine-tuned sequence-classification teacher (distill mode)")
    parser.add_argument("--tokenizer_name", help="tokenizer folder (default: the student's checkpoint)")
    parser.add_argument("--student_attention", choices=("inhibitor", "dot"), default="inhibitor")
    parser.add_argument("--ignore_mismatched_sizes", action="store_true", help="re-initialise a mismatched head")
    parser.add_argument("--trust_remote_code", action="store_true", help="for a teacher with custom code")
    parser.add_argument("--inhibitor_signed", type=str2bool, help="true|false (default: the checkpoint's/config's)")
    parser.add_argument("--center_scores", type=str2bool, help="true|false")
    parser.add_argument("--train_inhibitor_scalars", type=str2bool, help="true|false")
    parser.add_argument("--score_scale_init", type=float)
    parser.add_argument("--shift_init", type=float)
    parser.add_argument("--output_scale_init", type=float)
    parser.add_argument(
        "--output_normalization", choices=("sum", "mean"), help="inhibitor output: the papers' sum over keys, or mean"
    )
    parser.add_argument(
        "--classifier_pooling", choices=("first", "mean"), help="inhibitor student's head input (default: first token)"
    )
    # losses
    parser.add_argument("--alpha_kd", type=float, default=0.5, help="soft-target (KL * T^2; MSE for STS-B) weight")
    parser.add_argument("--alpha_ce", type=float, default=0.5, help="hard-label loss weight (distill mode)")
    parser.add_argument("--alpha_hidden", type=float, default=1.0, help="hidden-state loss weight (if --hidden_loss)")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--hidden_loss", choices=HIDDEN_LOSSES, default="none")
    parser.add_argument("--layer_map", help="student:teacher hidden-state pairs, e.g. '1:2,2:4,3:6' (0 = embeddings)")
    # optimisation
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument(
        "--scalar_learning_rate", type=float, help="LR of the inhibitor scalars (default: --learning_rate)"
    )
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--adam_beta1", type=float, default=0.9)
    parser.add_argument("--adam_beta2", type=float, default=0.999)
    parser.add_argument("--adam_epsilon", type=float, default=1e-8)
    parser.add_argument("--max_grad_norm", type=float, default=1.0, help="0 disables clipping")
    parser.add_argument("--num_train_epochs", type=float, default=3)
    parser.add_argument("--max_train_steps", type=int, help="overrides --num_train_epochs")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--lr_scheduler_type", default="linear")
    parser.add_argument("--num_warmup_steps", type=int, default=0)
    parser.add_argument("--warmup_ratio", type=float, default=0.0, help="used when --num_warmup_steps is 0")
    parser.add_argument("--mixed_precision", choices=("no", "bf16", "fp16"), help="default: the accelerate config's")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    # evaluation, checkpoints, logging
    parser.add_argument("--eval_strategy", choices=("steps", "epoch"), help="default: steps if --eval_steps else epoch")
    parser.add_argument("--eval_steps", type=int)
    parser.add_argument("--metric_for_best_model", help="default: the task's main metric")
    parser.add_argument("--checkpointing_steps", help="N (every N optimizer steps) or 'epoch'")
    parser.add_argument("--checkpoints_total_limit", type=int, help="keep only the newest N checkpoints")
    parser.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument("--report_to", choices=("none", "tensorboard", "all"), default="none")
    parser.add_argument("--output_dir", help="the final model folder")
    parser.add_argument("--overwrite_output_dir", action="store_true")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", help="OWNER/NAME for --push_to_hub")
    parser.add_argument("--hub_private_repo", action="store_true")
    args = parse_args_with_recipe(parser, argv)

    for required in ("task_name", "model_name_or_path", "output_dir"):
        if not getattr(args, required):
            parser.error(f"--{required} is required (on the command line or in the --config recipe)")
    try:
        task = get_task(args.task_name)
    except ValueError as err:
        parser.error(str(err))
    args.task_name = task.name
    if args.mode == "distill" and not args.teacher_name_or_path:
        parser.error("--mode distill needs --teacher_name_or_path (or use --mode finetune)")
    if args.mode == "finetune":
        args.teacher_name_or_path = None  # no teacher: hard labels only (weight 1)
    args.eval_strategy = args.eval_strategy or ("steps" if args.eval_steps else "epoch")
    if args.eval_strategy == "steps" and not args.eval_steps:
        parser.error("--eval_strategy steps needs --eval_steps N")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        parser.error("--checkpointing_steps takes a number of steps or 'epoch'")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id OWNER/NAME")
    if args.gradient_accumulation_steps < 1:
        parser.error("--gradient_accumulation_steps must be at least 1")
    args.metric_for_best_model = args.metric_for_best_model or task.main_metric
    if args.metric_for_best_model not in task.metrics:
        parser.error(f"--metric_for_best_model must be one of {', '.join(task.metrics)} for {task.name}")
    return args


def evaluate_model(model, dataloaders: dict, accelerator: Accelerator, task) -> dict:
    """The task's metrics on every validation split (suffix `_mm` for MNLI mismatched)."""
    model.eval()
    metrics = {}
    for suffix, dataloader in dataloaders.items():
        predictions, references = [], []
        for batch in dataloader:
            labels = batch.pop("labels")
            batch.pop("token_type_ids", None)
            with torch.no_grad():
                logits = model(**batch).logits.float()
            # gather_for_metrics drops the samples that were duplicated to even out the last batch
            preds, refs = accelerator.gather_for_metrics((logits_to_predictions(logits, task.is_regression), labels))
            predictions.append(preds.cpu())
            references.append(refs.cpu())
        predictions, references = torch.cat(predictions).numpy(), torch.cat(references).numpy()
        metrics.update({f"{k}{suffix}": v for k, v in compute_task_metrics(task.name, predictions, references).items()})
    model.train()
    return metrics


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    task = get_task(args.task_name)
    output_dir = Path(args.output_dir)

    accelerator = Accelerator(
        cpu=multi_process_without_accelerator(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir / "runs"),
        # the shuffling order depends on (seed, epoch) only, so a resumed run sees the same batches
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if cpu_launch_runs_one_process():
        logger.warning(
            "`accelerate launch --cpu --num_processes N` started one process (Accelerate needs mpirun for several CPU "
            "processes); for N CPU processes use `accelerate launch --multi_gpu --num_processes N` on a machine "
            "without GPU."
        )
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    set_seed(args.seed)
    if args.push_to_hub:
        from modeling_inhibidistilbert.hub import publish  # imported only when asked for, and before any training

    # Output folder: another run in it, or files that would be overwritten, stop us here.
    identity = {key: getattr(args, key) for key in IDENTITY}
    checkpoint = prepare_output_dir(  # every process checks (same verdict); the main process cleans
        output_dir,
        identity,
        args.resume_from_checkpoint,
        args.overwrite_output_dir,
        accelerator.is_main_process,
        barrier=accelerator.wait_for_everyone,
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    # Data: the Hub, a GLUE-layout folder, or files; checked (columns, labels, emptiness) before any model loads.
    with accelerator.main_process_first():
        splits = load_task_splits(
            task, args.data_dir, args.train_file, args.validation_file, args.validation_mismatched_file
        )
    splits = limit_splits(splits, args.max_train_samples, args.max_eval_samples, args.subset_seed)

    # Student (inhibitor or dot-product DistilBERT, same initialisation), tokenizer, and the frozen teacher.
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    inhibitor_overrides = {key: getattr(args, key) for key in INHIBITOR_OVERRIDES}
    student, report = build_student(
        args.model_name_or_path, task, args.student_attention, inhibitor_overrides, args.ignore_mismatched_sizes
    )
    logger.info(report.summary())
    max_positions = student.config.max_position_embeddings
    if args.max_seq_length > max_positions:
        raise ModelSetupError(
            f"--max_seq_length {args.max_seq_length} exceeds the student's {max_positions} positions."
        )

    teacher = None
    loss_fn = DistillationLoss(
        task.is_regression, args.alpha_kd, args.alpha_ce, args.alpha_hidden, args.temperature, args.hidden_loss
    )
    if args.mode == "distill":
        teacher = load_teacher(args.teacher_name_or_path, task, accelerator.device, args.trust_remote_code)
        check_same_vocabulary(tokenizer, args.teacher_name_or_path, teacher.config)
        if loss_fn.uses_hidden_states:
            loss_fn.layer_map = parse_layer_map(
                args.layer_map, student.config.num_hidden_layers, teacher.config.num_hidden_layers
            )
            check_hidden_alignment(student, teacher, loss_fn.layer_map)
    teacher_takes_token_types = teacher is not None and accepts_token_type_ids(teacher)

    with accelerator.main_process_first():
        tokenized = tokenize_splits(
            splits,
            tokenizer,
            task,
            args.max_seq_length,
            args.pad_to_max_length,
            args.preprocessing_num_workers,
            not args.overwrite_cache,
        )
    if not teacher_takes_token_types:  # DistilBERT students never use token types
        tokenized = {
            name: split.remove_columns([c for c in split.column_names if c == "token_type_ids"])
            for name, split in tokenized.items()
        }
    train_dataset = tokenized["train"]
    eval_datasets = {name.removeprefix("validation"): split for name, split in tokenized.items() if name != "train"}

    if args.pad_to_max_length:
        collator = default_data_collator
    else:
        multiple = 8 if accelerator.mixed_precision != "no" else None
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
    # Own generators: creating a data-loader iterator then draws no numbers from the global RNG (which dropout uses),
    # so an interrupted-and-resumed run stays bit-for-bit on the uninterrupted run's track.
    train_dataloader = DataLoader(
        train_dataset,
        shuffle=True,
        collate_fn=collator,
        batch_size=args.per_device_train_batch_size,
        num_workers=args.dataloader_num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_dataloaders = {
        suffix: DataLoader(
            split,
            collate_fn=collator,
            batch_size=args.per_device_eval_batch_size,
            num_workers=args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(args.seed),
        )
        for suffix, split in eval_datasets.items()
    }

    optimizer = torch.optim.AdamW(
        parameter_groups(student, args.learning_rate, args.weight_decay, args.scalar_learning_rate),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    student, optimizer, train_dataloader, *prepared_eval = accelerator.prepare(
        student, optimizer, train_dataloader, *eval_dataloaders.values()
    )
    eval_dataloaders = dict(zip(eval_dataloaders, prepared_eval))

    # Schedule (counted in optimizer steps, after sharding). The prepared scheduler advances once per process per
    # optimizer step, hence the factor num_processes.
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or math.ceil(args.num_train_epochs * steps_per_epoch)
    num_train_epochs = math.ceil(max_train_steps / steps_per_epoch)
    warmup_steps = args.num_warmup_steps or math.ceil(args.warmup_ratio * max_train_steps)
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    lr_scheduler = accelerator.prepare(lr_scheduler)

    # Resume: model, optimizer, scheduler, scaler and RNG states, then the position in the epoch.
    state = TrainerState()
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}")
        state = load_checkpoint(accelerator, checkpoint)
        if state.best_metric is not None and not best_model_dir(output_dir, state.best_step).is_dir():
            logger.warning(f"The best model of step {state.best_step} is gone; the best will be re-chosen from here.")
            state.best_metric, state.best_metrics = None, {}
    last_checkpoint = checkpoint

    hyperparameters = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
    accelerator.init_trackers("run_glue_distill", config=hyperparameters)
    if accelerator.is_main_process:
        save_training_args(
            args,
            output_dir / "training_args.json",
            max_train_steps=max_train_steps,
            warmup_steps=warmup_steps,
            **environment_info(accelerator),
        )
    run_log = RunLogger(accelerator, output_dir, resume_step=state.completed_steps if checkpoint else None)

    total_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Task = {task.name}, mode = {args.mode}, student attention = {args.student_attention}")
    logger.info(f"  Num examples = {len(train_dataset)}, epochs = {num_train_epochs}, total batch = {total_batch}")
    logger.info(f"  Optimizer steps = {max_train_steps} (from step {state.completed_steps}), warmup = {warmup_steps}")

    def run_evaluation() -> None:
        metrics = evaluate_model(student, eval_dataloaders, accelerator, task)
        epoch_float = state.completed_steps / steps_per_epoch
        logger.info(f"step {state.completed_steps} (epoch {epoch_float:.2f}): {format_metrics(metrics)}")
        run_log.log(
            {"step": state.completed_steps, "epoch": epoch_float, **{f"eval_{k}": v for k, v in metrics.items()}}
        )
        if state.is_better(metrics[args.metric_for_best_model]):
            state.best_metric = metrics[args.metric_for_best_model]
            state.best_step, state.best_epoch, state.best_metrics = state.completed_steps, epoch_float, metrics
            save_best_model(accelerator, student, tokenizer, output_dir, state)

    progress_bar = tqdm(
        range(max_train_steps), initial=state.completed_steps, disable=not accelerator.is_local_main_process
    )
    running, running_batches = defaultdict(float), 0
    start_time, runtime_before = time.time(), state.train_runtime
    student.train()
    for epoch in range(state.epoch, num_train_epochs):
        if state.completed_steps >= max_train_steps:
            break
        train_dataloader.set_epoch(epoch)
        active_dataloader = train_dataloader
        if epoch == state.epoch and state.step_in_epoch > 0:
            active_dataloader = accelerator.skip_first_batches(train_dataloader, state.step_in_epoch)
        else:
            state.step_in_epoch = 0
        state.epoch = epoch
        for batch in active_dataloader:
            with accelerator.accumulate(student):
                labels = batch.pop("labels")
                token_type_ids = batch.pop("token_type_ids", None)
                outputs = student(**batch, output_hidden_states=loss_fn.uses_hidden_states)
                teacher_outputs = None
                if teacher is not None:
                    teacher_inputs = dict(batch, token_type_ids=token_type_ids) if teacher_takes_token_types else batch
                    with torch.no_grad(), accelerator.autocast():
                        teacher_outputs = teacher(**teacher_inputs, output_hidden_states=loss_fn.uses_hidden_states)
                loss, components = loss_fn(outputs, labels, teacher_outputs, batch["attention_mask"])
                check_finite_loss(
                    accelerator, loss, components, f"step {state.completed_steps + 1}, epoch {epoch}", last_checkpoint
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(student.parameters(), args.max_grad_norm)
                optimizer.step()  # a no-op on accumulation micro-batches (accelerate tracks sync_gradients)
                lr_scheduler.step()
                optimizer.zero_grad()
            state.step_in_epoch += 1
            running["loss"] += float(loss.detach())
            for name, value in components.items():
                running[name] += float(value.detach())
            running_batches += 1
            if not accelerator.sync_gradients:
                continue

            # One optimizer step done.
            state.completed_steps += 1
            progress_bar.update(1)
            if state.step_in_epoch >= len(train_dataloader):  # the epoch is complete: the next one starts at 0
                state.epoch, state.step_in_epoch = epoch + 1, 0
            finished = state.completed_steps >= max_train_steps
            if args.logging_steps and (state.completed_steps % args.logging_steps == 0 or finished):
                averages = accelerator.reduce(
                    torch.tensor([running[k] / running_batches for k in running], device=accelerator.device), "mean"
                )
                record = {"step": state.completed_steps, "epoch": state.completed_steps / steps_per_epoch}
                record.update(dict(zip(running, averages.tolist())))
                for group in optimizer.param_groups:
                    record[
                        f"learning_rate_{group['name']}" if group["name"] == "inhibitor_scalars" else "learning_rate"
                    ] = group["lr"]
                run_log.log(record)
                progress_bar.set_postfix(loss=f"{record['loss']:.4f}")
                running, running_batches = defaultdict(float), 0
            end_of_epoch = state.step_in_epoch == 0
            if (
                (args.eval_strategy == "steps" and state.completed_steps % args.eval_steps == 0)
                or (args.eval_strategy == "epoch" and end_of_epoch)
                or finished
            ):
                run_evaluation()
            if (args.checkpointing_steps == "epoch" and end_of_epoch) or (
                str(args.checkpointing_steps).isdigit() and state.completed_steps % int(args.checkpointing_steps) == 0
            ):
                state.train_runtime = runtime_before + time.time() - start_time
                last_checkpoint = save_checkpoint(accelerator, output_dir, state, args.checkpoints_total_limit)
            if finished:
                break
    progress_bar.close()
    state.train_runtime = runtime_before + time.time() - start_time

    # The best model becomes the output folder; its metrics go to all_results.json and eval_results.json.
    if state.best_metric is None:  # e.g. resumed from the final checkpoint of a run whose best model is gone
        run_evaluation()
    accelerator.wait_for_everyone()
    eval_results = {f"eval_{k}": float(v) for k, v in state.best_metrics.items()}
    results = {
        "task_name": task.name,
        **eval_results,
        "eval_samples": len(eval_datasets[""]),
        "train_samples": len(train_dataset),
        "train_runtime": round(state.train_runtime, 3),
        "epoch": state.completed_steps / steps_per_epoch,
        "best_step": state.best_step,
    }
    if accelerator.is_main_process:
        export_best_model(output_dir, state.best_step)
        prune_best_models(output_dir, keep=set())
        write_json_atomic(output_dir / "eval_results.json", eval_results)
        write_json_atomic(output_dir / "all_results.json", results)
        logger.info(f"Best step {state.best_step}: {format_metrics(state.best_metrics)}; saved to {output_dir}")
        if args.push_to_hub:
            teacher_results = None  # the teacher's own metrics, for the card's comparison table, when it has them
            if args.teacher_name_or_path and (Path(args.teacher_name_or_path) / "all_results.json").is_file():
                teacher_results = Path(args.teacher_name_or_path) / "all_results.json"
            publish(output_dir, args.hub_model_id, private=args.hub_private_repo, teacher_results=teacher_results)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


if __name__ == "__main__":
    try:
        main()
    except (DataError, ModelSetupError, OutputDirError, NonFiniteLossError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
