#!/usr/bin/env python
# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Task-agnostic distillation: a teacher encoder -> a general-purpose InhibiDistilBERT student, on unlabeled text.

With a teacher that has a masked-LM head this is DistilBERT's recipe (soft-target KL on the masked positions at a
temperature, masked-LM loss, cosine loss on the last hidden states); with a teacher without one (e.g. MiniLM) it is
hidden-state alignment alone (every student layer to its teacher layer). The student starts from the teacher's
weights (or --model_name_or_path) with inhibitor attention; the result is a checkpoint that run_glue_distill.py
fine-tunes or distils per task.

`--objective attention_transfer` (configuration/attention_transfer.yaml) is the cheap conversion step instead: each
student layer's attention (q/k/v and the per-head scalars, nothing else) is fitted to the teacher's softmax attention
on the teacher's own input to that layer (modeling_inhibidistilbert/distill/attention_transfer.py).

    python run_distill_general.py --config configuration/general.yaml --teacher_name_or_path MINILM_FOLDER \
        --text_sources sst2,imdb --data_dir ../shared/data --output_dir outputs/general-inhibitor
    python run_glue_distill.py --config configuration/sst2.yaml --mode finetune \
        --model_name_or_path outputs/general-inhibitor --data_dir ../shared/data --output_dir outputs/sst2-general
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
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, DataCollatorWithPadding, get_scheduler

import modeling_inhibidistilbert  # noqa: F401  (registers InhibiDistilBERT with the Auto classes)
from modeling_inhibidistilbert.convert import init_student_from_pretrained
from modeling_inhibidistilbert.distill.attention_transfer import AttentionTransfer
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
from modeling_inhibidistilbert.distill.data import DataError, load_text_corpus
from modeling_inhibidistilbert.distill.losses import (
    HIDDEN_LOSSES,
    hidden_state_loss,
    mask_tokens,
    masked_soft_target_loss,
    parse_layer_map,
)
from modeling_inhibidistilbert.distill.models import (
    INHIBITOR_OVERRIDES,
    ModelSetupError,
    check_hidden_alignment,
    check_same_vocabulary,
)
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

