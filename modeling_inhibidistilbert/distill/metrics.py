"""GLUE's metrics, computed offline in NumPy (no metric download), with scikit-learn's and SciPy's conventions.

CoLA: Matthews correlation; STS-B: Pearson and Spearman; MRPC and QQP: accuracy and F1 (of label 1); the rest
(and IMDB): accuracy. Edge cases follow the reference libraries: Matthews correlation is 0.0 when either side is
constant (scikit-learn), a correlation with a constant side is NaN (SciPy), and F1 is 0.0 when it is undefined.
The same functions back the local `evaluate` module in `glue_metric/` (`evaluate.load(GLUE_METRIC_PATH, task)`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .tasks import get_task

GLUE_METRIC_PATH = str(Path(__file__).resolve().parent / "glue_metric")


def accuracy(predictions, references) -> float:
    """Fraction of exact matches."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    return float((predictions == references).mean())


def f1(predictions, references, positive_label: int = 1) -> float:
    """Binary F1 of `positive_label` (scikit-learn's `f1_score`; 0.0 when precision and recall are undefined)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    true_positive = float(np.sum((predictions == positive_label) & (references == positive_label)))
    predicted, actual = float(np.sum(predictions == positive_label)), float(np.sum(references == positive_label))
    denominator = predicted + actual
    return 0.0 if denominator == 0 else 2.0 * true_positive / denominator


def matthews_correlation(predictions, references) -> float:
    """Matthews correlation coefficient for two or more classes (scikit-learn's `matthews_corrcoef`).

    From the confusion matrix C: MCC = (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)), with c the correct count, s the
    sample count, t and p the per-class true and predicted counts; 0.0 when either side is constant.
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    classes, encoded = np.unique(np.concatenate([references, predictions]), return_inverse=True)
    true_idx, pred_idx = encoded[: len(references)], encoded[len(references) :]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (true_idx, pred_idx), 1.0)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, samples = np.trace(confusion), confusion.sum()
    cov_true_pred = correct * samples - true_counts @ pred_counts
    cov_pred_pred = samples**2 - pred_counts @ pred_counts
    cov_true_true = samples**2 - true_counts @ true_counts
    if cov_pred_pred * cov_true_true == 0:
        return 0.0
    return float(cov_true_pred / math.sqrt(cov_true_true * cov_pred_pred))


def pearson(predictions, references) -> float:
    """Pearson's r (SciPy's `pearsonr` statistic); NaN when either side is constant."""
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(references, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    xm, ym = x - x.mean(), y - y.mean()
    norm_x, norm_y = np.linalg.norm(xm), np.linalg.norm(ym)
    if norm_x == 0 or norm_y == 0 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    r = float(np.dot(xm / norm_x, ym / norm_y))
    return max(-1.0, min(1.0, r))


def rankdata(values) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (SciPy's `rankdata(method="average")`)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:], [len(values)]]) - 1
    average = (first + last) / 2.0 + 1.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = average[group]
    return ranks


def spearmanr(predictions, references) -> float:
    """Spearman's rho (SciPy's `spearmanr` statistic): Pearson's r of the average ranks; NaN for a constant side."""
    return pearson(rankdata(predictions), rankdata(references))


METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


def compute_task_metrics(task_name: str, predictions, references) -> dict[str, float]:
    """Every metric GLUE reports for the task, as `{name: float}` (e.g. `{"accuracy": .., "f1": ..}` for MRPC)."""
    task = get_task(task_name)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    if len(references) == 0:
        raise ValueError("No predictions to score (empty evaluation set).")
    return {name: METRIC_FUNCTIONS[name](predictions, references) for name in task.metrics}


def logits_to_predictions(logits, is_regression: bool):
    """Predicted label ids (argmax) or, for a regression head, the scores."""
    return logits[..., 0] if is_regression else logits.argmax(axis=-1)
