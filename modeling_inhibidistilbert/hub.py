"""Publish a trained InhibiDistilBERT folder to the Hugging Face Hub: folder checks, model card, one-commit upload.

`publish(folder, repo_id)` is the one entry point that `hub_upload.py` and the distillation script's `--push_to_hub`
share. It runs `check_folder` (refusing any folder that would not load from the Hub), builds the model card with
`build_model_card` (metadata and model-index read from the run's own `all_results.json`, never typed by hand), has
the Hub validate the card's metadata, then uploads an allow-list of files in a single commit. The folder itself is
never modified.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import get_session, hf_raise_for_status

from .configuration_inhibidistilbert import AUTO_MAP

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
CODE_FILES = ("configuration_inhibidistilbert.py", "modeling_inhibidistilbert.py")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
METRICS_FILES = ("all_results.json", "eval_results.json")
SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
# Pickle files can run arbitrary code when loaded, so weights in these formats are refused. Trainer state files
# (optimizer, scheduler, RNG, pickled arguments) are not weights: they are skipped, not refused.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
TRAINER_STATE_PREFIXES = ("rng_state",)

# Head class -> (Auto class, pipeline task); the pipeline task is also the card's `pipeline_tag`.
HEADS = {
    "InhibiDistilBertModel": ("AutoModel", "feature-extraction"),
    "InhibiDistilBertForMaskedLM": ("AutoModelForMaskedLM", "fill-mask"),
    "InhibiDistilBertForSequenceClassification": ("AutoModelForSequenceClassification", "text-classification"),
    "InhibiDistilBertForTokenClassification": ("AutoModelForTokenClassification", "token-classification"),
    "InhibiDistilBertForQuestionAnswering": ("AutoModelForQuestionAnswering", "question-answering"),
    "InhibiDistilBertForMultipleChoice": ("AutoModelForMultipleChoice", None),
}

# Task name in all_results.json -> (dataset id, dataset config, pretty name, evaluation split).
TASKS = {
    "cola": ("nyu-mll/glue", "cola", "GLUE CoLA", "validation"),
    "sst2": ("nyu-mll/glue", "sst2", "GLUE SST-2", "validation"),
    "mrpc": ("nyu-mll/glue", "mrpc", "GLUE MRPC", "validation"),
    "qqp": ("nyu-mll/glue", "qqp", "GLUE QQP", "validation"),
    "stsb": ("nyu-mll/glue", "stsb", "GLUE STS-B", "validation"),
    "mnli": ("nyu-mll/glue", "mnli", "GLUE MNLI", "validation_matched"),
    "qnli": ("nyu-mll/glue", "qnli", "GLUE QNLI", "validation"),
    "rte": ("nyu-mll/glue", "rte", "GLUE RTE", "validation"),
    "wnli": ("nyu-mll/glue", "wnli", "GLUE WNLI", "validation"),
    "imdb": ("stanfordnlp/imdb", "plain_text", "IMDB", "test"),
}
# Key in all_results.json -> (metric id, pretty name, split override).
METRICS = {
    "eval_accuracy": ("accuracy", "Accuracy", None),
    "eval_accuracy_mm": ("accuracy", "Accuracy (mismatched)", "validation_mismatched"),
    "eval_f1": ("f1", "F1", None),
    "eval_matthews_correlation": ("matthews_correlation", "Matthews correlation", None),
    "eval_pearson": ("pearsonr", "Pearson correlation", None),
    "eval_pearsonr": ("pearsonr", "Pearson correlation", None),
    "eval_spearmanr": ("spearmanr", "Spearman correlation", None),
}
# Hyperparameters shown in the card, in this order, when the run's training_args.json has them.
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
    "text_sources",
    "train_files",
    "alpha_mlm",
    "mlm_probability",
    "seed",
)
SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|api_key|auth", re.IGNORECASE)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class FolderCheckError(ValueError):
    """A folder that must not be published: `problem` says what is wrong, `fix` how to repair it."""

    def __init__(self, folder: str | os.PathLike, problem: str, fix: str):
        self.folder, self.problem, self.fix = str(folder), problem, fix
        super().__init__(f"Refusing to publish {folder}: {problem}\nFix: {fix}")


class PublishError(RuntimeError):
    """The upload failed after the folder passed its checks; the message says what happened and what to do."""


@dataclass
class FolderReport:
    """What `check_folder` found: the model, the files that will be uploaded (path in repo, size) and the rest."""

    folder: Path
    architecture: str
    num_labels: int
    id2label: dict[int, str]
    weight_files: list[str]
    upload_files: list[tuple[str, int]]
    skipped_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = sum(size for _, size in self.upload_files)
        lines = [
            f"{self.folder} passed the checks: {self.architecture}, {self.num_labels} labels; "
            f"{len(self.upload_files)} files ({_human_size(total)}) to upload with the generated README.md."
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.skipped_files:
            lines.append(f"  not uploaded: {', '.join(self.skipped_files)}")
        return "\n".join(lines)


@dataclass
class PublishResult:
    """The outcome of `publish`: the files of the commit (README.md included), the card, and the commit's address."""

    repo_id: str
    files: list[tuple[str, int]]
    card: ModelCard
    report: FolderReport
    dry_run: bool
    repo_url: str | None = None
    commit_url: str | None = None
    commit_oid: str | None = None
    pr_url: str | None = None

    def file_table(self) -> str:
        width = max(len(path) for path, _ in self.files)
        rows = [f"  {path:<{width}}  {_human_size(size):>10}  ({size} bytes)" for path, size in self.files]
        total = sum(size for _, size in self.files)
        return "\n".join([*rows, f"  {'total':<{width}}  {_human_size(total):>10}  ({total} bytes)"])


