"""The task registry: GLUE's nine tasks and IMDB, with their columns, labels, files and metrics.

Column names, label names and label order follow the Hub data sets (`nyu-mll/glue`, `stanfordnlp/imdb`), so a model
trained on the Hub data and one trained on the original GLUE files agree on what label 1 means.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """Everything the scripts need to know about one task.

    Attributes:
        name: the task name used on the command line (`--task_name`).
        text_columns: the Hub column names of the one or two input texts.
        label_names: label names in the Hub's order (index = label id); `None` for a regression task.
        metrics: the metrics GLUE reports for the task (keys of `compute_task_metrics`).
        main_metric: the metric that picks the best checkpoint (greater is better).
        hub_path, hub_config: where `datasets.load_dataset` finds the task.
        train_split: the Hub split to train on.
        eval_splits: suffix -> Hub split to evaluate on (`""` is the main one; MNLI adds `"_mm"` for mismatched).
        local_folder: the folder name in the original GLUE layout (`--data_dir`).
        local_files: `"train"` or an eval suffix -> file name inside `local_folder`.
        local_columns: original file column -> Hub column (labels included).
        local_header: `False` when the files have no header row (CoLA); then `local_names` names the columns.
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    hub_path: str
    hub_config: str | None
    train_split: str = "train"
    eval_splits: dict[str, str] = field(default_factory=lambda: {"": "validation"})
    local_folder: str = ""
    local_files: dict[str, str] = field(default_factory=lambda: {"train": "train.tsv", "": "dev.tsv"})
    local_columns: dict[str, str] = field(default_factory=dict)
    local_header: bool = True
    local_names: tuple[str, ...] | None = None

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return {0: "score"} if self.label_names is None else dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}


_GLUE = "nyu-mll/glue"

TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        name="cola",
        text_columns=("sentence",),
        label_names=("unacceptable", "acceptable"),
        metrics=("matthews_correlation",),
        main_metric="matthews_correlation",
        hub_path=_GLUE,
        hub_config="cola",
        local_folder="CoLA",
        local_header=False,
        local_names=("source", "label", "original_label", "sentence"),
    ),
    "sst2": TaskSpec(
        name="sst2",
        text_columns=("sentence",),
        label_names=("negative", "positive"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_path=_GLUE,
        hub_config="sst2",
        local_folder="SST-2",
    ),
    "mrpc": TaskSpec(
        name="mrpc",
        text_columns=("sentence1", "sentence2"),
        label_names=("not_equivalent", "equivalent"),
        metrics=("accuracy", "f1"),
        main_metric="f1",
        hub_path=_GLUE,
        hub_config="mrpc",
        local_folder="MRPC",
        local_columns={"Quality": "label", "#1 String": "sentence1", "#2 String": "sentence2"},
    ),
    "stsb": TaskSpec(
        name="stsb",
        text_columns=("sentence1", "sentence2"),
        label_names=None,
        metrics=("pearson", "spearmanr"),
        main_metric="spearmanr",
        hub_path=_GLUE,
        hub_config="stsb",
        local_folder="STS-B",
        local_columns={"score": "label"},
    ),
    "qqp": TaskSpec(
        name="qqp",
        text_columns=("question1", "question2"),
        label_names=("not_duplicate", "duplicate"),
        metrics=("accuracy", "f1"),
        main_metric="f1",
        hub_path=_GLUE,
        hub_config="qqp",
        local_folder="QQP",
        local_columns={"is_duplicate": "label"},
    ),
    "mnli": TaskSpec(
        name="mnli",
        text_columns=("premise", "hypothesis"),
        label_names=("entailment", "neutral", "contradiction"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_path=_GLUE,
        hub_config="mnli",
        eval_splits={"": "validation_matched", "_mm": "validation_mismatched"},
        local_folder="MNLI",
        local_files={"train": "train.tsv", "": "dev_matched.tsv", "_mm": "dev_mismatched.tsv"},
        local_columns={"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"},
    ),
    "qnli": TaskSpec(
        name="qnli",
        text_columns=("question", "sentence"),
        label_names=("entailment", "not_entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_path=_GLUE,
        hub_config="qnli",
        local_folder="QNLI",
    ),
    "rte": TaskSpec(
        name="rte",
        text_columns=("sentence1", "sentence2"),
        label_names=("entailment", "not_entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_path=_GLUE,
        hub_config="rte",
        local_folder="RTE",
    ),
    "wnli": TaskSpec(
        name="wnli",
        text_columns=("sentence1", "sentence2"),
        label_names=("not_entailment", "entailment"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_path=_GLUE,
        hub_config="wnli",
        local_folder="WNLI",
    ),
    "imdb": TaskSpec(
        name="imdb",
        text_columns=("text",),
        label_names=("neg", "pos"),
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_path="stanfordnlp/imdb",
        hub_config=None,
        eval_splits={"": "test"},
        local_folder="IMDB",
        local_files={"train": "train.parquet", "": "test.parquet"},
    ),
}

# Spellings people use for the same task (the GLUE folder names, with or without the dash).
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> TaskSpec:
    """The `TaskSpec` of a task name (case-insensitive; GLUE folder spellings such as `SST-2` accepted)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose one of: {', '.join(TASKS)}.")
    return TASKS[key]
