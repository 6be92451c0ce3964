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