# FOLDER CHECKS #


def check_folder(folder: str | os.PathLike) -> FolderReport:
    """Check that `folder` is a complete, loadable InhibiDistilBERT model; raise `FolderCheckError` if not.

    Checks, in order: no pickle weights; both code files present and identical to the installed package's; the
    config parses, is an InhibiDistilBERT config with the full `auto_map`; safetensors weights load into the model
    class of `config.architectures` with no missing, unexpected or mismatched keys; a tokenizer loads; and the model
    runs on one example with finite outputs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderCheckError(folder, "it is not a folder.", "pass the output folder of a training run.")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())

    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES) and not _is_trainer_state(n)]
    if pickles:
        raise FolderCheckError(
            folder,
            f"pickle weights found ({', '.join(pickles)}); only safetensors weights are published, because loading "
            "a pickle file can run arbitrary code.",
            "save the model with `model.save_pretrained(folder)` (transformers writes model.safetensors) and move "
            "the pickle files out of the folder.",
        )
    _check_code_files(folder)
    config = _check_config(folder)
    architecture = config.architectures[0]
    weight_files = _weight_files(folder)
    with _quiet_transformers():
        model = _check_weights(folder, architecture)
        tokenizer = _check_tokenizer(folder)
        _check_runs(folder, model, tokenizer, architecture)

    warnings = []
    id2label = {int(k): v for k, v in config.id2label.items()}
    if architecture in ("InhibiDistilBertForSequenceClassification", "InhibiDistilBertForTokenClassification"):
        if all(re.fullmatch(r"LABEL_\d+", label) for label in id2label.values()):
            warnings.append(
                "config.id2label holds the generic names LABEL_0, LABEL_1, ...; pipelines will print those. Set "
                "`config.id2label` / `config.label2id` to the task's label names before saving."
            )
    upload = ["config.json", *CODE_FILES, *weight_files]
    upload += [n for n in TOKENIZER_FILES if n in names] + [n for n in METRICS_FILES if n in names]
    if "README.md" in names:
        warnings.append("the folder's README.md is replaced in the upload by the generated model card.")
    skipped = [n for n in names if n not in upload and n != "README.md"]
    skipped += sorted(f"{p.name}/" for p in folder.iterdir() if p.is_dir())
    return FolderReport(
        folder=folder,
        architecture=architecture,
        num_labels=config.num_labels,
        id2label=id2label,
        weight_files=weight_files,
        upload_files=[(n, (folder / n).stat().st_size) for n in upload],
        skipped_files=skipped,
        warnings=warnings,
    )


def _is_trainer_state(name: str) -> bool:
    return name in TRAINER_STATE_FILES or name.startswith(TRAINER_STATE_PREFIXES)


def _check_code_files(folder: Path) -> None:
    fix = (
        "re-save the model with the installed package (`import modeling_inhibidistilbert` before "
        "`model.save_pretrained(folder)`), or copy {names} from {package} into the folder."
    )
    missing = [n for n in CODE_FILES if not (folder / n).is_file()]
    if missing:
        raise FolderCheckError(
            folder,
            f"the code file(s) {', '.join(missing)} are missing, so `trust_remote_code=True` could not load the model.",
            fix.format(names=", ".join(missing), package=PACKAGE_DIR),
        )
    stale = [n for n in CODE_FILES if (folder / n).read_bytes() != (PACKAGE_DIR / n).read_bytes()]
    if stale:
        raise FolderCheckError(
            folder,
            f"the code file(s) {', '.join(stale)} differ from the installed package's ({PACKAGE_DIR}); the Hub would "
            "run code that was not tested with these weights.",
            fix.format(names=", ".join(stale), package=PACKAGE_DIR),
        )


def _check_config(folder: Path):
    from .configuration_inhibidistilbert import InhibiDistilBertConfig

    path = folder / "config.json"
    fix = "re-save the model with `model.save_pretrained(folder)` after `import modeling_inhibidistilbert`."
    if not path.is_file():
        raise FolderCheckError(folder, "config.json is missing.", fix)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FolderCheckError(folder, f"config.json is not valid JSON ({err}).", fix) from err
    if not isinstance(raw, dict) or raw.get("model_type") != InhibiDistilBertConfig.model_type:
        found = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise FolderCheckError(
            folder,
            f"config.json has model_type {found!r}, not {InhibiDistilBertConfig.model_type!r}; this tool publishes "
            "InhibiDistilBERT models (a dot-product student is a plain DistilBERT: use `model.push_to_hub`).",
            fix,
        )
    auto_map = raw.get("auto_map") or {}
    wrong = sorted(k for k, v in AUTO_MAP.items() if auto_map.get(k) != v)
    if wrong:
        raise FolderCheckError(
            folder,
            f"config.json's auto_map lacks or misstates {', '.join(wrong)}; the Auto classes could not find the code.",
            fix,
        )
    architectures = raw.get("architectures") or []
    if len(architectures) != 1 or architectures[0] not in HEADS:
        raise FolderCheckError(
            folder,
            f"config.json's architectures is {architectures!r}; it must name one of {', '.join(HEADS)}.",
            fix,
        )
    if raw.get("inhibitor_implementation") == "fused":
        raise FolderCheckError(
            folder,
            "config.json sets inhibitor_implementation='fused', which fails wherever the optional compiled kernel is "
            "not installed, as on most machines that load the model from the Hub.",
            "set `model.config.inhibitor_implementation = 'auto'` (the kernel is still used where installed) and "
            "re-save.",
        )
    try:
        return InhibiDistilBertConfig.from_pretrained(folder)
    except Exception as err:  # the config class validates its fields
        raise FolderCheckError(folder, f"config.json does not load: {err}", fix) from err


def _weight_files(folder: Path) -> list[str]:
    if (folder / SAFETENSORS_INDEX).is_file():
        try:
            index = json.loads((folder / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as err:
            raise FolderCheckError(
                folder, f"{SAFETENSORS_INDEX} is not a valid index ({err}).", "re-save the model."
            ) from err
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise FolderCheckError(
                folder,
                f"the weight shard(s) {', '.join(missing)} listed in {SAFETENSORS_INDEX} are missing.",
                "copy every shard into the folder, or re-save the model with `model.save_pretrained(folder)`.",
            )
        return [SAFETENSORS_INDEX, *shards]
    if (folder / SAFETENSORS_WEIGHTS).is_file():
        return [SAFETENSORS_WEIGHTS]
    raise FolderCheckError(
        folder,
        f"no safetensors weights ({SAFETENSORS_WEIGHTS} or {SAFETENSORS_INDEX}).",
        "save the model with `model.save_pretrained(folder)`.",
    )


def _check_weights(folder: Path, architecture: str):
    from . import modeling_inhibidistilbert

    model_class = getattr(modeling_inhibidistilbert, architecture)
    fix = (
        "the weights and config.json come from different models: save both from the same model with "
        "`model.save_pretrained(folder)`."
    )
    try:
        model, info = model_class.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as err:
        raise FolderCheckError(folder, f"the weights do not load into {architecture}: {err}", fix) from err
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        keys = sorted(_describe_key(k) for k in info.get(kind) or ())
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{kind.replace('_', ' ')}: {shown}")
    if problems:
        raise FolderCheckError(
            folder, f"the weights do not match {architecture} built from config.json ({'; '.join(problems)}).", fix
        )
    return model.eval()


def _describe_key(key) -> str:
    """A loading-info entry: a key name, or a (key, checkpoint shape, model shape) tuple for mismatched sizes."""
    if isinstance(key, tuple) and len(key) == 3:
        name, saved, expected = key
        return f"{name} (weights {list(saved)}, config {list(expected)})"
    return str(key)


def _check_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    fix = "save the tokenizer next to the model: `tokenizer.save_pretrained(folder)`."
    if not (folder / "tokenizer_config.json").is_file() or not any(
        (folder / n).is_file() for n in ("tokenizer.json", "vocab.txt")
    ):
        raise FolderCheckError(folder, "no tokenizer (tokenizer_config.json with tokenizer.json or vocab.txt).", fix)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as err:
        raise FolderCheckError(folder, f"the tokenizer does not load: {err}", fix) from err


def _check_runs(folder: Path, model, tokenizer, architecture: str) -> None:
    import torch

    try:
        inputs = tokenizer("Inhibitor attention replaces the softmax.", return_tensors="pt")
        if int(inputs["input_ids"].max()) >= model.config.vocab_size:
            raise ValueError(
                f"the tokenizer produces id {int(inputs['input_ids'].max())} but the model has "
                f"vocab_size={model.config.vocab_size}"
            )
        if architecture == "InhibiDistilBertForMultipleChoice":  # [batch, choices, length]
            inputs = {k: v[:, None].expand(-1, 2, -1) for k, v in inputs.items()}
        with torch.no_grad():
            output = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        first = output[0]
        if not bool(torch.isfinite(first).all()):
            raise ValueError("the output holds NaN or infinite values")
    except Exception as err:
        raise FolderCheckError(
            folder,
            f"the model does not run on one example: {err}",
            "check that the tokenizer belongs to this model and that the weights are finite.",
        ) from err


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars: the checks report problems themselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# MODEL CARD #


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

    Reads config.json, all_results.json (model-index and results) and training_args.json (recipe and
    hyperparameters) when present. `teacher_results` and `baseline_results` (all_results.json of the teacher and of
    the dot-product student trained with the same recipe, as paths or dicts) add a comparison table. `base_model`
    defaults to the run's `model_name_or_path` when that is a Hub id.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json") or {}
    results = _read_json(folder / "all_results.json")
    args = _read_json(folder / "training_args.json") or {}
    teacher = _load_results(teacher_results, "teacher_results")
    baseline = _load_results(baseline_results, "baseline_results")
    task = (results or {}).get("task_name") or args.get("task_name")
    for name, other in (("teacher_results", teacher), ("baseline_results", baseline)):
        if other is not None and other.get("task_name") not in (None, task):
            raise ValueError(
                f"{name} are for task {other.get('task_name')!r} but this model was evaluated on {task!r}; pass the "
                "all_results.json of the same task."
            )

    architecture = (config.get("architectures") or ["InhibiDistilBertModel"])[0]
    auto_class, pipeline_tag = HEADS.get(architecture, ("AutoModel", None))
    if base_model is None:
        candidate = args.get("model_name_or_path")
        if isinstance(candidate, str) and HUB_ID.match(candidate) and not Path(candidate).exists():
            base_model = candidate
    dataset = TASKS.get(task) if task else None
    model_name = repo_id.split("/")[-1]
    eval_results = _eval_results(results, task) if results else []
    tags = ["inhibitor-attention", "inhibidistilbert", "distilbert", "custom_code"]
    if args.get("mode") == "distill" or _is_general(args):
        tags.append("knowledge-distillation")
    if dataset:
        tags.append("glue" if dataset[0] == "nyu-mll/glue" else task)
    data = ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=tags,
        base_model=base_model,
        datasets=[dataset[0]] if dataset else None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    sections = [
        _intro_section(model_name, task, dataset, args, base_model),
        _inhibitor_section(config),
        _usage_section(repo_id, auto_class, pipeline_tag, config),
        _finetuning_section(repo_id, auto_class),
        _results_section(results, task, teacher, baseline),
        _training_section(args, results),
        _attention_section(),
        _limitations_section(),
        _citation_section(),
    ]
    body = "\n\n".join(s.strip() for s in sections if s) + "\n"
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


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


def _metric_keys(results: Mapping) -> list[str]:
    """The metric keys of a results dict, in METRICS order, with finite numeric values."""
    return [
        key
        for key in METRICS
        if isinstance(results.get(key), (int, float))
        and not isinstance(results.get(key), bool)
        and math.isfinite(results[key])
    ]


def _eval_results(results: Mapping, task: str | None) -> list[EvalResult]:
    if task not in TASKS:
        return []
    dataset_id, dataset_config, dataset_name, split = TASKS[task]
    return [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=dataset_id,
            dataset_name=dataset_name,
            dataset_config=dataset_config,
            dataset_split=METRICS[key][2] or split,
            metric_type=METRICS[key][0],
            metric_name=METRICS[key][1],
            metric_value=results[key],  # the run's own number, unrounded
        )
        for key in _metric_keys(results)
    ]


def _public_value(value: Any) -> Any:
    """Local absolute paths are reduced to their last part: a card must not leak a machine's layout."""
    if isinstance(value, str) and os.path.isabs(value):
        return f"(local) {Path(value).name}"
    return value


