"""The experiment driver builds the grid the results issue asks for, and the report reads only the results file."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import report  # noqa: E402
import reproduce  # noqa: E402


def test_grid_has_three_seeds_on_small_tasks_one_on_large_and_ablations():
    runs = reproduce.build_grid(["sst2", "cola", "mrpc", "rte", "stsb", "imdb"], [1, 2, 3], quick=False)
    students = [r for r in runs if r.role == "student" and r.group == "main"]
    for task in ("cola", "mrpc", "rte", "stsb"):
        for name in ("ts-dot", "ts-inhibitor", "ta-dot", "ta-inhibitor"):
            assert sorted(r.seed for r in students if r.task == task and r.name == name) == [1, 2, 3]
    for task in ("sst2", "imdb"):
        assert len([r for r in students if r.task == task and r.name == "ts-inhibitor"]) == 1
    ablations = {(r.task, r.name) for r in runs if r.group == "ablation"}
    assert {t for t, _ in ablations} == {"sst2", "mrpc"} and len(ablations) == 2 * len(reproduce.ABLATIONS)
    assert {r.name for r in runs if r.role == "general"} == {"general-dot", "general-inhibitor"}


def test_commands_use_recipes_and_identical_flags_for_both_students(tmp_path):
    runs = reproduce.build_grid(["mrpc"], [7], quick=False)
    by_name = {r.name: r for r in runs if r.task == "mrpc"}
    dot = reproduce.command_for(by_name["ts-dot"], tmp_path, "/data", "/minilm")
    inh = reproduce.command_for(by_name["ts-inhibitor"], tmp_path, "/data", "/minilm")
    assert "configuration/mrpc.yaml" in " ".join(dot)
    differing = [(a, b) for a, b in zip(dot, inh) if a != b]
    assert differing == [
        ("dot", "inhibitor"),
        (str(tmp_path / "mrpc/ts-dot-seed7"), str(tmp_path / "mrpc/ts-inhibitor-seed7")),
    ]
    ta = reproduce.command_for(by_name["ta-inhibitor"], tmp_path, "/data", "/minilm")
    assert str(tmp_path / "general/general-inhibitor-seed42") in ta


def test_report_tables_come_from_the_results_file(tmp_path):
    pytest.importorskip("matplotlib")
    rows = []
    for seed, (t, d, i) in enumerate([(0.90, 0.85, 0.84), (0.92, 0.86, 0.83)]):
        for model, acc in (("teacher", t), ("ts-dot", d), ("ts-inhibitor", i)):
            rows.append(
                {
                    "run_id": f"mrpc/{model}/seed{seed}",
                    "task": "mrpc",
                    "model": model,
                    "role": "student",
                    "attention": "dot",
                    "seed": seed,
                    "group": "main",
                    "metrics": {"eval_accuracy": acc},
                    "wall_time_s": 10.0,
                    "hardware": "test",
                    "output_dir": str(tmp_path),
                }
            )
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows))
    sys.argv = ["report.py", str(results), "--out", str(tmp_path / "docs")]
    report.main()
    text = (tmp_path / "docs/results.md").read_text()
    assert "| ts-inhibitor | 83.5 ± 0.7 | 83.5 |" in text
    assert "macro: -2.00 points" in text
    assert (tmp_path / "docs/results_scores.png").stat().st_size > 0