IDENTITY = ("task_name", "student_attention", "model_name_or_path", "teacher_name_or_path")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML recipe (configuration/general.yaml); command-line values win")
    # text
    parser.add_argument("--text_sources", help="comma-separated task names whose training texts to use, e.g. sst2,imdb")
    parser.add_argument("--train_files", nargs="*", default=[], help=".txt (one example per line) or tables")
    parser.add_argument("--text_column", help="column of the table files (default: text)")
    parser.add_argument(
        "--keep_pairs",
        type=str2bool,
        default=False,
        help="feed the sentence-pair tasks' rows as pairs ([CLS] a [SEP] b [SEP]) instead of as separate texts",
    )
    parser.add_argument(
        "--data_dir", help="GLUE-layout folder for --text_sources (default: $INHIBI_DATA_DIR, else Hub)"
    )
    parser.add_argument("--validation_split_percentage", type=float, default=5.0)
    parser.add_argument("--max_train_samples", type=int)
    parser.add_argument("--max_eval_samples", type=int)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--preprocessing_num_workers", type=int)
    # models
    parser.add_argument("--teacher_name_or_path", help="teacher encoder (with or without an MLM head)")
    parser.add_argument("--model_name_or_path", help="student initialisation (default: the teacher)")
    parser.add_argument("--tokenizer_name", help="default: the student initialisation's tokenizer")
    parser.add_argument("--student_attention", choices=("inhibitor", "dot"), default="inhibitor")
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--inhibitor_signed", type=str2bool)
    parser.add_argument("--center_scores", type=str2bool)
    parser.add_argument("--train_inhibitor_scalars", type=str2bool)
    parser.add_argument("--score_scale_init", type=float)
    parser.add_argument("--shift_init", type=float)
    parser.add_argument("--output_scale_init", type=float)
    parser.add_argument(
        "--output_normalization", choices=("sum", "mean"), help="inhibitor output: the papers' sum over keys, or mean"
    )
    # losses (DistilBERT's weights: alpha_ce 5.0 -> our alpha_kd, alpha_mlm 2.0, alpha_cos 1.0 -> our alpha_hidden)
    parser.add_argument(
        "--objective",
        choices=("distill", "attention_transfer"),
        default="distill",
        help="distill: the losses below on the student's outputs; attention_transfer: fit each layer's attention to "
        "the teacher's softmax attention (the teacher is rebuilt as a dot-product DistilBERT of the same layout)",
    )
    parser.add_argument("--alpha_kd", type=float, default=5.0, help="soft-target KL on masked positions (MLM teacher)")
    parser.add_argument("--alpha_mlm", type=float, default=2.0, help="masked-LM loss (MLM teacher)")
    parser.add_argument("--alpha_hidden", type=float, default=1.0, help="hidden-state alignment")
    parser.add_argument("--hidden_loss", choices=HIDDEN_LOSSES[1:], default="cosine")
    parser.add_argument("--layer_map", help="student:teacher pairs, 'last', or default (MLM: last; else all layers)")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--mlm_probability", type=float, default=0.15)
    # optimisation
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--scalar_learning_rate", type=float)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--adam_epsilon", type=float, default=1e-6)
    parser.add_argument("--max_grad_norm", type=float, default=5.0)
    parser.add_argument("--num_train_epochs", type=float, default=1)
    parser.add_argument("--max_train_steps", type=int)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--lr_scheduler_type", default="linear")
    parser.add_argument("--num_warmup_steps", type=int, default=0)
    parser.add_argument("--warmup_ratio", type=float, default=0.05)
    parser.add_argument("--mixed_precision", choices=("no", "bf16", "fp16"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    # evaluation, checkpoints, logging
    parser.add_argument("--eval_strategy", choices=("steps", "epoch"))
    parser.add_argument("--eval_steps", type=int)
    parser.add_argument("--checkpointing_steps", help="N or 'epoch'")
    parser.add_argument("--checkpoints_total_limit", type=int)
    parser.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument("--report_to", choices=("none", "tensorboard", "all"), default="none")
    parser.add_argument("--output_dir")
    parser.add_argument("--overwrite_output_dir", action="store_true")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id")
    parser.add_argument("--hub_private_repo", action="store_true")
    args = parse_args_with_recipe(parser, argv)

    for required in ("teacher_name_or_path", "output_dir"):
        if not getattr(args, required):
            parser.error(f"--{required} is required (on the command line or in the --config recipe)")
    if not args.text_sources and not args.train_files:
        parser.error("give unlabeled text: --text_sources sst2,imdb and/or --train_files FILE ...")
    args.task_name = "general"
    args.model_name_or_path = args.model_name_or_path or args.teacher_name_or_path
    args.eval_strategy = args.eval_strategy or ("steps" if args.eval_steps else "epoch")
    if args.eval_strategy == "steps" and not args.eval_steps:
        parser.error("--eval_strategy steps needs --eval_steps N")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        parser.error("--checkpointing_steps takes a number of steps or 'epoch'")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id OWNER/NAME")
    return args


def load_teacher_encoder(name_or_path: str, device, trust_remote_code: bool):
    """The frozen teacher, with its MLM head when it has a trained one (then `has_mlm_head` is True)."""
    try:
        teacher, info = AutoModelForMaskedLM.from_pretrained(
            name_or_path, output_loading_info=True, trust_remote_code=trust_remote_code
        )
        has_mlm_head = not info["missing_keys"]
    except (ValueError, KeyError):
        has_mlm_head = False
    if not has_mlm_head:
        teacher = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher.to(device), has_mlm_head


def mask_seed(seed: int, epoch: int, step_in_epoch: int, process_index: int) -> int:
    """A seed per (epoch, micro-batch, process): masks do not depend on RNG history, so resuming is exact."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step_in_epoch) * 1_024 + process_index


class GeneralDistillationLoss:
    """DistilBERT's loss (MLM teacher) or hidden-state alignment alone; returns (total, unweighted components)."""

    def __init__(self, args, has_mlm_head: bool, layer_map, tokenizer, vocab_size: int):
        self.args, self.has_mlm_head, self.layer_map = args, has_mlm_head, layer_map
        self.tokenizer, self.vocab_size = tokenizer, vocab_size

    def inputs(self, batch, seed: int) -> tuple[dict, torch.Tensor | None]:
        """Model inputs (masked for the MLM recipe) and the MLM labels (-100 where nothing is predicted)."""
        special = batch.pop("special_tokens_mask")
        if not self.has_mlm_head:
            return batch, None
        generator = torch.Generator().manual_seed(seed)
        masked, labels = mask_tokens(
            batch["input_ids"],
            special,
            self.tokenizer.mask_token_id,
            self.vocab_size,
            self.args.mlm_probability,
            generator,
        )
        return dict(batch, input_ids=masked), labels

    def __call__(self, student_outputs, teacher_outputs, labels, attention_mask):
        args, components = self.args, {}
        total = 0.0
        if self.has_mlm_head:
            selected = labels != -100
            components["loss_kd"] = masked_soft_target_loss(
                student_outputs.logits, teacher_outputs.logits, labels, args.temperature
            )
            components["loss_mlm"] = (
                torch.nn.functional.cross_entropy(student_outputs.logits[selected].float(), labels[selected])
                if bool(selected.any())
                else student_outputs.logits.float().sum() * 0.0
            )
            total = args.alpha_kd * components["loss_kd"] + args.alpha_mlm * components["loss_mlm"]
        components["loss_hidden"] = hidden_state_loss(
            student_outputs.hidden_states,
            teacher_outputs.hidden_states,
            attention_mask,
            self.layer_map,
            args.hidden_loss,
        )
        total = total + args.alpha_hidden * components["loss_hidden"]
        return total, components


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)

    accelerator = Accelerator(
        cpu=multi_process_without_accelerator(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir / "runs"),
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
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    set_seed(args.seed)
    if args.push_to_hub:
        from modeling_inhibidistilbert.hub import publish

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

    # Unlabeled text, split into train and a held-out part for the validation loss.
    with accelerator.main_process_first():
        corpus = load_text_corpus(
            [s for s in (args.text_sources or "").split(",") if s],
            args.train_files,
            args.data_dir,
            args.text_column,
            keep_pairs=args.keep_pairs,
        )
    held_out = max(1, int(len(corpus) * args.validation_split_percentage / 100))
    if len(corpus) - held_out < 1:
        raise DataError(f"Only {len(corpus)} texts: too few to hold out {args.validation_split_percentage}% for eval.")
    split = corpus.train_test_split(test_size=held_out, seed=args.seed, shuffle=True)
    train_texts, eval_texts = split["train"], split["test"]
    if args.max_train_samples is not None:
        train_texts = train_texts.select(range(min(args.max_train_samples, len(train_texts))))
    if args.max_eval_samples is not None:
        eval_texts = eval_texts.select(range(min(args.max_eval_samples, len(eval_texts))))

    # Teacher (frozen, never prepared) and student (teacher's weights, inhibitor attention).
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    transfer = args.objective == "attention_transfer"
    if transfer:  # the teacher's layers as a dot-product DistilBERT (same names as the student's)
        teacher = init_student_from_pretrained(args.teacher_name_or_path, head="base", attention="dot")[0]
        has_mlm_head = False
        teacher = teacher.to(accelerator.device).requires_grad_(False).eval()
    else:
        teacher, has_mlm_head = load_teacher_encoder(
            args.teacher_name_or_path, accelerator.device, args.trust_remote_code
        )
    check_same_vocabulary(tokenizer, args.teacher_name_or_path, teacher.config)
    if has_mlm_head and tokenizer.mask_token_id is None:
        raise ModelSetupError("The masked-LM recipe needs a tokenizer with a mask token.")
    # the attention options; the classification-head ones (classifier_pooling) belong to the task run
    overrides = {k: getattr(args, k) for k in INHIBITOR_OVERRIDES if getattr(args, k, None) is not None}
    student, report = init_student_from_pretrained(
        args.model_name_or_path,
        head="masked-lm" if has_mlm_head else "base",
        attention=args.student_attention,
        **(overrides if args.student_attention == "inhibitor" else {}),
    )
    logger.info(report.summary())
    recipe = "DistilBERT (KL + MLM + hidden)" if has_mlm_head else "hidden-state alignment only"
    logger.info("Recipe: " + ("attention transfer (each layer's attention to softmax's)" if transfer else recipe))
    layer_spec = args.layer_map or ("last" if has_mlm_head else None)
    layer_map = parse_layer_map(layer_spec, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    check_hidden_alignment(student, teacher, layer_map)
    loss_fn = GeneralDistillationLoss(args, has_mlm_head, layer_map, tokenizer, student.config.vocab_size)
    if transfer:  # the model that trains is the student with its frozen teacher; it saves the student alone
        student = AttentionTransfer(student, teacher)

    def compute_loss(inputs: dict, labels: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """The objective's total loss and its unweighted components."""
        if transfer:
            per_layer = student(**inputs)
            return per_layer.mean(), {f"loss_layer_{i}": value for i, value in enumerate(per_layer)}
        with torch.no_grad(), accelerator.autocast():
            teacher_outputs = teacher(**inputs, output_hidden_states=True)
        outputs = student(**inputs, output_hidden_states=True)
        return loss_fn(outputs, teacher_outputs, labels, inputs["attention_mask"])

    def encode(batch):
        seconds = batch.get("text_pair") or [""] * len(batch["text"])
        texts = [(text, second) if second else text for text, second in zip(batch["text"], seconds)]
        return tokenizer(texts, truncation=True, max_length=args.max_seq_length, return_special_tokens_mask=True)

    with accelerator.main_process_first():
        train_dataset, eval_dataset = (
            d.map(encode, batched=True, remove_columns=d.column_names, num_proc=args.preprocessing_num_workers)
            for d in (train_texts, eval_texts)
        )
    train_dataset = train_dataset.remove_columns([c for c in train_dataset.column_names if c == "token_type_ids"])
    eval_dataset = eval_dataset.remove_columns([c for c in eval_dataset.column_names if c == "token_type_ids"])
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if accelerator.mixed_precision != "no" else None)
    train_dataloader = DataLoader(
        train_dataset,
        shuffle=True,
        collate_fn=collator,
        batch_size=args.per_device_train_batch_size,
        num_workers=args.dataloader_num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_dataloader = DataLoader(
        eval_dataset,
        collate_fn=collator,
        batch_size=args.per_device_eval_batch_size,
        generator=torch.Generator().manual_seed(args.seed),
    )

    optimizer = torch.optim.AdamW(
        parameter_groups(
            student.student if transfer else student, args.learning_rate, args.weight_decay, args.scalar_learning_rate
        ),
        lr=args.learning_rate,
        eps=args.adam_epsilon,
    )
    student, optimizer, train_dataloader, eval_dataloader = accelerator.prepare(
        student, optimizer, train_dataloader, eval_dataloader
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or math.ceil(args.num_train_epochs * steps_per_epoch)
    num_train_epochs = math.ceil(max_train_steps / steps_per_epoch)
    warmup_steps = args.num_warmup_steps or math.ceil(args.warmup_ratio * max_train_steps)
    lr_scheduler = accelerator.prepare(
        get_scheduler(
            args.lr_scheduler_type,
            optimizer=optimizer,
            num_warmup_steps=warmup_steps * accelerator.num_processes,
            num_training_steps=max_train_steps * accelerator.num_processes,
        )
    )

    state = TrainerState()
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}")
        state = load_checkpoint(accelerator, checkpoint)
        if state.best_metric is not None and not best_model_dir(output_dir, state.best_step).is_dir():
            state.best_metric, state.best_metrics = None, {}
    last_checkpoint = checkpoint
    accelerator.init_trackers(
        "run_distill_general", config={k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
    )
    if accelerator.is_main_process:
        save_training_args(
            args,
            output_dir / "training_args.json",
            has_mlm_head=has_mlm_head,
            layer_map=layer_map,
            max_train_steps=max_train_steps,
            **environment_info(accelerator),
        )
    run_log = RunLogger(accelerator, output_dir, resume_step=state.completed_steps if checkpoint else None)
    logger.info(f"***** Distilling on {len(train_dataset)} texts ({len(eval_dataset)} held out) *****")
    logger.info(
        f"  Optimizer steps = {max_train_steps} (from step {state.completed_steps}), epochs = {num_train_epochs}"
    )

    def run_evaluation() -> None:
        """Mean loss components on the held-out texts (fixed masks); the lowest `loss` is the best model."""
        student.eval()
        sums = defaultdict(float)
        for index, batch in enumerate(eval_dataloader):
            inputs, labels = loss_fn.inputs(batch, mask_seed(args.seed, -1, index, accelerator.process_index))
            with torch.no_grad(), accelerator.autocast():
                loss, components = compute_loss(inputs, labels)
            rows = inputs["input_ids"].shape[0]
            sums["loss"] += float(loss) * rows
            for name, value in components.items():
                sums[name] += float(value) * rows
            sums["rows"] += rows
        totals = accelerator.reduce(torch.tensor(list(sums.values()), device=accelerator.device), "sum").tolist()
        totals = dict(zip(sums, totals))
        metrics = {name: value / totals["rows"] for name, value in totals.items() if name != "rows"}
        epoch_float = state.completed_steps / steps_per_epoch
        logger.info(f"step {state.completed_steps} (epoch {epoch_float:.2f}): {format_metrics(metrics)}")
        run_log.log(
            {"step": state.completed_steps, "epoch": epoch_float, **{f"eval_{k}": v for k, v in metrics.items()}}
        )
        if state.is_better(metrics["loss"], greater_is_better=False):
            state.best_metric, state.best_metrics = metrics["loss"], metrics
            state.best_step, state.best_epoch = state.completed_steps, epoch_float
            save_best_model(accelerator, student, tokenizer, output_dir, state)
        student.train()

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
                seed = mask_seed(args.seed, epoch, state.step_in_epoch, accelerator.process_index)
                inputs, labels = loss_fn.inputs(batch, seed)
                with accelerator.autocast():
                    loss, components = compute_loss(inputs, labels)
                check_finite_loss(
                    accelerator, loss, components, f"step {state.completed_steps + 1}, epoch {epoch}", last_checkpoint
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(student.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            state.step_in_epoch += 1
            running["loss"] += float(loss.detach())
            for name, value in components.items():
                running[name] += float(value.detach())
            running_batches += 1
            if not accelerator.sync_gradients:
                continue

            state.completed_steps += 1
            progress_bar.update(1)
            if state.step_in_epoch >= len(train_dataloader):
                state.epoch, state.step_in_epoch = epoch + 1, 0
            finished = state.completed_steps >= max_train_steps
            if args.logging_steps and (state.completed_steps % args.logging_steps == 0 or finished):
                averages = accelerator.reduce(
                    torch.tensor([running[k] / running_batches for k in running], device=accelerator.device), "mean"
                )
                record = {"step": state.completed_steps, "epoch": state.completed_steps / steps_per_epoch}
                record.update(dict(zip(running, averages.tolist())))
                record["learning_rate"] = lr_scheduler.get_last_lr()[0]
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
    if state.best_metric is None:
        run_evaluation()

    accelerator.wait_for_everyone()
    eval_results = {f"eval_{k}": float(v) for k, v in state.best_metrics.items()}
    results = {
        "task_name": "general",
        **eval_results,
        "eval_samples": len(eval_dataset),
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
            publish(output_dir, args.hub_model_id, private=args.hub_private_repo)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


if __name__ == "__main__":
    try:
        main()
    except (DataError, ModelSetupError, OutputDirError, NonFiniteLossError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