def _intro_section(model_name: str, task: str | None, dataset, args: Mapping, base_model: str | None) -> str:
    what = f"fine-tuned for {dataset[2]}" if dataset else "a general-purpose encoder"
    lines = [
        f"# {model_name}",
        "",
        f"InhibiDistilBERT: DistilBERT whose softmax attention is replaced by *inhibitor attention* (Manhattan-distance "
        f"scores and ReLU inhibition, no softmax and no query-key dot product), {what}.",
    ]
    if _is_general(args) and args.get("objective") == "attention_transfer" and args.get("teacher_name_or_path"):
        lines.append(
            f"Its attention was fitted to the softmax attention of `{_public_value(args['teacher_name_or_path'])}` "
            "(attention transfer)."
        )
    elif _is_general(args) and args.get("teacher_name_or_path"):
        lines.append(
            f"It was trained by task-agnostic knowledge distillation from `{_public_value(args['teacher_name_or_path'])}`."
        )
    elif args.get("mode") == "distill" and args.get("teacher_name_or_path"):
        lines.append(
            f"It was trained by task-specific knowledge distillation from `{_public_value(args['teacher_name_or_path'])}`."
        )
    if base_model:
        lines.append(f"The student was initialised from [`{base_model}`](https://huggingface.co/{base_model}).")
    lines += [
        "",
        "The architecture follows Brännvall (2023) and Zhang and Brännvall (2025); the code ships in this repository "
        "(`configuration_inhibidistilbert.py`, `modeling_inhibidistilbert.py`) and loads with `trust_remote_code=True`.",
    ]
    return "\n".join(lines)


