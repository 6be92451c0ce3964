"""GLUE metrics: known values worked out by hand, the reference libraries on random data, and the edge cases."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from modeling_inhibidistilbert.distill.metrics import compute_task_metrics, logits_to_predictions
from modeling_inhibidistilbert.tasks import TASKS


def test_known_values_worked_out_by_hand():
    # tp=1, tn=2, fp=1, fn=0: accuracy 3/4, F1 2*1/(2*1+1+0) = 2/3, MCC (1*2-1*0)/sqrt(2*1*3*2) = 1/sqrt(3)
    preds, refs = [0, 1, 1, 0], [0, 1, 0, 0]
    assert compute_task_metrics("mrpc", preds, refs) == pytest.approx({"accuracy": 0.75, "f1": 2 / 3})
    assert compute_task_metrics("cola", preds, refs) == pytest.approx({"matthews_correlation": 1 / math.sqrt(3)})
    # x = (1, 2, 3), y = (1, 2, 4): Pearson 3/sqrt(2*14/3) = 0.98198; the ranks agree exactly: Spearman 1
    result = compute_task_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert result == pytest.approx({"pearson": 3 / math.sqrt(28 / 3), "spearmanr": 1.0})
    # ties get their average rank: ranks (1.5, 1.5, 3) against (1, 2, 3): Spearman sqrt(3)/2
    assert compute_task_metrics("stsb", [1.0, 1.0, 2.0], [1.0, 2.0, 3.0])["spearmanr"] == pytest.approx(
        math.sqrt(3) / 2
    )


@pytest.mark.parametrize("seed", range(3))
def test_agree_with_the_reference_libraries_on_random_data(seed):
    rng = np.random.default_rng(seed)
    refs, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    mrpc = compute_task_metrics("mrpc", preds, refs)
    assert mrpc["accuracy"] == skm.accuracy_score(refs, preds) and mrpc["f1"] == skm.f1_score(refs, preds)
    refs3, preds3 = rng.integers(0, 3, 300), rng.integers(0, 3, 300)  # three classes
    assert compute_task_metrics("mnli", preds3, refs3)["accuracy"] == skm.accuracy_score(refs3, preds3)
    scores = np.round(rng.uniform(0, 5, 150), 1)  # STS-B-like, with ties
    guesses = scores + rng.normal(0, 1.5, 150)
    stsb = compute_task_metrics("stsb", guesses, scores)
    assert stsb["pearson"] == pytest.approx(stats.pearsonr(guesses, scores)[0], abs=1e-12)
    assert stsb["spearmanr"] == pytest.approx(stats.spearmanr(guesses, scores)[0], abs=1e-12)


def test_constant_predictions_edge_cases():
    refs = [0, 1, 1, 0, 1, 1, 0, 1]
    assert compute_task_metrics("cola", [1] * 8, refs) == {"matthews_correlation": 0.0}
    assert compute_task_metrics("mrpc", [0] * 8, refs)["f1"] == 0.0
    assert compute_task_metrics("mrpc", [0] * 5, [0] * 5)["f1"] == 0.0
    flat = compute_task_metrics("stsb", [2.5] * 6, [0.5, 1.0, 3.2, 4.8, 2.2, 2.2])
    assert math.isnan(flat["pearson"]) and math.isnan(flat["spearmanr"])


def test_each_task_reports_glues_metrics():
    expected = {
        "cola": {"matthews_correlation"},
        "sst2": {"accuracy"},
        "mrpc": {"accuracy", "f1"},
        "stsb": {"pearson", "spearmanr"},
        "qqp": {"accuracy", "f1"},
        "mnli": {"accuracy"},
        "qnli": {"accuracy"},
        "rte": {"accuracy"},
        "wnli": {"accuracy"},
        "imdb": {"accuracy"},
    }
    assert set(TASKS) == set(expected)
    for task, names in expected.items():
        refs = [0.5, 1.5, 2.0, 4.0] if task == "stsb" else [0, 1, 1, 0]
        preds = [0.7, 1.0, 2.5, 3.0] if task == "stsb" else [0, 1, 0, 0]
        result = compute_task_metrics(task, preds, refs)
        assert set(result) == names
        assert all(type(v) is float for v in result.values())
        assert TASKS[task].main_metric in names


def test_compute_task_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown task"):
        compute_task_metrics("squad", [0], [0])
    with pytest.raises(ValueError, match="predictions"):
        compute_task_metrics("sst2", [0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        compute_task_metrics("sst2", [], [])


def test_logits_to_predictions():
    logits = np.array([[0.1, 0.9], [2.0, -1.0]])
    assert logits_to_predictions(logits, is_regression=False).tolist() == [1, 0]
    assert logits_to_predictions(np.array([[3.5], [1.25]]), is_regression=True).tolist() == [3.5, 1.25]
