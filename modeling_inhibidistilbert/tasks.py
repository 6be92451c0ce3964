"""The task registry: GLUE's nine tasks and IMDB, their columns, labels, files, evaluation sets and metrics.

The one place for task facts: the training scripts, the metrics, the model card, the experiment driver and the report
all read it. Column names, label names and label order follow the Hub data sets (`nyu-mll/glue`, `stanfordnlp/imdb`),
so a model trained on the Hub data and one trained on the original GLUE files agree on what label 1 means.
Pure: only the standard library (the Hub-card code and the report import it without torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricSpec:
    """One metric as GLUE reports it and as a model card's `model-index` names it.

    Attributes:
        name: the key in `compute_task_metrics`' result (and `eval_<name>` in a run's all_results.json).
        hub_type: the model-index metric type (the Hub's spelling, e.g. `pearsonr`).
        display_name: the card's and report's long name.
        short_name: the report's column label.
    """

    name: str
    hub_type: str
    display_name: str
    short_name: str


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", "accuracy", "Accuracy", "acc."),
        MetricSpec("f1", "f1", "F1", "F1"),
        MetricSpec("matthews_correlation", "matthews_correlation", "Matthews correlation", "MCC"),
        MetricSpec("pearson", "pearsonr", "Pearson correlation", "Pearson"),
        MetricSpec("spearmanr", "spearmanr", "Spearman correlation", "Spearman"),
    )
}


@dataclass(frozen=True)
class PublishedScore:
    """A published score (x100) of a reference model on a task's main evaluation split.

    `metric` is a key of `METRICS`, or `None` when the source does not say which metric the number is (then it is
    printed apart, never beside one of ours). `note` says what the number is and how far it compares.
    """

    model: str
    metric: str | None
    value: float
    source: str
    note: str = ""


_SANH = "Sanh et al. 2019, DistilBERT, arXiv 1910.01108, Table 1 (GLUE dev, median of 5 runs) and Table 2 (IMDB test)"
_MINILM_L6 = (
    "microsoft/xtremedistil-l6-h384-uncased model card (GLUE dev; MiniLM 6x384, 22M parameters, from the MiniLM "
    "paper, Wang et al. 2020, arXiv 2002.10957)"
)
_ALL_MINILM_STSB = (
    "a public all-MiniLM-L6-v2 fine-tune on full STS-B (quoted in the project's spec, ../shared/docs/method.md)"
)


def _distilbert(value: float, metric: str | None, note: str = "") -> PublishedScore:
    return PublishedScore("DistilBERT", metric, value, _SANH, note)


def _minilm(value: float, metric: str | None, note: str = "") -> PublishedScore:
    return PublishedScore("MiniLM-L6-H384", metric, value, _MINILM_L6, note)


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
        label_range: the range of a regression task's labels (STS-B: 0 to 5); the data checks refuse scores outside it.
        pretty_name: the name model cards and reports print (`"GLUE SST-2"`, `"IMDB"`).
        eval_sizes: eval suffix -> rows of the full official evaluation split (`eval_size` is the main one's).
        published: published reference scores of comparable models on the main evaluation split (`PublishedScore`).
        majority: metric -> score (x100) of predicting the main evaluation split's majority class (a constant
            prediction: 0 for Matthews correlation; for a correlation, undefined and taken as 0); empty where the
            split is not available offline to check it.
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
    label_range: tuple[float, float] | None = None
    pretty_name: str = ""
    eval_sizes: dict[str, int] = field(default_factory=dict)
    published: tuple[PublishedScore, ...] = ()
    majority: dict[str, float] = field(default_factory=dict)

    @property
    def eval_size(self) -> int:
        """Rows of the full main evaluation split (GLUE dev; IMDB test)."""
        return self.eval_sizes[""]

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """The keys of the main evaluation split's metrics in a run's all_results.json (`eval_<metric>`)."""
        return tuple(f"eval_{name}" for name in self.metrics)

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
        pretty_name="GLUE CoLA",
        eval_sizes={"": 1043},
        published=(_distilbert(51.3, "matthews_correlation"),),
        majority={"matthews_correlation": 0.0},
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
        pretty_name="GLUE SST-2",
        eval_sizes={"": 872},
        published=(_distilbert(91.3, "accuracy"), _minilm(91.3, "accuracy")),
        majority={"accuracy": 100 * 444 / 872},
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
        pretty_name="GLUE MRPC",
        eval_sizes={"": 408},
        published=(
            _distilbert(87.5, None, "the paper does not name the metric; most likely F1"),
            _minilm(86.6, None, "the card does not name the metric"),
        ),
        majority={"accuracy": 100 * 279 / 408, "f1": 100 * 2 * 279 / (279 + 408)},
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
        label_range=(0.0, 5.0),
        pretty_name="GLUE STS-B",
        eval_sizes={"": 1500},
        published=(
            _distilbert(86.9, None, "the paper does not name the correlation"),
            PublishedScore("all-MiniLM-L6-v2 fine-tuned", "pearson", 82.6, _ALL_MINILM_STSB),
        ),
        majority={"pearson": 0.0, "spearmanr": 0.0},
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
        pretty_name="GLUE QQP",
        eval_sizes={"": 40430},
        published=(_distilbert(88.5, None, "the paper does not name the metric"), _minilm(90.6, None)),
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
        pretty_name="GLUE MNLI",
        eval_sizes={"": 9815, "_mm": 9832},
        published=(_distilbert(82.2, "accuracy", "matched"), _minilm(82.8, "accuracy", "matched")),
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
        pretty_name="GLUE QNLI",
        eval_sizes={"": 5463},
        published=(_distilbert(89.2, "accuracy"), _minilm(90.3, "accuracy")),
        majority={"accuracy": 100 * 2761 / 5463},
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
        pretty_name="GLUE RTE",
        eval_sizes={"": 277},
        published=(_distilbert(59.9, "accuracy"), _minilm(68.9, "accuracy")),
        majority={"accuracy": 100 * 146 / 277},
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
        pretty_name="GLUE WNLI",
        eval_sizes={"": 71},
        published=(_distilbert(56.3, "accuracy"),),
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
        pretty_name="IMDB",
        eval_sizes={"": 25000},
        published=(_distilbert(92.82, "accuracy", "test set, all 25,000 reviews"),),
        majority={"accuracy": 50.0},
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