def _inhibitor_section(config: Mapping) -> str:
    signed = config.get("inhibitor_signed", True)
    centred = config.get("center_scores", True)
    inhibition = (
        "`H_il = eta * sum_j [relu(V_jl - Zbar_ij) + min(0, V_jl + Zbar_ij)]` (signed: each value is shrunk towards "
        "zero by the score)"
        if signed
        else "`H_il = eta * sum_j relu(V_jl - Zbar_ij)` (unsigned, as in the 2023 paper)"
    )
    centring = (
        "`Zbar_ij = relu(Z_ij - mean_j Z_ij - delta)`, the mean taken over real (unpadded) keys"
        if centred
        else "`Zbar_ij = relu(Z_ij - delta)`"
    )
    return f"""## What inhibitor attention is

Per head, with queries, keys and values `Q, K, V` of head dimension `d`:

1. Scores are Manhattan distances instead of dot products: `Z_ij = gamma / sqrt(d) * sum_k |Q_ik - K_jk|`.
2. Scores are shifted: {centring}.
3. Inhibition replaces the softmax: {inhibition}.

`gamma`, `delta` and `eta` are learnable scalars per head. A large score means *less* attention: the key inhibits its
value. Apart from the per-head scales there are no multiplications: no query-key products and no exponentials, only
differences, absolute values, ReLUs and sums. This implementation evaluates it with `torch.cdist` and never builds an
`[N, N, d]` tensor. `output_attentions=True` returns the inhibition scores `Zbar`,
which are non-negative distances, **not** probabilities."""


