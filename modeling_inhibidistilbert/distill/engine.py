"""The training engine: one loop for every objective of the training scripts.

`Engine` owns what every run does the same way: the Accelerator set-up, the output-folder checks, `prepare`,
gradient accumulation, the non-finite guard (loss and gradients), clipping, the learning-rate schedule, evaluation
and checkpoint triggers, the best-model choice (with optional early stopping), exact resume, logging (one learning
rate per parameter group) and the results export. What differs between runs is an `Objective`: a small object that
says what the loss of a batch is (`loss(batch, seed) -> (loss, components)`) and how the model is judged
(`evaluate(dataloader) -> metrics`, `metric`, `greater_is_better`). The four objectives are `FineTuning`,
`TaskDistillation`, `HiddenAlignment` and `AttentionTransferObjective`; the scripts `run_glue_distill.py` and
`run_distill_general.py` are drivers that parse arguments, load data and models, and call `Engine.train`.

Selection never has to touch the reported data: `Engine.train` takes the splits every choice is made on
(`selection`, logged as `<selection_prefix>_*`) apart from the splits that are only reported (`report`), which are
scored once, on the final chosen model.
"""

from __future__ import annotations

import argparse
import json
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
from accelerate.utils import DataLoaderConfiguration, DistributedType, set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, default_data_collator, get_scheduler
from transformers.trainer_pt_utils import get_length_grouped_indices

from .checkpointing import (
    TrainerState,
    best_model_dir,
    export_best_model,
    load_checkpoint,
    prune_best_models,
    save_best_model,
    save_checkpoint,
    write_json_atomic,
)
from .data import DataError
from .losses import HIDDEN_LOSSES, hidden_state_loss, mask_tokens, masked_soft_target_loss
from .metrics import compute_task_metrics, logits_to_predictions
from .models import ModelSetupError
from .training import (
    RECIPE_KEY,
    NonFiniteLossError,
    OutputDirError,
    RunLogger,
    check_finite_gradients,
    check_finite_loss,
    cpu_launch_runs_one_process,
    environment_info,
    format_metrics,
    multi_process_without_accelerator,
    parameter_groups,
    prepare_output_dir,
    save_training_args,
    str2bool,
)

logger = get_logger(__name__)

# Arguments that do not change what is trained: a resumed run may change these (everything else must match).
NOT_RECIPE = (
    "config",
    "recipe",
    "recipe_values",
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "report_to",
    "logging_steps",
    "checkpoints_total_limit",
    "preprocessing_num_workers",
    "dataloader_num_workers",
    "overwrite_cache",
    "per_device_eval_batch_size",
)


# ARGUMENTS #


