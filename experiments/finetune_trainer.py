"""Fine-tune a model folder on a task with plain `transformers.Trainer`, no teacher: what most users will do.

    python experiments/finetune_trainer.py FOLDER --task stsb --seed 42 --output_dir OUT [--data_dir ../shared/data]

The same recipe for every folder (MiniLM, the general-purpose inhibitor encoder): AdamW at `--learning_rate`, linear
decay after 10% warm-up, `--num_train_epochs` at most, the checkpoint and early stopping chosen on a held-out part of
the training set (`--heldout_fraction`, `--heldout_min_rows`, `--heldout_seed`), then the dev set (IMDB: the test set)
evaluated once. Writes OUT/all_results.json in the training scripts' layout (`eval_*`: dev, `heldout_*`: the chosen
checkpoint on the held-out rows), which `experiments/reproduce.py` records as a results row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model folder (BERT/DistilBERT/InhibiDistilBERT; a new head is added)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--learning_rate", type=float, default=3e-5)
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--num_train_epochs", type=float, default=3)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--subset_seed", type=int, default=None)
    parser.add_argument("--selection_split", choices=("heldout",), default="heldout")
    parser.add_argument("--heldout_fraction", type=float, default=0.1)
    parser.add_argument("--heldout_min_rows", type=int, default=500)
    parser.add_argument("--heldout_seed", type=int, default=0)
    parser.add_argument("--early_stopping_patience", type=int, default=2)
    parser.add_argument(
        "--group_by_length",
        action="store_true",
        help="Trainer's train_sampling_strategy='group_by_length' (less padding)",
    )
    parser.add_argument("--overwrite_output_dir", action="store_true")
    parser.add_argument("--resume_from_checkpoint", default=None, help="'latest' resumes from the last checkpoint")
    return parser.parse_args(argv)


def length_grouping(enabled: bool) -> dict:
    """TrainingArguments' length grouping: `train_sampling_strategy` since transformers 5.x's sampler unification,
    `group_by_length` before it."""
    from transformers import TrainingArguments

    if not enabled:
        return {}
    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
    )

    import modeling_inhibidistilbert  # noqa: F401  (registers the inhibitor architecture with the Auto classes)
    from modeling_inhibidistilbert.distill.data import limit_splits, load_task_splits, split_heldout, tokenize_splits
    from modeling_inhibidistilbert.distill.metrics import compute_task_metrics, logits_to_predictions
    from modeling_inhibidistilbert.tasks import get_task

    task = get_task(args.task)
    transformers.set_seed(args.seed)
    splits = load_task_splits(task, args.data_dir)
    splits["train"], heldout = split_heldout(
        splits["train"], args.heldout_fraction, args.heldout_min_rows, args.heldout_seed
    )
    splits = limit_splits(splits, args.max_train_samples, args.max_eval_samples, args.subset_seed)
    splits["heldout"] = heldout
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenized = tokenize_splits(splits, tokenizer, task, args.max_seq_length)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id=task.label2id,
        problem_type="regression" if task.is_regression else "single_label_classification",
        ignore_mismatched_sizes=True,  # a folder with another task's head gets a new one
    )

    def metrics(prediction):
        return compute_task_metrics(
            task.name, logits_to_predictions(np.asarray(prediction.predictions), task.is_regression),
            np.asarray(prediction.label_ids),
        )  # fmt: skip

    training_args = TrainingArguments(
        output_dir=str(args.output_dir / "checkpoints"),
        seed=args.seed,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        num_train_epochs=args.num_train_epochs,
        weight_decay=0.01,
        warmup_steps=0.1,  # a float: the share of the training steps
        lr_scheduler_type="linear",
        **length_grouping(args.group_by_length),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=task.main_metric,
        greater_is_better=True,
        logging_steps=50,
        report_to=[],
        use_cpu=not __import__("torch").cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["heldout"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics,
        callbacks=[EarlyStoppingCallback(args.early_stopping_patience)],
    )
    started = time.time()
    resume = args.resume_from_checkpoint
    output = trainer.train(resume_from_checkpoint=True if resume == "latest" else resume)
    heldout_metrics = trainer.evaluate(tokenized["heldout"], metric_key_prefix="heldout")
    dev = {name: split for name, split in tokenized.items() if name.startswith("validation")}
    reported = {}
    for name, split in dev.items():  # evaluated once, after every choice was made
        suffix = name.removeprefix("validation")
        scores = trainer.evaluate(split, metric_key_prefix="eval")
        reported.update({f"eval_{m}{suffix}": float(scores[f"eval_{m}"]) for m in task.metrics})
    results = {
        "task_name": task.name,
        "trainer": "transformers.Trainer",
        **reported,
        **{f"heldout_{m}": float(heldout_metrics[f"heldout_{m}"]) for m in task.metrics},
        "eval_samples": len(tokenized["validation"]),
        "heldout_samples": len(tokenized["heldout"]),
        "train_samples": len(tokenized["train"]),
        "max_seq_length": args.max_seq_length,
        "train_runtime": round(output.metrics["train_runtime"], 1),
        "wall_time_s": round(time.time() - started, 1),
        # the checkpoint's name only: results files and Hub folders carry no path of this machine
        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
        "seed": args.seed,
    }
    trainer.save_model(str(args.output_dir))
    tokenizer.save_pretrained(str(args.output_dir))
    (args.output_dir / "all_results.json").write_text(json.dumps(results, indent=2))
    with (args.output_dir / "log_history.jsonl").open("w") as f:
        f.writelines(json.dumps(event) + "\n" for event in trainer.state.log_history)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