def _usage_section(repo_id: str, auto_class: str, pipeline_tag: str | None, config: Mapping) -> str:
    example = {
        "fill-mask": "The movie was [MASK].",
        "text-classification": "A gripping, beautifully acted film.",
    }.get(pipeline_tag, "Inhibitor attention replaces the softmax.")
    blocks = [
        "import torch\nfrom transformers import {imports}",
        f'repo_id = "{repo_id}"\nrevision = "main"  # pin the commit hash you reviewed, see below\ntext = "{example}"',
        "# trust_remote_code here too: the tokenizer reads config.json, whose auto_map names this repository's code\n"
        "tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=True)\n"
        'inputs = tokenizer(text, return_tensors="pt")',
        "encoder = AutoModel.from_pretrained(repo_id, revision=revision, trust_remote_code=True)\n"
        "with torch.no_grad():\n"
        f"    hidden = encoder(**inputs).last_hidden_state  # [batch, length, {config.get('dim', 768)}]",
    ]
    names = {"AutoModel", "AutoTokenizer"}
    if auto_class not in ("AutoModel", "AutoModelForMultipleChoice"):  # multiple choice needs [batch, choices, length]
        names.add(auto_class)
        blocks.append(
            f"model = {auto_class}.from_pretrained(repo_id, revision=revision, trust_remote_code=True)\n"
            "with torch.no_grad():\n"
            "    outputs = model(**inputs)"
        )
    if pipeline_tag and pipeline_tag != "question-answering":  # the QA pipeline needs a question and a context
        names.add("pipeline")
        blocks.append(
            f'pipe = pipeline("{pipeline_tag}", model=repo_id, revision=revision, trust_remote_code=True)\n'
            "print(pipe(text))"
        )
    code = "\n\n".join(blocks).replace("{imports}", ", ".join(sorted(names)))
    return f"""## How to use

The model code lives in this repository, so loading needs `trust_remote_code=True` and no extra package:

```python
{code}
```

**Pin the revision.** `trust_remote_code=True` runs this repository's two Python files on your machine. Read them,
then pass `revision="<commit hash>"` (from the repository's history) to every `from_pretrained` and `pipeline`
call: a pinned revision fixes the code and the weights together, so a later push cannot change what you run.
`pip install inhibidistilbert` adds an optional fused CPU kernel that the same code picks up when it is installed."""