def positive_int(value) -> int:
    """An argparse type: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of rows, got {value} (leave it out for all rows)")
    return number


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags both scripts share (defined once); a script changes defaults with `parser.set_defaults`."""
    group = parser.add_argument_group("common (both training scripts)")
    group.add_argument("--config", help="YAML recipe (configuration/*.yaml); command-line values win")
    group.add_argument("--data_dir", help="folder in the original GLUE layout (default: $INHIBI_DATA_DIR, else Hub)")
    group.add_argument("--max_train_samples", type=positive_int, help="keep N training rows")
    group.add_argument("--max_eval_samples", type=positive_int, help="keep N rows of each evaluation split")
    group.add_argument("--max_seq_length", type=int, default=128)
    group.add_argument("--preprocessing_num_workers", type=int)
    # models
    group.add_argument("--model_name_or_path", help="student init: InhibiDistilBERT, DistilBERT or BERT-layout")
    group.add_argument("--teacher_name_or_path", help="the frozen teacher")
    group.add_argument("--tokenizer_name", help="tokenizer folder (default: the student's checkpoint)")
    group.add_argument("--student_attention", choices=("inhibitor", "dot"), default="inhibitor")
    group.add_argument("--trust_remote_code", action="store_true", help="for a teacher with custom code")
    group.add_argument("--inhibitor_signed", type=str2bool, help="true|false (default: the checkpoint's/config's)")
    group.add_argument("--center_scores", type=str2bool, help="true|false")
    group.add_argument("--train_inhibitor_scalars", type=str2bool, help="true|false")
    group.add_argument("--score_scale_init", type=float)
    group.add_argument("--shift_init", type=float)
    group.add_argument("--output_scale_init", type=float)
    group.add_argument(
        "--output_normalization", choices=("sum", "mean"), help="inhibitor output: the papers' sum over keys, or mean"
    )
    # losses
    group.add_argument("--alpha_kd", type=float, default=0.5, help="soft-target weight (KL * T^2)")
    group.add_argument("--alpha_hidden", type=float, default=1.0, help="hidden-state loss weight")
    group.add_argument("--temperature", type=float, default=2.0)
    group.add_argument("--hidden_loss", choices=HIDDEN_LOSSES, default="none")
    group.add_argument("--layer_map", help="student:teacher hidden-state pairs, e.g. '1:2,2:4,3:6' (0 = embeddings)")
    # optimisation
    group.add_argument("--per_device_train_batch_size", type=int, default=32)
    group.add_argument("--per_device_eval_batch_size", type=int, default=64)
    group.add_argument("--learning_rate", type=float, default=5e-5)
    group.add_argument(
        "--scalar_learning_rate", type=float, help="LR of the inhibitor scalars (default: --learning_rate)"
    )
    group.add_argument("--weight_decay", type=float, default=0.01)
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.999)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=1.0, help="0 disables clipping")
    group.add_argument("--num_train_epochs", type=float, default=3)
    group.add_argument("--max_train_steps", type=int, help="overrides --num_train_epochs")
    group.add_argument("--gradient_accumulation_steps", type=int, default=1)
    group.add_argument("--lr_scheduler_type", default="linear")
    group.add_argument("--num_warmup_steps", type=int, default=0)
    group.add_argument("--warmup_ratio", type=float, default=0.0, help="used when --num_warmup_steps is 0")
    group.add_argument("--mixed_precision", choices=("no", "bf16", "fp16"), help="default: the accelerate config's")
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--dataloader_num_workers", type=int, default=0)
    group.add_argument(
        "--group_by_length",
        action="store_true",
        help="training batches of rows of similar length (Trainer's train_sampling_strategy='group_by_length'): "
        "less padding",
    )
    # evaluation, checkpoints, logging
    group.add_argument("--eval_strategy", choices=("steps", "epoch"), help="default: steps if --eval_steps else epoch")
    group.add_argument("--eval_steps", type=int)
    group.add_argument(
        "--early_stopping_patience",
        type=positive_int,
        help="stop after N evaluations in a row without a better model (counted on the selection split)",
    )
    group.add_argument("--checkpointing_steps", help="N (every N optimizer steps) or 'epoch'")
    group.add_argument("--checkpoints_total_limit", type=int, help="keep only the newest N checkpoints")
    group.add_argument("--resume_from_checkpoint", help="'latest' or a checkpoint folder")
    group.add_argument("--logging_steps", type=int, default=50)
    group.add_argument("--report_to", choices=("none", "tensorboard", "all"), default="none")
    group.add_argument("--output_dir", help="the final model folder")
    group.add_argument("--overwrite_output_dir", action="store_true")
    group.add_argument("--push_to_hub", action="store_true")
    group.add_argument("--hub_model_id", help="OWNER/NAME for --push_to_hub")
    group.add_argument("--hub_private_repo", action="store_true")
    return parser


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, required=()) -> None:
    """The checks of the common flags (`parser.error` names the problem before any work starts)."""
    for name in required:
        if not getattr(args, name):
            parser.error(f"--{name} is required (on the command line or in the --config recipe)")
    args.eval_strategy = args.eval_strategy or ("steps" if args.eval_steps else "epoch")
    if args.eval_strategy == "steps" and not args.eval_steps:
        parser.error("--eval_strategy steps needs --eval_steps N")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        parser.error("--checkpointing_steps takes a number of steps or 'epoch'")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id OWNER/NAME")
    if args.gradient_accumulation_steps < 1:
        parser.error("--gradient_accumulation_steps must be at least 1")
    for name in ("max_train_samples", "max_eval_samples"):  # a recipe's value did not pass through the type
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive number of rows, got {value} (leave it out for all rows)")


