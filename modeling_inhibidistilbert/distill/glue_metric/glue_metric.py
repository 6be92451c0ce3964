"""GLUE metrics (and IMDB accuracy) as a local `evaluate` module, computed offline.

    import evaluate
    from modeling_inhibidistilbert.distill.metrics import GLUE_METRIC_PATH
    metric = evaluate.load(GLUE_METRIC_PATH, "mrpc")
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])  # {"accuracy": ..., "f1": ...}

The configuration name is the task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, imdb). The numbers come from
`modeling_inhibidistilbert.distill.metrics`, which follows scikit-learn's and SciPy's conventions.
"""

import datasets
import evaluate

from modeling_inhibidistilbert.distill.metrics import compute_task_metrics
from modeling_inhibidistilbert.distill.tasks import TASKS, get_task

_DESCRIPTION = (
    "GLUE's metric per task (CoLA MCC; STS-B Pearson and Spearman; MRPC and QQP accuracy and F1; else accuracy)."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label ids (float scores for stsb).
    references: gold label ids (float scores for stsb).
Returns:
    a dict with the task's metrics, e.g. {"accuracy": 0.9, "f1": 0.91} for mrpc.
"""
_CITATION = """@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={ICLR}, year={2019}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueMetric(evaluate.Metric):
    """GLUE metrics for InhibiDistilBERT, offline."""

    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"Unknown task {self.config_name!r}; use one of {', '.join(TASKS)}.")
        value = datasets.Value("float32" if get_task(self.config_name).is_regression else "int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references):
        return compute_task_metrics(self.config_name, predictions, references)