def _finetuning_section(repo_id: str, auto_class: str) -> str:
    return f"""## Fine-tuning

Every head loads from this checkpoint; a new head is initialised when the label count changes:

```python
from transformers import AutoModelForSequenceClassification

model = AutoModelForSequenceClassification.from_pretrained(
    "{repo_id}", revision=revision, trust_remote_code=True, num_labels=3, ignore_mismatched_sizes=True
)
model.gradient_checkpointing_enable()  # optional: supported by every layer
```

Train it with `Trainer` or a plain PyTorch loop as any DistilBERT. The per-head `gamma`, `delta` and `eta` train
with the rest (`config.train_inhibitor_scalars=False` freezes them). `save_pretrained` writes the two code files next
to the weights, so a fine-tuned copy loads the same way. Inhibitor scores are distances, not probabilities:
attention-map distillation losses do not apply; distil logits and hidden states instead."""


def _results_section(results: Mapping | None, task: str | None, teacher: Mapping | None, baseline: Mapping | None):
    if not results:
        return "## Evaluation results\n\nThe training folder held no `all_results.json`, so no results are reported."
    keys = _metric_keys(results)
    dataset = TASKS.get(task)
    where = f"{dataset[2]} ({dataset[3]} split)" if dataset else f"task {task!r}"
    if dataset and "eval_accuracy_mm" in results:
        where = f"{dataset[2]} ({dataset[3]} split; the mismatched row on validation_mismatched)"
    if not keys:
        return f"## Evaluation results\n\n`all_results.json` holds no recognised metric for {where}."
    columns = [("This model (inhibitor)", results)]
    if teacher is not None:
        columns.append(("Teacher", teacher))
    if baseline is not None:
        columns.append(("Dot-product student", baseline))
    header = "| Metric | " + " | ".join(name for name, _ in columns)
    header += " | Δ vs dot-product |" if baseline is not None else " |"
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for key in keys:
        cells = [_format_metric(source.get(key)) for _, source in columns]
        row = f"| {METRICS[key][1]} | " + " | ".join(cells)
        if baseline is not None:
            other = baseline.get(key)
            row += f" | {results[key] - other:+.4f} |" if isinstance(other, (int, float)) else " | n/a |"
        else:
            row += " |"
        lines.append(row)
    text = [
        "## Evaluation results",
        "",
        f"On {where}, as written by the evaluation at the end of training (`all_results.json`, also in this "
        "repository); the same numbers fill the `model-index` metadata above.",
        "",
        *lines,
    ]
    if baseline is not None:
        text += [
            "",
            "The dot-product student is DistilBERT with its usual softmax attention, trained with the identical recipe; "
            "Δ is this model minus that student.",
        ]
    return "\n".join(text)


