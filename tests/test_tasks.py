"""The task registry is the one place for task facts, and it agrees with the offline data it describes."""

import ast
import csv
import os
from pathlib import Path

import pytest

from modeling_inhibidistilbert import tasks
from modeling_inhibidistilbert.tasks import METRICS, TASKS, get_task

DATA = Path(os.environ.get("INHIBI_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_registry_module_imports_only_the_standard_library():
    tree = ast.parse(Path(tasks.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "dataclasses"}


def test_every_task_metric_and_published_metric_is_in_the_metric_table():
    assert set(METRICS) == {"accuracy", "f1", "matthews_correlation", "pearson", "spearmanr"}
    assert METRICS["pearson"].hub_type == "pearsonr" and METRICS["matthews_correlation"].short_name == "MCC"
    for task in TASKS.values():
        assert set(task.metrics) <= set(METRICS) and task.main_metric in task.metrics
        assert task.pretty_name and set(task.eval_sizes) == set(task.eval_splits)
        for score in task.published:
            assert score.metric is None or score.metric in task.metrics, (task.name, score)
            assert score.source


def test_aliases_and_unknown_task():
    assert get_task("SST-2") is TASKS["sst2"] and get_task(" sts-b ").eval_size == 1500
    with pytest.raises(ValueError, match="Unknown task 'squad'; choose one of"):
        get_task("squad")


def _rows(path: Path) -> int:
    if path.suffix == ".parquet":
        pyarrow = pytest.importorskip("pyarrow.parquet")
        return pyarrow.ParquetFile(path).metadata.num_rows
    with path.open(newline="") as f:
        rows = sum(1 for _ in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows - 1 if get_task(path.parent.name).local_header else rows


@pytest.mark.parametrize("name", ["cola", "sst2", "mrpc", "rte", "stsb", "qnli", "imdb"])
def test_eval_sizes_match_the_offline_data(name):
    task = TASKS[name]
    path = DATA / task.local_folder / task.local_files[""]
    if not path.is_file():
        pytest.skip(f"offline data not at {DATA} (set INHIBI_DATA_DIR)")
    assert _rows(path) == task.eval_size


@pytest.mark.parametrize("name", ["sst2", "mrpc", "rte", "qnli", "imdb", "cola"])
def test_majority_scores_match_the_offline_dev_labels(name):
    from modeling_inhibidistilbert.distill.data import load_task_splits
    from modeling_inhibidistilbert.distill.metrics import compute_task_metrics

    task = TASKS[name]
    if not (DATA / task.local_folder / task.local_files[""]).is_file():
        pytest.skip(f"offline data not at {DATA} (set INHIBI_DATA_DIR)")
    labels = list(load_task_splits(task, DATA, need_train=False)["validation"]["label"])
    majority = max(set(labels), key=labels.count)
    scores = compute_task_metrics(name, [majority] * len(labels), labels)
    assert {k: 100 * v for k, v in scores.items()} == pytest.approx(task.majority)
