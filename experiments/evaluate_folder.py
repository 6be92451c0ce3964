"""Score an exported model folder the way a user would, and check it against the number its card states.

    python experiments/evaluate_folder.py FOLDER --task sst2 [--data_dir ../shared/data] [--max_length 128]

In this (fresh) process the folder is loaded through `AutoModelForSequenceClassification.from_pretrained(FOLDER,
trust_remote_code=True)`, i.e. from the code files inside the folder, not from this repository, and wrapped in a
`transformers.pipeline("text-classification")`; the whole main evaluation split (GLUE dev; IMDB: the 25,000-review
test set) is scored with GLUE's metrics. The card's numbers come from README.md's `model-index` (else from
all_results.json's `eval_*`); each is compared at the precision it is printed with (at most `--digits` decimals).
Exit status 0 when every number matches, 1 when one differs, 2 when the folder states none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce import task_registry  # noqa: E402  (stdlib only: nothing of the package is imported before the model)


def decimals(value) -> int:
    """How many decimals a number is written with (`0.8624` -> 4; a float from JSON: its shortest repr)."""
    exponent = Decimal(repr(value) if isinstance(value, float) else str(value)).normalize().as_tuple().exponent
    return max(0, -exponent)


def card_numbers(folder: Path, registry) -> dict[str, object]:
    """metric name -> the number the folder states for the main evaluation split: model-index first, else
    all_results.json. Raw values (as written), so that their printed precision is known."""
    readme = folder / "README.md"
    by_hub_type = {spec.hub_type: name for name, spec in registry.METRICS.items()}
    if readme.is_file():
        from huggingface_hub import ModelCard

        results = ModelCard.load(readme).data.eval_results or []
        numbers = {by_hub_type[r.metric_type]: r.metric_value for r in results if r.metric_type in by_hub_type}
        if numbers:
            return numbers
    results_file = folder / "all_results.json"
    if results_file.is_file():
        results = json.loads(results_file.read_text())
        return {name: results[f"eval_{name}"] for name in registry.METRICS if f"eval_{name}" in results}
    return {}


def max_length_of(folder: Path, given: int | None) -> int | None:
    if given:
        return given
    for name in ("all_results.json", "training_args.json"):
        path = folder / name
        if path.is_file() and "max_seq_length" in (values := json.loads(path.read_text())):
            return int(values["max_seq_length"])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR"))
    parser.add_argument("--max_length", type=int, default=None, help="default: the folder's recorded max_seq_length")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--digits", type=int, default=4, help="compare at most this many decimals")
    args = parser.parse_args(argv)
    registry = task_registry()
    task = registry.get_task(args.task)
    stated = card_numbers(args.folder, registry)
    if not stated:
        print(f"{args.folder} states no number (no model-index in README.md, no eval_* in all_results.json).")
        return 2
    max_length = max_length_of(args.folder, args.max_length)
    if max_length is None:
        print("The folder records no max_seq_length: pass --max_length (the length it was evaluated at).")
        return 2

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(args.folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(args.folder, trust_remote_code=True)
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    print(f"loaded {type(model).__module__}.{type(model).__name__} through the Auto class (trust_remote_code=True)")

    # the data only now: the project's reader imports the project's package, which must not serve the model above
    sys.path.insert(0, str(REPO))
    from modeling_inhibidistilbert.distill.data import load_task_splits
    from modeling_inhibidistilbert.distill.metrics import compute_task_metrics

    split = load_task_splits(task, args.data_dir, need_train=False)["validation"]
    columns = [list(split[c]) for c in task.text_columns]
    inputs = columns[0] if len(columns) == 1 else [{"text": a, "text_pair": b} for a, b in zip(*columns)]
    outputs = classifier(  # raw logits: the regression score, or the argmax label (the same as softmax's)
        inputs, batch_size=args.batch_size, truncation=True, max_length=max_length, top_k=1, function_to_apply="none"
    )
    first = [o[0] if isinstance(o, list) else o for o in outputs]
    label2id = model.config.label2id
    predictions = [o["score"] if task.is_regression else label2id[o["label"]] for o in first]
    metrics = compute_task_metrics(task.name, predictions, list(split["label"]))
    print(f"{task.pretty_name}, {len(split)} rows (the full split: {task.eval_size}), max_length {max_length}:")
    failed = False
    for name, value in stated.items():
        places = min(decimals(value), args.digits)
        ours, theirs = f"{metrics[name]:.{places}f}", f"{float(value):.{places}f}"
        same = ours == theirs
        failed |= not same
        print(f"  {registry.METRICS[name].display_name}: {ours} (card: {theirs}) {'matches' if same else 'differs'}")
    if len(split) != task.eval_size:
        print(f"  note: {len(split)} rows scored, the official split has {task.eval_size}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