def _format_metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _training_section(args: Mapping, results: Mapping | None) -> str:
    lines = ["## Training procedure", ""]
    mode = args.get("mode")
    if mode == "distill":
        hidden = ""
        if args.get("hidden_loss") not in (None, "none") and float(args.get("alpha_hidden") or 0) > 0:
            hidden = f" + `alpha_hidden` · {args['hidden_loss']} loss between student and teacher hidden states"
        lines.append(
            "Task-specific knowledge distillation. Loss = `alpha_kd` · T² · KL(teacher ‖ student) on logits softened "
            "by the temperature T (MSE between the two outputs for the regression task STS-B) + `alpha_ce` · the "
            f"hard-label loss (cross-entropy; MSE for STS-B){hidden}. The best evaluation step is kept."
        )
    elif mode == "finetune":
        lines.append("Fine-tuning on the task's labels (no teacher).")
    elif _is_general(args) and args.get("objective") == "attention_transfer":
        lines.append(
            "Attention transfer on unlabeled text: every layer's inhibitor attention (q/k/v projections and per-head "
            "scalars; all other weights frozen) was fitted to the teacher's softmax attention output on the teacher's "
            "own input to that layer (squared error relative to the teacher output's mean square). The checkpoint "
            "with the lowest held-out loss is kept; distil or fine-tune it per task."
        )
    elif _is_general(args):
        hidden = args.get("hidden_loss") or "cosine"
        recipe = (
            "DistilBERT's recipe: Loss = `alpha_kd` · T² · KL(teacher ‖ student) on the masked positions + "
            f"`alpha_mlm` · the masked-LM loss + `alpha_hidden` · {hidden} loss between student and teacher hidden "
            "states"
            if args.get("has_mlm_head")
            else f"hidden-state alignment alone (`alpha_hidden` · {hidden} loss between mapped student and teacher "
            "layers), since the teacher has no masked-LM head"
        )
        lines.append(
            f"Task-agnostic knowledge distillation on unlabeled text, {recipe}. The checkpoint with the lowest "
            "held-out loss is kept; fine-tune or distil it per task."
        )
    elif not args:
        lines.append("The training folder held no `training_args.json`, so the recipe is not recorded here.")
    shown = [k for k in HYPERPARAMETERS if k in args and not SECRET_KEY.search(k)]
    if shown:
        lines += ["", "| Hyperparameter | Value |", "| --- | --- |"]
        lines += [f"| `{k}` | `{_public_value(args[k])}` |" for k in shown]
    run = [
        (k, (results or {}).get(k)) for k in ("train_samples", "eval_samples", "epoch", "best_step", "train_runtime")
    ]
    run = [(k, v) for k, v in run if v is not None]
    if run:
        lines += ["", "Run: " + ", ".join(f"{k} = {v}" for k, v in run) + "."]
    others = sorted(k for k in args if k not in HYPERPARAMETERS and not SECRET_KEY.search(k))
    if others:
        lines += ["", "<details><summary>All other arguments of the run</summary>", ""]
        lines += [f"- `{k}`: `{_public_value(args[k])}`" for k in others]
        lines += ["", "</details>"]
    return "\n".join(lines)


def _is_general(args: Mapping) -> bool:
    """Whether the run is task-agnostic distillation (`run_distill_general.py` records `task_name: general`)."""
    return args.get("task_name") == "general"


def _attention_section() -> str:
    return """## Attention implementations

| `attn_implementation` | Supported | Why |
| --- | --- | --- |
| unset / `"eager"` | yes | the inhibitor attention of this repository |
| `"sdpa"` | no | computes softmax attention, not inhibition |
| `"flash_attention_2"`, `"flash_attention_3"` | no | softmax kernels |
| `"flex_attention"` | no | score-modifying softmax kernel |

Asking for an unsupported implementation raises a `ValueError`. The inhibitor kernel is chosen with
`config.inhibitor_implementation`: `"cdist"` (pure PyTorch, any device), `"fused"` (the optional compiled CPU kernel
of `pip install inhibidistilbert`; an error if it is missing) or `"auto"` (fused where installed, else cdist)."""


def _limitations_section() -> str:
    return """## Limitations

- Accuracy: InhibiDistilbert reports about 3.2% lower GLUE scores than DistilBERT on average and comparable IMDB
  accuracy; the numbers above are single runs on the task's evaluation split, not a test-set estimate.
- Speed: on conventional hardware inhibitor attention is *slower* than softmax attention (on CPU the cdist form of
  the attention alone costs about 27x `scaled_dot_product_attention`) and no energy saving has been shown; its promise lies in hardware
  where additions are much cheaper than multiplications.
- `output_attentions` returns distances (larger = less attention), not probability maps; tools that expect rows
  summing to one will misread them.
- English only, uncased or cased as the tokenizer says; the model inherits the biases of its teacher, of DistilBERT's
  pre-training corpus and of the task data. It is not meant for decisions about people."""


def _citation_section() -> str:
    return """## Citation

```bibtex
@article{brannvall2023inhibitor,
  title   = {The Inhibitor: ReLU and Addition-Based Attention for Efficient Transformers},
  author  = {Br{\\"a}nnvall, Rickard},
  journal = {arXiv preprint arXiv:2310.02041},
  year    = {2023}
}

@article{zhang2025inhibidistilbert,
  title   = {InhibiDistilbert: Knowledge Distillation for a ReLU and Addition-based Transformer},
  author  = {Zhang, T. and Br{\\"a}nnvall, Rickard},
  journal = {arXiv preprint arXiv:2503.15983},
  year    = {2025}
}

@article{sanh2019distilbert,
  title   = {DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter},
  author  = {Sanh, Victor and Debut, Lysandre and Chaumond, Julien and Wolf, Thomas},
  journal = {arXiv preprint arXiv:1910.01108},
  year    = {2019}
}
```"""


