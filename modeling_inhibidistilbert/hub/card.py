"""The model card: metadata and text from the run's own files and the task registry, rendered from one template.

`build_model_card(folder, repo_id)` reads config.json, all_results.json (the model-index and the results table) and
training_args.json (the recipe, the student's initialisation, the hyperparameters) when present, and fills
`modelcard_template.md` (a Jinja template, as huggingface_hub's own) through `ModelCard.from_template`. Task facts
(dataset ids, pretty names, evaluation splits and their full sizes, metric names) come from
`modeling_inhibidistilbert.tasks`. Nothing machine-specific reaches the card: absolute paths are reduced to their
last part at every depth of every value, and argument names that look like secrets are dropped.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration_inhibidistilbert import INHIBITOR_IMPLEMENTATIONS
from ..tasks import METRICS, TASKS, TaskSpec
from .checks import CODE_FILES, HEADS, TRAINER_STATE_FILES

TEMPLATE = Path(__file__).resolve().parent / "modelcard_template.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|api_key|auth", re.IGNORECASE)
# An absolute path inside a string: POSIX `/…` (not the `//` of a URL, not inside a relative path), `~/…`, `C:\…`.
ABSOLUTE_PATH = re.compile(r"(?<![\w/.~-])(?:~|[A-Za-z]:)?[/\\](?![/\\])[^\s,;'\"()\[\]{}]*")

# Hyperparameters shown in the card's table, in this order, when the run's training_args.json has them.
HYPERPARAMETERS = (
    "task_name",
    "mode",
    "objective",
    "student_attention",
    "model_name_or_path",
    "teacher_name_or_path",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_ratio",
    "lr_scheduler_type",
    "num_warmup_steps",
    "max_train_steps",
    "max_grad_norm",
    "scalar_learning_rate",
    "max_seq_length",
    "temperature",
    "alpha_kd",
    "alpha_ce",
    "alpha_hidden",
    "hidden_loss",
    "layer_map",
    "metric_for_best_model",
    "selection_split",
    "max_train_samples",
    "max_eval_samples",
    "subset_seed",
    "text_sources",
    "train_files",
    "alpha_mlm",
    "mlm_probability",
    "seed",
)
RUN_FACTS = ("train_samples", "eval_samples", "epoch", "best_step", "train_runtime")

# What each value of `config.inhibitor_implementation` runs, in the order `auto` tries them; a value the config
# accepts but this table lacks fails the card's tests, so the card cannot fall behind the model code.
IMPLEMENTATIONS = {
    "auto": "per call, the first of the implementations below that can run it on its device and dtype, else `cdist`",
    "triton": "a Triton kernel for CUDA GPUs (fp32, bf16, fp16 with fp32 accumulation), shipped in "
    "`kernels_inhibidistilbert.py`; needs `triton`",
    "fused": "the compiled C++ CPU kernel of `pip install inhibidistilbert`; not in this repository, used only where "
    "that package is installed",
    "compiled": "the same computation compiled by `torch.compile` for the CPU, shipped in `kernels_inhibidistilbert.py`",
    "cdist": "pure PyTorch (`torch.cdist` distances), any device and dtype; the form used for `output_attentions=True`",
    "int8": "the int8 CPU kernel of `pip install inhibidistilbert` (set by its `quantize_model_for_inference`); "
    "approximate, never chosen by `auto`",
}


def build_model_card(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    teacher_results: str | os.PathLike | Mapping | None = None,
    baseline_results: str | os.PathLike | Mapping | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",
    language: str = "en",
) -> ModelCard:
    """Build the model card of `folder` for `repo_id` from the run's own files.

    `teacher_results` and `baseline_results` (all_results.json of the teacher and of the dot-product student trained
    with the same recipe, as paths or dicts) add columns to the results table. `base_model` defaults to the run's
    `model_name_or_path` when that is a Hub id.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json") or {}
    results = _read_json(folder / "all_results.json")
    args = _read_json(folder / "training_args.json") or {}
    teacher = _load_results(teacher_results, "teacher_results")
    baseline = _load_results(baseline_results, "baseline_results")
    task_name = (results or {}).get("task_name") or args.get("task_name")
    for name, other in (("teacher_results", teacher), ("baseline_results", baseline)):
        if other is not None and other.get("task_name") not in (None, task_name):
            raise ValueError(
                f"{name} are for task {other.get('task_name')!r} but this model was evaluated on {task_name!r}; pass "
                "the all_results.json of the same task."
            )
    task = TASKS.get(task_name) if isinstance(task_name, str) else None

    architecture = (config.get("architectures") or ["InhibiDistilBertModel"])[0]
    auto_class, pipeline_tag = HEADS.get(architecture, ("AutoModel", None))
    if base_model is None:
        candidate = args.get("model_name_or_path")
        if isinstance(candidate, str) and HUB_ID.match(candidate) and not Path(candidate).exists():
            base_model = candidate
    evaluations = _evaluations(results, args, task) if results and task else []
    eval_results = [evaluation["result"] for evaluation in evaluations]
    tags = ["inhibitor-attention", "inhibidistilbert", "distilbert", "custom_code"]
    if args.get("mode") == "distill" or _is_general(args):
        tags.append("knowledge-distillation")
    if task:
        tags.append("glue" if task.hub_path == "nyu-mll/glue" else task.name)
    model_name = repo_id.split("/")[-1]
    data = ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=tags,
        base_model=base_model,
        datasets=[task.hub_path] if task else None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    provenance = _provenance(folder, results, args)
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        task=task,
        provenance=provenance,
        origin=_origin(args, base_model),
        initialisation=_initialisation(folder, args),
        code_files=CODE_FILES,
        inhibitor=_inhibitor(config),
        usage=_usage(auto_class, pipeline_tag, config),
        results=_results_table(evaluations, results, teacher, baseline) if results else None,
        training=_training(args, results),
        implementations=[(name, IMPLEMENTATIONS.get(name, "")) for name in _implementation_order()],
    )
    return ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)).strip() + "\n")  # template blocks leave blank runs