def run_cli(main) -> None:
    """Run a script's `main()`; a problem with the inputs ends with one `error:` line, not a traceback."""
    try:
        main()
    except (DataError, ModelSetupError, OutputDirError, NonFiniteLossError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


# OBJECTIVES #


def micro_batch_seed(seed: int, epoch: int, step_in_epoch: int, process_index: int) -> int:
    """A seed per (epoch, micro-batch, process): random masks do not depend on RNG history, so resuming is exact.

    Evaluation uses epoch -1."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step_in_epoch) * 1_024 + process_index


class Objective:
    """What a run optimises and how it is judged. `model` is the module that trains (the engine prepares it)."""

    metric = "loss"  # the `evaluate` key that picks the best model
    greater_is_better = False
    accelerator: Accelerator  # set by the engine before training

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def parameters_module(self) -> torch.nn.Module:
        """The module whose parameters the optimizer groups (the saved model)."""
        return self.model

    def loss(self, batch: dict, seed: int) -> tuple[torch.Tensor, dict]:
        """The total loss of a batch and its unweighted components; `seed` is the micro-batch's own seed."""
        raise NotImplementedError

    def evaluate(self, dataloader, suffix: str = "") -> dict:
        """Mean loss and components over the rows of `dataloader` (fixed seeds: every evaluation sees the same)."""
        accelerator, sums = self.accelerator, defaultdict(float)
        for index, batch in enumerate(dataloader):
            check_batch(batch, "evaluation")
            rows = batch["input_ids"].shape[0]
            with torch.no_grad():
                loss, components = self.loss(batch, micro_batch_seed(self.seed, -1, index, accelerator.process_index))
            sums["loss"] += float(loss) * rows
            for name, value in components.items():
                sums[name] += float(value) * rows
            sums["rows"] += rows
        totals = accelerator.reduce(torch.tensor(list(sums.values()), device=accelerator.device), "sum").tolist()
        totals = dict(zip(sums, totals))
        return {f"{name}{suffix}": value / totals["rows"] for name, value in totals.items() if name != "rows"}

    def info(self) -> dict:
        """Extra facts for training_args.json."""
        return {}


class FineTuning(Objective):
    """A sequence-classification student on the hard labels (`DistillationLoss` without a teacher); scored with the
    task's metrics."""

    def __init__(self, model, task, loss_fn, metric: str | None = None):
        super().__init__(model)
        self.task, self.loss_fn = task, loss_fn
        self.metric, self.greater_is_better = metric or task.main_metric, True

    def teacher_outputs(self, batch: dict, token_type_ids):
        return None

    def loss(self, batch, seed):
        labels = batch.pop("labels")
        token_type_ids = batch.pop("token_type_ids", None)
        outputs = self.model(**batch, output_hidden_states=self.loss_fn.uses_hidden_states)
        teacher_outputs = self.teacher_outputs(batch, token_type_ids)
        return self.loss_fn(outputs, labels, teacher_outputs, batch["attention_mask"])

    def evaluate(self, dataloader, suffix: str = "") -> dict:
        """The task's metrics (`compute_task_metrics`) on every row of `dataloader`."""
        predictions, references = [], []
        for batch in dataloader:
            check_batch(batch, "evaluation")
            labels = batch.pop("labels")
            batch.pop("token_type_ids", None)
            with torch.no_grad():
                logits = self.model(**batch).logits.float()
            # gather_for_metrics drops the samples that were duplicated to even out the last batch
            gathered = self.accelerator.gather_for_metrics(
                (logits_to_predictions(logits, self.task.is_regression), labels)
            )
            predictions.append(gathered[0].cpu())
            references.append(gathered[1].cpu())
        metrics = compute_task_metrics(self.task.name, torch.cat(predictions).numpy(), torch.cat(references).numpy())
        return {f"{k}{suffix}": v for k, v in metrics.items()}


class TaskDistillation(FineTuning):
    """`FineTuning` plus a frozen teacher's soft targets (and hidden states when the loss aligns them)."""

    def __init__(self, model, task, loss_fn, teacher, teacher_takes_token_types: bool, metric: str | None = None):
        super().__init__(model, task, loss_fn, metric)
        self.teacher, self.teacher_takes_token_types = teacher, teacher_takes_token_types

    def teacher_outputs(self, batch, token_type_ids):
        inputs = dict(batch, token_type_ids=token_type_ids) if self.teacher_takes_token_types else batch
        with torch.no_grad(), self.accelerator.autocast():
            return self.teacher(**inputs, output_hidden_states=self.loss_fn.uses_hidden_states)


class HiddenAlignment(Objective):
    """Task-agnostic distillation: DistilBERT's loss with a masked-LM teacher (soft targets on the masked positions,
    masked-LM loss, hidden-state alignment), hidden-state alignment alone without one."""

    def __init__(self, model, teacher, has_mlm_head: bool, layer_map, tokenizer, args):
        super().__init__(model)
        self.teacher, self.has_mlm_head, self.layer_map, self.tokenizer = teacher, has_mlm_head, layer_map, tokenizer
        self.args, self.vocab_size = args, model.config.vocab_size

    def inputs(self, batch, seed: int) -> tuple[dict, torch.Tensor | None]:
        """Model inputs (masked for the MLM recipe) and the MLM labels (-100 where nothing is predicted)."""
        special = batch.pop("special_tokens_mask")
        if not self.has_mlm_head:
            return batch, None
        generator = torch.Generator().manual_seed(seed)
        masked, labels = mask_tokens(
            batch["input_ids"], special, self.tokenizer.mask_token_id, self.vocab_size, self.args.mlm_probability,
            generator,
        )  # fmt: skip
        return dict(batch, input_ids=masked), labels

    def loss(self, batch, seed):
        inputs, labels = self.inputs(batch, seed)
        args, components, total = self.args, {}, 0.0
        with self.accelerator.autocast():
            with torch.no_grad(), self.accelerator.autocast():
                teacher_outputs = self.teacher(**inputs, output_hidden_states=True)
            student_outputs = self.model(**inputs, output_hidden_states=True)
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
                inputs["attention_mask"],
                self.layer_map,
                args.hidden_loss,
            )
            total = total + args.alpha_hidden * components["loss_hidden"]
        return total, components

    def info(self):
        return {"has_mlm_head": self.has_mlm_head, "layer_map": self.layer_map}


