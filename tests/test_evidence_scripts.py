"""The evidence scripts on tiny local models and data: plain Trainer fine-tuning, and the fresh-process evaluator."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distill_fixtures import build_tiny_assets, subprocess_env

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_tiny_assets(tmp_path_factory.mktemp("evidence"))


def test_finetune_trainer_chooses_on_heldout_and_reports_dev_once(assets, tmp_path):
    import finetune_trainer

    out = tmp_path / "ft"
    results = finetune_trainer.main([
        str(assets["student"]), "--task", "mrpc", "--data_dir", str(assets["data"]), "--output_dir", str(out),
        "--num_train_epochs", "2", "--heldout_min_rows", "8", "--per_device_train_batch_size", "8",
        "--max_seq_length", "32", "--group_by_length",  # as the protocol's runs
    ])  # fmt: skip
    written = json.loads((out / "all_results.json").read_text())
    assert written == results
    assert set(written) >= {"eval_accuracy", "eval_f1", "heldout_accuracy", "heldout_f1", "train_runtime"}
    assert written["heldout_samples"] == 8 and written["train_samples"] == 48 - 8 and written["eval_samples"] == 24
    assert written["best_checkpoint"].startswith("checkpoint-")  # a name, no path of this machine
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


@pytest.mark.parametrize("task, metric", [("sst2", "accuracy"), ("stsb", "pearson")])
def test_evaluate_folder_reproduces_the_card_number_in_a_fresh_process(assets, tmp_path, task, metric):
    import finetune_trainer

    out = tmp_path / "folder"
    finetune_trainer.main([
        str(assets["student"]), "--task", task, "--data_dir", str(assets["data"]), "--output_dir", str(out),
        "--num_train_epochs", "1", "--heldout_min_rows", "8", "--max_seq_length", "32",
    ])  # fmt: skip
    command = [sys.executable, str(REPO / "experiments" / "evaluate_folder.py"), str(out), "--task", task,
               "--data_dir", str(assets["data"])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "transformers_modules" in done.stdout  # the folder's own code, not this repository's package
    assert done.stdout.count("matches") == (2 if task == "stsb" else 1) and "differs" not in done.stdout
    results = json.loads((out / "all_results.json").read_text())
    results[f"eval_{metric}"] = results[f"eval_{metric}"] + 0.01  # a card number the folder does not reproduce
    (out / "all_results.json").write_text(json.dumps(results))
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert done.returncode == 1 and "differs" in done.stdout + done.stderr


def test_export_best_rescores_each_exported_folder_and_the_report_shows_it(assets, tmp_path, monkeypatch):
    """`export_best.py --evaluate`: every exported folder goes through evaluate_folder.py in a fresh process; the
    outputs are kept next to the results file and shown by the report."""
    import export_best
    import finetune_trainer
    import report

    for key, value in subprocess_env().items():  # the evaluator's process: offline, one thread
        monkeypatch.setenv(key, value)
    run_folder = tmp_path / "runs" / "sst2-at-inhibitor"
    finetune_trainer.main([
        str(assets["student"]), "--task", "sst2", "--data_dir", str(assets["data"]), "--output_dir", str(run_folder),
        "--num_train_epochs", "1", "--heldout_min_rows", "8", "--max_seq_length", "32",
    ])  # fmt: skip
    row = {"run_id": "sst2/at-inhibitor/seed42", "task": "sst2", "model": "at-inhibitor", "role": "student",
           "attention": "inhibitor", "seed": 42, "group": "protocol", "output_dir": str(run_folder), "hardware": "cpu", "wall_time_s": 1.0,
           "metrics": json.loads((run_folder / "all_results.json").read_text())}  # fmt: skip
    results = tmp_path / "protocol.jsonl"
    results.write_text(json.dumps(row) + "\n")
    export_best.main([str(results), "--out", str(tmp_path / "hub"), "--evaluate", "--data_dir", str(assets["data"])])
    log = (tmp_path / "protocol-exports.txt").read_text()
    assert "evaluate_folder.py inhibidistilbert-minilm-sst2 --task sst2   # sst2/at-inhibitor/seed42" in log
    assert "matches" in log and "differs" not in log and "exit status 0" in log
    report.main([str(results), "--out", str(tmp_path / "docs")])
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "rescored by `experiments/evaluate_folder.py` in a fresh process" in text and "exit status 0" in text