# UPLOAD #


def publish(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    teacher_results: str | os.PathLike | Mapping | None = None,
    baseline_results: str | os.PathLike | Mapping | None = None,
) -> PublishResult:
    """Check `folder`, build its model card and upload it to `repo_id` in one commit.

    The commit holds config.json, the two code files, the safetensors weights, the tokenizer files, the metrics files
    and the generated README.md; nothing else from the folder. `token` defaults to huggingface_hub's usual sources
    (`HF_TOKEN`, the saved login) and is never printed or logged; `endpoint` defaults to `HF_ENDPOINT`. `revision`
    names a branch (created from main when missing); `create_pr` opens a pull request instead of pushing.
    `dry_run` checks the folder and builds the card but contacts no server; otherwise the Hub validates the card's
    metadata before anything is created or uploaded. Raises `FolderCheckError` for a folder that must not be
    published (a card the Hub rejects included) and `PublishError` when the upload fails (nothing is committed then).
    """
    if not HUB_ID.match(repo_id):
        raise ValueError(f"repo_id must read OWNER/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}.")
    report = check_folder(folder)
    card = build_model_card(report.folder, repo_id, teacher_results=teacher_results, baseline_results=baseline_results)
    readme = str(card).encode("utf-8")
    files = [*report.upload_files, ("README.md", len(readme))]
    result = PublishResult(repo_id=repo_id, files=files, card=card, report=report, dry_run=dry_run)
    if dry_run:
        return result

    api = HfApi(endpoint=endpoint, token=token)
    secret = token or get_token()
    operations = [
        CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(report.folder / n)) for n, _ in report.upload_files
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme))
    message = commit_message or f"Upload {report.architecture} from {report.folder.name}"
    _validate_card(card, api.endpoint, report.folder)
    try:
        result.repo_url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        if revision is not None and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as err:
        raise PublishError(
            _redact(
                f"Could not create or reach {repo_id} on {api.endpoint}: {_describe_error(err)}\nNothing was uploaded. Check the repo "
                "id, the endpoint and that the token may write to that namespace.",
                secret,
            )
        ) from err
    try:
        commit = api.create_commit(repo_id, operations, commit_message=message, revision=revision, create_pr=create_pr)
    except Exception as err:
        raise PublishError(
            _redact(
                f"Upload of {report.folder} to {repo_id} failed: {_describe_error(err)}\n"
                "Nothing was committed: a Hub commit is applied all at once, so the repository kept its previous "
                "files, and the local folder was not modified. Fix the cause and run the same command again; files "
                "whose upload completed are not sent twice.",
                secret,
            )
        ) from err
    result.commit_url, result.commit_oid, result.pr_url = commit.commit_url, commit.oid, commit.pr_url
    logger.info("Published %s to %s (%s)", report.folder, repo_id, commit.commit_url)
    return result


def _validate_card(card: ModelCard, endpoint: str, folder: Path) -> None:
    """Have the Hub at `endpoint` validate the card's metadata (`/api/validate-yaml`) before anything is uploaded.

    `ModelCard.validate` would ask `HF_ENDPOINT`, not the `--endpoint` of this upload, hence the request here.
    """
    try:
        response = get_session().post(
            f"{endpoint}/api/validate-yaml",
            json={"repoType": "model", "content": str(card)},
            headers={"Accept": "text/plain"},
        )
        if response.status_code == 400:
            try:
                errors = [e.get("message", str(e)) for e in response.json().get("errors", [])]
            except (ValueError, AttributeError):
                errors = []
            raise FolderCheckError(
                folder,
                f"the Hub rejects the generated model card's metadata: {'; '.join(errors) or response.text}.",
                "check the folder's all_results.json and training_args.json (the card is built from them); run with "
                "--dry_run to read the card.",
            )
        hf_raise_for_status(response)
    except FolderCheckError:
        raise
    except Exception as err:
        raise PublishError(
            f"Could not reach {endpoint} to validate the model card: {_describe_error(err)}\nNothing was uploaded."
        ) from err


def _describe_error(err: BaseException) -> str:
    """The error and its causes, outermost first: huggingface_hub wraps the HTTP error that says what happened."""
    parts = []
    while err is not None and len(parts) < 4:
        parts.append(f"{type(err).__name__}: {str(err).strip()}")
        if isinstance(err, HfHubHTTPError):  # it already names the status, the address and the server's message
            break
        err = err.__cause__
    return "\n  caused by ".join(parts)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"


__all__ = [
    "FolderCheckError",
    "FolderReport",
    "PublishError",
    "PublishResult",
    "build_model_card",
    "check_folder",
    "publish",
]