class AttentionTransferObjective(Objective):
    """Each student layer's attention fitted to the teacher's softmax attention (`AttentionTransfer`); the loss is
    the mean of the per-layer relative errors."""

    def __init__(self, transfer, layer_map):
        super().__init__(transfer)
        self.layer_map = layer_map

    def parameters_module(self):
        return self.model.student

    def loss(self, batch, seed):
        batch.pop("special_tokens_mask", None)
        with self.accelerator.autocast():
            per_layer = self.model(**batch)
        return per_layer.mean(), {f"loss_layer_{i}": value for i, value in enumerate(per_layer)}

    def info(self):
        return {"has_mlm_head": False, "layer_map": self.layer_map}


def check_batch(batch: dict, where: str) -> None:
    """An empty batch (no rows, or rows without tokens) stops with the cause instead of a reshape error deep down."""
    ids = batch.get("input_ids")
    if ids is not None and ids.numel() == 0:
        raise DataError(
            f"An empty batch in {where} (input_ids of shape {tuple(ids.shape)}): a split has no rows or its texts "
            "tokenize to nothing. Check the data files and --max_train_samples/--max_eval_samples."
        )


# THE ENGINE #


class LengthGroupedSampler(Sampler):
    """Trainer's `group_by_length` sampling order (transformers' `get_length_grouped_indices`: shuffled mega-batches,
    each sorted by length) drawn from (seed, epoch) alone, so a resumed run sees the same batches (`set_epoch`, called
    by Accelerate's data loader, picks the epoch)."""

    def __init__(self, dataset, batch_size: int, seed: int):
        self.lengths = [len(ids) for ids in dataset["input_ids"]]
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class Engine:
    """Set up the run (Accelerator, logging, seed, output folder) at construction; `train` runs an objective."""

    def __init__(self, args: argparse.Namespace, project_name: str):
        self.args, self.project_name = args, project_name
        self.output_dir = Path(args.output_dir)
        self.accelerator = accelerator = Accelerator(
            cpu=multi_process_without_accelerator(),
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_dir=str(self.output_dir / "runs"),
            # the shuffling order depends on (seed, epoch) only, so a resumed run sees the same batches
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
        logger.info(accelerator.state, main_process_only=False)
        if cpu_launch_runs_one_process():
            logger.warning(
                "`accelerate launch --cpu --num_processes N` started one process (Accelerate needs mpirun for several "
                "CPU processes); for N CPU processes use `accelerate launch --multi_gpu --num_processes N` on a "
                "machine without GPU."
            )
        verbosity = "warning" if accelerator.is_local_main_process else "error"
        getattr(datasets.utils.logging, f"set_verbosity_{verbosity}")()
        getattr(transformers.utils.logging, f"set_verbosity_{verbosity}")()
        set_seed(args.seed)
        self.publish = None
        if args.push_to_hub:  # imported only when asked for, and before any training
            from ..hub import publish

            self.publish = publish
        # Output folder: another run in it, a changed recipe, or files that would be overwritten stop us here.
        self.checkpoint = prepare_output_dir(  # every process checks (same verdict); the main process cleans
            self.output_dir,
            self.recipe(),
            args.resume_from_checkpoint,
            args.overwrite_output_dir,
            accelerator.is_main_process,
            barrier=accelerator.wait_for_everyone,
        )
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()

    def recipe(self) -> dict:
        """What makes two runs the same run: every argument that changes what is trained (as JSON stores it)."""
        values = {k: v for k, v in vars(self.args).items() if k not in NOT_RECIPE}
        return json.loads(json.dumps(values, default=str))

    def collator(self, tokenizer, pad_to_max_length: bool = False):
        if pad_to_max_length:
            return default_data_collator
        return DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if self.accelerator.mixed_precision != "no" else None
        )

    def dataloader(self, dataset, collator, train: bool = False) -> DataLoader:
        # Own generators: creating a data-loader iterator then draws no numbers from the global RNG (which dropout
        # uses), so an interrupted-and-resumed run stays bit-for-bit on the uninterrupted run's track.
        args = self.args
        grouped = train and args.group_by_length
        sampler = LengthGroupedSampler(dataset, args.per_device_train_batch_size, args.seed) if grouped else None
        return DataLoader(
            dataset,
            shuffle=train and not grouped,
            sampler=sampler,
            collate_fn=collator,
            batch_size=args.per_device_train_batch_size if train else args.per_device_eval_batch_size,
            num_workers=args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(args.seed),
        )

    def train(
        self,
        objective: Objective,
        train_dataset,
        selection: dict,
        collator,
        tokenizer,
        task_name: str,
        report: dict | None = None,
        selection_prefix: str = "eval",
        teacher_results: Path | None = None,
    ) -> dict:
        """Train `objective.model`, choose the best model on `selection` (suffix -> dataset), score `report` (suffix
        -> dataset) once on the chosen model, export the model folder and its results; return the results.

        Evaluations and the best model's metrics are named `<selection_prefix>_<metric>`; the report's `eval_*`.
        """
        args, accelerator, output_dir = self.args, self.accelerator, self.output_dir
        if report and accelerator.distributed_type == DistributedType.FSDP:
            raise ModelSetupError(
                "Scoring the reported splits on the chosen model reloads its weights, which is not implemented for "
                "sharded (FSDP) models; use --selection_split dev, or DDP/one process."
            )
        objective.accelerator, objective.seed = accelerator, args.seed
        train_dataloader = self.dataloader(train_dataset, collator, train=True)
        loaders = {("select", s): self.dataloader(d, collator) for s, d in selection.items()}
        loaders.update({("report", s): self.dataloader(d, collator) for s, d in (report or {}).items()})
        optimizer = torch.optim.AdamW(
            parameter_groups(
                objective.parameters_module(), args.learning_rate, args.weight_decay, args.scalar_learning_rate
            ),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
        )
        objective.model, optimizer, train_dataloader, *prepared = accelerator.prepare(
            objective.model, optimizer, train_dataloader, *loaders.values()
        )
        loaders = dict(zip(loaders, prepared))
        model = objective.model

        # Schedule (counted in optimizer steps, after sharding). The prepared scheduler advances once per process per
        # optimizer step, hence the factor num_processes.
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

        # Resume: model, optimizer, scheduler, scaler and RNG states, then the position in the epoch.
        state, checkpoint = TrainerState(), self.checkpoint
        if checkpoint is not None:
            logger.info(f"Resuming from {checkpoint}")
            state = load_checkpoint(accelerator, checkpoint)
            if state.best_metric is not None and not best_model_dir(output_dir, state.best_step).is_dir():
                logger.warning(f"The best model of step {state.best_step} is gone; the best is re-chosen from here.")
                state.best_metric, state.best_metrics = None, {}
        last_checkpoint = checkpoint

        accelerator.init_trackers(
            self.project_name, config={k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
        )
        if accelerator.is_main_process:
            save_training_args(
                args,
                output_dir / "training_args.json",
                **objective.info(),
                **{RECIPE_KEY: self.recipe()},
                max_train_steps=max_train_steps,
                warmup_steps=warmup_steps,
                **environment_info(accelerator),
            )
        run_log = RunLogger(accelerator, output_dir, resume_step=state.completed_steps if checkpoint else None)
        total_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
        logger.info("***** Running training *****")
        logger.info(
            f"  Objective = {type(objective).__name__}, task = {task_name}, attention = {args.student_attention}"
        )
        logger.info(f"  Num examples = {len(train_dataset)}, epochs = {num_train_epochs}, total batch = {total_batch}")
        logger.info(
            f"  Optimizer steps = {max_train_steps} (from step {state.completed_steps}), warmup = {warmup_steps}"
        )

        def evaluate(kind: str) -> dict:
            model.eval()
            metrics = {}
            for (which, suffix), loader in loaders.items():
                if which == kind:
                    metrics.update(objective.evaluate(loader, suffix))
            model.train()
            return metrics

        def run_evaluation() -> bool:
            """Evaluate on the selection split, keep the best model; True when early stopping says stop."""
            metrics = evaluate("select")
            epoch_float = state.completed_steps / steps_per_epoch
            logger.info(f"step {state.completed_steps} (epoch {epoch_float:.2f}): {format_metrics(metrics)}")
            named = {f"{selection_prefix}_{k}": v for k, v in metrics.items()}
            run_log.log({"step": state.completed_steps, "epoch": epoch_float, **named})
            if state.is_better(metrics[objective.metric], greater_is_better=objective.greater_is_better):
                state.best_metric = metrics[objective.metric]
                state.best_step, state.best_epoch, state.best_metrics = state.completed_steps, epoch_float, metrics
                state.evaluations_without_improvement = 0
                save_best_model(accelerator, model, tokenizer, output_dir, state)
                return False
            state.evaluations_without_improvement += 1
            patience = args.early_stopping_patience
            if patience and state.evaluations_without_improvement >= patience:
                logger.info(f"Early stopping: {patience} evaluation(s) without a better {objective.metric}.")
                return True
            return False

        progress_bar = tqdm(
            range(max_train_steps), initial=state.completed_steps, disable=not accelerator.is_local_main_process
        )
        running, running_batches = defaultdict(float), 0
        start_time, runtime_before = time.time(), state.train_runtime
        stop = state.stopped_early
        model.train()
        for epoch in range(state.epoch, num_train_epochs):
            if state.completed_steps >= max_train_steps or stop:
                break
            train_dataloader.set_epoch(epoch)
            active_dataloader = train_dataloader
            if epoch == state.epoch and state.step_in_epoch > 0:
                active_dataloader = accelerator.skip_first_batches(train_dataloader, state.step_in_epoch)
            else:
                state.step_in_epoch = 0
            state.epoch = epoch
            for batch in active_dataloader:
                with accelerator.accumulate(model):
                    check_batch(batch, f"training (epoch {epoch}, micro-batch {state.step_in_epoch})")
                    seed = micro_batch_seed(args.seed, epoch, state.step_in_epoch, accelerator.process_index)
                    loss, components = objective.loss(batch, seed)
                    where = f"step {state.completed_steps + 1}, epoch {epoch}"
                    check_finite_loss(accelerator, loss, components, where, last_checkpoint)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:  # before the optimizer step can write NaN into the weights
                        check_finite_gradients(accelerator, model, where, last_checkpoint)
                        if args.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
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
                        torch.tensor([running[k] / running_batches for k in running], device=accelerator.device),
                        "mean",
                    )
                    record = {"step": state.completed_steps, "epoch": state.completed_steps / steps_per_epoch}
                    record.update(dict(zip(running, averages.tolist())))
                    for group in optimizer.param_groups:  # one learning rate per parameter group
                        name = "inhibitor_scalars" if group["name"] == "inhibitor_scalars" else None
                        record["learning_rate" + (f"_{name}" if name else "")] = group["lr"]
                    run_log.log(record)
                    progress_bar.set_postfix(loss=f"{record['loss']:.4f}")
                    running, running_batches = defaultdict(float), 0
                end_of_epoch = state.step_in_epoch == 0
                if (
                    (args.eval_strategy == "steps" and state.completed_steps % args.eval_steps == 0)
                    or (args.eval_strategy == "epoch" and end_of_epoch)
                    or finished
                ):
                    stop = state.stopped_early = run_evaluation()
                if (args.checkpointing_steps == "epoch" and end_of_epoch) or (
                    str(args.checkpointing_steps).isdigit()
                    and state.completed_steps % int(args.checkpointing_steps) == 0
                ):
                    state.train_runtime = runtime_before + time.time() - start_time
                    last_checkpoint = save_checkpoint(accelerator, output_dir, state, args.checkpoints_total_limit)
                if finished or stop:
                    break
        progress_bar.close()
        state.train_runtime = runtime_before + time.time() - start_time

        # The best model becomes the output folder; the reported splits are scored once, on it.
        if state.best_metric is None:  # e.g. resumed from the final checkpoint of a run whose best model is gone
            run_evaluation()
        accelerator.wait_for_everyone()
        reported = {}
        if report:
            load_best_weights(accelerator, model, best_model_dir(output_dir, state.best_step))
            reported = evaluate("report")
            logger.info(f"Reported (once, on the model of step {state.best_step}): {format_metrics(reported)}")
            run_log.log({"step": state.completed_steps, "reported_model_step": state.best_step,
                         **{f"eval_{k}": v for k, v in reported.items()}})  # fmt: skip
        best = {f"{selection_prefix}_{k}": float(v) for k, v in state.best_metrics.items()}
        eval_results = {f"eval_{k}": float(v) for k, v in reported.items()} if report else best
        first = report or selection
        results = {
            "task_name": task_name,
            **(best if report else {}),
            **eval_results,
            **{f"eval_samples{suffix}": len(split) for suffix, split in first.items()},  # rows scored, per split
            **({f"{selection_prefix}_samples": len(selection[""])} if report else {}),
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
            if self.publish is not None:
                self.publish(
                    output_dir, args.hub_model_id, private=args.hub_private_repo, teacher_results=teacher_results
                )
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return results


def load_best_weights(accelerator, model, folder: Path) -> None:
    """Put the weights of a saved best model (`checkpoints/best_model-<step>`) back into the training model."""
    from safetensors.torch import load_file

    unwrapped = accelerator.unwrap_model(model)
    state_dict = load_file(folder / "model.safetensors", device=str(accelerator.device))
    missing, unexpected = unwrapped.load_state_dict(state_dict, strict=False)
    tied = set(
        getattr(unwrapped, "all_tied_weights_keys", None) or getattr(unwrapped, "_tied_weights_keys", None) or []
    )
    if unexpected or set(missing) - tied:
        raise ModelSetupError(
            f"The best model in {folder} does not fit the trained model (missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(unexpected)[:5]})."
        )
