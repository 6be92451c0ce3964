"""GLUE's metrics from scikit-learn and SciPy (offline; no metric download), one function per task.

CoLA: Matthews correlation; STS-B: Pearson and Spearman; MRPC and QQP: accuracy and F1 (of label 1); the rest (and
IMDB): accuracy. Which metrics a task reports comes from the task registry (`modeling_inhibidistilbert.tasks`). Edge
cases are the libraries' own, without their warnings: Matthews correlation is 0.0 when either side is constant, F1 is
0.0 when undefined, a correlation with a constant side is NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from ..tasks import get_task


def _quiet(function, *args, **kwargs) -> float:
    with warnings.catch_warnings():  # constant inputs: the documented edge-case value, not a warning per evaluation
        warnings.simplefilter("ignore")
        return float(function(*args, **kwargs))


METRIC_FUNCTIONS = {  # name -> f(predictions, references); the names are the keys of tasks.METRICS
    "accuracy": lambda p, r: _quiet(skm.accuracy_score, r, p),
    "f1": lambda p, r: _quiet(skm.f1_score, r, p, zero_division=0.0),
    "matthews_correlation": lambda p, r: _quiet(skm.matthews_corrcoef, r, p),
    "pearson": lambda p, r: _quiet(lambda x, y: stats.pearsonr(x, y)[0], np.asarray(p, float), np.asarray(r, float)),
    "spearmanr": lambda p, r: _quiet(lambda x, y: stats.spearmanr(x, y)[0], p, r),
}


def compute_task_metrics(task_name: str, predictions, references) -> dict[str, float]:
    """Every metric GLUE reports for the task, as `{name: float}` (e.g. `{"accuracy": .., "f1": ..}` for MRPC)."""
    task = get_task(task_name)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    if len(references) == 0:
        raise ValueError("No predictions to score (empty evaluation set).")
    predictions, references = np.asarray(predictions), np.asarray(references)
    return {name: METRIC_FUNCTIONS[name](predictions, references) for name in task.metrics}


def logits_to_predictions(logits, is_regression: bool):
    """Predicted label ids (argmax) or, for a regression head, the scores."""
    return logits[..., 0] if is_regression else logits.argmax(axis=-1)