# INPUTS #


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the evaluation that writes it.") from err


def _load_results(source: str | os.PathLike | Mapping | None, name: str) -> dict | None:
    if source is None or isinstance(source, Mapping):
        return dict(source) if source is not None else None
    path = Path(source)
    if path.is_dir():
        path = path / "all_results.json"
    if not path.is_file():
        raise ValueError(f"{name}: {path} does not exist; pass the all_results.json of that run.")
    return _read_json(path)


def _is_general(args: Mapping) -> bool:
    """Whether the run is task-agnostic (`run_distill_general.py` records `task_name: general`)."""
    return args.get("task_name") == "general"


def public_value(value: Any) -> Any:
    """`value` with every local absolute path reduced to `(local) <last part>`, at every depth; secret keys dropped."""
    if isinstance(value, str):
        return ABSOLUTE_PATH.sub(lambda m: f"(local) {_last_part(m.group(0))}", value)
    if isinstance(value, Mapping):
        return {public_value(k): public_value(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [public_value(v) for v in value]
    return value


def _last_part(path: str) -> str:
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] or "/"


def _shown(value: Any) -> str:
    """A value for a Markdown table cell: redacted, lists and dicts as JSON, `|` escaped."""
    value = public_value(value)
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text.replace("|", "\\|")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# SECTIONS #


def _provenance(folder: Path, results: Mapping | None, args: Mapping) -> dict:
    """Which of the run's own records the folder holds, and what saved it when they are missing."""
    trainer = any((folder / n).is_file() for n in TRAINER_STATE_FILES) or (folder / "trainer_state.json").is_file()
    general = _is_general(args) or (results or {}).get("task_name") == "general"
    return {"results": results is not None, "args": bool(args), "trainer": trainer and not args, "general": general}


def _origin(args: Mapping, base_model: str | None) -> list[str]:
    lines = []
    teacher = args.get("teacher_name_or_path")
    if _is_general(args) and args.get("objective") == "attention_transfer" and teacher:
        lines.append(f"Its attention was fitted to the softmax attention of `{_shown(teacher)}` (attention transfer).")
    elif _is_general(args) and teacher:
        lines.append(f"It was trained by task-agnostic knowledge distillation from `{_shown(teacher)}`.")
    elif args.get("mode") == "distill" and teacher:
        lines.append(f"It was trained by task-specific knowledge distillation from `{_shown(teacher)}`.")
    elif args.get("mode") == "finetune":
        lines.append("It was fine-tuned on the task's labels (no teacher).")
    if base_model:
        lines.append(f"The student was initialised from [`{base_model}`](https://huggingface.co/{base_model}).")
    return lines


def _initialisation(folder: Path, args: Mapping) -> dict:
    """How the student's weights started: `kind` (converted, distilbert, inhibidistilbert, attention_transfer,
    task_agnostic, random, unknown), the public name of the source and its model type when known.

    Read from training_args.json: its `student_init` record when the training script wrote one, else the folder of
    `model_name_or_path` when it is still on this machine (its config.json, and its own training_args.json for an
    InhibiDistilBERT source). `student_init: "random"` (or `{"random": true}`) records a random start. A Hub id
    names the source without its type; without a record or a source the initialisation is unknown.
    """
    record = args.get("student_init")
    if record == "random" or (isinstance(record, Mapping) and record.get("random")):
        return {"kind": "random"}
    source = args.get("model_name_or_path") or (args.get("teacher_name_or_path") if _is_general(args) else None)
    if not source:  # no training_args.json, or one that does not say
        return {"kind": "unknown"}
    info = {"source": _shown(source), "model_type": None, "objective": None}
    if isinstance(record, Mapping):
        info.update(model_type=record.get("source_model_type"), objective=record.get("source_objective"))
    else:
        path = Path(str(source))
        if not path.is_absolute():  # recorded relative to where the run started; try the folder's parents too
            candidates = [path, *(parent / path for parent in folder.resolve().parents)]
            path = next((p for p in candidates if p.is_dir()), path)
        source_config = _safe_json(path / "config.json")
        if source_config:
            source_args = _safe_json(path / "training_args.json") or {}
            info.update(model_type=source_config.get("model_type"), objective=_objective(source_args))
    model_type, objective = info["model_type"], info["objective"]
    if model_type == "inhibidistilbert":
        kind = objective if objective in ("attention_transfer", "task_agnostic") else "inhibidistilbert"
    elif model_type == "distilbert":
        kind = "distilbert"
    elif model_type:
        kind = "converted"
    else:
        kind = "named"  # a source whose type is not recorded here (e.g. a Hub id)
    return {"kind": kind, **info}


def _objective(args: Mapping) -> str | None:
    """What a run trained for: `attention_transfer`, `task_agnostic` (general distillation) or its task name."""
    if _is_general(args):
        return "attention_transfer" if args.get("objective") == "attention_transfer" else "task_agnostic"
    return args.get("task_name")


def _safe_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _inhibitor(config: Mapping) -> dict:
    return {
        "signed": config.get("inhibitor_signed", True),
        "centred": config.get("center_scores", True),
        "mean": config.get("output_normalization") == "mean",
    }


def _usage(auto_class: str, pipeline_tag: str | None, config: Mapping) -> dict:
    example = {
        "fill-mask": "The movie was [MASK].",
        "text-classification": "A gripping, beautifully acted film.",
    }.get(pipeline_tag, "Inhibitor attention replaces the softmax.")
    head = auto_class not in ("AutoModel", "AutoModelForMultipleChoice")  # multiple choice: [batch, choices, length]
    pipe = bool(pipeline_tag) and pipeline_tag != "question-answering"  # QA needs a question and a context
    names = {"AutoModel", "AutoTokenizer"} | ({auto_class} if head else set()) | ({"pipeline"} if pipe else set())
    return {
        "auto_class": auto_class,
        "head": head,
        "pipeline": pipeline_tag if pipe else None,
        "imports": ", ".join(sorted(names)),
        "example": example,
        "dim": config.get("dim", 768),
    }


def eval_rows(results: Mapping, args: Mapping, task: TaskSpec, suffix: str) -> int | None:
    """Rows the evaluation on `task.eval_splits[suffix]` used: `eval_samples<suffix>` of all_results.json, else the
    run's `max_eval_samples` cap applied to the full split; None when neither is recorded."""
    rows = results.get(f"eval_samples{suffix}")
    if _is_number(rows):
        return int(rows)
    full = task.eval_sizes.get(suffix)
    if "max_eval_samples" in args and full is not None:
        cap = args["max_eval_samples"]
        return min(int(cap), full) if _is_number(cap) else full
    return None


def _evaluations(results: Mapping, args: Mapping, task: TaskSpec) -> list[dict]:
    """One entry per (evaluation split, metric) the results hold: the model-index `EvalResult` and its table row."""
    entries = []
    for suffix, split in task.eval_splits.items():
        full = task.eval_sizes.get(suffix)
        rows = eval_rows(results, args, task, suffix)
        subset = rows is not None and full is not None and rows != full
        seed = args.get("subset_seed")
        if subset and seed is None:
            split_name, where = f"{split}[:{rows}]", f"the first {rows} of the {full} rows of {split}"
        elif subset:
            split_name = f"{split} ({rows} random rows, seed {seed})"
            where = f"{rows} of the {full} rows of {split}, drawn at random with seed {seed}"
        elif rows is None:
            split_name, where = split, f"{split} (the number of rows evaluated is not recorded)"
        else:
            split_name, where = split, f"all {rows} rows of {split}"
        for metric in task.metrics:
            key = f"eval_{metric}{suffix}"
            if not _is_number(results.get(key)):
                continue
            spec = METRICS[metric]
            name = task.pretty_name + (f" ({rows} of {full} {split} rows)" if subset else "")
            result = EvalResult(
                task_type="text-classification",
                task_name="Text Classification",
                dataset_type=task.hub_path,
                dataset_name=name,
                dataset_config=task.hub_config,
                dataset_split=split_name,
                metric_type=spec.hub_type,
                metric_name=spec.display_name,
                metric_value=results[key],  # the run's own number, unrounded
            )
            label = spec.display_name + (f" ({split})" if suffix else "")
            entries.append({"result": result, "key": key, "label": label, "where": where, "subset": subset})
    return entries


def _results_table(evaluations: list[dict], results: Mapping, teacher, baseline) -> dict:
    columns = [("This model (inhibitor)", results)]
    if teacher is not None:
        columns.append(("Teacher", teacher))
    if baseline is not None:
        columns.append(("Dot-product student", baseline))
    rows = []
    for entry in evaluations:
        cells = [_format_metric(source.get(entry["key"])) for _, source in columns]
        delta = None
        if baseline is not None:
            other = baseline.get(entry["key"])
            delta = f"{results[entry['key']] - other:+.4f}" if _is_number(other) else "n/a"
        rows.append({"label": entry["label"], "cells": cells, "delta": delta})
    if rows and any(_is_number(source.get("eval_samples")) for _, source in columns):
        cells = [str(int(s["eval_samples"])) if _is_number(s.get("eval_samples")) else "n/a" for _, s in columns]
        rows.append({"label": "Evaluation rows", "cells": cells, "delta": "" if baseline is not None else None})
    return {
        "columns": [name for name, _ in columns],
        "rows": rows,
        "where": sorted({entry["where"] for entry in evaluations}, key=str),
        "subset": any(entry["subset"] for entry in evaluations),
        "baseline": baseline is not None,
        "eval_loss": f"{results['eval_loss']:.4f}" if _is_number(results.get("eval_loss")) else None,
    }


def _format_metric(value: Any) -> str:
    return f"{value:.4f}" if _is_number(value) else "n/a"


def _training(args: Mapping, results: Mapping | None) -> dict:
    if _is_general(args) and args.get("objective") == "attention_transfer":
        recipe = "attention_transfer"
    elif _is_general(args):
        recipe = "general_mlm" if args.get("has_mlm_head") else "general_hidden"
    else:
        recipe = args.get("mode") if args.get("mode") in ("distill", "finetune") else None
    hidden = args.get("hidden_loss") not in (None, "none") and _is_number(args.get("alpha_hidden"))
    hidden = hidden and float(args["alpha_hidden"]) > 0
    public = {k: v for k, v in args.items() if not SECRET_KEY.search(k)}
    run = [(k, _shown(results[k])) for k in RUN_FACTS if results and results.get(k) is not None]
    return {
        "recipe": recipe,
        "hidden_loss": public.get("hidden_loss") or "cosine",
        "hidden": hidden,
        "selection": public.get("selection_split"),
        "hyperparameters": [(k, _shown(public[k])) for k in HYPERPARAMETERS if k in public],
        "run": run,
        "others": [(k, _shown(public[k])) for k in sorted(public) if k not in HYPERPARAMETERS],
    }


def _implementation_order() -> list[str]:
    """The config's accepted values, in the table's order (`auto` first, then the order `auto` tries them)."""
    known = [name for name in IMPLEMENTATIONS if name in INHIBITOR_IMPLEMENTATIONS]
    return known + [name for name in INHIBITOR_IMPLEMENTATIONS if name not in IMPLEMENTATIONS]
