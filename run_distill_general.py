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

The procedure, top to bottom: arguments, the engine (Accelerator, output folder), unlabeled text, models (teacher and
student), `engine.train`. The loop lives in `modeling_inhibidistilbert.distill.engine`.
"""

from __future__ import annotations

import argparse

from accelerate.logging import get_logger
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

import modeling_inhibidistilbert  # noqa: F401  (registers InhibiDistilBERT with the Auto classes)
from modeling_inhibidistilbert.convert import init_student_from_pretrained
from modeling_inhibidistilbert.distill.attention_transfer import AttentionTransfer
from modeling_inhibidistilbert.distill.data import (
    DataError,
    drop_token_types,
    load_text_corpus,
    parse_text_source,
    split_corpus,
)
from modeling_inhibidistilbert.distill.engine import (
    AttentionTransferObjective,
    Engine,
    HiddenAlignment,
    add_common_arguments,
    check_common_arguments,
    run_cli,
)
from modeling_inhibidistilbert.distill.losses import parse_layer_map
from modeling_inhibidistilbert.distill.models import (
    INHIBITOR_OVERRIDES,
    ModelSetupError,
    check_hidden_alignment,
    check_same_vocabulary,
)
from modeling_inhibidistilbert.distill.training import parse_args_with_recipe, str2bool

logger = get_logger(__name__)
OBJECTIVES = {
    "distill": "DistilBERT's losses (or hidden-state alignment alone) on the student's outputs",
    "attention_transfer": "fit each layer's attention to the teacher's softmax attention (the teacher is rebuilt as a "
    "dot-product DistilBERT of the same layout)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = add_common_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    # DistilBERT's weights (alpha_ce 5.0 -> our alpha_kd, alpha_mlm 2.0, alpha_cos 1.0 -> our alpha_hidden)
    parser.set_defaults(
        alpha_kd=5.0, hidden_loss="cosine", adam_epsilon=1e-6, max_grad_norm=5.0, num_train_epochs=1, warmup_ratio=0.05
    )
    parser.add_argument("--text_sources", help="comma-separated task names whose training texts to use, e.g. sst2,imdb")
    parser.add_argument("--train_files", nargs="*", default=[], help=".txt (one example per line) or tables")
    parser.add_argument("--text_column", help="column of the table files (default: text)")
    parser.add_argument(
        "--keep_pairs",
        type=str2bool,
        default=False,
        help="feed the sentence-pair tasks' rows as pairs ([CLS] a [SEP] b [SEP]) instead of as separate texts",
    )
    parser.add_argument("--validation_split_percentage", type=float, default=5.0)
    objectives = "; ".join(f"{name}: {what}" for name, what in OBJECTIVES.items())
    parser.add_argument("--objective", choices=tuple(OBJECTIVES), default="distill", help=objectives)
    parser.add_argument("--alpha_mlm", type=float, default=2.0, help="masked-LM loss (MLM teacher)")
    parser.add_argument("--mlm_probability", type=float, default=0.15)
    args = parse_args_with_recipe(parser, argv)

    check_common_arguments(parser, args, required=("teacher_name_or_path", "output_dir"))
    if not args.text_sources and not args.train_files:
        parser.error("give unlabeled text: --text_sources sst2,imdb and/or --train_files FILE ...")
    if args.hidden_loss == "none":
        parser.error("--hidden_loss none: task-agnostic distillation aligns hidden states (cosine, mse, cosine+mse)")
    for source in text_sources(args):
        try:
            parse_text_source(source)
        except DataError as err:
            parser.error(str(err))
    args.task_name = "general"
    args.model_name_or_path = args.model_name_or_path or args.teacher_name_or_path
    return args


def text_sources(args) -> list[str]:
    return [s for s in (args.text_sources or "").split(",") if s]


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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    engine = Engine(args, "run_distill_general")
    accelerator = engine.accelerator

    # Unlabeled text, split into train and a held-out part for the validation loss.
    with accelerator.main_process_first():
        corpus = load_text_corpus(
            text_sources(args), args.train_files, args.data_dir, args.text_column, keep_pairs=args.keep_pairs
        )
    train_texts, eval_texts = split_corpus(
        corpus, args.validation_split_percentage, args.seed, args.max_train_samples, args.max_eval_samples
    )

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
    layer_spec = args.layer_map or ("last" if has_mlm_head else None)
    layer_map = parse_layer_map(layer_spec, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    check_hidden_alignment(student, teacher, layer_map)
    if transfer:  # the model that trains is the student with its frozen teacher; it saves the student alone
        objective = AttentionTransferObjective(AttentionTransfer(student, teacher), layer_map)
    else:
        objective = HiddenAlignment(student, teacher, has_mlm_head, layer_map, tokenizer, args)

    def encode(batch):
        seconds = batch.get("text_pair") or [""] * len(batch["text"])
        texts = [(text, second) if second else text for text, second in zip(batch["text"], seconds)]
        return tokenizer(texts, truncation=True, max_length=args.max_seq_length, return_special_tokens_mask=True)

    with accelerator.main_process_first():
        train_dataset, eval_dataset = (
            drop_token_types(
                d.map(encode, batched=True, remove_columns=d.column_names, num_proc=args.preprocessing_num_workers)
            )
            for d in (train_texts, eval_texts)
        )

    # Train, keep the model with the lowest validation loss, save the folder (and publish).
    return engine.train(
        objective,
        train_dataset,
        selection={"": eval_dataset},
        collator=engine.collator(tokenizer),
        tokenizer=tokenizer,
        task_name="general",
    )


if __name__ == "__main__":
    run_cli(main)
