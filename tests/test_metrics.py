"""GLUE metrics computed offline agree with scikit-learn and SciPy, edge cases included."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from modeling_inhibidistilbert.distill.metrics import (
    GLUE_METRIC_PATH,
    accuracy,
    compute_task_metrics,
    f1,
    matthews_correlation,
    pearson,
    rankdata,
    spearmanr,
)
from modeling_inhibidistilbert.distill.tasks import TASKS


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _same(ours: float, reference: float, tol: float = 1e-10) -> bool:
    return (math.isnan(ours) and math.isnan(reference)) or abs(ours - reference) <= tol


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_agree_with_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    refs, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert _same(accuracy(preds, refs), skm.accuracy_score(refs, preds))
    assert _same(f1(preds, refs), skm.f1_score(refs, preds))
    assert _same(matthews_correlation(preds, refs), skm.matthews_corrcoef(refs, preds))
    refs3, preds3 = rng.integers(0, 3, 300), rng.integers(0, 3, 300)  # MNLI-style three classes
    assert _same(matthews_correlation(preds3, refs3), skm.matthews_corrcoef(refs3, preds3))
    assert _same(accuracy(preds3, refs3), skm.accuracy_score(refs3, preds3))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_agree_with_scipy_on_random_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    refs = np.round(rng.uniform(0, 5, 150), 1)  # STS-B-like scores, many ties
    preds = refs + rng.normal(0, 1.5, 150)
    preds[:20] = np.round(preds[:20])  # ties in the predictions too
    assert _same(pearson(preds, refs), stats.pearsonr(preds, refs)[0])
    assert _same(spearmanr(preds, refs), stats.spearmanr(preds, refs)[0])
    assert np.array_equal(rankdata(preds), stats.rankdata(preds))


def test_constant_predictions_edge_cases_match_the_reference_libraries():
    refs = np.array([0, 1, 1, 0, 1, 1, 0, 1])
    constant = np.ones_like(refs)
    # MCC: scikit-learn returns 0.0 when either side is constant
    assert matthews_correlation(constant, refs) == _quiet(skm.matthews_corrcoef, refs, constant) == 0.0
    assert matthews_correlation(refs, constant) == _quiet(skm.matthews_corrcoef, constant, refs) == 0.0
    assert matthews_correlation(constant, constant) == _quiet(skm.matthews_corrcoef, constant, constant) == 0.0
    # F1 with no positive prediction, and with neither positives predicted nor present
    assert f1(np.zeros_like(refs), refs) == _quiet(skm.f1_score, refs, np.zeros_like(refs)) == 0.0
    zeros = np.zeros(5, dtype=int)
    assert f1(zeros, zeros) == _quiet(skm.f1_score, zeros, zeros) == 0.0
    # correlations: SciPy returns NaN when a side is constant
    scores = np.array([0.5, 1.0, 3.2, 4.8, 2.2, 2.2])
    flat = np.full_like(scores, 2.5)
    assert math.isnan(pearson(flat, scores)) and math.isnan(_quiet(stats.pearsonr, flat, scores)[0])
    assert math.isnan(spearmanr(flat, scores)) and math.isnan(_quiet(stats.spearmanr, flat, scores)[0])
    assert math.isnan(pearson(scores, flat))
    # perfect and perfectly reversed agreement
    assert _same(pearson(scores, scores), 1.0) and _same(spearmanr(scores, -scores), -1.0)


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
        assert all(isinstance(v, float) for v in result.values())
        assert TASKS[task].main_metric in names


def test_compute_task_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown task"):
        compute_task_metrics("squad", [0], [0])
    with pytest.raises(ValueError, match="predictions"):
        compute_task_metrics("sst2", [0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        compute_task_metrics("sst2", [], [])


def test_local_evaluate_module_matches_the_functions(monkeypatch, tmp_path):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    rng = np.random.default_rng(0)
    refs, preds = rng.integers(0, 2, 64), rng.integers(0, 2, 64)
    metric = evaluate.load(GLUE_METRIC_PATH, "mrpc", cache_dir=str(tmp_path / "cache"))
    for start in range(0, 64, 16):  # the usual add_batch / compute pattern
        metric.add_batch(predictions=preds[start : start + 16], references=refs[start : start + 16])
    assert metric.compute() == pytest.approx(compute_task_metrics("mrpc", preds, refs))
    stsb = evaluate.load(GLUE_METRIC_PATH, "stsb", cache_dir=str(tmp_path / "cache"))
    scores, truth = rng.uniform(0, 5, 32), rng.uniform(0, 5, 32)
    result = stsb.compute(predictions=scores, references=truth)
    assert result["spearmanr"] == pytest.approx(stats.spearmanr(scores, truth)[0], abs=1e-6)  # float32 features
